//! The task-vector analysis on the tiny LLaVA-1.5 fixture, whose language model is its base plus Gaussian
//! noise of σ 0.05 on weights of σ 0.2 (norm weights 1 ± 0.2) — so the expected statistics are known.

use std::path::{Path, PathBuf};

use mmreason_merge::{AnalyzeOptions, analyze};

fn model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/models")
        .join(name)
}

#[test]
fn statistics_match_how_the_fixture_was_made() {
    let a = analyze(&AnalyzeOptions {
        vlm: model("llava-1.5"),
        llm: model("vicuna-base"),
        density: 0.1,
        show_progress: false,
    })
    .unwrap();
    assert_eq!(a.tensors.len(), 21);
    for t in &a.tensors {
        let is_norm = t.module.contains("norm");
        let (lo, hi) = if is_norm { (0.02, 0.1) } else { (0.2, 0.3) };
        assert!(
            (lo..hi).contains(&t.relative),
            "{}: relative {}",
            t.tensor,
            t.relative
        );
        // Gaussian task vector: the top 10 % of entries carry 2φ(1.645)/2φ(0) ≈ 0.26 of the L1 mass (a 16-entry norm
        // keeps ⌊1.6⌋ = 1 entry, about a seventh).
        let (lo, hi) = if is_norm { (0.08, 0.4) } else { (0.2, 0.32) };
        assert!(
            (lo..hi).contains(&t.mass_kept),
            "{}: mass kept {}",
            t.tensor,
            t.mass_kept
        );
        if !is_norm {
            // P(same sign) = 1 − atan(0.05/0.2)/π ≈ 0.92 for zero-mean weights.
            assert!(
                (0.88..0.96).contains(&t.sign_agreement),
                "{}: sign agreement {}",
                t.tensor,
                t.sign_agreement
            );
        } else {
            assert_eq!(t.sign_agreement, 1.0, "{}", t.tensor);
        }
    }
    assert_eq!(a.tensors.iter().filter(|t| t.layer == Some(1)).count(), 9);

    let tmp = tempfile::tempdir().unwrap();
    let files = a.write(tmp.path()).unwrap();
    assert_eq!(files.len(), 4);
    let csv = std::fs::read_to_string(tmp.path().join("analysis.csv")).unwrap();
    assert_eq!(csv.lines().count(), 22);
    let svg = std::fs::read_to_string(tmp.path().join("analysis.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("self_attn.q_proj"));
    let md = std::fs::read_to_string(tmp.path().join("analysis.md")).unwrap();
    assert!(md.contains("| 0 | mlp.down_proj |"), "{md}");
}
