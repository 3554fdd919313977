//! `--apply-chat-template` and `--fewshot-as-multiturn`: contexts equal lm-eval 0.4.13's on the same documents
//! (tests/fixtures/tasks/chat_requests.jsonl, scripts/make_task_fixtures.py): a template with a system turn
//! on the Mistral tokenizer, 3-shot arc_easy, 2-shot mmlu (description → system message), 2-shot winogrande
//! (multiple input), 8-shot gsm8k_cot (generation).

use std::path::{Path, PathBuf};

use mmreason_model::{Message, render_chat_template};
use mmreason_tasks::{Chat, FewShot, Request, load_split, registry, requests_chat};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

#[test]
fn chat_formatted_requests_equal_lm_eval() {
    let golden: Vec<Value> = std::fs::read_to_string(fixtures().join("tasks/chat_requests.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let templates: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("scoring/chat_templates.json")).unwrap(),
    )
    .unwrap();
    let template = templates["templates"]["zephyr_like"]
        .as_str()
        .unwrap()
        .to_string();
    let render = |msgs: &[(String, String)]| -> Result<String, String> {
        let m: Vec<Message> = msgs.iter().map(|(r, c)| Message::new(r, c)).collect();
        render_chat_template(&template, &m, true, "<s>", "</s>").map_err(|e| e.to_string())
    };
    let data = fixtures().join("datasets");
    let mut checked = 0;
    for (name, dir, split, shots, pool_split) in [
        ("arc_easy", "arc_easy", "validation", 3, "validation"),
        ("mmlu", "mmlu", "test", 2, "dev"),
        ("winogrande", "winogrande", "validation", 2, "validation"),
        ("gsm8k_cot", "gsm8k", "test", 8, ""),
    ] {
        for multiturn in [false, true] {
            let cfg = registry::task(name).unwrap();
            let mut docs = cfg.process(load_split(&data, dir, split).unwrap().docs).unwrap();
            docs.truncate(10);
            let pool = match cfg.fewshot_samples() {
                Some(s) => s,
                None => cfg
                    .process(load_split(&data, dir, pool_split).unwrap().docs)
                    .unwrap(),
            };
            // lm-eval excludes the document itself when the pool is the evaluated split; the full split is the pool.
            let full = cfg.process(load_split(&data, dir, split).unwrap().docs).unwrap();
            let pool = if pool_split == split { full } else { pool };
            let fs = FewShot::for_task(&cfg, shots, &pool, pool_split == split, 1234);
            let chat = Chat {
                render: &render,
                multiturn,
            };
            let got = requests_chat(&cfg, &docs, Some(&fs), Some(&chat)).unwrap();
            let want: Vec<Request> = golden
                .iter()
                .filter(|r| r["task"] == name && r["multiturn"] == multiturn)
                .map(|r| {
                    let mut r = r.clone();
                    r.as_object_mut().unwrap().remove("multiturn");
                    serde_json::from_value(r).unwrap()
                })
                .collect();
            assert_eq!(got.len(), want.len(), "{name} multiturn={multiturn}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g, w, "{name} multiturn={multiturn}");
            }
            checked += got.len();
        }
    }
    assert_eq!(checked, golden.len());
}
