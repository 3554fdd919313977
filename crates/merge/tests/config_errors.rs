//! Bad configurations and inputs for mergekit-style merges: each a clear error, nothing written.

use std::path::{Path, PathBuf};

use mmreason_checkpoint::{CheckpointWriter, ModelDir, Weights, WriterOptions};
use mmreason_merge::{ConfigMergeOptions, MergeError, run_config};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn mk(name: &str) -> String {
    fixtures()
        .join("merge/mergekit/models")
        .join(name)
        .display()
        .to_string()
}

#[allow(clippy::result_large_err)] // a test helper; the error is inspected, not propagated
fn run(tmp: &Path, yaml: &str) -> Result<PathBuf, MergeError> {
    let cfg = tmp.join("c.yml");
    std::fs::write(&cfg, yaml).unwrap();
    let out = tmp.join("out");
    run_config(&ConfigMergeOptions {
        config: cfg,
        out: out.clone(),
        force: true,
        allow_nonfinite: false,
        max_shard_bytes: 5_000_000_000,
        show_progress: false,
    })
    .map(|_| out)
}

fn ta(base: &str, a: &str) -> String {
    format!(
        "merge_method: task_arithmetic\nbase_model: {base}\nmodels:\n  - model: {a}\n    parameters: {{weight: 0.5}}\n"
    )
}

/// TIES over the whole model (`topk_scope: global`): base and `a`, weight 1, the given density (a YAML value)
/// and further method-wide parameters.
fn ties_global(density: &str, parameters: &str) -> String {
    format!(
        "merge_method: ties\nbase_model: {}\nmodels:\n  - model: {}\n    parameters: {{weight: 1.0, density: \
         {density}}}\nparameters: {{topk_scope: global{parameters}}}\ndtype: float32\n",
        mk("base"),
        mk("a")
    )
}

#[test]
fn bad_configs() {
    let tmp = tempfile::tempdir().unwrap();
    let e = run(tmp.path(), "merge_method: frankenmerge\nmodels: []\n").unwrap_err();
    assert!(
        matches!(e, MergeError::UnknownMethod { .. }) && e.to_string().contains("ties"),
        "{e}"
    );
    let e = run(
        tmp.path(),
        &format!("merge_method: ties\nmodels:\n  - model: {}\n", mk("a")),
    )
    .unwrap_err();
    assert!(e.to_string().contains("base_model"), "{e}");
    let e = run(
        tmp.path(),
        &format!(
            "merge_method: ties\nbase_model: {}\nmodels:\n  - model: {}\n",
            mk("base"),
            mk("a")
        ),
    )
    .unwrap_err();
    assert!(e.to_string().contains("weight"), "{e}");
    let e = run(tmp.path(), "merge_method: linear\nmodels:\n  - model: nowhere\n").unwrap_err();
    assert!(e.to_string().contains("nowhere"), "{e}");
    let e = run(tmp.path(), "merge_method: [linear\n").unwrap_err();
    assert!(
        matches!(e, MergeError::Config { .. }) && e.to_string().contains("c.yml"),
        "{e}"
    );
    assert!(!tmp.path().join("out").exists());
}

#[test]
fn different_shapes_missing_tensors_and_nan_name_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let llama = fixtures().join("models/llama").display().to_string();
    let e = run(tmp.path(), &ta(&mk("base"), &llama)).unwrap_err();
    assert!(
        matches!(&e, MergeError::ShapeMismatch { tensor, .. } if tensor == "lm_head.weight"),
        "{e}"
    );

    // A model missing one tensor, and one with a NaN.
    let src = ModelDir::open(mk("a")).unwrap();
    for (dir, drop_it) in [("missing", true), ("nan", false)] {
        let mut w = CheckpointWriter::create(tmp.path().join(dir), WriterOptions::default()).unwrap();
        for t in src.weights.tensors() {
            let mut v = t.to_f32().unwrap();
            if t.name() == "model.layers.1.mlp.up_proj.weight" {
                if drop_it {
                    continue;
                }
                v[5] = f32::INFINITY;
            }
            w.add_f32(t.name(), t.dtype(), t.shape(), &v).unwrap();
        }
        w.copy_file(&src.root.join("config.json"), "config.json").unwrap();
        w.finish().unwrap();
    }
    let e = run(
        tmp.path(),
        &ta(&mk("base"), &tmp.path().join("missing").display().to_string()),
    )
    .unwrap_err();
    assert!(
        matches!(&e, MergeError::MissingTensor { tensor, .. } if tensor == "model.layers.1.mlp.up_proj.weight"),
        "{e}"
    );
    let e = run(
        tmp.path(),
        &ta(&mk("base"), &tmp.path().join("nan").display().to_string()),
    )
    .unwrap_err();
    assert!(matches!(&e, MergeError::NonFinite { first: 5, .. }), "{e}");
    assert!(!tmp.path().join("out").exists(), "no partial output");
}

