//! `evaluate`: tasks → requests (tasks crate) → answers (model crate, through the resume journal) → filtered,
//! scored documents (metrics crate) → `results.json` and `samples_<task>.jsonl` in lm-eval's shapes.
//!
//! Requests of all tasks run together, longest first (as lm-eval, so an out-of-memory failure comes early),
//! in chunks whose answers are journalled as soon as they exist. Results are computed from the journal only,
//! so an interrupted and resumed run writes the same metrics as an uninterrupted one, whatever the batch size.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::backend::Backend;
use mmreason_model::{
    BackendKind, GenerateRequest, LoglikelihoodRequest, TextModel, VocabScope, WeightDtype,
};
use mmreason_tasks::{Chat, Doc, FewShot, Request, TaskConfig, load_split, registry, requests_chat};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{EvalError, Result, io, read_json, write_atomic};
use crate::journal::{Answer, Journal};
use crate::progress;
use crate::results::{TaskEntry, TaskResult, score_task, write_results};
use crate::vision::{self, VisionTask};

/// What to evaluate and where the outputs go.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// A model directory (an LLM, or a VLM whose language model is evaluated); not needed for a dry run.
    pub model: Option<PathBuf>,
    pub tasks: Vec<String>,
    /// `<data_dir>/<dataset_path>/<split>.{jsonl,parquet,json}` for each task.
    pub data_dir: PathBuf,
    /// The first N documents of each task.
    pub limit: Option<usize>,
    /// Overrides each task's `num_fewshot`.
    pub num_fewshot: Option<usize>,
    /// lm-eval's `--fewshot_seed` (default 1234).
    pub fewshot_seed: u64,
    pub batch_size: usize,
    pub backend: BackendKind,
    pub dtype: WeightDtype,
    /// Score over the first N vocabulary rows only (a VLM against its base LLM's 32000 tokens).
    pub vocab_limit: Option<usize>,
    pub output: PathBuf,
    /// Write the rendered requests (`requests_<task>.jsonl`) and stop, without a model.
    pub dry_run: bool,
    /// lm-eval's `--apply_chat_template`: contexts rendered with the model's chat template.
    pub apply_chat_template: bool,
    /// lm-eval's `--fewshot_as_multiturn` (with `apply_chat_template`): few-shot examples as separate turns.
    pub fewshot_as_multiturn: bool,
    /// `(i, n)`: evaluate only the documents with `doc_id % n == i` (a scheduler's array job); `combine`
    /// joins the shards into the unsharded run.
    pub shard: Option<(usize, usize)>,
    pub progress: bool,
}

impl EvalOptions {
    /// Defaults for the rest: CPU, f32, batch 1, seed 1234, no limit.
    pub fn new(tasks: Vec<String>, data_dir: PathBuf, output: PathBuf) -> Self {
        Self {
            model: None,
            tasks,
            data_dir,
            limit: None,
            num_fewshot: None,
            fewshot_seed: 1234,
            batch_size: 1,
            backend: BackendKind::Cpu,
            dtype: WeightDtype::F32,
            vocab_limit: None,
            output,
            dry_run: false,
            apply_chat_template: false,
            fewshot_as_multiturn: false,
            shard: None,
            progress: false,
        }
    }
}

/// One task, ready to run.
pub(crate) struct PreparedTask {
    pub cfg: TaskConfig,
    pub docs: Vec<Doc>,
    pub n_original: usize,
    pub num_fewshot: usize,
    /// Requests of this run (all, or this shard's documents'); `requests[i].doc_id` indexes `docs`.
    pub requests: Vec<Request>,
    /// Index in the task's full request list of each request above (the journal key).
    pub request_ids: Vec<usize>,
    /// Documents evaluated, ascending.
    pub selected: Vec<usize>,
    /// SHA-256 of the task's full (unsharded) request list: what decides the answers.
    pub requests_sha256: String,
}

/// What a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct EvalSummary {
    pub output: PathBuf,
    pub dry_run: bool,
    pub requests: usize,
    /// Answers found in the journal from an earlier, interrupted run.
    pub resumed: usize,
    pub tasks: Vec<TaskResult>,
    pub seconds: f64,
}

