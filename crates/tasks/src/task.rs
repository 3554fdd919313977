//! Task definitions in lm-evaluation-harness's YAML format and the requests they make. Templates are Jinja
//! rendered as lm-eval's `apply_template` does (StrictUndefined, trailing newlines kept, Python string methods);
//! a `doc_to_*` value that names a document field takes the field itself.
//!
//! `multiple_choice` (also multiple-input) and `generate_until` requests, zero- or few-shot (seeded random,
//! `first_n`, fixed samples), plain or through a chat template, and the dry run.

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
    /// lm-eval's `fewshot_config` (`sampler: first_n` is the one read).
    #[serde(default)]
    pub fewshot_config: Option<Value>,
    /// mmreason's extension for one task covering several lm-eval subtasks (MMLU's 57 subjects): few-shot
    /// examples come only from pool documents with the same value of this field, as each lm-eval subtask draws
    /// from its own subject's split.
    #[serde(default)]
    pub fewshot_group_by: Option<String>,
    /// mmreason's extension for one task standing for an lm-eval group (MMLU's subjects, MATH's subjects): the
    /// standard error is pooled as lm-eval pools its group's — per value of `by` (a subtask), then per category
    /// when `categories` are given (MMLU's stem / other / social_sciences / humanities), then over all.
    #[serde(default)]
    pub group_stderr: Option<GroupStderr>,
    /// lm-eval's multiple-input mode (WinoGrande), which lm-eval infers from `doc_to_text` returning an int:
    /// `doc_to_text` gives the gold index, `doc_to_choice` the contexts, `doc_to_target` the one continuation.
    #[serde(default)]
    pub multiple_input: bool,
    /// A named Rust preprocessing function (`process`), where lm-eval names a Python one.
    #[serde(default)]
    pub process_docs: Option<String>,
    /// A named Rust scorer for generations (`process::PROCESS_RESULTS`), where lm-eval names a Python one.
    #[serde(default)]
    pub process_results: Option<String>,
    /// lm-eval's `metadata` (its `version` goes into results.json's `versions`).
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// How an lm-eval group's subtasks are found in one task's documents (`group_stderr`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct GroupStderr {
    /// The document field whose value names the subtask.
    pub by: String,
    /// Subtask values by category, when lm-eval nests the group one level deeper.
    #[serde(default)]
    pub categories: Option<std::collections::BTreeMap<String, Vec<String>>>,
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

    /// Parses a task from YAML text (`origin` names it in errors).
    pub fn from_yaml(text: &str, origin: &Path) -> Result<Self> {
        serde_norway::from_str(text).map_err(|e| TasksError::BadFile {
            path: origin.into(),
            message: e.to_string(),
        })
    }

    /// Whether few-shot examples are the pool's first documents (lm-eval's `first_n` sampler).
    pub fn first_n(&self) -> bool {
        self.fewshot_config
            .as_ref()
            .and_then(|c| c.get("sampler"))
            .and_then(Value::as_str)
            == Some("first_n")
    }

    /// Few-shot examples written into the task itself (`fewshot_config.samples`, e.g. gsm8k_cot's eight
    /// exemplars): they replace the few-shot split.
    pub fn fewshot_samples(&self) -> Option<Vec<Doc>> {
        let samples = self.fewshot_config.as_ref()?.get("samples")?.as_array()?;
        Some(samples.iter().filter_map(|v| v.as_object().cloned()).collect())
    }

    /// The documents as the task sees them (after its `process_docs` function, if any).
    pub fn process(&self, docs: Vec<Doc>) -> Result<Vec<Doc>> {
        crate::process::check_process_results(&self.task, self.process_results.as_deref())?;
        crate::process::process_docs(&self.task, self.process_docs.as_deref(), docs)
    }

    /// The task's version (`metadata.version`), as lm-eval reports it.
    pub fn version(&self) -> Option<f64> {
        self.metadata.as_ref()?.get("version")?.as_f64()
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
    env.set_unknown_method_callback(|state, value, method, args| {
        // `list.index(x)` (lm-eval's `{{choices.label.index(answerKey)}}`), then Python's string/dict methods.
        if method == "index"
            && let (Ok(items), [needle]) = (value.try_iter(), args)
        {
            let pos = items.enumerate().find(|(_, v)| v == needle).map(|(i, _)| i);
            return pos.map(JValue::from).ok_or_else(|| {
                minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("{needle} is not in the list"),
                )
            });
        }
        minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
    });
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

