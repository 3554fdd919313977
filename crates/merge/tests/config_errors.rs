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
    let yaml = format!(
        "merge_method: ties\nbase_model: {}\nmodels:\n  - model: {}\n    parameters: {{weight: 1.0, density: 0.25}}\n\
         parameters: {{topk_scope: global, normalize: true}}\ndtype: float32\n",
        mk("base"),
        mk("a")
    );
    let out = run(tmp.path(), &yaml).unwrap();
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
}
