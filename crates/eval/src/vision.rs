//! Vision tasks: a VLM answers a question about an image; the answer is parsed and scored as lmms-eval does.
//! Data are local files in the Hugging Face schemas at `<data_dir>/<task dir>/<split>.{jsonl,parquet,json}`: the
//! `image` field is the HF `Image` struct with embedded bytes (as lmms-lab's Parquet files have it) or a path
//! relative to that directory (JSONL exports with the images beside them).
//!
//! Tasks: `easy_vqa` (the shared synthetic set; short-answer exact match), `pope` (yes/no: accuracy, precision,
//! recall, F1), `mme` (yes/no pairs: acc, acc+, perception/cognition scores), `scienceqa_img` and `mmbench_en`
//! (multiple choice by letter), `textvqa` (VQA accuracy with EvalAI's answer normalisation).

use std::path::{Path, PathBuf};

use mmreason_metrics::vision as vm;
use mmreason_tasks::{Doc, load_split};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::{EvalError, Result};
use crate::journal::{Answer, Journal};
use crate::results::{MetricValue, TaskEntry, TaskResult};

/// The vision tasks, with their data directory and split.
pub const VISION_TASKS: &[(&str, &str, &str)] = &[
    ("easy_vqa", "easy_vqa", "test"),
    ("pope", "pope", "test"),
    ("mme", "mme", "test"),
    ("scienceqa_img", "scienceqa_img", "test"),
    ("mmbench_en", "mmbench_en", "dev"),
    ("textvqa", "textvqa", "validation"),
];

pub fn is_vision(name: &str) -> bool {
    VISION_TASKS.iter().any(|(n, _, _)| *n == name)
}

/// One question about one image.
pub(crate) struct VisionItem {
    pub doc_id: usize,
    /// The image file, or (Parquet in the HF layout) the document's own name for an embedded image.
    pub image: PathBuf,
    /// Embedded image bytes (HF `Image` feature: `{bytes, path}`), when the data carry them.
    pub bytes: Option<Vec<u8>>,
    pub prompt: String,
    pub max_new_tokens: usize,
    /// Stop strings (lmms-eval: "\n\n" by default, "ASSISTANT:" for MMBench and TextVQA).
    pub until: Vec<String>,
}

pub(crate) struct VisionTask {
    pub name: String,
    pub docs: Vec<Doc>,
    pub items: Vec<VisionItem>,
    pub n_original: usize,
}

fn field<'a>(task: &str, id: usize, doc: &'a Doc, k: &str) -> Result<&'a Value> {
    doc.get(k)
        .ok_or_else(|| EvalError::Input(format!("task `{task}`, document {id}: no field `{k}`")))
}

fn text<'a>(task: &str, id: usize, doc: &'a Doc, k: &str) -> Result<&'a str> {
    field(task, id, doc, k)?.as_str().ok_or_else(|| {
        EvalError::Input(format!(
            "task `{task}`, document {id}: field `{k}` is not a string"
        ))
    })
}

/// LLaVA-1.5's short-answer instruction, which lmms-eval's defaults append for POPE, MME, TextVQA.
const SHORT: &str = "\nAnswer the question using a single word or phrase.";
/// lmms-eval's multiple-choice instruction (ScienceQA-IMG, MMBench).
const LETTER: &str = "\nAnswer with the option's letter from the given choices directly.";

/// The prompt lmms-eval builds for a document (default prompt settings).
fn prompt(task: &str, id: usize, doc: &Doc) -> Result<String> {
    Ok(match task {
        "easy_vqa" | "pope" => format!("{}{SHORT}", vm::py_strip(text(task, id, doc, "question")?)),
        "textvqa" => format!("{}{SHORT}", vm::py_capitalize(text(task, id, doc, "question")?)),
        // MME: the question stripped, the instruction removed wherever it already occurs, then appended.
        "mme" => format!(
            "{}{SHORT}",
            vm::py_strip(text(task, id, doc, "question")?).replace(SHORT, "")
        ),
        "scienceqa_img" => {
            let choices: Vec<String> = field(task, id, doc, "choices")?
                .as_array()
                .map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            let hint = doc.get("hint").and_then(Value::as_str).unwrap_or("");
            let context = if hint.is_empty() {
                String::new()
            } else {
                format!("Context: {hint}\n")
            };
            format!(
                "{context}{}\n{}{LETTER}",
                text(task, id, doc, "question")?,
                vm::lettered(&choices)
            )
        }
        "mmbench_en" => {
            let options = mmbench_choices(doc);
            let hint = doc.get("hint").and_then(Value::as_str).filter(|h| *h != "nan");
            let q = text(task, id, doc, "question")?;
            let opts = vm::mmbench_options(&options);
            let query = match hint {
                Some(h) => format!("{h} {q} {opts}"),
                None => format!("{q} {opts}"),
            };
            // A blank line before the instruction: lmms-eval joins with "\n" and the instruction starts with one.
            format!("{query}\n{LETTER}")
        }
        other => return Err(EvalError::Input(format!("`{other}` is not a vision task"))),
    })
}

