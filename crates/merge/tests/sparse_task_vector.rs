//! The study's merge on the tiny LLaVA fixtures against an independent torch computation
//! (tests/fixtures/merge/sparse_task_vector.json, made by scripts/make_merge_fixtures.py).

use std::path::{Path, PathBuf};

use mmreason_checkpoint::{CheckpointWriter, Dtype, ModelDir, WriterOptions};
use mmreason_merge::{
    Direction, MergeError, Scope, SparseTaskVector, TopK, VlmMergeOptions, merge_vlm_with_llm,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn model(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

fn options(vlm: &str, llm: &str, out: &Path, method: SparseTaskVector) -> VlmMergeOptions {
    VlmMergeOptions {
        vlm: model(vlm),
        llm: model(llm),
        out: out.to_path_buf(),
        method,
        force: false,
        allow_nonfinite: false,
        max_shard_bytes: 1_000_000,
        show_progress: false,
    }
}

fn method_of(case: &Value) -> SparseTaskVector {
    let topk = match (case.get("density"), case.get("count")) {
        (Some(d), _) => TopK::Density(d.as_f64().unwrap()),
        (_, Some(c)) => TopK::Count(c.as_u64().unwrap()),
        _ => panic!("case without density or count"),
    };
    SparseTaskVector {
        alpha: case["alpha"].as_f64().unwrap(),
        topk,
        scope: match case["scope"].as_str().unwrap() {
            "global" => Scope::Global,
            _ => Scope::PerTensor,
        },
        direction: match case["direction"].as_str().unwrap() {
            "away_from_llm" => Direction::AwayFromLlm,
            _ => Direction::TowardLlm,
        },
    }
}

#[test]
fn equals_the_direct_torch_computation_on_every_case() {
    let golden: Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("merge/sparse_task_vector.json")).unwrap())
            .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for (i, case) in golden["cases"].as_array().unwrap().iter().enumerate() {
        let (vlm, llm) = (case["vlm"].as_str().unwrap(), case["llm"].as_str().unwrap());
        let out = tmp.path().join(format!("case{i}"));
        let report = merge_vlm_with_llm(&options(vlm, llm, &out, method_of(case))).unwrap();
        let label = format!(
            "case {i}: {vlm} {}",
            serde_json::to_string(&method_of(case)).unwrap()
        );
        assert_eq!(report.kept, case["kept"].as_u64().unwrap(), "{label}");
        let merged = ModelDir::open(&out).unwrap();
        for (name, want) in case["tensors"].as_object().unwrap() {
            let t = merged.weights.get(name).unwrap();
            if let Some(values) = want.get("values") {
                let got = t.to_f32().unwrap();
                let want: Vec<f32> = values
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
                    .collect();
                let bad = got
                    .iter()
                    .zip(&want)
                    .position(|(a, b)| a.to_bits() != b.to_bits());
                assert!(
                    bad.is_none(),
                    "{label}: {name}[{}] = {} want {}",
                    bad.unwrap(),
                    got[bad.unwrap()],
                    want[bad.unwrap()]
                );
            }
            let digest = format!("{:x}", Sha256::digest(t.bytes()));
            assert_eq!(
                digest,
                want["sha256"].as_str().unwrap(),
                "{label}: bytes of {name}"
            );
        }
        // Vision tower, projector and image_newline pass through byte for byte; config and tokenizer are copied.
        let src = ModelDir::open(model(vlm)).unwrap();
        for t in src
            .weights
            .tensors()
            .filter(|t| !t.name().starts_with("language_model."))
        {
            assert_eq!(
                merged.weights.get(t.name()).unwrap().bytes(),
                t.bytes(),
                "{label}: {}",
                t.name()
            );
        }
        assert_eq!(merged.config, src.config);
        assert!(merged.tokenizer.tokenizer_json.is_some());
        assert_eq!(merged.weights.len(), src.weights.len());
    }
}

