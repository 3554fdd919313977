//! The study's loop: evaluate the base LLM and its VLM on the language tasks, compare them, merge the sparse
//! task vector back at every (α, K) of a grid, evaluate each merge, compare it with the VLM, and report.
//! Every step resumes: evaluations through their journals, merges by skipping finished output directories.
//!
//! Layout of `out`: `runs/<name>/` (evaluate outputs), `merges/<name>/` (merged checkpoints),
//! `compare/<a>-vs-<b>/`, and `report.md` + `report.json`.

use std::path::{Path, PathBuf};

use mmreason_checkpoint::ModelDir;
use mmreason_merge::{Direction, Scope, SparseTaskVector, TopK, VlmMergeOptions, merge_vlm_with_llm};
use mmreason_model::{BackendKind, WeightDtype};
use plotters::prelude::*;
use serde::Serialize;

use crate::compare::{CompareOptions, Comparison, compare_runs};
use crate::error::{EvalError, Result, write_atomic};
use crate::evaluate::{EvalOptions, EvalSummary, evaluate};

#[derive(Debug, Clone)]
pub struct StudyOptions {
    pub llm: PathBuf,
    pub vlm: PathBuf,
    pub data_dir: PathBuf,
    pub tasks: Vec<String>,
    /// Vision tasks, asked of the VLM and the merges (an LLM has no eyes).
    pub vision_tasks: Vec<String>,
    /// Weight of the language score in the combined score that picks the best merge (vision gets 1 − w).
    pub language_weight: f64,
    pub limit: Option<usize>,
    pub num_fewshot: Option<usize>,
    pub alphas: Vec<f64>,
    pub densities: Vec<f64>,
    pub batch_size: usize,
    pub backend: BackendKind,
    pub dtype: WeightDtype,
    pub out: PathBuf,
    pub progress: bool,
}

impl StudyOptions {
    /// The bundled default: the tiny fixture Vicuna-like LLM and its LLaVA-1.5, committed samples of
    /// CommonsenseQA and GSM8K, a 2 × 2 grid — minutes on two CPU cores.
    pub fn bundled(fixtures: &Path, out: PathBuf) -> Self {
        Self {
            llm: fixtures.join("models/vicuna-base"),
            vlm: fixtures.join("models/llava-1.5"),
            data_dir: fixtures.join("datasets"),
            tasks: vec!["commonsense_qa".into(), "gsm8k".into()],
            vision_tasks: vec!["easy_vqa".into()],
            language_weight: 0.5,
            limit: Some(10),
            num_fewshot: Some(0),
            alphas: vec![0.5, 1.0],
            densities: vec![0.1, 1.0],
            batch_size: 4,
            backend: BackendKind::Cpu,
            dtype: WeightDtype::F32,
            out,
            progress: false,
        }
    }
}

