//! Scoring documents from journalled answers and writing lm-eval's output files: `results.json`
//! (`results.<task>."acc,none"`, `"acc_stderr,none"`, `n-shot`, `n-samples`, `configs`, `versions`, …) and
//! `samples_<task>.jsonl` (one line per document and filter, with lm-eval's SHA-256 hashes).

use std::path::Path;

use mmreason_metrics::{ExactMatch, mean, mean_stderr, multiple_choice, pooled_stderr};
use mmreason_tasks::{Filter, Pipeline, doc_choices, doc_target, gold_index};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::{EvalError, Result, write_atomic};
use crate::evaluate::{EvalOptions, PreparedTask, key};
use crate::journal::{Answer, Journal};

/// One metric of a task under one filter, with its per-document values (what `compare` pairs).
#[derive(Debug, Clone, Serialize)]
pub struct MetricValue {
    pub metric: String,
    pub filter: String,
    pub value: f64,
    /// lm-eval's standard error of the mean; `None` ("N/A") with fewer than two documents.
    pub stderr: Option<f64>,
    #[serde(skip)]
    pub per_doc: Vec<f64>,
}

/// A task's scores.
#[derive(Debug, Clone, Serialize)]
pub struct TaskResult {
    pub task: String,
    pub n: usize,
    pub metrics: Vec<MetricValue>,
    #[serde(skip)]
    pub(crate) samples: Vec<Value>,
}

fn sha256(s: &str) -> String {
    format!("{:x}", Sha256::digest(s.as_bytes()))
}

fn metric_names(t: &PreparedTask) -> Vec<(String, &Value)> {
    t.cfg
        .metric_list
        .iter()
        .filter_map(|m| {
            m.get("metric")
                .and_then(Value::as_str)
                .map(|n| (n.to_string(), m))
        })
        .collect()
}

fn exact_match_of(spec: &Value, task: &str) -> Result<ExactMatch> {
    let regexes: Vec<&str> = spec
        .get("regexes_to_ignore")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let flag = |k: &str| spec.get(k).and_then(Value::as_bool).unwrap_or(false);
    let mut em = ExactMatch::new(&regexes, flag("ignore_case"), flag("ignore_punctuation"))
        .map_err(|e| EvalError::Input(format!("task `{task}`: exact_match: {e}")))?;
    em.ignore_numbers = flag("ignore_numbers");
    Ok(em)
}

fn missing(task: &str, k: &str) -> EvalError {
    EvalError::Input(format!("task `{task}`: no answer for request {k} in the journal"))
}