/// Whether `doc_to_target` names a field of the document that holds a string. lm-eval returns a named field's
/// value as it is, so a string "1" there is the answer text "1" (looked up among the choices), where a
/// template's digits (or an integer field) are an index.
fn string_field(spec: &Value, doc: &Doc) -> bool {
    matches!(spec, Value::String(s) if matches!(doc.get(s), Some(Value::String(_))))
}

/// The answer text of a few-shot example: `doc_to_target` as a field or template; a template's digit string
/// (or an integer field) indexes the choices, as lm-eval's `literal_eval` + `c[a]`.
fn target_text(cfg: &TaskConfig, doc: &Doc, doc_id: usize) -> Result<String> {
    let spec = cfg.doc_to_target.as_ref().ok_or_else(|| TasksError::Template {
        task: cfg.task.clone(),
        doc_id,
        what: "doc_to_target".into(),
        message: "few-shot examples need doc_to_target".into(),
    })?;
    let text = render_text(cfg, doc, doc_id, "doc_to_target", spec)?;
    if cfg.doc_to_choice.is_some()
        && !cfg.multiple_input
        && !string_field(spec, doc)
        && !text.is_empty()
        && text.chars().all(|c| c.is_ascii_digit())
    {
        let i: usize = text.parse().expect("all ASCII digits");
        let c = choices(cfg, doc, doc_id)?;
        return c.get(i).cloned().ok_or_else(|| TasksError::Template {
            task: cfg.task.clone(),
            doc_id,
            what: "doc_to_target".into(),
            message: format!("answer index {i} is out of range for {} choices", c.len()),
        });
    }
    Ok(text)
}

/// The correct choice of a multiple-choice document: `doc_to_target` giving an index (digits or an integer
/// field) or the answer text itself, looked up in the choices (lm-eval's `process_results`).
pub fn gold_index(cfg: &TaskConfig, doc: &Doc, doc_id: usize) -> Result<usize> {
    let err = |m: String| TasksError::Template {
        task: cfg.task.clone(),
        doc_id,
        what: "doc_to_target".into(),
        message: m,
    };
    let spec = cfg
        .doc_to_target
        .as_ref()
        .ok_or_else(|| err("multiple_choice needs doc_to_target".into()))?;
    let c = choices(cfg, doc, doc_id)?;
    // Multiple input: the gold index is what doc_to_text gives (lm-eval's convention).
    let text = if cfg.multiple_input {
        render_text(cfg, doc, doc_id, "doc_to_text", &cfg.doc_to_text)?
    } else {
        render_text(cfg, doc, doc_id, "doc_to_target", spec)?
    };
    let named_string = !cfg.multiple_input && string_field(spec, doc);
    let idx = if !named_string && !text.is_empty() && text.chars().all(|ch| ch.is_ascii_digit()) {
        text.parse::<usize>().map_err(|e| err(e.to_string()))?
    } else {
        c.iter()
            .position(|x| *x == text)
            .ok_or_else(|| err(format!("answer `{text}` is not one of the choices")))?
    };
    if idx >= c.len() {
        return Err(err(format!(
            "answer index {idx} is out of range for {} choices",
            c.len()
        )));
    }
    Ok(idx)
}

/// The rendered `doc_to_target` of a document (a choice's text when it is an index): the reference of
/// generation metrics.
pub fn doc_target(cfg: &TaskConfig, doc: &Doc, doc_id: usize) -> Result<String> {
    target_text(cfg, doc, doc_id)
}

/// The answer choices of a document (for scoring).
pub fn doc_choices(cfg: &TaskConfig, doc: &Doc, doc_id: usize) -> Result<Vec<String>> {
    choices(cfg, doc, doc_id)
}