#[test]
fn alpha_zero_is_the_vlm_and_full_alpha_one_is_the_llm() {
    let tmp = tempfile::tempdir().unwrap();
    for scope in [Scope::PerTensor, Scope::Global] {
        let zero = SparseTaskVector {
            alpha: 0.0,
            topk: TopK::Density(0.3),
            scope,
            direction: Direction::TowardLlm,
        };
        let out = tmp.path().join(format!("zero-{scope:?}"));
        merge_vlm_with_llm(&options("llava-next", "mistral-base", &out, zero)).unwrap();
        let (a, b) = (
            ModelDir::open(model("llava-next")).unwrap(),
            ModelDir::open(&out).unwrap(),
        );
        for t in a.weights.tensors() {
            assert_eq!(
                b.weights.get(t.name()).unwrap().bytes(),
                t.bytes(),
                "{}",
                t.name()
            );
        }
        let one = SparseTaskVector {
            alpha: 1.0,
            topk: TopK::Density(1.0),
            scope,
            direction: Direction::TowardLlm,
        };
        let out = tmp.path().join(format!("one-{scope:?}"));
        merge_vlm_with_llm(&options("llava-1.5", "vicuna-base", &out, one)).unwrap();
        let (m, llm) = (
            ModelDir::open(&out).unwrap(),
            ModelDir::open(model("vicuna-base")).unwrap(),
        );
        for (llm_name, vlm_name) in m.language_model_tensors() {
            let l = llm.weights.get(&llm_name).unwrap();
            let v = m.weights.get(&vlm_name).unwrap();
            assert_eq!(&v.bytes()[..l.bytes().len()], l.bytes(), "{llm_name}");
        }
    }
}

// ---- bad input ----

/// A copy of `src` with `edit` applied to its tensors (None drops the tensor).
fn edited_copy(src: &str, dst: &Path, edit: impl Fn(&str, Vec<f32>) -> Option<Vec<f32>>) {
    let m = ModelDir::open(model(src)).unwrap();
    let mut w = CheckpointWriter::create(dst, WriterOptions::default()).unwrap();
    for t in m.weights.tensors() {
        if let Some(v) = edit(t.name(), t.to_f32().unwrap()) {
            w.add_f32(t.name(), t.dtype(), t.shape(), &v).unwrap();
        }
    }
    w.copy_file(&model(src).join("config.json"), "config.json")
        .unwrap();
    w.finish().unwrap();
}

fn half() -> SparseTaskVector {
    SparseTaskVector {
        alpha: 0.5,
        topk: TopK::Density(0.5),
        scope: Scope::PerTensor,
        direction: Direction::TowardLlm,
    }
}

#[test]
fn different_shapes_or_layer_counts_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let e = merge_vlm_with_llm(&options("llava-1.5", "llama", &tmp.path().join("a"), half())).unwrap_err();
    assert!(
        matches!(e, MergeError::Unpaired { .. }) && e.to_string().contains("hidden size"),
        "{e}"
    );
    let llm = tmp.path().join("fewer-layers");
    edited_copy("vicuna-base", &llm, |n, v| {
        (!n.starts_with("model.layers.1.")).then_some(v)
    });
    let mut o = options("llava-1.5", "vicuna-base", &tmp.path().join("b"), half());
    o.llm = llm;
    let e = merge_vlm_with_llm(&o).unwrap_err();
    assert!(
        e.to_string().contains("model.layers.1.") && e.to_string().contains("not in the LLM"),
        "{e}"
    );
    assert!(!tmp.path().join("b").exists());
}