/// Scores every document of a task from the journal.
pub(crate) fn score_task(t: &PreparedTask, journal: &Journal) -> Result<TaskResult> {
    let task = t.cfg.task.as_str();
    let metrics = metric_names(t);
    if metrics.is_empty() {
        return Err(EvalError::Input(format!("task `{task}` has no metric_list")));
    }
    // Requests are in document order; remember each document's request indices.
    let mut by_doc: Vec<Vec<usize>> = vec![Vec::new(); t.docs.len()];
    for (i, r) in t.requests.iter().enumerate() {
        by_doc[r.doc_id].push(i);
    }
    let selected: std::collections::HashSet<usize> = t.selected.iter().copied().collect();
    let mut values: Vec<(String, String, Vec<f64>)> = Vec::new();
    let mut samples = Vec::new();
    let mut push = |metric: &str, filter: &str, v: f64| match values
        .iter_mut()
        .find(|(m, f, _)| m == metric && f == filter)
    {
        Some((_, _, xs)) => xs.push(v),
        None => values.push((metric.into(), filter.into(), vec![v])),
    };
    for (doc_id, (doc, reqs)) in t.docs.iter().zip(&by_doc).enumerate() {
        if !selected.contains(&doc_id) {
            continue;
        }
        let doc_json = serde_json::to_string_pretty(doc).expect("documents serialise");
        let arguments: Value = reqs
            .iter()
            .enumerate()
            .map(|(j, &i)| {
                let r = &t.requests[i];
                let mut a = serde_json::Map::new();
                a.insert("arg_0".into(), json!(r.context));
                match (&r.continuation, &r.until) {
                    (Some(c), _) => {
                        a.insert("arg_1".into(), json!(c));
                    }
                    (None, Some(u)) => {
                        a.insert(
                            "arg_1".into(),
                            json!({"until": u, "max_gen_toks": r.max_gen_toks}),
                        );
                    }
                    _ => {}
                }
                (format!("gen_args_{j}"), Value::Object(a))
            })
            .collect::<serde_json::Map<_, _>>()
            .into();
        let prompt = reqs.first().map_or("", |&i| t.requests[i].context.as_str());
        match t.cfg.output_type.as_str() {
            "multiple_choice" => {
                let mut lls = Vec::with_capacity(reqs.len());
                let mut resps = Vec::with_capacity(reqs.len());
                for &i in reqs {
                    let k = key(task, t.request_ids[i]);
                    match journal.get(&k) {
                        Some(Answer::Loglikelihood { logprob, is_greedy }) => {
                            lls.push(*logprob);
                            resps.push(json!([logprob, is_greedy]));
                        }
                        _ => return Err(missing(task, &k)),
                    }
                }
                let choices = doc_choices(&t.cfg, doc, doc_id)?;
                let gold = gold_index(&t.cfg, doc, doc_id)?;
                let s = multiple_choice(&lls, &choices, gold)?;
                let mut sample = json!({
                    "doc_id": doc_id, "doc": doc, "target": gold, "arguments": arguments,
                    "resps": resps.iter().map(|r| json!([r])).collect::<Vec<_>>(),
                    "filtered_resps": resps, "filter": "none",
                    "metrics": metrics.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
                    "doc_hash": sha256(&doc_json), "prompt_hash": sha256(prompt), "target_hash": sha256(&gold.to_string()),
                });
                for (name, _) in &metrics {
                    let v = match name.as_str() {
                        "acc" => s.acc,
                        "acc_norm" => s.acc_norm,
                        "acc_bytes" => s.acc_bytes,
                        other => {
                            return Err(EvalError::Input(format!(
                                "task `{task}`: metric `{other}` is not supported for multiple_choice"
                            )));
                        }
                    };
                    push(name, "none", v);
                    sample[name.as_str()] = json!(v);
                }
                samples.push(sample);
            }
            "generate_until" => {
                let k = key(task, t.request_ids[reqs[0]]);
                let Some(Answer::Generation { text }) = journal.get(&k) else {
                    return Err(missing(task, &k));
                };
                let target = doc_target(&t.cfg, doc, doc_id)?;
                let pipelines: Vec<Pipeline> = if t.cfg.filter_list.is_empty() {
                    vec![Pipeline {
                        name: "none".into(),
                        filters: vec![Filter::TakeFirst],
                    }]
                } else {
                    t.cfg
                        .filter_list
                        .iter()
                        .map(Pipeline::from_config)
                        .collect::<mmreason_tasks::Result<_>>()?
                };
                for p in &pipelines {
                    let filtered = p
                        .apply(std::slice::from_ref(text))
                        .into_iter()
                        .next()
                        .unwrap_or_default();
                    let mut sample = json!({
                        "doc_id": doc_id, "doc": doc, "target": target, "arguments": arguments,
                        "resps": [[text]], "filtered_resps": [filtered], "filter": p.name,
                        "metrics": metrics.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
                        "doc_hash": sha256(&doc_json), "prompt_hash": sha256(prompt), "target_hash": sha256(&target),
                    });
                    // A task's own scorer (lm-eval's `process_results`) gives its metrics from the filtered answer.
                    let own = match t.cfg.process_results.as_deref() {
                        Some(f) => Some(mmreason_tasks::process::process_results(
                            task, f, doc, doc_id, &filtered,
                        )?),
                        None => None,
                    };
                    for (name, spec) in &metrics {
                        let from_own = own
                            .as_ref()
                            .map(|o| o.iter().find(|(m, _)| m == name).map(|(_, v)| *v));
                        let v = match (from_own, name.as_str()) {
                            (Some(Some(v)), _) => v,
                            (Some(None), other) => {
                                return Err(EvalError::Input(format!(
                                    "task `{task}`: process_results `{}` gives no metric `{other}`",
                                    t.cfg.process_results.as_deref().unwrap_or_default()
                                )));
                            }
                            (None, "exact_match") => exact_match_of(spec, task)?.score(&filtered, &target),
                            (None, other) => {
                                return Err(EvalError::Input(format!(
                                    "task `{task}`: metric `{other}` is not supported for generate_until"
                                )));
                            }
                        };
                        push(name, &p.name, v);
                        sample[name.as_str()] = json!(v);
                    }
                    samples.push(sample);
                }
            }
            other => {
                return Err(EvalError::Input(format!(
                    "task `{task}`: output_type `{other}` is not supported"
                )));
            }
        }
    }
    // The subtask of each scored document, in scoring order, for a task standing for an lm-eval group.
    let subtasks: Option<Vec<String>> = t.cfg.group_stderr.as_ref().map(|g| {
        t.docs
            .iter()
            .enumerate()
            .filter(|(i, _)| selected.contains(i))
            .map(|(_, d)| subtask_of(d.get(&g.by)))
            .collect()
    });
    let metrics = values
        .into_iter()
        .map(|(metric, filter, xs)| {
            Ok(MetricValue {
                value: mean(&xs)?,
                stderr: stderr_of(&xs, t.cfg.group_stderr.as_ref().zip(subtasks.as_deref()), task)?,
                metric,
                filter,
                per_doc: xs,
            })
        })
        .collect::<Result<_>>()?;
    Ok(TaskResult {
        task: task.into(),
        n: t.selected.len(),
        metrics,
        samples,
    })
}

