//! The harness end to end on the committed fixtures: the tiny Vicuna-like LLM (real Llama-2 tokenizer) and its
//! LLaVA-1.5, real CommonsenseQA and GSM8K rows.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mmreason_eval::{CompareOptions, EvalOptions, compare_runs, evaluate};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn opts(out: &Path, batch: usize) -> EvalOptions {
    let mut o = EvalOptions::new(
        vec!["commonsense_qa".into(), "gsm8k".into()],
        fixtures().join("datasets"),
        out.to_path_buf(),
    );
    o.model = Some(fixtures().join("models/vicuna-base"));
    o.limit = Some(4);
    o.num_fewshot = Some(0);
    o.batch_size = batch;
    o
}

/// Writes `rows` as a JSON-lines file.
fn write_jsonl(path: &Path, rows: &[String]) {
    std::fs::write(path, rows.join("\n") + "\n").unwrap();
}

/// The lines of a committed dataset file (`rel` under tests/fixtures/datasets).
fn dataset_lines(rel: &str) -> Vec<String> {
    std::fs::read_to_string(fixtures().join("datasets").join(rel))
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn results(dir: &Path) -> Value {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    v["results"].clone()
}

#[test]
fn dry_run_writes_the_requests_without_a_model() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = opts(tmp.path(), 1);
    o.model = None;
    o.dry_run = true;
    let s = evaluate(&o).unwrap();
    assert_eq!(s.requests, 4 * 5 + 4);
    let csqa = std::fs::read_to_string(tmp.path().join("requests_commonsense_qa.jsonl")).unwrap();
    assert_eq!(csqa.lines().count(), 20);
    let first: Value = serde_json::from_str(csqa.lines().next().unwrap()).unwrap();
    assert_eq!(first["request_type"], "loglikelihood");
    assert_eq!(first["continuation"], " A");
    assert!(!tmp.path().join("results.json").exists());
}

#[test]
fn results_follow_lm_evals_schema_and_equal_a_direct_computation() {
    let tmp = tempfile::tempdir().unwrap();
    let s = evaluate(&opts(tmp.path(), 3)).unwrap();
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("results.json")).unwrap()).unwrap();
    for key in [
        "results",
        "configs",
        "versions",
        "n-shot",
        "n-samples",
        "higher_is_better",
        "config",
        "git_hash",
    ] {
        assert!(r.get(key).is_some(), "results.json has `{key}`");
    }
    assert_eq!(r["n-samples"]["commonsense_qa"]["effective"], 4);
    assert_eq!(r["n-samples"]["commonsense_qa"]["original"], 50);
    assert_eq!(r["versions"]["gsm8k"], 3.0);
    let acc = r["results"]["commonsense_qa"]["acc,none"].as_f64().unwrap();
    for f in ["strict-match", "flexible-extract"] {
        assert!(
            r["results"]["gsm8k"][format!("exact_match,{f}")].is_number(),
            "{f}"
        );
    }
    // acc equals the mean of the per-document values in the samples file, each the argmax of its choices'
    // log-likelihoods against the gold index.
    let samples = std::fs::read_to_string(tmp.path().join("samples_commonsense_qa.jsonl")).unwrap();
    let mut total = 0.0;
    for line in samples.lines() {
        let s: Value = serde_json::from_str(line).unwrap();
        let lls: Vec<f64> = s["filtered_resps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x[0].as_f64().unwrap())
            .collect();
        let best = lls
            .iter()
            .enumerate()
            .fold(0, |b, (i, &x)| if x > lls[b] { i } else { b });
        let want = f64::from(u8::from(best as u64 == s["target"].as_u64().unwrap()));
        assert_eq!(s["acc"].as_f64().unwrap(), want);
        assert_eq!(s["doc_hash"].as_str().unwrap().len(), 64);
        total += want;
    }
    assert_eq!(acc, total / 4.0);
    let gsm = std::fs::read_to_string(tmp.path().join("samples_gsm8k.jsonl")).unwrap();
    assert_eq!(gsm.lines().count(), 8, "one line per document and filter");
    assert_eq!(s.tasks.len(), 2);
}