#[test]
fn nan_is_refused_naming_the_tensor_and_nothing_is_left_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let llm = tmp.path().join("nan-llm");
    // The last tensor in file order gets a NaN, so the failure comes after shards were written.
    edited_copy("vicuna-base", &llm, |n, mut v| {
        if n == "model.norm.weight" {
            v[3] = f32::NAN;
        }
        Some(v)
    });
    let out = tmp.path().join("out");
    let mut o = options("llava-1.5", "vicuna-base", &out, half());
    o.llm = llm.clone();
    o.max_shard_bytes = 50_000;
    let e = merge_vlm_with_llm(&o).unwrap_err();
    assert!(
        matches!(&e, MergeError::NonFinite { tensor, first: 3, .. } if tensor == "model.norm.weight"),
        "{e}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("nan-llm")],
        "no partial output, no temp dir"
    );
    o.allow_nonfinite = true;
    merge_vlm_with_llm(&o).unwrap();
    let merged = ModelDir::open(&out).unwrap();
    assert!(
        merged
            .weights
            .get("language_model.model.norm.weight")
            .unwrap()
            .to_f32()
            .unwrap()
            .iter()
            .any(|x| x.is_nan())
    );
    assert_eq!(
        merged
            .weights
            .get("language_model.model.norm.weight")
            .unwrap()
            .dtype(),
        Dtype::F16
    );
}

#[test]
fn existing_output_needs_force_and_inputs_are_never_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let e = merge_vlm_with_llm(&options("llava-1.5", "vicuna-base", &out, half())).unwrap_err();
    assert!(e.to_string().contains("--force"), "{e}");
    let mut o = options("llava-1.5", "vicuna-base", &out, half());
    o.force = true;
    merge_vlm_with_llm(&o).unwrap();
    assert!(out.join("model.safetensors").is_file() || out.join("model.safetensors.index.json").is_file());
    let before = std::fs::read(model("llava-1.5").join("model.safetensors")).unwrap();
    let mut o = options("llava-1.5", "vicuna-base", &model("llava-1.5"), half());
    o.force = true;
    let e = merge_vlm_with_llm(&o).unwrap_err();
    assert!(e.to_string().contains("input"), "{e}");
    assert_eq!(
        std::fs::read(model("llava-1.5").join("model.safetensors")).unwrap(),
        before
    );
}

#[test]
fn a_density_that_is_not_a_fraction_or_an_alpha_that_is_not_finite_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // `10` meant as 10 % kept everything before; a negative density kept nothing; a NaN α wrote NaN weights.
    for (alpha, density) in [
        (0.5, 10.0),
        (0.5, -0.1),
        (0.5, f64::NAN),
        (f64::NAN, 0.5),
        (f64::INFINITY, 0.5),
    ] {
        let method = SparseTaskVector {
            alpha,
            topk: TopK::Density(density),
            ..half()
        };
        let out = tmp.path().join("out");
        let e = merge_vlm_with_llm(&options("llava-1.5", "vicuna-base", &out, method)).unwrap_err();
        assert!(
            matches!(e, MergeError::Param(_)),
            "α {alpha}, density {density}: {e}"
        );
        assert!(!out.exists(), "α {alpha}, density {density}: nothing written");
    }
}

#[test]
fn weights_in_other_formats_are_not_copied_beside_the_merge() {
    let tmp = tempfile::tempdir().unwrap();
    // A VLM directory that also holds its weights as PyTorch files: a loader preferring those would load the
    // unmerged model from the output.
    let vlm = tmp.path().join("vlm");
    edited_copy("llava-1.5", &vlm, |_, v| Some(v));
    for f in ["tokenizer_config.json", "preprocessor_config.json"] {
        if model("llava-1.5").join(f).exists() {
            std::fs::copy(model("llava-1.5").join(f), vlm.join(f)).unwrap();
        }
    }
    for f in [
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
        "model.pt",
        "extra.gguf",
    ] {
        std::fs::write(vlm.join(f), b"stale").unwrap();
    }
    std::fs::write(vlm.join("added_tokens.json"), b"{}").unwrap();
    let out = tmp.path().join("out");
    let mut o = options("llava-1.5", "vicuna-base", &out, half());
    o.vlm = vlm;
    merge_vlm_with_llm(&o).unwrap();
    for f in [
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
        "model.pt",
        "extra.gguf",
    ] {
        assert!(!out.join(f).exists(), "{f} was copied");
    }
    assert!(out.join("added_tokens.json").exists() && out.join("config.json").exists());
}
