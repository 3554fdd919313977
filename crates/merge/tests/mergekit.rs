//! Every configuration in tests/fixtures/merge/mergekit/ against mergekit 0.1.4's own output for it
//! (made by scripts/make_merge_fixtures.py; DARE/DELLA with `--random-seed 42`).

use std::path::{Path, PathBuf};

use mmreason_checkpoint::{Dtype, Weights};
use mmreason_merge::{ConfigMergeOptions, run_config};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/merge/mergekit")
}

/// Largest |ours − mergekit| relative to the tensor's largest |value|, over all tensors.
fn run_case(case: &str) -> f64 {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let opts = ConfigMergeOptions {
        config: dir().join(format!("{case}.yml")),
        out: out.clone(),
        force: false,
        allow_nonfinite: false,
        max_shard_bytes: 5_000_000_000,
        show_progress: false,
    };
    run_config(&opts).unwrap_or_else(|e| panic!("{case}: {e}"));
    let ours = Weights::open_dir(&out).unwrap();
    let want = Weights::open_dir_file(&dir().join("expected").join(format!("{case}.safetensors")));
    assert_eq!(ours.len(), want.len(), "{case}: tensor count");
    let mut worst = 0.0f64;
    for w in want.tensors() {
        let o = ours.get(w.name()).unwrap();
        assert_eq!(
            (o.shape(), o.dtype()),
            (w.shape(), w.dtype()),
            "{case}: {}",
            w.name()
        );
        let (a, b) = (o.to_f32().unwrap(), w.to_f32().unwrap());
        let scale = b.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-30) as f64;
        let diff = a.iter().zip(&b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) as f64;
        worst = worst.max(diff / scale);
    }
    eprintln!("{case}: max relative difference to mergekit {worst:e}");
    worst
}

trait OpenFile {
    fn open_dir_file(path: &Path) -> Weights;
}

impl OpenFile for Weights {
    fn open_dir_file(path: &Path) -> Weights {
        Weights::open_files(path.parent().unwrap(), &[path.to_path_buf()]).unwrap()
    }
}

#[test]
fn deterministic_methods_equal_mergekit() {
    // f32 throughout; 1e-6 of each tensor's scale (sums reassociated or accumulated in f64 differ by ulps).
    for case in [
        "linear",
        "task_arithmetic",
        "ties",
        "ties_filters",
        "dare_linear_d1",
        "dare_ties_d1",
        "breadcrumbs",
        "breadcrumbs_ties",
        "della_d1",
        "slerp",
        "model_stock",
        "model_stock_filter_wise",
    ] {
        let worst = run_case(case);
        assert!(worst <= 1e-6, "{case}: max relative difference {worst:e}");
    }
}

#[test]
fn bf16_output_rounds_like_torch() {
    let worst = run_case("task_arithmetic_bf16_out");
    assert_eq!(
        worst, 0.0,
        "bf16 outputs must be bit-identical after round-to-nearest-even"
    );
    let w = Weights::open_dir_file(&dir().join("expected/task_arithmetic_bf16_out.safetensors"));
    assert!(w.tensors().all(|t| t.dtype() == Dtype::BF16));
}

#[test]
fn seeded_dare_and_della_reproduce_mergekits_random_seed() {
    for case in ["dare_ties_seeded", "dare_linear_seeded", "della_seeded"] {
        let worst = run_case(case);
        assert!(worst <= 1e-6, "{case}: max relative difference {worst:e}");
    }
}