/// MMBench's present options (A–D, not null, not "nan").
fn mmbench_choices(doc: &Doc) -> Vec<(char, String)> {
    ['A', 'B', 'C', 'D']
        .iter()
        .filter_map(|l| {
            doc.get(&l.to_string())
                .and_then(Value::as_str)
                .filter(|o| !o.is_empty() && *o != "nan")
                .map(|o| (*l, o.to_string()))
        })
        .collect()
}

/// Loads a vision task's documents and builds one question per document.
pub(crate) fn prepare(
    name: &str,
    data_dir: &Path,
    limit: Option<usize>,
    shard: Option<(usize, usize)>,
) -> Result<VisionTask> {
    let (_, dir, split) = VISION_TASKS
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| EvalError::Input(format!("`{name}` is not a vision task")))?;
    let data = load_split(data_dir, dir, split).map_err(|source| EvalError::TaskData {
        task: name.into(),
        source,
    })?;
    let base = data.path.parent().unwrap_or(data_dir).to_path_buf();
    let n_original = data.docs.len();
    let mut docs = data.docs;
    if let Some(n) = limit {
        docs.truncate(n);
    }
    let mut items = Vec::new();
    for (id, doc) in docs.iter().enumerate() {
        if shard.is_some_and(|(i, n)| id % n != i) {
            continue;
        }
        // The image: a path relative to the task directory, or the HF `Image` struct {bytes, path} (bytes as
        // the Parquet reader gives them: hex).
        let (image, bytes) = match field(name, id, doc, "image")? {
            Value::String(p) => (base.join(p), None),
            Value::Object(o) => match o.get("bytes").and_then(Value::as_str) {
                Some(hex) => {
                    let b = decode_hex(hex).ok_or_else(|| {
                        EvalError::Input(format!(
                            "task `{name}`, document {id}: `image.bytes` is not hex-encoded"
                        ))
                    })?;
                    let label = o.get("path").and_then(Value::as_str).unwrap_or("embedded");
                    (
                        PathBuf::from(format!("{}#{id}:{label}", data.path.display())),
                        Some(b),
                    )
                }
                None => (
                    base.join(o.get("path").and_then(Value::as_str).unwrap_or_default()),
                    None,
                ),
            },
            _ => {
                return Err(EvalError::Input(format!(
                    "task `{name}`, document {id}: `image` must be a path relative to {} or an {{bytes, path}} \
                     struct",
                    base.display()
                )));
            }
        };
        if bytes.is_none() && !image.is_file() {
            return Err(EvalError::Input(format!(
                "task `{name}`, document {id}: image {} does not exist",
                image.display()
            )));
        }
        items.push(VisionItem {
            doc_id: id,
            image,
            bytes,
            prompt: prompt(name, id, doc)?,
            max_new_tokens: match name {
                "pope" => 128,
                "mme" | "scienceqa_img" => 16,
                "easy_vqa" => 32,
                // MMBench sets 1024; TextVQA sets none and llava's wrapper defaults to 1024.
                _ => 1024,
            },
            until: vec![
                if matches!(name, "mmbench_en" | "textvqa") {
                    "ASSISTANT:"
                } else {
                    "\n\n"
                }
                .to_string(),
            ],
        });
    }
    Ok(VisionTask {
        name: name.into(),
        docs,
        items,
        n_original,
    })
}