#[test]
fn batch_sizes_one_three_and_eight_give_identical_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let runs: Vec<Value> = [1, 3, 8]
        .iter()
        .map(|&b| {
            let out = tmp.path().join(format!("b{b}"));
            evaluate(&opts(&out, b)).unwrap();
            results(&out)
        })
        .collect();
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[0], runs[2]);
}

/// Run by `killed_runs_resume_to_the_same_results` in a child process, which it kills.
#[test]
#[ignore = "helper of killed_runs_resume_to_the_same_results"]
fn child_evaluate() {
    if let Some(out) = std::env::var_os("MMREASON_CHILD_OUT") {
        evaluate(&opts(Path::new(&out), 1)).unwrap();
    }
}

#[test]
fn killed_runs_resume_to_the_same_results() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    evaluate(&opts(&reference, 1)).unwrap();
    let out = tmp.path().join("killed");
    let journal = out.join("journal.jsonl");
    let mut kills = 0;
    for _ in 0..4 {
        let before = std::fs::metadata(&journal).map_or(0, |m| m.len());
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_evaluate", "--ignored", "--test-threads", "1"])
            .env("MMREASON_CHILD_OUT", &out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill (SIGKILL) as soon as the child has journalled something new: mid-run by construction.
        let t0 = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let now = std::fs::metadata(&journal).map_or(0, |m| m.len());
            if now > before || t0.elapsed() > Duration::from_secs(120) {
                child.kill().unwrap();
                kills += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        child.wait().unwrap();
    }
    assert!(kills >= 2, "the child was killed mid-run {kills} times");
    let s = evaluate(&opts(&out, 1)).unwrap();
    assert!(s.resumed > 0);
    assert_eq!(results(&out), results(&reference));
    let samples = |d: &Path| std::fs::read_to_string(d.join("samples_commonsense_qa.jsonl")).unwrap();
    assert_eq!(samples(&out), samples(&reference));
}

#[test]
fn bad_inputs_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = opts(&tmp.path().join("a"), 1);
    o.tasks = vec!["comonsense_qa".into()];
    let e = evaluate(&o).unwrap_err().to_string();
    assert!(e.contains("did you mean commonsense_qa"), "{e}");
    // Vision task names are suggested too.
    o.tasks = vec!["pop".into()];
    let e = evaluate(&o).unwrap_err().to_string();
    assert!(e.contains("did you mean pope") && e.contains("textvqa"), "{e}");

    let mut o = opts(&tmp.path().join("b"), 1);
    o.data_dir = tmp.path().to_path_buf();
    let e = evaluate(&o).unwrap_err().to_string();
    assert!(
        e.contains("commonsense_qa") && e.contains("validation.jsonl"),
        "{e}"
    );

    let mut o = opts(&tmp.path().join("c"), 1);
    o.model = Some(fixtures().join("datasets"));
    let e = evaluate(&o).unwrap_err().to_string();
    assert!(e.contains("config.json"), "{e}");

    let mut o = opts(&tmp.path().join("e"), 1);
    o.apply_chat_template = true;
    let e = evaluate(&o).unwrap_err().to_string();
    assert!(e.contains("no chat_template"), "{e}");
    o.apply_chat_template = false;
    o.fewshot_as_multiturn = true;
    let e = evaluate(&o).unwrap_err().to_string();
    assert!(e.contains("--apply-chat-template"), "{e}");

    let out = tmp.path().join("d");
    let mut o = opts(&out, 1);
    o.tasks = vec!["commonsense_qa".into()];
    o.limit = Some(2);
    evaluate(&o).unwrap();
    o.limit = Some(3);
    let e = evaluate(&o).unwrap_err().to_string();
    assert!(e.contains("another configuration") && e.contains("limit"), "{e}");
}