/// Few-shot examples for a task: drawn from `pool` with Python's `random.Random(seed)`, one stream for the
/// whole run in document order (lm-eval's `ContextSampler` after `set_fewshot_seed`).
pub struct FewShot<'a> {
    pub num: usize,
    pub pool: &'a [Doc],
    /// Draw one example more and drop the document itself: lm-eval's sampler does so where the task's
    /// `fewshot_split` equals its `test_split` as configured (also where neither is set), meaning the pool may
    /// be the evaluated split.
    pub same_split: bool,
    pub seed: u64,
    /// lm-eval's `first_n` sampler: the pool's first `num` documents, no randomness.
    pub first_n: bool,
    /// Only pool documents whose value of this field equals the document's (see `fewshot_group_by`).
    pub group_by: Option<&'a str>,
}

impl<'a> FewShot<'a> {
    /// The task's own few-shot settings (`fewshot_config`, `fewshot_group_by`) over `pool`.
    pub fn for_task(cfg: &'a TaskConfig, num: usize, pool: &'a [Doc], same_split: bool, seed: u64) -> Self {
        Self {
            num,
            pool,
            same_split,
            seed,
            first_n: cfg.first_n(),
            group_by: cfg.fewshot_group_by.as_deref(),
        }
    }
}

/// Zero-shot requests for every document, in document order (lm-eval's `build_all_requests` with
/// `num_fewshot: 0`).
pub fn requests(cfg: &TaskConfig, docs: &[Doc]) -> Result<Vec<Request>> {
    requests_with(cfg, docs, None)
}

/// How contexts are formatted as chat (lm-eval's `--apply_chat_template` and `--fewshot_as_multiturn`): the
/// description becomes a system message, few-shot examples and the question one user message (or, multi-turn,
/// alternating user/assistant turns), rendered by the model's template with the generation prompt; choices
/// are then scored without the target delimiter.
pub struct Chat<'a> {
    /// Renders (role, content) messages with the model's chat template and the generation prompt.
    pub render: &'a RenderFn<'a>,
    pub multiturn: bool,
}

/// A chat-template renderer: (role, content) messages → the prompt text, or an error message.
pub type RenderFn<'a> = dyn Fn(&[(String, String)]) -> std::result::Result<String, String> + 'a;

/// One turn of a context: lm-eval's `Message` (the delimiter is appended only when rendered as plain text).
struct Turn {
    role: &'static str,
    content: String,
    delim: String,
}

/// A context's turns as one string: plain text, or the chat template's rendering (single-turn collapse as
/// lm-eval's `multiturn_to_singleturn`).
fn render_turns(turns: &[Turn], chat: Option<&Chat<'_>>, task: &str, doc_id: usize) -> Result<String> {
    let Some(chat) = chat else {
        return Ok(turns
            .iter()
            .map(|t| format!("{}{}", t.content, t.delim))
            .collect());
    };
    let msgs: Vec<(String, String)> = if chat.multiturn {
        turns
            .iter()
            .map(|t| (t.role.to_string(), t.content.clone()))
            .collect()
    } else {
        let (system, rest) = match turns.first() {
            Some(t) if t.role == "system" => (Some(t), &turns[1..]),
            _ => (None, turns),
        };
        let n = rest.len();
        let user: String = rest
            .iter()
            .enumerate()
            .map(|(k, t)| {
                if k + 1 == n {
                    t.content.clone()
                } else {
                    format!("{}{}", t.content, t.delim)
                }
            })
            .collect();
        system
            .map(|t| ("system".to_string(), t.content.clone()))
            .into_iter()
            .chain(std::iter::once(("user".to_string(), user)))
            .collect()
    };
    (chat.render)(&msgs).map_err(|message| TasksError::Template {
        task: task.into(),
        doc_id,
        what: "chat template".into(),
        message,
    })
}

/// Requests with few-shot context: description, then `q + target_delimiter + a + fewshot_delimiter` per
/// example, then the document's text.
pub fn requests_with(cfg: &TaskConfig, docs: &[Doc], fewshot: Option<&FewShot<'_>>) -> Result<Vec<Request>> {
    requests_chat(cfg, docs, fewshot, None)
}

