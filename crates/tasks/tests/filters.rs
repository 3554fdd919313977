//! gsm8k's filter pipelines and exact_match against lm-evaluation-harness 0.4.13 on crafted outputs
//! (tests/fixtures/tasks/filters_gsm8k.json, made by scripts/make_filter_fixtures.py).

use std::path::{Path, PathBuf};

use mmreason_metrics::ExactMatch;
use mmreason_tasks::{Pipeline, TaskConfig};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

#[test]
fn gsm8k_filters_and_exact_match_equal_lm_eval() {
    let cfg = TaskConfig::from_file(&root().join("tasks/gsm8k.yaml")).unwrap();
    let pipes: Vec<Pipeline> = cfg
        .filter_list
        .iter()
        .map(|f| Pipeline::from_config(f).unwrap())
        .collect();
    assert_eq!(
        pipes.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["strict-match", "flexible-extract"]
    );
    let g: Value = serde_json::from_slice(
        &std::fs::read(root().join("../../tests/fixtures/tasks/filters_gsm8k.json")).unwrap(),
    )
    .unwrap();
    let em = ExactMatch::new(&[",", "\\$", "(?s).*#### ", "\\.$"], true, false).unwrap();
    let target = g["target"].as_str().unwrap();
    for row in g["rows"].as_array().unwrap() {
        let out = row["output"].as_str().unwrap().to_string();
        for (pipe, key, em_key) in [
            (&pipes[0], "strict-match", "em_strict"),
            (&pipes[1], "flexible-extract", "em_flexible"),
        ] {
            let got = pipe.apply(std::slice::from_ref(&out));
            assert_eq!(
                got,
                vec![row[key].as_str().unwrap().to_string()],
                "{key} on {out:?}"
            );
            assert_eq!(
                em.score(&got[0], target),
                row[em_key].as_f64().unwrap(),
                "{em_key} on {out:?}"
            );
        }
        let lower =
            Pipeline::from_config(&serde_json::json!({"name": "l", "filter": [{"function": "lowercase"}]}))
                .unwrap();
        assert_eq!(
            lower.apply(std::slice::from_ref(&out))[0],
            row["lowercase"].as_str().unwrap()
        );
        let ws = Pipeline::from_config(
            &serde_json::json!({"name": "w", "filter": [{"function": "remove_whitespace"}]}),
        )
        .unwrap();
        assert_eq!(
            ws.apply(std::slice::from_ref(&out))[0],
            row["whitespace"].as_str().unwrap()
        );
    }
    let vote =
        Pipeline::from_config(&serde_json::json!({"name": "v", "filter": [{"function": "majority_vote"}]}))
            .unwrap();
    for (v, want) in g["votes"]
        .as_array()
        .unwrap()
        .iter()
        .zip(g["majority"].as_array().unwrap())
    {
        let resps: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect();
        assert_eq!(vote.apply(&resps), vec![want[0].as_str().unwrap().to_string()]);
    }
    assert!(
        Pipeline::from_config(&serde_json::json!({"name": "x", "filter": [{"function": "nonsense"}]}))
            .is_err()
    );
}

#[test]
fn multiple_choice_scores_equal_lm_eval_process_results() {
    let g: Value = serde_json::from_slice(
        &std::fs::read(root().join("../../tests/fixtures/tasks/multiple_choice_scores.json")).unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    for task in ["arc_easy", "commonsense_qa"] {
        let cfg = TaskConfig::from_file(&root().join("tasks").join(format!("{task}.yaml"))).unwrap();
        let data = mmreason_tasks::load_split(
            &root().join("../../tests/fixtures/datasets"),
            &cfg.dataset_path,
            "validation",
        )
        .unwrap();
        for row in g.as_array().unwrap().iter().filter(|r| r["task"] == task) {
            let id = row["doc_id"].as_u64().unwrap() as usize;
            let doc = &data.docs[id];
            let lls: Vec<f64> = row["lls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            let gold = mmreason_tasks::gold_index(&cfg, doc, id).unwrap();
            let choices = mmreason_tasks::doc_choices(&cfg, doc, id).unwrap();
            let s = mmreason_metrics::multiple_choice(&lls, &choices, gold).unwrap();
            for (k, v) in [
                ("acc", s.acc),
                ("acc_norm", s.acc_norm),
                ("acc_bytes", s.acc_bytes),
            ] {
                assert_eq!(v, row[k].as_f64().unwrap(), "{task} doc {id} {k}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 100);
}