#[test]
fn compare_pairs_two_models_by_document() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("vicuna"), tmp.path().join("llava"));
    let mut oa = opts(&a, 4);
    oa.tasks = vec!["commonsense_qa".into()];
    oa.limit = Some(8);
    evaluate(&oa).unwrap();
    let mut ob = oa.clone();
    ob.output = b.clone();
    ob.model = Some(fixtures().join("models/llava-1.5"));
    ob.vocab_limit = Some(32000);
    evaluate(&ob).unwrap();
    let out = tmp.path().join("cmp");
    let c = compare_runs(&CompareOptions {
        a: a.clone(),
        b: b.clone(),
        out: Some(out.clone()),
        bootstrap_iters: 2000,
        seed: 7,
    })
    .unwrap();
    assert_eq!(c.rows.len(), 1);
    let row = &c.rows[0];
    assert_eq!(
        (row.task.as_str(), row.metric.as_str(), row.n),
        ("commonsense_qa", "acc,none", 8)
    );
    assert_eq!(
        row.score_a,
        results(&a)["commonsense_qa"]["acc,none"].as_f64().unwrap()
    );
    assert_eq!(
        row.score_b,
        results(&b)["commonsense_qa"]["acc,none"].as_f64().unwrap()
    );
    assert!((row.diff - (row.score_b - row.score_a)).abs() < 1e-12);
    assert!(row.ci_low <= row.diff && row.diff <= row.ci_high);
    assert!(row.mcnemar_p.is_some() && row.holm_p.is_some());
    for f in ["compare.md", "compare.csv", "compare.svg"] {
        assert!(std::fs::metadata(out.join(f)).unwrap().len() > 50, "{f}");
    }
    // Runs over different documents are refused.
    let mut oc = oa.clone();
    oc.output = tmp.path().join("other");
    oc.num_fewshot = Some(0);
    oc.limit = Some(8);
    oc.tasks = vec!["commonsense_qa".into()];
    evaluate(&oc).unwrap();
    let samples = oc.output.join("samples_commonsense_qa.jsonl");
    let text = std::fs::read_to_string(&samples).unwrap();
    let first: String = text.lines().next().unwrap().to_string();
    let mut v: Value = serde_json::from_str(&first).unwrap();
    v["doc_hash"] = Value::String("0".repeat(64));
    std::fs::write(&samples, text.replacen(&first, &v.to_string(), 1)).unwrap();
    let e = compare_runs(&CompareOptions {
        a,
        b: oc.output.clone(),
        out: None,
        bootstrap_iters: 100,
        seed: 1,
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("different documents"), "{e}");
}

#[test]
fn three_shards_combined_equal_the_unsharded_run() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    // Batch 1: raw log-likelihoods then do not depend on which requests share a padded batch (they move by
    // ~1e-6 otherwise; the metrics do not), so the samples files can be compared byte for byte too.
    let mut o = opts(&whole, 1);
    o.limit = Some(7);
    o.tasks = vec!["commonsense_qa".into()];
    evaluate(&o).unwrap();
    let shards: Vec<PathBuf> = (0..3)
        .map(|i| {
            let dir = tmp.path().join(format!("shard{i}"));
            let mut s = o.clone();
            s.output = dir.clone();
            s.shard = Some((i, 3));
            evaluate(&s).unwrap();
            dir
        })
        .collect();
    let combined = tmp.path().join("combined");
    mmreason_eval::combine(&shards, &combined).unwrap();
    assert_eq!(results(&combined), results(&whole));
    let samples = |d: &Path| std::fs::read_to_string(d.join("samples_commonsense_qa.jsonl")).unwrap();
    assert_eq!(samples(&combined), samples(&whole));
    // Missing a shard is refused.
    let e = mmreason_eval::combine(&shards[..2], &tmp.path().join("partial"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("exactly once"), "{e}");
}

#[test]
fn every_bundled_task_with_committed_data_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    // arc_easy evaluates its test split, of which only validation rows are committed.
    let tasks: Vec<String> = mmreason_tasks::registry::names()
        .into_iter()
        .filter(|t| *t != "arc_easy" && *t != "gsm8k")
        .map(String::from)
        .collect();
    let mut o = opts(tmp.path(), 4);
    o.tasks = tasks.clone();
    o.limit = Some(2);
    let s = evaluate(&o).unwrap();
    assert_eq!(s.tasks.len(), tasks.len());
    let r = results(tmp.path());
    for t in &tasks {
        let metrics = r[t].as_object().unwrap();
        let values: Vec<f64> = metrics
            .iter()
            .filter(|(k, _)| k.contains(',') && !k.contains("_stderr"))
            .map(|(_, v)| v.as_f64().unwrap())
            .collect();
        assert!(!values.is_empty(), "{t} has metrics");
        assert!(values.iter().all(|v| (0.0..=1.0).contains(v)), "{t}: {values:?}");
    }
}

