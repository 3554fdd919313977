//! Zero-shot requests rendered from our task YAMLs equal lm-evaluation-harness 0.4.13's on the same documents
//! (tests/fixtures/tasks, made by scripts/make_task_fixtures.py).

use std::path::{Path, PathBuf};

use mmreason_tasks::{Request, TaskConfig, dry_run_jsonl, load_split, requests};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// lm-eval's requests for a fixture (`tests/fixtures/tasks/<name>.jsonl`) compared with ours, request by request.
fn assert_equals_lm_eval(got: &[Request], name: &str) {
    let want: Vec<Request> =
        std::fs::read_to_string(root().join(format!("../../tests/fixtures/tasks/{name}.jsonl")))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(got.len(), want.len(), "{name}: request count");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "{name}");
    }
}

#[test]
fn requests_are_byte_identical_to_lm_eval() {
    for task in [
        "arc_easy",
        "commonsense_qa",
        "gsm8k",
        "arc_challenge",
        "openbookqa",
        "boolq",
        "piqa",
        "social_iqa",
        "hellaswag",
        "mmlu",
        "winogrande",
        "race",
        "bigbench_strategyqa",
    ] {
        let cfg = TaskConfig::from_file(&root().join("tasks").join(format!("{task}.yaml"))).unwrap();
        let split = if task == "arc_easy" {
            "validation"
        } else {
            cfg.eval_split().unwrap()
        };
        let data = load_split(
            &root().join("../../tests/fixtures/datasets"),
            &cfg.dataset_path,
            split,
        )
        .unwrap();
        let docs = cfg.process(data.docs).unwrap();
        let got = requests(&cfg, &docs).unwrap();
        assert_equals_lm_eval(&got, task);
        let jsonl = dry_run_jsonl(&got);
        assert_eq!(jsonl.lines().count(), got.len());
    }
}

#[test]
fn template_errors_name_task_and_document() {
    let mut cfg = TaskConfig::from_file(&root().join("tasks/arc_easy.yaml")).unwrap();
    cfg.doc_to_text = serde_json::Value::String("{{ no_such_field }}".into());
    let data = load_split(
        &root().join("../../tests/fixtures/datasets"),
        "arc_easy",
        "validation",
    )
    .unwrap();
    let e = requests(&cfg, &data.docs).unwrap_err().to_string();
    assert!(
        e.contains("arc_easy") && e.contains("document 0") && e.contains("doc_to_text"),
        "{e}"
    );
}

#[test]
fn three_shot_requests_equal_lm_eval_with_seed_1234() {
    for task in ["arc_easy", "commonsense_qa"] {
        let cfg = TaskConfig::from_file(&root().join("tasks").join(format!("{task}.yaml"))).unwrap();
        let data = load_split(
            &root().join("../../tests/fixtures/datasets"),
            &cfg.dataset_path,
            "validation",
        )
        .unwrap();
        let fs = mmreason_tasks::FewShot {
            num: 3,
            pool: &data.docs,
            same_split: true,
            seed: 1234,
            first_n: false,
            group_by: None,
        };
        let got = mmreason_tasks::requests_with(&cfg, &data.docs, Some(&fs)).unwrap();
        assert_equals_lm_eval(&got, &format!("{task}_3shot"));
    }
}

#[test]
fn mmlu_five_shot_takes_the_subjects_first_dev_examples_as_lm_eval() {
    let cfg = mmreason_tasks::registry::task("mmlu").unwrap();
    let data_dir = root().join("../../tests/fixtures/datasets");
    let docs = load_split(&data_dir, "mmlu", "test").unwrap().docs;
    let dev = load_split(&data_dir, "mmlu", "dev").unwrap().docs;
    let fs = mmreason_tasks::FewShot::for_task(&cfg, 5, &dev, false, 1234);
    let got = mmreason_tasks::requests_with(&cfg, &docs, Some(&fs)).unwrap();
    assert_equals_lm_eval(&got, "mmlu_5shot");
}

#[test]
fn gsm8k_cot_uses_its_eight_fixed_exemplars_as_lm_eval() {
    let cfg = mmreason_tasks::registry::task("gsm8k_cot").unwrap();
    let docs = load_split(&root().join("../../tests/fixtures/datasets"), "gsm8k", "test")
        .unwrap()
        .docs;
    let pool = cfg.fewshot_samples().unwrap();
    assert_eq!(pool.len(), 8);
    let fs = mmreason_tasks::FewShot::for_task(&cfg, 8, &pool, false, 1234);
    let got = mmreason_tasks::requests_with(&cfg, &docs, Some(&fs)).unwrap();
    assert_equals_lm_eval(&got, "gsm8k_cot_8shot");
}

#[test]
fn minerva_math_uses_its_four_exemplars_and_lm_eval_answers() {
    let cfg = mmreason_tasks::registry::task("minerva_math").unwrap();
    let data = load_split(&root().join("../../tests/fixtures/datasets"), "math", "test").unwrap();
    let docs = cfg.process(data.docs).unwrap();
    // lm-eval's process_docs: every field kept, the normalised boxed answer added.
    let want: Vec<serde_json::Value> =
        std::fs::read_to_string(root().join("../../tests/fixtures/tasks/minerva_math_docs.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(docs.len(), want.len());
    for (d, w) in docs.iter().zip(&want) {
        assert_eq!(
            serde_json::to_string(d).unwrap(),
            serde_json::to_string(w).unwrap()
        );
    }
    let pool = cfg.fewshot_samples().unwrap();
    assert_eq!(pool.len(), 4);
    let fs = mmreason_tasks::FewShot::for_task(&cfg, 4, &pool, false, 1234);
    let got = mmreason_tasks::requests_with(&cfg, &docs, Some(&fs)).unwrap();
    assert_equals_lm_eval(&got, "minerva_math_4shot");
}

#[test]
fn a_target_field_holding_a_digit_string_is_the_answer_text_not_an_index() {
    // lm-eval returns a named field's value as it is: the string "1" is looked up among the choices (gold 0
    // here), where an integer field or a template's digits are an index.
    let cfg = TaskConfig::from_yaml(
        "task: digits\ndataset_path: digits\noutput_type: multiple_choice\ntest_split: test\n\
         doc_to_text: \"{{q}}\"\ndoc_to_target: answer\ndoc_to_choice: [\"1\", \"2\", \"3\"]\n",
        Path::new("digits.yaml"),
    )
    .unwrap();
    let doc = |answer: serde_json::Value| -> mmreason_tasks::Doc {
        serde_json::from_value(serde_json::json!({"q": "How many?", "answer": answer})).unwrap()
    };
    assert_eq!(mmreason_tasks::gold_index(&cfg, &doc("1".into()), 0).unwrap(), 0);
    assert_eq!(mmreason_tasks::gold_index(&cfg, &doc(1.into()), 0).unwrap(), 1);
    assert_eq!(
        mmreason_tasks::doc_target(&cfg, &doc("3".into()), 0).unwrap(),
        "3"
    );
    assert_eq!(mmreason_tasks::doc_target(&cfg, &doc(0.into()), 0).unwrap(), "1");
    // As a template, the digits are an index again.
    let mut t = cfg.clone();
    t.doc_to_target = Some("{{answer}}".into());
    assert_eq!(mmreason_tasks::gold_index(&t, &doc("1".into()), 0).unwrap(), 1);
    // A string that is no choice is an error naming it.
    let e = mmreason_tasks::gold_index(&cfg, &doc("7".into()), 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`7`"), "{e}");
}