#[test]
fn ties_with_a_global_scope_keeps_exactly_k_of_each_task_vector() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(tmp.path(), &ties_global("0.25", ", normalize: true")).unwrap();
    let (m, base) = (
        Weights::open_dir(&out).unwrap(),
        Weights::open_dir(mk("base")).unwrap(),
    );
    let total: usize = base.tensors().map(|t| t.numel()).sum();
    let changed: usize = base
        .tensors()
        .map(|b| {
            let (x, y) = (b.to_f32().unwrap(), m.get(b.name()).unwrap().to_f32().unwrap());
            x.iter().zip(&y).filter(|(p, q)| p != q).count()
        })
        .sum();
    // One model, normalize: kept entries become the model's value, the rest stay the base's.
    assert_eq!(
        changed,
        total / 4,
        "global top-k keeps ⌊0.25·n⌋ entries over the whole model"
    );
    // Per tensor, the share varies (unlike mergekit's per-tensor 25 % everywhere).
    let shares: Vec<f64> = base
        .tensors()
        .map(|b| {
            let (x, y) = (b.to_f32().unwrap(), m.get(b.name()).unwrap().to_f32().unwrap());
            x.iter().zip(&y).filter(|(p, q)| p != q).count() as f64 / x.len() as f64
        })
        .collect();
    assert!(shares.iter().any(|s| (s - 0.25).abs() > 0.02), "{shares:?}");

    // Rescaling applies to the global selection too: 1/density on every kept entry of the task vector.
    let yaml = ties_global("0.25", ", normalize: true, rescale_mode: inverse_probability");
    let scaled = Weights::open_dir(run(tmp.path(), &yaml).unwrap()).unwrap();
    let a = Weights::open_dir(mk("a")).unwrap();
    let mut kept = 0;
    for b in base.tensors() {
        let (x, y) = (b.to_f32().unwrap(), m.get(b.name()).unwrap().to_f32().unwrap());
        let (s, t) = (
            scaled.get(b.name()).unwrap().to_f32().unwrap(),
            a.get(b.name()).unwrap().to_f32().unwrap(),
        );
        for i in 0..x.len() {
            if x[i] != y[i] {
                // base + 4·(a − base), in f32 as the merge computes it.
                assert_eq!(s[i], x[i] + (t[i] - x[i]) * 4.0, "{} [{i}]", b.name());
                kept += 1;
            } else {
                assert_eq!(s[i], x[i]);
            }
        }
    }
    assert_eq!(kept, total / 4);

    // L1 rescaling restores each tensor's norm: with one model-wide threshold it is refused.
    let e = run(tmp.path(), &ties_global("0.25", ", rescale_mode: l1")).unwrap_err();
    assert!(
        matches!(e, MergeError::Param(_)) && e.to_string().contains("l1"),
        "{e}"
    );
    // A density that differs between tensors has no meaning for one model-wide threshold.
    let e = run(tmp.path(), &ties_global("[0.2, 0.8]", "")).unwrap_err();
    assert!(
        matches!(e, MergeError::Param(_)) && e.to_string().contains("topk_scope global"),
        "{e}"
    );
}

