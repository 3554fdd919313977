//! Bootstrap standard errors equal lm-eval 0.4.13's on fixed inputs (tests/fixtures/metrics/bootstrap.json, made
//! by scripts/make_bootstrap_fixtures.py).

use mmreason_metrics::{bootstrap_stderr, f1, matthews, mean, median};
use serde_json::Value;

#[test]
fn bootstrap_stderr_equals_lm_eval_draw_for_draw() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/metrics/bootstrap.json");
    let g: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let iters = g["iters"].as_u64().unwrap() as usize;
    let xs: Vec<f64> = g["xs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let pairs: Vec<(u8, u8)> = g["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap() as u8, p[1].as_u64().unwrap() as u8))
        .collect();
    let close = |a: f64, b: &Value, what: &str| {
        let b = b.as_f64().unwrap();
        assert!(
            (a - b).abs() <= 1e-12 * b.abs().max(1.0),
            "{what}: {a} vs lm-eval {b}"
        );
    };
    close(mean(&xs).unwrap(), &g["mean"], "mean");
    close(median(&xs), &g["median"], "median");
    close(f1(&pairs), &g["f1"], "f1");
    close(matthews(&pairs), &g["mcc"], "mcc");
    close(
        bootstrap_stderr(|s| mean(s).unwrap(), &xs, iters).unwrap(),
        &g["mean_bootstrap_stderr"],
        "mean stderr",
    );
    close(
        bootstrap_stderr(median, &xs, iters).unwrap(),
        &g["median_bootstrap_stderr"],
        "median stderr",
    );
    close(
        bootstrap_stderr(f1, &pairs, iters).unwrap(),
        &g["f1_bootstrap_stderr"],
        "f1 stderr",
    );
    close(
        bootstrap_stderr(matthews, &pairs, iters).unwrap(),
        &g["mcc_bootstrap_stderr"],
        "mcc stderr",
    );
}
