//! `study` on the bundled defaults (smaller grid and limit): structure and internal consistency of its outputs.

use std::path::Path;

use mmreason_eval::{StudyOptions, run_study};
use serde_json::Value;

#[test]
fn the_bundled_study_runs_and_its_report_agrees_with_its_runs() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let tmp = tempfile::tempdir().unwrap();
    let mut o = StudyOptions::bundled(&fixtures, tmp.path().to_path_buf());
    o.limit = Some(3);
    o.alphas = vec![1.0];
    o.densities = vec![0.1, 1.0];
    let r = run_study(&o).unwrap();
    let names: Vec<&str> = r.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["llm", "vlm", "merge-a1-k0.1", "merge-a1-k1"]);
    assert_eq!(r.comparisons.len(), 3);
    for f in [
        "report.md",
        "report.json",
        "compare/llm-vs-vlm/compare.md",
        "merges/merge-a1-k1/config.json",
    ] {
        assert!(tmp.path().join(f).is_file(), "{f}");
    }
    // Every score in the report is the value in that run's results.json.
    for m in &r.models {
        let res: Value = serde_json::from_str(
            &std::fs::read_to_string(tmp.path().join("runs").join(&m.name).join("results.json")).unwrap(),
        )
        .unwrap();
        for (task, key, v) in &m.scores {
            assert_eq!(
                res["results"][task][key].as_f64().unwrap(),
                *v,
                "{} {task} {key}",
                m.name
            );
        }
    }
    // α = 1, K = 1 moves the whole task vector back: the merge's language model is the LLM's, so their scores
    // (over the same vocabulary) are equal.
    let llm = &r.models[0];
    let full = &r.models[3];
    for ((t1, k1, v1), (t2, k2, v2)) in llm.scores.iter().zip(&full.scores) {
        assert_eq!((t1, k1), (t2, k2));
        assert!((v1 - v2).abs() < 1e-12, "{t1} {k1}: llm {v1} vs full merge {v2}");
    }
    assert!(r.best_merge.is_some());
    // Vision: the VLM and the merges answer easy-vqa, the LLM does not; the Pareto front is non-empty and
    // nobody on it is dominated.
    assert!(r.models[0].vision_score.is_none());
    assert!(r.models[1..].iter().all(|m| m.vision_score.is_some()));
    let front: Vec<_> = r.models.iter().filter(|m| m.pareto).collect();
    assert!(!front.is_empty());
    for f in &front {
        let (l, v) = (f.language_score, f.vision_score.unwrap());
        assert!(!r.models.iter().any(|m| {
            m.vision_score
                .is_some_and(|v2| m.language_score >= l && v2 >= v && (m.language_score > l || v2 > v))
        }));
    }
    assert!(
        std::fs::read_to_string(tmp.path().join("report.svg"))
            .unwrap()
            .contains("<svg")
    );
    // A second run resumes everything (journals and merged directories) and reports the same.
    let again = run_study(&o).unwrap();
    assert_eq!(again.markdown, r.markdown);
}