#[test]
fn parameters_out_of_range_are_refused_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    // A negative density made Breadcrumbs slice past its tensor (a panic); a density above 1 or a γ outside
    // [0, 1] gave a silently different merge.
    for (param, value) in [
        ("density", "-0.1"),
        ("density", "1.5"),
        ("gamma", "-0.5"),
        ("gamma", "1.5"),
    ] {
        let (density, gamma) = if param == "density" {
            (value, "0.1")
        } else {
            ("0.5", value)
        };
        let yaml = format!(
            "merge_method: breadcrumbs\nbase_model: {}\nmodels:\n  - model: {}\n    parameters: {{weight: 1.0, \
             density: {density}, gamma: {gamma}}}\n",
            mk("base"),
            mk("a")
        );
        let e = run(tmp.path(), &yaml).unwrap_err();
        assert!(
            matches!(e, MergeError::Param(_))
                && e.to_string().contains(param)
                && e.to_string().contains("tensor `"),
            "{param} = {value}: {e}"
        );
    }
    assert!(!tmp.path().join("out").exists(), "no partial output");
}

#[test]
fn a_merge_that_is_not_finite_is_not_written() {
    let tmp = tempfile::tempdir().unwrap();
    // Normalised weights that sum to 0: every value is x/0.
    let yaml = format!(
        "merge_method: linear\nmodels:\n  - model: {}\n    parameters: {{weight: 1.0}}\n  - model: {}\n    \
         parameters: {{weight: -1.0}}\n",
        mk("a"),
        mk("b")
    );
    let e = run(tmp.path(), &yaml).unwrap_err();
    assert!(matches!(e, MergeError::NonFiniteOutput { .. }), "{e}");
    assert!(!tmp.path().join("out").exists(), "no partial output");
    // Past f16's range once stored: a finite f32 that would be written as infinity.
    let yaml = format!(
        "merge_method: linear\nparameters: {{normalize: false}}\nmodels:\n  - model: {}\n    parameters: \
         {{weight: 1.0e9}}\nout_dtype: float16\n",
        mk("a")
    );
    let e = run(tmp.path(), &yaml).unwrap_err();
    assert!(
        matches!(&e, MergeError::NonFiniteOutput { dtype, .. } if dtype == "F16"),
        "{e}"
    );
}

#[test]
fn linear_averages_the_base_model_too_as_mergekit_does() {
    let tmp = tempfile::tempdir().unwrap();
    // mergekit gathers the base model's tensors with the others', and `linear` averages all it gathers.
    let yaml = format!(
        "merge_method: linear\nbase_model: {base}\nmodels:\n  - model: {base}\n    parameters: {{weight: 0.25}}\n  \
         - model: {a}\n    parameters: {{weight: 0.75}}\n",
        base = mk("base"),
        a = mk("a")
    );
    let out = run(tmp.path(), &yaml).unwrap();
    let (base, a) = (
        ModelDir::open(mk("base")).unwrap(),
        ModelDir::open(mk("a")).unwrap(),
    );
    let merged = Weights::open_dir(&out).unwrap();
    let mut checked = 0;
    for t in base.weights.tensors() {
        let (b, x) = (
            t.to_f32().unwrap(),
            a.weights.get(t.name()).unwrap().to_f32().unwrap(),
        );
        let got = merged.get(t.name()).unwrap().to_f32().unwrap();
        for i in 0..b.len() {
            let want = (0.25f32 * b[i] + 0.75f32 * x[i]) / 1.0f32;
            assert_eq!(got[i], want, "{} [{i}]", t.name());
        }
        checked += 1;
    }
    assert!(checked > 0);
    // Without a weight for the base (mergekit fails there too), a clear error.
    let yaml = format!(
        "merge_method: linear\nbase_model: {}\nmodels:\n  - model: {}\n    parameters: {{weight: 0.75}}\n",
        mk("base"),
        mk("a")
    );
    let e = run(tmp.path(), &yaml).unwrap_err();
    assert!(e.to_string().contains("weight"), "{e}");
}

#[test]
fn a_reference_model_without_tensors_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    // A safetensors file whose header lists no tensor.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let header = b"{}      ";
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    std::fs::write(empty.join("model.safetensors"), bytes).unwrap();
    std::fs::copy(Path::new(&mk("a")).join("config.json"), empty.join("config.json")).unwrap();
    let yaml = format!(
        "merge_method: linear\nmodels:\n  - model: {}\n    parameters: {{weight: 1.0}}\n",
        empty.display()
    );
    let e = run(tmp.path(), &yaml).unwrap_err();
    assert!(
        matches!(&e, MergeError::Config { message, .. } if message.contains("no tensors") && message.contains("empty")),
        "{e}"
    );
}