pub(crate) fn prepare(opts: &EvalOptions) -> Result<Vec<PreparedTask>> {
    if let Some((i, n)) = opts.shard
        && (n == 0 || i >= n)
    {
        return Err(EvalError::Input(format!("shard {i}/{n}: need 0 ≤ i < n")));
    }
    if opts.tasks.is_empty() {
        return Err(EvalError::Input(format!(
            "no tasks given (known: {})",
            registry::names().join(", ")
        )));
    }
    if opts.fewshot_as_multiturn && !opts.apply_chat_template {
        return Err(EvalError::Input(
            "--fewshot-as-multiturn needs --apply-chat-template".into(),
        ));
    }
    // The model's chat template, when contexts are rendered as chat.
    let template = if opts.apply_chat_template {
        let model = opts.model.as_ref().ok_or_else(|| {
            EvalError::Input("--apply-chat-template needs --model (its chat template)".into())
        })?;
        let tok = mmreason_model::TextTokenizer::from_dir(model)?;
        let t = tok.chat_template.clone().ok_or_else(|| {
            EvalError::Input(format!(
                "{}: the tokenizer has no chat_template, so --apply-chat-template cannot apply one",
                model.display()
            ))
        })?;
        Some((
            t,
            tok.bos_token.unwrap_or_default(),
            tok.eos_token.unwrap_or_default(),
        ))
    } else {
        None
    };
    let render = |msgs: &[(String, String)]| -> std::result::Result<String, String> {
        let (t, bos, eos) = template.as_ref().expect("only called with a template");
        let m: Vec<mmreason_model::Message> = msgs
            .iter()
            .map(|(r, c)| mmreason_model::Message::new(r, c))
            .collect();
        mmreason_model::render_chat_template(t, &m, true, bos, eos).map_err(|e| e.to_string())
    };
    let chat = Chat {
        render: &render,
        multiturn: opts.fewshot_as_multiturn,
    };
    let chat = template.as_ref().map(|_| &chat);
    let mut out = Vec::new();
    for name in opts.tasks.iter().filter(|n| !vision::is_vision(n)) {
        let cfg = registry::task(name).map_err(|e| match e {
            // Suggest from every task `evaluate` knows, vision ones included.
            mmreason_tasks::TasksError::UnknownTask { name, .. } => {
                let mut all = registry::names();
                all.extend(vision::VISION_TASKS.iter().map(|(n, _, _)| *n));
                mmreason_tasks::TasksError::UnknownTask {
                    close: registry::close_matches(&name, &all),
                    known: all.join(", "),
                    name,
                }
            }
            other => other,
        })?;
        let data_err = |source| EvalError::TaskData {
            task: name.clone(),
            source,
        };
        let split = cfg
            .eval_split()
            .ok_or_else(|| EvalError::Input(format!("task `{name}` names no test or validation split")))?;
        let data = load_split(&opts.data_dir, &cfg.dataset_path, split).map_err(data_err)?;
        let n_original = data.docs.len();
        let mut docs = cfg.process(data.docs)?;
        if let Some(n) = opts.limit {
            match &cfg.group_stderr {
                // One task for lm-eval's group of subtasks (mmlu, minerva_math): lm-eval limits each subtask, so
                // the first `n` documents of each subject, in file order.
                Some(g) => {
                    let mut seen: std::collections::HashMap<String, usize> = Default::default();
                    docs.retain(|d| {
                        let subject = d.get(&g.by).map_or(String::new(), |v| v.to_string());
                        let count = seen.entry(subject).or_insert(0);
                        *count += 1;
                        *count <= n
                    });
                }
                None => docs.truncate(n),
            }
        }
        let num_fewshot = opts.num_fewshot.or(cfg.num_fewshot).unwrap_or(0);
        // Requests are built for every document and then sharded, so few-shot examples (one seeded stream in
        // document order) are the same as in an unsharded run.
        let requests = if num_fewshot > 0 {
            // lm-eval's pool (`ConfigurableTask.fewshot_docs`): fewshot_split, else fewshot_config's samples,
            // else the training split, else validation, else test.
            let pool = match (cfg.fewshot_split.as_deref(), cfg.fewshot_samples()) {
                (None, Some(samples)) => samples,
                (named, _) => {
                    let pool_split = named
                        .or(cfg.training_split.as_deref())
                        .or(cfg.validation_split.as_deref())
                        .unwrap_or(split);
                    let p = load_split(&opts.data_dir, &cfg.dataset_path, pool_split).map_err(data_err)?;
                    cfg.process(p.docs)?
                }
            };
            // lm-eval's sampler draws one example more, and drops the document itself, where the configured
            // `fewshot_split` equals `test_split` — as configured, not as loaded: also where neither is set
            // (hellaswag, piqa, winogrande…: their pool is `train`, so it only changes which examples are drawn,
            // and the seeded stream for every later document).
            let same_split = cfg.fewshot_split == cfg.test_split;
            let fs = FewShot::for_task(&cfg, num_fewshot, &pool, same_split, opts.fewshot_seed);
            requests_chat(&cfg, &docs, Some(&fs), chat)?
        } else {
            requests_chat(&cfg, &docs, None, chat)?
        };
        let requests_sha256 = format!(
            "{:x}",
            Sha256::digest(mmreason_tasks::dry_run_jsonl(&requests).as_bytes())
        );
        let keep = |doc_id: usize| opts.shard.is_none_or(|(i, n)| doc_id % n == i);
        let (request_ids, requests): (Vec<usize>, Vec<Request>) = requests
            .into_iter()
            .enumerate()
            .filter(|(_, r)| keep(r.doc_id))
            .unzip();
        let selected = (0..docs.len()).filter(|&d| keep(d)).collect();
        out.push(PreparedTask {
            cfg,
            docs,
            n_original,
            num_fewshot,
            requests,
            request_ids,
            selected,
            requests_sha256,
        });
    }
    Ok(out)
}