/// One evaluated model of the study.
#[derive(Debug, Clone, Serialize)]
pub struct StudyModel {
    pub name: String,
    pub path: PathBuf,
    /// `Some((α, K))` for a merge.
    pub merge: Option<(f64, f64)>,
    /// (task, "metric,filter", value) for every metric.
    pub scores: Vec<(String, String, f64)>,
    /// Mean over language tasks of each task's first metric: the language score of a grid point.
    pub language_score: f64,
    /// The same over vision tasks (none for the LLM).
    pub vision_score: Option<f64>,
    /// Not dominated in (language, vision) by another model of the study.
    pub pareto: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StudyComparison {
    pub a: String,
    pub b: String,
    pub rows: Vec<mmreason_metrics::PairedComparison>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StudyReport {
    pub models: Vec<StudyModel>,
    pub comparisons: Vec<StudyComparison>,
    /// The merge with the highest language score.
    pub best_merge: Option<String>,
    #[serde(skip)]
    pub markdown: String,
}

fn model_entry(
    name: &str,
    path: &Path,
    merge: Option<(f64, f64)>,
    s: &EvalSummary,
    vision_tasks: &[String],
) -> StudyModel {
    let scores: Vec<(String, String, f64)> = s
        .tasks
        .iter()
        .flat_map(|t| {
            t.metrics
                .iter()
                .map(|m| (t.task.clone(), format!("{},{}", m.metric, m.filter), m.value))
        })
        .collect();
    let firsts = |vision: bool| -> Vec<f64> {
        s.tasks
            .iter()
            .filter(|t| vision_tasks.contains(&t.task) == vision)
            .filter_map(|t| t.metrics.first().map(|m| m.value))
            .collect()
    };
    let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    StudyModel {
        name: name.into(),
        path: path.into(),
        merge,
        scores,
        language_score: mean(firsts(false)).unwrap_or(0.0),
        vision_score: mean(firsts(true)),
        pareto: false,
    }
}

/// Marks the models not dominated in (language, vision score).
fn mark_pareto(models: &mut [StudyModel]) {
    let pts: Vec<Option<(f64, f64)>> = models
        .iter()
        .map(|m| m.vision_score.map(|v| (m.language_score, v)))
        .collect();
    for (i, m) in models.iter_mut().enumerate() {
        let Some((l, v)) = pts[i] else { continue };
        m.pareto = !pts
            .iter()
            .enumerate()
            .any(|(j, p)| j != i && p.is_some_and(|(l2, v2)| l2 >= l && v2 >= v && (l2 > l || v2 > v)));
    }
}

/// Language score against vision score, one point per model, the Pareto front joined.
fn chart(models: &[StudyModel]) -> Result<String> {
    let err = |e: &dyn std::fmt::Display| EvalError::Input(format!("chart: {e}"));
    let pts: Vec<(&StudyModel, f64, f64)> = models
        .iter()
        .filter_map(|m| m.vision_score.map(|v| (m, m.language_score, v)))
        .collect();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (_, x, y) in &pts {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if pts.is_empty() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let pad = |a: f64, b: f64| ((b - a) * 0.15).max(0.02);
    let (px, py) = (pad(x0, x1), pad(y0, y1));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 520)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut c = ChartBuilder::on(&root)
            .caption(
                "language vs vision score (Pareto front joined)",
                ("sans-serif", 18),
            )
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d((x0 - px)..(x1 + px), (y0 - py)..(y1 + py))
            .map_err(|e| err(&e))?;
        c.configure_mesh()
            .x_desc("language score")
            .y_desc("vision score")
            .draw()
            .map_err(|e| err(&e))?;
        let mut front: Vec<(f64, f64)> = pts
            .iter()
            .filter(|(m, _, _)| m.pareto)
            .map(|(_, x, y)| (*x, *y))
            .collect();
        front.sort_by(|a, b| a.0.total_cmp(&b.0));
        c.draw_series(LineSeries::new(front, RED.stroke_width(2)))
            .map_err(|e| err(&e))?;
        for (m, x, y) in &pts {
            let color = if m.pareto { RED } else { BLUE };
            c.draw_series(std::iter::once(Circle::new((*x, *y), 5, color.filled())))
                .map_err(|e| err(&e))?;
            c.draw_series(std::iter::once(Text::new(
                m.name.clone(),
                (*x, *y),
                ("sans-serif", 12),
            )))
            .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

/// Runs the loop; see the module documentation.
pub fn run_study(opts: &StudyOptions) -> Result<StudyReport> {
    if opts.alphas.is_empty() || opts.densities.is_empty() {
        return Err(EvalError::Input(
            "the grid needs at least one α and one density".into(),
        ));
    }
    // Before hours of evaluation, not at the first merge.
    for &alpha in &opts.alphas {
        for &density in &opts.densities {
            mmreason_merge::sparse_task_vector::validate(alpha, TopK::Density(density))?;
        }
    }
    let llm_vocab = ModelDir::open(&opts.llm)?
        .config
        .text()
        .map(|c| c.vocab_size)
        .ok_or_else(|| EvalError::Input(format!("{} has no language model", opts.llm.display())))?;
    let eval = |name: &str, model: &Path, vocab_limit: Option<usize>| -> Result<EvalSummary> {
        // A VLM (scored over the LLM's vocabulary) also answers the vision tasks.
        let mut tasks = opts.tasks.clone();
        if vocab_limit.is_some() {
            tasks.extend(opts.vision_tasks.iter().cloned());
        }
        let mut o = EvalOptions::new(tasks, opts.data_dir.clone(), opts.out.join("runs").join(name));
        o.model = Some(model.to_path_buf());
        o.limit = opts.limit;
        o.num_fewshot = opts.num_fewshot;
        o.batch_size = opts.batch_size;
        o.backend = opts.backend;
        o.dtype = opts.dtype;
        o.vocab_limit = vocab_limit;
        o.progress = opts.progress;
        tracing::info!("study: evaluate {name}");
        evaluate(&o)
    };
    let compare = |a: &str, b: &str| -> Result<Comparison> {
        compare_runs(&CompareOptions {
            a: opts.out.join("runs").join(a),
            b: opts.out.join("runs").join(b),
            out: Some(opts.out.join("compare").join(format!("{a}-vs-{b}"))),
            bootstrap_iters: 10_000,
            seed: 1234,
        })
    };
    // A VLM is scored over its base LLM's vocabulary, so both are compared on the same distribution.
    let mut models = vec![
        model_entry(
            "llm",
            &opts.llm,
            None,
            &eval("llm", &opts.llm, None)?,
            &opts.vision_tasks,
        ),
        model_entry(
            "vlm",
            &opts.vlm,
            None,
            &eval("vlm", &opts.vlm, Some(llm_vocab))?,
            &opts.vision_tasks,
        ),
    ];
    let mut comparisons = Vec::new();
    let c = compare("llm", "vlm")?;
    comparisons.push(StudyComparison {
        a: "llm".into(),
        b: "vlm".into(),
        rows: c.rows,
    });
    for &alpha in &opts.alphas {
        for &density in &opts.densities {
            let name = format!("merge-a{alpha}-k{density}");
            let dir = opts.out.join("merges").join(&name);
            if !dir.join("config.json").is_file() {
                tracing::info!(alpha, density, "merge {name}");
                merge_vlm_with_llm(&VlmMergeOptions {
                    vlm: opts.vlm.clone(),
                    llm: opts.llm.clone(),
                    out: dir.clone(),
                    method: SparseTaskVector {
                        alpha,
                        topk: TopK::Density(density),
                        scope: Scope::PerTensor,
                        direction: Direction::TowardLlm,
                    },
                    force: true,
                    allow_nonfinite: false,
                    max_shard_bytes: 5 << 30,
                    show_progress: opts.progress,
                })?;
            }
            let s = eval(&name, &dir, Some(llm_vocab))?;
            models.push(model_entry(
                &name,
                &dir,
                Some((alpha, density)),
                &s,
                &opts.vision_tasks,
            ));
            let c = compare("vlm", &name)?;
            comparisons.push(StudyComparison {
                a: "vlm".into(),
                b: name,
                rows: c.rows,
            });
        }
    }
    mark_pareto(&mut models);
    // The best merge by the user's weighting of language and vision (language alone without vision tasks).
    let w = opts.language_weight.clamp(0.0, 1.0);
    let combined = |m: &StudyModel| match m.vision_score {
        Some(v) => w * m.language_score + (1.0 - w) * v,
        None => m.language_score,
    };
    let best_merge = models
        .iter()
        .filter(|m| m.merge.is_some())
        .max_by(|a, b| combined(a).total_cmp(&combined(b)))
        .map(|m| m.name.clone());
    let mut report = StudyReport {
        models,
        comparisons,
        best_merge,
        markdown: String::new(),
    };
    report.markdown = markdown(&report, opts);
    write_atomic(&opts.out.join("report.md"), report.markdown.as_bytes())?;
    write_atomic(&opts.out.join("report.svg"), chart(&report.models)?.as_bytes())?;
    write_atomic(
        &opts.out.join("report.json"),
        (serde_json::to_string_pretty(&report).expect("json") + "\n").as_bytes(),
    )?;
    Ok(report)
}

fn markdown(r: &StudyReport, opts: &StudyOptions) -> String {
    // Columns: every (task, metric) any model has, in first-seen order.
    let mut keys: Vec<(String, String)> = Vec::new();
    for m in &r.models {
        for (t, k, _) in &m.scores {
            if !keys.iter().any(|(t2, k2)| t2 == t && k2 == k) {
                keys.push((t.clone(), k.clone()));
            }
        }
    }
    let mut s = format!(
        "# mmreason study\n\nLLM `{}`, VLM `{}`, tasks {} (limit {}), grid α ∈ {:?} × K ∈ {:?}.\n\n## Scores\n\n| model | α | K | {} | language score | vision score | Pareto |\n|---|---|---|{}---|---|---|\n",
        opts.llm.display(),
        opts.vlm.display(),
        opts.tasks
            .iter()
            .chain(&opts.vision_tasks)
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        opts.limit.map_or("none".to_string(), |l| l.to_string()),
        opts.alphas,
        opts.densities,
        keys.iter()
            .map(|(t, m)| format!("{t} {m}"))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(keys.len()),
    );
    for m in &r.models {
        let (a, k) = m.merge.map_or(("–".to_string(), "–".to_string()), |(a, k)| {
            (a.to_string(), k.to_string())
        });
        let vals: Vec<String> = keys
            .iter()
            .map(|(t, k)| {
                m.scores
                    .iter()
                    .find(|(t2, k2, _)| t2 == t && k2 == k)
                    .map_or("–".into(), |(_, _, v)| format!("{v:.4}"))
            })
            .collect();
        s += &format!(
            "| {} | {a} | {k} | {} | {:.4} | {} | {} |\n",
            m.name,
            vals.join(" | "),
            m.language_score,
            m.vision_score.map_or("–".to_string(), |v| format!("{v:.4}")),
            if m.pareto { "yes" } else { "" }
        );
    }
    if let Some(b) = &r.best_merge {
        s += &format!(
            "\nBest merge by {:.2} × language + {:.2} × vision score: **{b}** (chart: report.svg).\n",
            opts.language_weight,
            1.0 - opts.language_weight
        );
    }
    for c in &r.comparisons {
        s += &format!(
            "\n## {} vs {}\n\n{}",
            c.a,
            c.b,
            mmreason_metrics::PairedComparison::markdown(&c.rows, &c.a, &c.b)
        );
    }
    s
}