/// A hash of the task's questions (for the run fingerprint).
pub(crate) fn fingerprint(t: &VisionTask) -> String {
    let mut h = Sha256::new();
    for it in &t.items {
        h.update(it.doc_id.to_le_bytes());
        h.update(it.image.to_string_lossy().as_bytes());
        if let Some(b) = &it.bytes {
            h.update(b);
        }
        h.update(it.prompt.as_bytes());
    }
    format!("{:x}", h.finalize())
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

pub(crate) fn key(task: &str, doc_id: usize) -> String {
    format!("{task}#img{doc_id}")
}

fn metric(name: &str, per_doc: Vec<f64>) -> Result<MetricValue> {
    Ok(MetricValue {
        metric: name.into(),
        filter: "none".into(),
        value: mmreason_metrics::mean(&per_doc)?,
        stderr: if per_doc.len() > 1 {
            Some(mmreason_metrics::mean_stderr(&per_doc)?)
        } else {
            None
        },
        per_doc,
    })
}

fn aggregate(name: &str, value: f64, stderr: Option<f64>) -> MetricValue {
    MetricValue {
        metric: name.into(),
        filter: "none".into(),
        value,
        stderr,
        per_doc: Vec::new(),
    }
}

/// Scores a vision task from the journal.
pub(crate) fn score(t: &VisionTask, journal: &Journal) -> Result<(TaskEntry, TaskResult)> {
    let task = t.name.as_str();
    // The per-document metric, named as lmms-eval names it.
    let per_doc_metric = match task {
        "pope" => "pope_accuracy",
        "mme" => "mme_acc",
        "textvqa" => "exact_match",
        _ => "acc",
    };
    let mut samples = Vec::new();
    let mut acc = Vec::new();
    let mut yes_no: Vec<(u8, u8)> = Vec::new();
    let mut mme: Vec<vm::MmeRow> = Vec::new();
    // MMBench: (index, own-letter hit) per row, for CircularEval.
    let mut mmb: Vec<(i64, bool)> = Vec::new();
    for it in &t.items {
        let doc = &t.docs[it.doc_id];
        let k = key(task, it.doc_id);
        let Some(Answer::Generation { text: out }) = journal.get(&k) else {
            return Err(EvalError::Input(format!(
                "task `{task}`: no answer for {k} in the journal"
            )));
        };
        let mut sample = json!({
            "doc_id": it.doc_id, "image": it.image, "arguments": {"gen_args_0": {"arg_0": it.prompt}},
            "resps": [[out]], "filter": "none",
        });
        let v = match task {
            "easy_vqa" => {
                let target = text(task, it.doc_id, doc, "answer")?;
                sample["target"] = json!(target);
                vm::short_answer_match(out, target)
            }
            "pope" => {
                let target = text(task, it.doc_id, doc, "answer")?;
                let (score, gold, pred) = vm::pope(out, target)
                    .map_err(|e| EvalError::Input(format!("task `pope`, document {}: {e}", it.doc_id)))?;
                sample["target"] = json!(target);
                yes_no.push((gold, pred));
                score
            }
            "mme" => {
                let target = text(task, it.doc_id, doc, "answer")?;
                let row = vm::MmeRow {
                    category: text(task, it.doc_id, doc, "category")?.to_string(),
                    image: text(task, it.doc_id, doc, "question_id")?.to_string(),
                    correct: vm::mme_correct(out, target),
                };
                sample["target"] = json!(target);
                let c = f64::from(u8::from(row.correct));
                mme.push(row);
                c
            }
            "scienceqa_img" => {
                let gold = field(task, it.doc_id, doc, "answer")?
                    .as_u64()
                    .unwrap_or(u64::MAX) as usize;
                let letter = vm::letter(gold);
                sample["target"] = json!(letter);
                vm::sqa_match(out, &letter)
            }
            "mmbench_en" => {
                let letter = text(task, it.doc_id, doc, "answer")?;
                let index = field(task, it.doc_id, doc, "index")?
                    .as_i64()
                    .unwrap_or(it.doc_id as i64);
                let picked = vm::mmbench_answer(out, &mmbench_choices(doc));
                let hit = picked.is_some_and(|p| p.to_string() == letter);
                sample["target"] = json!(letter);
                sample["extracted"] = json!(picked.map(|p| p.to_string()));
                mmb.push((index, hit));
                f64::from(u8::from(hit))
            }
            "textvqa" => {
                let answers: Vec<String> = field(task, it.doc_id, doc, "answers")?
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                sample["target"] = json!(answers);
                vm::vqa_accuracy(out, &answers)
            }
            other => return Err(EvalError::Input(format!("`{other}` is not a vision task"))),
        };
        sample[per_doc_metric] = json!(v);
        acc.push(v);
        samples.push(sample);
    }
    let mut metrics = vec![metric(per_doc_metric, acc)?];
    // lmms-eval's own aggregations (no standard error: "N/A", as lmms-eval reports for them).
    if task == "pope" {
        let p = vm::pope_scores(&yes_no);
        metrics[0].stderr = None;
        metrics.push(aggregate("pope_precision", p.precision, None));
        metrics.push(aggregate("pope_recall", p.recall, None));
        metrics.push(aggregate("pope_f1_score", p.f1, None));
        metrics.push(aggregate("pope_yes_ratio", p.yes_ratio, None));
    }
    if task == "mme" {
        let s = vm::mme_scores(&mme).map_err(|e| EvalError::Input(format!("task `mme`: {e}")))?;
        metrics.push(aggregate("mme_acc_plus", s.acc_plus, None));
        metrics.push(aggregate("mme_perception_score", s.perception, None));
        metrics.push(aggregate("mme_cognition_score", s.cognition, None));
    }
    if task == "mmbench_en" {
        // CircularEval: a main question (index < 1e6) counts only if every rotated copy of it is right; × 100.
        let mains: Vec<i64> = mmb.iter().map(|(i, _)| *i).filter(|i| *i < 1_000_000).collect();
        let hits = mains
            .iter()
            .filter(|m| mmb.iter().filter(|(i, _)| i % 1_000_000 == **m).all(|(_, h)| *h))
            .count();
        let score = if mains.is_empty() {
            0.0
        } else {
            hits as f64 / mains.len() as f64 * 100.0
        };
        metrics.push(aggregate("circular_score", score, None));
    }
    let entry = TaskEntry {
        config: json!({"task": task, "output_type": "generate_until", "modality": "image",
                       "prompt_suffix": if matches!(task, "scienceqa_img" | "mmbench_en") { LETTER } else { SHORT },
                       "semantics": "lmms-eval @75571cfe (docs/vision-tasks.md)"}),
        version: Some(0.0),
        num_fewshot: 0,
        n_original: t.n_original,
        n_effective: t.items.len(),
    };
    Ok((
        entry,
        TaskResult {
            task: task.into(),
            n: t.items.len(),
            metrics,
            samples,
        },
    ))
}