/// The journal key of a task's `i`-th request.
pub(crate) fn key(task: &str, i: usize) -> String {
    format!("{task}#{i}")
}

/// A hash of everything that decides a run's answers: resuming into a directory whose hash differs is refused.
fn fingerprint(
    opts: &EvalOptions,
    tasks: &[PreparedTask],
    vtasks: &[VisionTask],
) -> Result<serde_json::Value> {
    let model = opts.model.as_ref().map(|m| {
        std::fs::canonicalize(m)
            .unwrap_or_else(|_| m.clone())
            .display()
            .to_string()
    });
    let mut h = Sha256::new();
    for t in tasks {
        h.update(t.cfg.task.as_bytes());
        h.update(t.requests_sha256.as_bytes());
    }
    for t in vtasks {
        h.update(t.name.as_bytes());
        h.update(vision::fingerprint(t).as_bytes());
    }
    Ok(serde_json::json!({
        "model": model,
        "dtype": opts.dtype.name(),
        "vocab_limit": opts.vocab_limit,
        "tasks": opts.tasks,
        "limit": opts.limit,
        "num_fewshot": opts.num_fewshot,
        "fewshot_seed": opts.fewshot_seed,
        "apply_chat_template": opts.apply_chat_template,
        "fewshot_as_multiturn": opts.fewshot_as_multiturn,
        "shard": opts.shard.map(|(i, n)| format!("{i}/{n}")),
        "requests_sha256": format!("{:x}", h.finalize()),
    }))
}

fn check_or_record_run(dir: &Path, run: &serde_json::Value) -> Result<()> {
    let path = dir.join("run.json");
    match read_json(&path) {
        Ok(old) => {
            let differs: Vec<String> = run
                .as_object()
                .expect("an object")
                .iter()
                .filter(|(k, v)| old.get(k.as_str()) != Some(v))
                .map(|(k, v)| {
                    format!(
                        "{k}: {} here, {} there",
                        v,
                        old.get(k.as_str()).unwrap_or(&serde_json::Value::Null)
                    )
                })
                .collect();
            if differs.is_empty() {
                Ok(())
            } else {
                Err(EvalError::OtherRun {
                    dir: dir.into(),
                    what: differs.join("; "),
                })
            }
        }
        Err(EvalError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            if dir.join("results.json").exists() {
                return Err(EvalError::OtherRun {
                    dir: dir.into(),
                    what: "it has results.json but no run.json".into(),
                });
            }
            write_atomic(&path, serde_json::to_string_pretty(run).expect("json").as_bytes())
        }
        Err(e) => Err(e),
    }
}

