//! Task definitions in lm-evaluation-harness's YAML format and the requests they make. Templates are Jinja
//! rendered as lm-eval's `apply_template` does (StrictUndefined, trailing newlines kept, Python string methods);
//! a `doc_to_*` value that names a document field takes the field itself.
//!
//! Implemented so far: zero-shot `multiple_choice` and `generate_until` requests and the dry run. Few-shot
//! sampling, chat templates, filters and metrics wiring are the rest of the tasks issue.

use std::path::Path;

use minijinja::value::Value as JValue;
use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::data::Doc;
use crate::error::{Result, TasksError};

/// A task's YAML, lm-eval's field names.
#[derive(Debug, Clone, Deserialize)]
pub struct TaskConfig {
    pub task: String,
    /// Directory under the data directory (`<data_dir>/<dataset_path>/<split>.jsonl`).
    pub dataset_path: String,
    pub output_type: String,
    #[serde(default)]
    pub training_split: Option<String>,
    #[serde(default)]
    pub validation_split: Option<String>,
    #[serde(default)]
    pub test_split: Option<String>,
    #[serde(default)]
    pub fewshot_split: Option<String>,
    pub doc_to_text: Value,
    #[serde(default)]
    pub doc_to_target: Option<Value>,
    #[serde(default)]
    pub doc_to_choice: Option<Value>,
    #[serde(default = "space")]
    pub target_delimiter: String,
    #[serde(default = "blank_line")]
    pub fewshot_delimiter: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub num_fewshot: Option<usize>,
    #[serde(default)]
    pub generation_kwargs: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    pub metric_list: Vec<Value>,
    #[serde(default)]
    pub filter_list: Vec<Value>,
}

fn space() -> String {
    " ".into()
}

fn blank_line() -> String {
    "\n\n".into()
}

/// One request in the dry-run format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub task: String,
    pub doc_id: usize,
    pub request_type: String,
    pub context: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub continuation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub until: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub max_gen_toks: Option<usize>,
}

impl TaskConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TasksError::Io {
            path: path.into(),
            source: e,
        })?;
        serde_norway::from_str(&text).map_err(|e| TasksError::BadFile {
            path: path.into(),
            message: e.to_string(),
        })
    }

    /// The split evaluated: test, else validation (lm-eval's order).
    pub fn eval_split(&self) -> Option<&str> {
        self.test_split.as_deref().or(self.validation_split.as_deref())
    }
}

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env
}

fn template_err(task: &str, doc_id: usize, what: &str, e: minijinja::Error) -> TasksError {
    TasksError::Template {
        task: task.into(),
        doc_id,
        what: what.into(),
        message: format!("{e:#}"),
    }
}

/// Renders a `doc_to_*` string: a field name gives the field, anything else is a Jinja template.
fn render_text(cfg: &TaskConfig, doc: &Doc, doc_id: usize, what: &str, spec: &Value) -> Result<String> {
    match spec {
        Value::String(s) => {
            if let Some(v) = doc.get(s) {
                return Ok(match v {
                    Value::String(t) => t.clone(),
                    other => other.to_string(),
                });
            }
            env()
                .render_str(s, JValue::from_serialize(doc))
                .map_err(|e| template_err(&cfg.task, doc_id, what, e))
        }
        Value::Number(n) => Ok(n.to_string()),
        other => Err(TasksError::Template {
            task: cfg.task.clone(),
            doc_id,
            what: what.into(),
            message: format!("unsupported value {other}"),
        }),
    }
}

/// The answer choices: a literal list, a field holding a list, or a template that is one expression giving a
/// list (lm-eval renders then `ast.literal_eval`s; evaluating the expression gives the same list).
fn choices(cfg: &TaskConfig, doc: &Doc, doc_id: usize) -> Result<Vec<String>> {
    let err = |m: String| TasksError::Template {
        task: cfg.task.clone(),
        doc_id,
        what: "doc_to_choice".into(),
        message: m,
    };
    let to_strings = |v: &Value| -> Result<Vec<String>> {
        v.as_array()
            .ok_or_else(|| err(format!("{v} is not a list")))?
            .iter()
            .map(|c| {
                c.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| err(format!("choice {c} is not a string")))
            })
            .collect()
    };
    match cfg.doc_to_choice.as_ref() {
        None => Err(err("multiple_choice needs doc_to_choice".into())),
        Some(Value::Array(_)) => to_strings(cfg.doc_to_choice.as_ref().expect("matched")),
        Some(Value::String(s)) => {
            if let Some(v) = doc.get(s) {
                return to_strings(v);
            }
            let expr = s
                .trim()
                .strip_prefix("{{")
                .and_then(|x| x.strip_suffix("}}"))
                .map(str::trim);
            let Some(expr) = expr else {
                return Err(err(format!("`{s}` is neither a field nor a single expression")));
            };
            let env = env();
            let e = env.compile_expression(expr).map_err(|e| err(format!("{e:#}")))?;
            let v = e
                .eval(JValue::from_serialize(doc))
                .map_err(|e| err(format!("{e:#}")))?;
            let json = serde_json::to_value(&v).map_err(|e| err(e.to_string()))?;
            to_strings(&json)
        }
        Some(other) => Err(err(format!("unsupported doc_to_choice {other}"))),
    }
}

/// Zero-shot requests for every document, in document order (lm-eval's `build_all_requests` with
/// `num_fewshot: 0`).
pub fn requests(cfg: &TaskConfig, docs: &[Doc]) -> Result<Vec<Request>> {
    let mut out = Vec::new();
    for (doc_id, doc) in docs.iter().enumerate() {
        let description = if cfg.description.is_empty() {
            String::new()
        } else {
            render_text(
                cfg,
                doc,
                doc_id,
                "description",
                &Value::String(cfg.description.clone()),
            )?
        };
        let context = format!(
            "{description}{}",
            render_text(cfg, doc, doc_id, "doc_to_text", &cfg.doc_to_text)?
        );
        match cfg.output_type.as_str() {
            "multiple_choice" => {
                for c in choices(cfg, doc, doc_id)? {
                    out.push(Request {
                        task: cfg.task.clone(),
                        doc_id,
                        request_type: "loglikelihood".into(),
                        context: context.clone(),
                        continuation: Some(format!("{}{c}", cfg.target_delimiter)),
                        until: None,
                        max_gen_toks: None,
                    });
                }
            }
            "generate_until" => {
                let kw = cfg.generation_kwargs.clone().unwrap_or_default();
                let until = kw
                    .get("until")
                    .and_then(Value::as_array)
                    .map(|u| u.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                    .unwrap_or_else(|| vec![cfg.fewshot_delimiter.clone()]);
                let max = kw.get("max_gen_toks").and_then(Value::as_u64).unwrap_or(256) as usize;
                out.push(Request {
                    task: cfg.task.clone(),
                    doc_id,
                    request_type: "generate_until".into(),
                    context,
                    continuation: None,
                    until: Some(until),
                    max_gen_toks: Some(max),
                });
            }
            other => {
                return Err(TasksError::Template {
                    task: cfg.task.clone(),
                    doc_id,
                    what: "output_type".into(),
                    message: format!("`{other}` is not supported yet (multiple_choice, generate_until)"),
                });
            }
        }
    }
    Ok(out)
}

/// The dry run: every request as one JSON line.
pub fn dry_run_jsonl(reqs: &[Request]) -> String {
    reqs.iter()
        .map(|r| serde_json::to_string(r).expect("requests serialise") + "\n")
        .collect()
}