/// The subtask a document belongs to under `group_stderr`: its `by` field as text ("" when missing).
pub(crate) fn subtask_of(field: Option<&Value>) -> String {
    match field {
        Some(Value::String(v)) => v.clone(),
        other => other.map(Value::to_string).unwrap_or_default(),
    }
}

/// A metric's stderr over per-document values: lm-eval's group stderr for a grouped task (`group` = its spec
/// and each value's subtask), else the closed form; `None` ("N/A") for a single value.
pub(crate) fn stderr_of(
    xs: &[f64],
    group: Option<(&mmreason_tasks::GroupStderr, &[String])>,
    task: &str,
) -> Result<Option<f64>> {
    match group {
        Some((g, keys)) => group_stderr(xs, keys, g, task),
        None if xs.len() > 1 => Ok(Some(mean_stderr(xs)?)),
        None => Ok(None),
    }
}

/// lm-eval's stderr of a group of subtasks (`pooled_sample_stderr`, level by level): each subtask's closed-form
/// stderr, pooled per category when there are categories, then pooled over all. `None` ("N/A") when a subtask
/// has fewer than two documents, as lm-eval reports it.
fn group_stderr(
    xs: &[f64],
    keys: &[String],
    spec: &mmreason_tasks::GroupStderr,
    task: &str,
) -> Result<Option<f64>> {
    let mut leaves: Vec<(&str, Vec<f64>)> = Vec::new();
    for (x, k) in xs.iter().zip(keys) {
        match leaves.iter_mut().find(|(name, _)| name == k) {
            Some((_, v)) => v.push(*x),
            None => leaves.push((k, vec![*x])),
        }
    }
    if let Some(cats) = &spec.categories
        && let Some((k, _)) = leaves
            .iter()
            .find(|(k, _)| !cats.values().any(|c| c.iter().any(|s| s == k)))
    {
        return Err(EvalError::Input(format!(
            "task `{task}`: {} `{k}` is in none of group_stderr's categories",
            spec.by
        )));
    }
    if leaves.iter().any(|(_, v)| v.len() < 2) {
        return Ok(None);
    }
    let pool = |parts: &[(f64, usize)]| -> Result<(f64, usize)> {
        let (se, n): (Vec<f64>, Vec<usize>) = parts.iter().copied().unzip();
        Ok((pooled_stderr(&se, &n)?, n.iter().sum()))
    };
    let leaf: Vec<(&str, (f64, usize))> = leaves
        .iter()
        .map(|(k, v)| Ok((*k, (mean_stderr(v)?, v.len()))))
        .collect::<Result<_>>()?;
    let top: Vec<(f64, usize)> = match &spec.categories {
        None => leaf.iter().map(|(_, p)| *p).collect(),
        Some(cats) => cats
            .values()
            .filter_map(|members| {
                let parts: Vec<(f64, usize)> = leaf
                    .iter()
                    .filter(|(k, _)| members.iter().any(|m| m == k))
                    .map(|(_, p)| *p)
                    .collect();
                (!parts.is_empty()).then(|| pool(&parts))
            })
            .collect::<Result<_>>()?,
    };
    Ok(Some(pool(&top)?.0))
}

/// What results.json says about one task besides its scores.
pub(crate) struct TaskEntry {
    pub config: Value,
    pub version: Option<f64>,
    pub num_fewshot: usize,
    pub n_original: usize,
    pub n_effective: usize,
}

