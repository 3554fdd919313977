//! Vision tasks end to end with the tiny LLaVA-1.5 fixture: real easy-vqa rows and hand-made rows in the
//! lmms-lab schemas of POPE, MME, ScienceQA-IMG, MMBench and TextVQA (tests/fixtures/datasets/VISION.md).

use std::path::{Path, PathBuf};

use mmreason_eval::{EvalOptions, evaluate};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

#[test]
fn every_vision_task_runs_and_scores_its_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let tasks: Vec<String> = [
        "easy_vqa",
        "pope",
        "mme",
        "scienceqa_img",
        "mmbench_en",
        "textvqa",
        "commonsense_qa",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut o = EvalOptions::new(
        tasks.clone(),
        fixtures().join("datasets"),
        tmp.path().to_path_buf(),
    );
    o.model = Some(fixtures().join("models/llava-1.5"));
    o.vocab_limit = Some(32000);
    o.limit = Some(6);
    o.num_fewshot = Some(0);
    let s = evaluate(&o).unwrap();
    assert_eq!(s.tasks.len(), tasks.len());
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("results.json")).unwrap()).unwrap();
    let res = &r["results"];
    for (task, key) in [
        ("easy_vqa", "acc,none"),
        ("pope", "pope_accuracy,none"),
        ("pope", "pope_f1_score,none"),
        ("mme", "mme_acc,none"),
        ("mme", "mme_perception_score,none"),
        ("scienceqa_img", "acc,none"),
        ("mmbench_en", "acc,none"),
        ("mmbench_en", "circular_score,none"),
        ("mme", "mme_cognition_score,none"),
        ("textvqa", "exact_match,none"),
        ("commonsense_qa", "acc,none"),
    ] {
        assert!(res[task][key].is_number(), "{task} {key}: {}", res[task]);
    }
    // Each per-document score is what the metric gives for the journalled answer.
    let samples = std::fs::read_to_string(tmp.path().join("samples_textvqa.jsonl")).unwrap();
    for line in samples.lines() {
        let s: Value = serde_json::from_str(line).unwrap();
        let out = s["resps"][0][0].as_str().unwrap();
        let answers: Vec<String> = s["target"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            s["exact_match"].as_f64().unwrap(),
            mmreason_metrics::vision::vqa_accuracy(out, &answers)
        );
    }
    assert_eq!(r["n-samples"]["easy_vqa"]["original"], 24);
    // The dry run lists the image questions without a model.
    let dry = tmp.path().join("dry");
    let mut d = o.clone();
    d.output = dry.clone();
    d.model = None;
    d.dry_run = true;
    evaluate(&d).unwrap();
    let q = std::fs::read_to_string(dry.join("requests_scienceqa_img.jsonl")).unwrap();
    let first: Value = serde_json::from_str(q.lines().next().unwrap()).unwrap();
    assert_eq!(
        first["context"],
        "Context: The picture shows one shape.\nWhich shape is shown?\nA. circle\nB. triangle\nC. square\n\
         Answer with the option's letter from the given choices directly."
    );
    let q = std::fs::read_to_string(dry.join("requests_mmbench_en.jsonl")).unwrap();
    let first: Value = serde_json::from_str(q.lines().next().unwrap()).unwrap();
    assert_eq!(
        first["context"],
        "Which shape is in the image? There are several options:\nA. circle\nB. triangle\nC. square\n\n\
         Answer with the option's letter from the given choices directly."
    );
    assert_eq!(first["until"][0], "ASSISTANT:");
    // An LLM cannot answer image questions: a clear error.
    let mut e = o.clone();
    e.output = tmp.path().join("llm");
    e.model = Some(fixtures().join("models/vicuna-base"));
    e.tasks = vec!["easy_vqa".into()];
    let err = evaluate(&e).unwrap_err().to_string();
    assert!(
        err.to_lowercase().contains("llava") || err.contains("vision"),
        "{err}"
    );
}

#[test]
fn images_embedded_in_hf_parquet_are_read() {
    // lmms-lab's layout: Parquet with the HF `Image` feature {bytes, path}; no image files beside it.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("pope")).unwrap();
    std::fs::copy(
        fixtures().join("datasets/hf_layout/pope/test.parquet"),
        data.join("pope/test.parquet"),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let mut o = EvalOptions::new(vec!["pope".into()], data.clone(), out.clone());
    o.model = Some(fixtures().join("models/llava-1.5"));
    evaluate(&o).unwrap();
    // The same answers as from the JSONL rows with image files.
    let files = tmp.path().join("files");
    let mut f = o.clone();
    f.data_dir = fixtures().join("datasets");
    f.output = files.clone();
    evaluate(&f).unwrap();
    let resps = |d: &Path| -> Vec<Value> {
        std::fs::read_to_string(d.join("samples_pope.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["resps"].clone())
            .collect()
    };
    assert_eq!(resps(&out), resps(&files));
    assert_eq!(resps(&out).len(), 4);
}