/// Runs (or dry-runs) the evaluation; see the module documentation.
pub fn evaluate(opts: &EvalOptions) -> Result<EvalSummary> {
    let started = Instant::now();
    let tasks = prepare(opts)?;
    let vtasks: Vec<VisionTask> = opts
        .tasks
        .iter()
        .filter(|n| vision::is_vision(n))
        .map(|n| vision::prepare(n, &opts.data_dir, opts.limit, opts.shard))
        .collect::<Result<_>>()?;
    std::fs::create_dir_all(&opts.output).map_err(io(&opts.output))?;
    let total: usize = tasks.iter().map(|t| t.requests.len()).sum::<usize>()
        + vtasks.iter().map(|t| t.items.len()).sum::<usize>();
    if opts.dry_run {
        for t in &tasks {
            let p = opts.output.join(format!("requests_{}.jsonl", t.cfg.task));
            write_atomic(&p, mmreason_tasks::dry_run_jsonl(&t.requests).as_bytes())?;
        }
        for t in &vtasks {
            let text: String = t
                .items
                .iter()
                .map(|it| {
                    serde_json::json!({"task": t.name, "doc_id": it.doc_id, "request_type": "generate_until_image",
                                       "image": it.image, "context": it.prompt, "until": it.until,
                                       "max_gen_toks": it.max_new_tokens})
                    .to_string()
                        + "\n"
                })
                .collect();
            write_atomic(
                &opts.output.join(format!("requests_{}.jsonl", t.name)),
                text.as_bytes(),
            )?;
        }
        return Ok(EvalSummary {
            output: opts.output.clone(),
            dry_run: true,
            requests: total,
            resumed: 0,
            tasks: Vec::new(),
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let model = opts
        .model
        .clone()
        .ok_or_else(|| EvalError::Input("--model is required (or pass --dry-run)".into()))?;
    let run = fingerprint(opts, &tasks, &vtasks)?;
    check_or_record_run(&opts.output, &run)?;
    let mut journal = Journal::open(&opts.output.join("journal.jsonl"))?;
    let resumed = journal.len();
    tracing::info!(
        output = %opts.output.display(),
        requests = total,
        resumed,
        "evaluate {} on {}",
        model.display(),
        opts.tasks.join(",")
    );
    let pending = tasks
        .iter()
        .flat_map(|t| t.request_ids.iter().map(move |&i| key(&t.cfg.task, i)))
        .chain(
            vtasks
                .iter()
                .flat_map(|t| t.items.iter().map(move |it| vision::key(&t.name, it.doc_id))),
        )
        .filter(|k| journal.get(k).is_none())
        .count();
    if pending > 0 {
        let j = &mut journal;
        let (t, v) = (&tasks[..], &vtasks[..]);
        match opts.backend {
            #[cfg(feature = "cpu")]
            BackendKind::Cpu => {
                answer_on::<mmreason_model::CpuBackend>(opts, &model, t, v, j, &Default::default())?
            }
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu => {
                answer_on::<mmreason_model::backend::WgpuBackend>(opts, &model, t, v, j, &Default::default())?
            }
            #[cfg(feature = "cuda")]
            BackendKind::Cuda => {
                mmreason_model::backend::check_cuda()?;
                answer_on::<mmreason_model::backend::CudaBackend>(opts, &model, t, v, j, &Default::default())?
            }
            #[allow(unreachable_patterns)]
            other => {
                return Err(mmreason_model::ModelError::BackendNotCompiled {
                    name: other.name().into(),
                    compiled: String::new(),
                }
                .into());
            }
        }
    }
    let mut entries = Vec::new();
    for t in &tasks {
        entries.push((TaskEntry::language(t), score_task(t, &journal)?));
    }
    for t in &vtasks {
        entries.push(vision::score(t, &journal)?);
    }
    let results: Vec<TaskResult> = entries.iter().map(|(_, r)| r.clone()).collect();
    let seconds = started.elapsed().as_secs_f64();
    write_results(opts, &model, &entries, &journal, seconds)?;
    tracing::info!(
        seconds,
        "results written to {}",
        opts.output.join("results.json").display()
    );
    Ok(EvalSummary {
        output: opts.output.clone(),
        dry_run: false,
        requests: total,
        resumed,
        tasks: results,
        seconds,
    })
}

/// Loads the model on `B` and answers every request the journal lacks.
fn answer_on<B: Backend>(
    opts: &EvalOptions,
    model_dir: &Path,
    tasks: &[PreparedTask],
    vtasks: &[VisionTask],
    journal: &mut Journal,
    device: &B::Device,
) -> Result<()> {
    let vpending: Vec<(&VisionTask, &vision::VisionItem)> = vtasks
        .iter()
        .flat_map(|t| t.items.iter().map(move |it| (t, it)))
        .filter(|(t, it)| journal.get(&vision::key(&t.name, it.doc_id)).is_none())
        .collect();
    if !vpending.is_empty() {
        tracing::info!(questions = vpending.len(), "loading the VLM for image questions");
        let vlm = mmreason_model::VisionModel::<B>::load(model_dir, opts.dtype, device)?;
        let bar = progress::bar("image questions", vpending.len() as u64, 0, opts.progress);
        for (t, it) in vpending {
            let d = match &it.bytes {
                Some(b) => {
                    let img = mmreason_model::image_processor::decode_image(b).map_err(|e| {
                        EvalError::Input(format!("task `{}`, document {}: image: {e}", t.name, it.doc_id))
                    })?;
                    vlm.answer_image(&img, &it.prompt, it.max_new_tokens, &it.until)?
                }
                None => vlm.answer(&it.image, &it.prompt, it.max_new_tokens, &it.until)?,
            };
            journal.append(vec![(
                vision::key(&t.name, it.doc_id),
                Answer::Generation { text: d.text },
            )])?;
            bar.inc(1);
        }
        bar.finish();
    }
    if tasks.iter().all(|t| {
        t.request_ids
            .iter()
            .all(|&i| journal.get(&key(&t.cfg.task, i)).is_some())
    }) {
        return Ok(());
    }
    tracing::info!(backend = opts.backend.name(), "loading the language model");
    let vocab = opts.vocab_limit.map_or(VocabScope::Full, VocabScope::First);
    let mut model = TextModel::<B>::load(model_dir, opts.dtype, device, vocab)?;
    model.batch_size = opts.batch_size.max(1);
    let mut ll: Vec<(String, LoglikelihoodRequest, usize)> = Vec::new();
    let mut gen_reqs: Vec<(String, GenerateRequest, usize)> = Vec::new();
    for t in tasks {
        for (&i, r) in t.request_ids.iter().zip(&t.requests) {
            let k = key(&t.cfg.task, i);
            if journal.get(&k).is_some() {
                continue;
            }
            match r.request_type.as_str() {
                "loglikelihood" => {
                    let req = LoglikelihoodRequest {
                        context: r.context.clone(),
                        continuation: r.continuation.clone().unwrap_or_default(),
                    };
                    let (c, x) = model.encode_pair(&req.context, &req.continuation)?;
                    ll.push((k, req, c.len() + x.len()));
                }
                "generate_until" => {
                    let req = GenerateRequest {
                        context: r.context.clone(),
                        until: r.until.clone().unwrap_or_default(),
                        max_gen_toks: r.max_gen_toks.unwrap_or(256),
                        sampling: None,
                    };
                    let n = model.tokenizer.encode(&req.context, true)?.len();
                    gen_reqs.push((k, req, n));
                }
                other => {
                    return Err(EvalError::Input(format!(
                        "request type `{other}` is not supported"
                    )));
                }
            }
        }
    }
    // Longest first; ties in key order, so the order does not depend on the journal's state.
    ll.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    gen_reqs.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    let chunk = model.batch_size * 4;
    if !ll.is_empty() {
        let bar = progress::bar("loglikelihood", ll.len() as u64, 0, opts.progress);
        for part in ll.chunks(chunk) {
            let reqs: Vec<LoglikelihoodRequest> = part.iter().map(|(_, r, _)| r.clone()).collect();
            let answers = model.loglikelihood(&reqs, &mut |_, _| {})?;
            journal.append(
                part.iter()
                    .zip(answers)
                    .map(|((k, _, _), a)| {
                        (
                            k.clone(),
                            Answer::Loglikelihood {
                                logprob: a.logprob,
                                is_greedy: a.is_greedy,
                            },
                        )
                    })
                    .collect(),
            )?;
            bar.inc(part.len() as u64);
        }
        bar.finish();
    }
    if !gen_reqs.is_empty() {
        let bar = progress::bar("generate_until", gen_reqs.len() as u64, 0, opts.progress);
        for part in gen_reqs.chunks(model.batch_size) {
            let reqs: Vec<GenerateRequest> = part.iter().map(|(_, r, _)| r.clone()).collect();
            let texts = model.generate_until(&reqs, &mut |_, _| {})?;
            journal.append(
                part.iter()
                    .zip(texts)
                    .map(|((k, _, _), text)| (k.clone(), Answer::Generation { text }))
                    .collect(),
            )?;
            bar.inc(part.len() as u64);
        }
        bar.finish();
    }
    Ok(())
}