impl TaskEntry {
    /// A language task's entry (its YAML fields, as lm-eval's `configs`).
    pub(crate) fn language(t: &PreparedTask) -> Self {
        let name = &t.cfg.task;
        let mut config = json!({
            "task": name, "dataset_path": t.cfg.dataset_path, "output_type": t.cfg.output_type,
            "test_split": t.cfg.test_split, "validation_split": t.cfg.validation_split,
            "fewshot_split": t.cfg.fewshot_split, "doc_to_text": t.cfg.doc_to_text,
            "doc_to_target": t.cfg.doc_to_target, "doc_to_choice": t.cfg.doc_to_choice,
            "target_delimiter": t.cfg.target_delimiter, "fewshot_delimiter": t.cfg.fewshot_delimiter,
            "num_fewshot": t.num_fewshot, "metric_list": t.cfg.metric_list,
            "filter_list": t.cfg.filter_list, "generation_kwargs": t.cfg.generation_kwargs,
            "metadata": t.cfg.metadata,
        });
        // How `combine` pools a grouped task's stderr again (mmreason's extension; absent for other tasks).
        if let Some(g) = &t.cfg.group_stderr {
            config["group_stderr"] = json!(g);
        }
        Self {
            config,
            version: t.cfg.version(),
            num_fewshot: t.num_fewshot,
            n_original: t.n_original,
            n_effective: t.selected.len(),
        }
    }
}

/// Writes `results.json` and the samples files (each atomically).
pub(crate) fn write_results(
    opts: &EvalOptions,
    model: &Path,
    entries: &[(TaskEntry, TaskResult)],
    journal: &Journal,
    seconds: f64,
) -> Result<()> {
    let mut res = serde_json::Map::new();
    let (mut configs, mut versions, mut nshot, mut hib, mut nsamples, mut groups) = (
        serde_json::Map::new(),
        serde_json::Map::new(),
        serde_json::Map::new(),
        serde_json::Map::new(),
        serde_json::Map::new(),
        serde_json::Map::new(),
    );
    for (t, r) in entries {
        let name = &r.task;
        let mut m = serde_json::Map::new();
        m.insert("alias".into(), json!(name));
        let mut better = serde_json::Map::new();
        for v in &r.metrics {
            m.insert(format!("{},{}", v.metric, v.filter), json!(v.value));
            m.insert(
                format!("{}_stderr,{}", v.metric, v.filter),
                v.stderr.map_or(json!("N/A"), |s| json!(s)),
            );
            better.insert(v.metric.clone(), json!(true));
        }
        res.insert(name.clone(), Value::Object(m));
        groups.insert(name.clone(), json!([]));
        configs.insert(name.clone(), t.config.clone());
        versions.insert(name.clone(), t.version.map_or(Value::Null, |v| json!(v)));
        nshot.insert(name.clone(), json!(t.num_fewshot));
        hib.insert(name.clone(), Value::Object(better));
        nsamples.insert(
            name.clone(),
            json!({"original": t.n_original, "effective": t.n_effective}),
        );
    }
    let date = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let out = json!({
        "results": res,
        "group_subtasks": groups,
        "configs": configs,
        "versions": versions,
        "n-shot": nshot,
        "higher_is_better": hib,
        "n-samples": nsamples,
        "config": {
            "model": "mmreason",
            "model_args": format!("pretrained={}", model.display()),
            "batch_size": opts.batch_size,
            "device": opts.backend.name(),
            "dtype": opts.dtype.name(),
            "limit": opts.limit,
            "fewshot_seed": opts.fewshot_seed,
            "vocab_limit": opts.vocab_limit,
            "apply_chat_template": opts.apply_chat_template,
            "fewshot_as_multiturn": opts.fewshot_as_multiturn,
            "shard": opts.shard.map(|(i, n)| format!("{i}/{n}")),
        },
        "git_hash": env!("MMREASON_GIT_HASH"),
        "date": date,
        "total_evaluation_time_seconds": format!("{seconds:.3}"),
        "mmreason_version": env!("CARGO_PKG_VERSION"),
        "answers_in_journal": journal.len(),
    });
    write_atomic(
        &opts.output.join("results.json"),
        (serde_json::to_string_pretty(&out).expect("json") + "\n").as_bytes(),
    )?;
    for (_, r) in entries {
        let text: String = r
            .samples
            .iter()
            .map(|s| serde_json::to_string(s).expect("json") + "\n")
            .collect();
        write_atomic(
            &opts.output.join(format!("samples_{}.jsonl", r.task)),
            text.as_bytes(),
        )?;
    }
    Ok(())
}