/// [`requests_with`], optionally formatted as chat.
pub fn requests_chat(
    cfg: &TaskConfig,
    docs: &[Doc],
    fewshot: Option<&FewShot<'_>>,
    chat: Option<&Chat<'_>>,
) -> Result<Vec<Request>> {
    let mut rnd = fewshot.map(|f| crate::python_random::PyRandom::new(f.seed));
    let mut out = Vec::new();
    // Under a chat template, choices are scored without the target delimiter (lm-eval).
    let delim = if chat.is_some() {
        ""
    } else {
        cfg.target_delimiter.as_str()
    };
    for (doc_id, doc) in docs.iter().enumerate() {
        let mut examples: Vec<Turn> = Vec::new();
        if let (Some(f), Some(rnd)) = (fewshot, rnd.as_mut())
            && f.num > 0
        {
            let picked: Vec<&Doc> = if f.first_n {
                // lm-eval's `FirstNSampler` takes one more where it would draw one more, then drops the doc.
                f.pool
                    .iter()
                    .filter(|d| f.group_by.is_none_or(|g| d.get(g) == doc.get(g)))
                    .take(f.num + usize::from(f.same_split))
                    .filter(|d| *d != doc)
                    .take(f.num)
                    .collect()
            } else if f.same_split {
                // One more than asked, the document itself dropped; fewer left is the error below, as lm-eval
                // raises (a pool of n or fewer, or copies of the document in it).
                rnd.sample_indices(f.pool.len(), (f.num + 1).min(f.pool.len()))
                    .iter()
                    .map(|&i| &f.pool[i])
                    .filter(|d| *d != doc)
                    .take(f.num)
                    .collect()
            } else {
                rnd.sample_indices(f.pool.len(), f.num.min(f.pool.len()))
                    .into_iter()
                    .map(|i| &f.pool[i])
                    .collect()
            };
            // lm-eval asserts that it got as many examples as asked; fewer would be a prompt with fewer shots
            // under the n-shot the results report.
            if picked.len() < f.num {
                let within = f.group_by.map_or(String::new(), |g| {
                    format!(
                        " with the document's `{g}` ({})",
                        doc.get(g).map_or("none".into(), |v| v.to_string())
                    )
                });
                return Err(TasksError::Template {
                    task: cfg.task.clone(),
                    doc_id,
                    what: "few-shot examples".into(),
                    message: format!("{} asked, the few-shot split has {}{within}", f.num, picked.len()),
                });
            }
            for ex in picked {
                let q = if cfg.multiple_input {
                    let c = choices(cfg, ex, doc_id)?;
                    c[gold_index(cfg, ex, doc_id)?].clone()
                } else {
                    render_text(cfg, ex, doc_id, "doc_to_text (few-shot)", &cfg.doc_to_text)?
                };
                let a = target_text(cfg, ex, doc_id)?;
                examples.push(Turn {
                    role: "user",
                    content: q,
                    delim: cfg.target_delimiter.clone(),
                });
                examples.push(Turn {
                    role: "assistant",
                    content: a,
                    delim: cfg.fewshot_delimiter.clone(),
                });
            }
        }
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
        let mut turns: Vec<Turn> = Vec::new();
        if !description.is_empty() {
            turns.push(Turn {
                role: "system",
                content: description,
                delim: String::new(),
            });
        }
        turns.extend(examples);
        let with_question = |turns: &mut Vec<Turn>, q: String| {
            turns.push(Turn {
                role: "user",
                content: q,
                delim: String::new(),
            });
        };
        if cfg.multiple_input {
            // One context per choice (the choice is the input), one shared continuation.
            let cont = target_text(cfg, doc, doc_id)?;
            for c in choices(cfg, doc, doc_id)? {
                with_question(&mut turns, c);
                let context = render_turns(&turns, chat, &cfg.task, doc_id)?;
                turns.pop();
                out.push(Request {
                    task: cfg.task.clone(),
                    doc_id,
                    request_type: "loglikelihood".into(),
                    context,
                    continuation: Some(format!("{delim}{cont}")),
                    until: None,
                    max_gen_toks: None,
                });
            }
            continue;
        }
        with_question(
            &mut turns,
            render_text(cfg, doc, doc_id, "doc_to_text", &cfg.doc_to_text)?,
        );
        let context = render_turns(&turns, chat, &cfg.task, doc_id)?;
        match cfg.output_type.as_str() {
            "multiple_choice" => {
                for c in choices(cfg, doc, doc_id)? {
                    out.push(Request {
                        task: cfg.task.clone(),
                        doc_id,
                        request_type: "loglikelihood".into(),
                        context: context.clone(),
                        continuation: Some(format!("{delim}{c}")),
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
