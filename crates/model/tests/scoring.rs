//! The harness-facing API against lm-evaluation-harness 0.4.13's `hf` model and transformers'
//! `apply_chat_template` (tests/fixtures/scoring, made by scripts/make_scoring_fixtures.py).

#![cfg(feature = "cpu")]

use std::path::{Path, PathBuf};

use mmreason_model::{
    CpuBackend, GenerateRequest, LoglikelihoodRequest, Message, TextModel, VocabScope, WeightDtype,
    render_chat_template,
};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn golden(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("scoring").join(name)).unwrap()).unwrap()
}

fn model(batch_size: usize) -> TextModel<CpuBackend> {
    let mut m = TextModel::load(
        &fixtures().join("models/mistral-base"),
        WeightDtype::F32,
        &Default::default(),
        VocabScope::Full,
    )
    .unwrap();
    m.batch_size = batch_size;
    m
}

fn requests(g: &Value) -> Vec<LoglikelihoodRequest> {
    g["loglikelihood"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| LoglikelihoodRequest {
            context: r["context"].as_str().unwrap().into(),
            continuation: r["continuation"].as_str().unwrap().into(),
        })
        .collect()
}

#[test]
fn loglikelihoods_equal_lm_eval() {
    let g = golden("lm_eval_mistral_base.json");
    let m = model(1);
    assert_eq!(m.max_length as u64, g["max_length"].as_u64().unwrap());
    let reqs = requests(&g);
    let mut calls = 0;
    let got = m.loglikelihood(&reqs, &mut |_, _| calls += 1).unwrap();
    assert_eq!(calls, reqs.len());
    let mut worst = 0.0f64;
    for (r, (want, req)) in got
        .iter()
        .zip(g["loglikelihood"].as_array().unwrap().iter().zip(&reqs))
    {
        let lp = want["logprob"].as_f64().unwrap();
        worst = worst.max((r.logprob - lp).abs());
        // lm-eval sums f32 log-probs from torch; ours are f64 sums of our f32 logits (parity 1e-6 relative).
        assert!(
            (r.logprob - lp).abs() <= 1e-4 * lp.abs().max(1.0),
            "{req:?}: {} vs lm-eval {lp}",
            r.logprob
        );
        assert_eq!(r.is_greedy, want["is_greedy"].as_bool().unwrap(), "{req:?}");
    }
    eprintln!("largest |loglikelihood − lm-eval| = {worst:e}");
}

#[test]
fn scores_do_not_move_with_batch_size() {
    let g = golden("lm_eval_mistral_base.json");
    let reqs = requests(&g);
    let one = model(1).loglikelihood(&reqs, &mut |_, _| {}).unwrap();
    let mut worst = 0.0f64;
    for bs in [3, 8] {
        let other = model(bs).loglikelihood(&reqs, &mut |_, _| {}).unwrap();
        for (a, b) in one.iter().zip(&other) {
            assert_eq!(a.is_greedy, b.is_greedy);
            let d = (a.logprob - b.logprob).abs();
            worst = worst.max(d);
            assert!(
                d <= 1e-5 * a.logprob.abs().max(1.0),
                "batch {bs}: {} vs {} (Δ {d:e})",
                a.logprob,
                b.logprob
            );
        }
    }
    eprintln!("batch sizes 1/3/8: largest loglikelihood difference {worst:e}");
}

#[test]
fn greedy_generation_equals_lm_eval() {
    let g = golden("lm_eval_mistral_base.json");
    let reqs: Vec<GenerateRequest> = g["generate_until"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| GenerateRequest {
            context: r["context"].as_str().unwrap().into(),
            until: r["until"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u.as_str().unwrap().to_string())
                .collect(),
            max_gen_toks: r["max_gen_toks"].as_u64().unwrap() as usize,
            sampling: None,
        })
        .collect();
    for bs in [1, 2] {
        let got = model(bs).generate_until(&reqs, &mut |_, _| {}).unwrap();
        for (out, want) in got.iter().zip(g["generate_until"].as_array().unwrap()) {
            assert_eq!(out, want["output"].as_str().unwrap(), "batch size {bs}");
        }
    }
}

#[test]
fn bad_requests_are_errors() {
    let m = model(1);
    let e = m
        .loglikelihood(
            &[LoglikelihoodRequest {
                context: "a".into(),
                continuation: "".into(),
            }],
            &mut |_, _| {},
        )
        .unwrap_err();
    assert!(e.to_string().contains("no tokens"), "{e}");
    // An empty context conditions on BOS alone (as lm-eval's hf model does); a prompt longer than the window
    // is left-truncated (documented), never an index panic.
    let out = m
        .generate_until(
            &[GenerateRequest {
                context: "".into(),
                until: vec![],
                max_gen_toks: 2,
                sampling: None,
            }],
            &mut |_, _| {},
        )
        .unwrap();
    assert_eq!(out.len(), 1);
    let long = "word ".repeat(500);
    let out = m
        .generate_until(
            &[GenerateRequest {
                context: long,
                until: vec![],
                max_gen_toks: 3,
                sampling: None,
            }],
            &mut |_, _| {},
        )
        .unwrap();
    assert_eq!(out.len(), 1);
}

#[test]
fn chat_templates_render_like_transformers() {
    let g = golden("chat_templates.json");
    let templates = &g["templates"];
    for case in g["cases"].as_array().unwrap() {
        let msgs: Vec<Message> = case["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
            .collect();
        let t = templates[case["template"].as_str().unwrap()].as_str().unwrap();
        let got = render_chat_template(
            t,
            &msgs,
            case["add_generation_prompt"].as_bool().unwrap(),
            "<s>",
            "</s>",
        )
        .unwrap();
        assert_eq!(got, case["expected"].as_str().unwrap(), "{case}");
    }
}