#[test]
fn minerva_math_is_scored_by_its_own_answer_checker() {
    // Answers put in the journal beforehand are scored as if the model had given them: the first is the gold
    // answer 2 written as 2.0, which only the minerva_math checker (not plain exact_match) accepts.
    let tmp = tempfile::tempdir().unwrap();
    let journal = [
        r#"{"key":"minerva_math#0","text":" The asymptotes are at 2 and -3.\nFinal Answer: The final answer is $2.0$. I hope it is correct.\n\n"}"#,
        r#"{"key":"minerva_math#1","text":" Final Answer: The final answer is 11. I hope it is correct."}"#,
    ];
    write_jsonl(&tmp.path().join("journal.jsonl"), &journal.map(String::from));
    let mut o = opts(tmp.path(), 2);
    o.tasks = vec!["minerva_math".into()];
    o.limit = Some(2);
    o.num_fewshot = None;
    evaluate(&o).unwrap();
    let r = results(tmp.path());
    assert_eq!(r["minerva_math"]["exact_match,none"], 0.5, "{r}");
    let samples: Vec<Value> = std::fs::read_to_string(tmp.path().join("samples_minerva_math.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[0]["target"], "2");
    assert_eq!(samples[0]["exact_match"], 1.0);
    assert_eq!(samples[1]["exact_match"], 0.0);
    // The 4 Minerva exemplars precede the problem.
    let prompt = samples[0]["arguments"]["gen_args_0"]["arg_0"].as_str().unwrap();
    assert_eq!(prompt.matches("Problem:\n").count(), 5, "{prompt}");
}

#[test]
fn grouped_tasks_pool_their_stderr_as_lm_eval_groups() {
    // Eight MMLU rows relabelled into two subjects of two categories (marketing: other, anatomy: stem).
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("mmlu")).unwrap();
    let rows: Vec<String> = dataset_lines("mmlu/test.jsonl")
        .iter()
        .take(8)
        .enumerate()
        .map(|(i, l)| {
            let mut d: Value = serde_json::from_str(l).unwrap();
            d["subject"] = Value::from(if i % 2 == 0 { "marketing" } else { "anatomy" });
            d.to_string()
        })
        .collect();
    write_jsonl(&data.join("mmlu/test.jsonl"), &rows);
    let mut o = opts(&tmp.path().join("out"), 4);
    o.tasks = vec!["mmlu".into()];
    o.data_dir = data.clone();
    o.limit = None;
    evaluate(&o).unwrap();
    let r = results(&tmp.path().join("out"));
    let got = r["mmlu"]["acc_stderr,none"].as_f64().unwrap();
    let samples: Vec<Value> = std::fs::read_to_string(tmp.path().join("out/samples_mmlu.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let acc = |subject: &str| -> Vec<f64> {
        samples
            .iter()
            .filter(|s| s["doc"]["subject"] == subject)
            .map(|s| s["acc"].as_f64().unwrap())
            .collect()
    };
    use mmreason_metrics::{mean_stderr, pooled_stderr};
    let (m, a) = (acc("marketing"), acc("anatomy"));
    // Each category holds one subject, so the categories' stderrs are the subjects'; then pooled over both.
    let want = pooled_stderr(&[mean_stderr(&a).unwrap(), mean_stderr(&m).unwrap()], &[4, 4]).unwrap();
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    // Two shards combined pool the same way.
    let shards: Vec<_> = (0..2)
        .map(|i| {
            let dir = tmp.path().join(format!("shard{i}"));
            let mut o = opts(&dir, 4);
            o.tasks = vec!["mmlu".into()];
            o.data_dir = data.clone();
            o.limit = None;
            o.shard = Some((i, 2));
            evaluate(&o).unwrap();
            dir
        })
        .collect();
    mmreason_eval::combine(&shards, &tmp.path().join("combined")).unwrap();
    let c = results(&tmp.path().join("combined"))["mmlu"]["acc_stderr,none"]
        .as_f64()
        .unwrap();
    assert!((c - got).abs() < 1e-12, "combined {c} vs {got}");
    // `--limit 2` limits each subject, as lm-eval limits each subtask of its group: the first two of each
    // (subjects in runs of four here, so the first four rows would be one subject).
    let limited = tmp.path().join("limited-data");
    std::fs::create_dir_all(limited.join("mmlu")).unwrap();
    let runs: Vec<String> = [0, 2, 4, 6, 1, 3, 5, 7]
        .iter()
        .map(|&i| rows[i].clone())
        .collect();
    write_jsonl(&limited.join("mmlu/test.jsonl"), &runs);
    let mut o = opts(&tmp.path().join("limited"), 4);
    o.tasks = vec!["mmlu".into()];
    o.data_dir = limited;
    o.limit = Some(2);
    o.dry_run = true;
    o.model = None;
    evaluate(&o).unwrap();
    let subjects: Vec<String> = std::fs::read_to_string(tmp.path().join("limited/requests_mmlu.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["continuation"] == " A")
        .map(|r| {
            let c = r["context"].as_str().unwrap();
            (if c.contains("about marketing") {
                "marketing"
            } else {
                "anatomy"
            })
            .to_string()
        })
        .collect();
    assert_eq!(
        subjects,
        ["marketing", "marketing", "anatomy", "anatomy"],
        "{subjects:?}"
    );
    // A subject in no category is refused, naming it.
    let bad = rows[0].replace("marketing", "astrology");
    write_jsonl(
        &data.join("mmlu/test.jsonl"),
        &[bad, rows[1].clone(), rows[2].clone()],
    );
    let mut o = opts(&tmp.path().join("out2"), 4);
    o.tasks = vec!["mmlu".into()];
    o.data_dir = data;
    o.limit = None;
    let e = evaluate(&o).unwrap_err().to_string();
    assert!(e.contains("astrology") && e.contains("categories"), "{e}");
}

#[test]
fn few_shot_examples_come_from_the_training_split_drawn_as_lm_eval_draws_them() {
    // boolq as lm-eval configures it: training_split train, validation evaluated, no test_split and no
    // fewshot_split. lm-eval's pool is then `train`, and its sampler draws one example more than asked (its
    // test `fewshot_split == test_split` holds for None == None) and keeps the first two.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("boolq")).unwrap();
    let rows = dataset_lines("boolq/validation.jsonl");
    // Train rows told apart by their passage.
    let train: Vec<String> = rows[10..30]
        .iter()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v["passage"] = Value::from(format!("TRAIN {}", v["passage"].as_str().unwrap()));
            v.to_string()
        })
        .collect();
    write_jsonl(&data.join("boolq/train.jsonl"), &train);
    write_jsonl(&data.join("boolq/validation.jsonl"), &rows[..10]);
    let out = tmp.path().join("out");
    let mut o = EvalOptions::new(vec!["boolq".into()], data.clone(), out.clone());
    o.dry_run = true;
    o.limit = Some(4);
    o.num_fewshot = Some(2);
    evaluate(&o).unwrap();
    let got: Vec<String> = std::fs::read_to_string(out.join("requests_boolq.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["context"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    // The same requests from the task library with lm-eval's draw of one more (same_split).
    let cfg = mmreason_tasks::registry::task("boolq").unwrap();
    let load = |split: &str| {
        cfg.process(mmreason_tasks::load_split(&data, "boolq", split).unwrap().docs)
            .unwrap()
    };
    let (docs, pool) = (load("validation"), load("train"));
    let fs = mmreason_tasks::FewShot::for_task(&cfg, 2, &pool, true, 1234);
    let want: Vec<String> = mmreason_tasks::requests_with(&cfg, &docs[..4], Some(&fs))
        .unwrap()
        .into_iter()
        .map(|r| r.context)
        .collect();
    assert_eq!(got, want);
    assert!(got.iter().all(|c| c.matches("TRAIN ").count() == 2), "{got:?}");
    // Drawing exactly two instead gives other examples: the check above can tell the two apart.
    let fs = mmreason_tasks::FewShot::for_task(&cfg, 2, &pool, false, 1234);
    let other: Vec<String> = mmreason_tasks::requests_with(&cfg, &docs[..4], Some(&fs))
        .unwrap()
        .into_iter()
        .map(|r| r.context)
        .collect();
    assert_ne!(got, other);
    // Without the training split, few-shot says which split is missing (as gsm8k always has).
    std::fs::remove_file(data.join("boolq/train.jsonl")).unwrap();
    let e = evaluate(&o).unwrap_err().to_string();
    assert!(e.contains("boolq") && e.contains("train"), "{e}");
}
