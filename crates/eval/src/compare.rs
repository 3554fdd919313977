//! `compare RUN_A RUN_B`: per task and metric, both scores, the difference (B − A) with a paired-bootstrap 95 %
//! interval, McNemar's exact p for 0/1 metrics and Holm's correction across the table — read from the two runs'
//! `samples_<task>.jsonl`, paired by document (and refused when the documents differ). Markdown, CSV and an SVG
//! chart of the differences.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mmreason_metrics::PairedComparison;
use plotters::prelude::*;
use serde_json::Value;

use crate::error::{EvalError, Result, io, read_json, write_atomic};

#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub a: PathBuf,
    pub b: PathBuf,
    /// Where compare.md, compare.csv and compare.svg go (none: nothing written).
    pub out: Option<PathBuf>,
    pub bootstrap_iters: usize,
    pub seed: u64,
}

#[derive(Debug, Clone)]
pub struct Comparison {
    pub name_a: String,
    pub name_b: String,
    pub rows: Vec<PairedComparison>,
}

/// Per-document values of one run: task → "metric,filter" → doc_id → (doc_hash, value).
type RunValues = BTreeMap<String, BTreeMap<String, BTreeMap<u64, (String, f64)>>>;

fn read_run(dir: &Path) -> Result<RunValues> {
    let results = read_json(&dir.join("results.json"))?;
    let tasks = results
        .get("results")
        .and_then(Value::as_object)
        .ok_or_else(|| EvalError::BadFile {
            path: dir.join("results.json"),
            message: "no `results` object (is this an mmreason or lm-eval run directory?)".into(),
        })?;
    let mut out = RunValues::new();
    for (task, metrics) in tasks {
        let keys: Vec<&str> = metrics
            .as_object()
            .map(|m| {
                m.keys()
                    .map(String::as_str)
                    .filter(|k| k.contains(',') && !k.contains("_stderr"))
                    .collect()
            })
            .unwrap_or_default();
        let path = dir.join(format!("samples_{task}.jsonl"));
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let per_task = out.entry(task.clone()).or_default();
        for (line_no, line) in text.lines().enumerate() {
            let bad = |m: &str| EvalError::BadFile {
                path: path.clone(),
                message: format!("line {}: {m}", line_no + 1),
            };
            let s: Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
            let doc_id = s
                .get("doc_id")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("no doc_id"))?;
            let filter = s.get("filter").and_then(Value::as_str).unwrap_or("none");
            let hash = s
                .get("doc_hash")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            for k in &keys {
                let (metric, f) = k.split_once(',').expect("filtered on ','");
                if f != filter {
                    continue;
                }
                // Aggregate-only metrics (an F1 over the whole task) have no per-document value to pair.
                let Some(v) = s.get(metric).and_then(Value::as_f64) else {
                    continue;
                };
                per_task
                    .entry(k.to_string())
                    .or_default()
                    .insert(doc_id, (hash.clone(), v));
            }
        }
    }
    Ok(out)
}

fn run_name(dir: &Path) -> String {
    dir.file_name()
        .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Compares two run directories; writes the files when `out` is set.
pub fn compare_runs(opts: &CompareOptions) -> Result<Comparison> {
    let (a, b) = (read_run(&opts.a)?, read_run(&opts.b)?);
    let mut rows = Vec::new();
    for (task, metrics_a) in &a {
        let Some(metrics_b) = b.get(task) else { continue };
        for (metric, docs_a) in metrics_a {
            let Some(docs_b) = metrics_b.get(metric) else {
                continue;
            };
            let (mut xa, mut xb) = (Vec::new(), Vec::new());
            for (id, (ha, va)) in docs_a {
                if let Some((hb, vb)) = docs_b.get(id) {
                    if ha != hb {
                        return Err(EvalError::Input(format!(
                            "task `{task}`, document {id}: the two runs evaluated different documents \
                             (doc_hash {ha:.12}… vs {hb:.12}…)"
                        )));
                    }
                    xa.push(*va);
                    xb.push(*vb);
                }
            }
            if xa.is_empty() {
                continue;
            }
            rows.push(PairedComparison::new(
                task,
                metric,
                &xa,
                &xb,
                opts.bootstrap_iters,
                opts.seed,
            )?);
        }
    }
    if rows.is_empty() {
        return Err(EvalError::Input(format!(
            "{} and {} share no task and metric with documents in common",
            opts.a.display(),
            opts.b.display()
        )));
    }
    PairedComparison::correct(&mut rows);
    let c = Comparison {
        name_a: run_name(&opts.a),
        name_b: run_name(&opts.b),
        rows,
    };
    if let Some(out) = &opts.out {
        std::fs::create_dir_all(out).map_err(io(out))?;
        write_atomic(&out.join("compare.md"), c.markdown().as_bytes())?;
        write_atomic(
            &out.join("compare.csv"),
            PairedComparison::csv(&c.rows).as_bytes(),
        )?;
        write_atomic(&out.join("compare.svg"), c.svg()?.as_bytes())?;
    }
    Ok(c)
}

impl Comparison {
    pub fn markdown(&self) -> String {
        format!(
            "# {} vs {}\n\nΔ = B − A; 95 % paired-bootstrap interval; McNemar's exact test on 0/1 metrics, Holm-adjusted \
             across the table.\n\n{}",
            self.name_a,
            self.name_b,
            PairedComparison::markdown(&self.rows, &self.name_a, &self.name_b)
        )
    }

    /// Bars of Δ per task and metric with their intervals.
    pub fn svg(&self) -> Result<String> {
        let chart_err = |e: &dyn std::fmt::Display| EvalError::Input(format!("chart: {e}"));
        let lo = self
            .rows
            .iter()
            .map(|r| r.ci_low.min(r.diff))
            .fold(0.0f64, f64::min);
        let hi = self
            .rows
            .iter()
            .map(|r| r.ci_high.max(r.diff))
            .fold(0.0f64, f64::max);
        let pad = ((hi - lo) * 0.1).max(0.01);
        let n = self.rows.len();
        let labels: Vec<String> = self
            .rows
            .iter()
            .map(|r| format!("{} {}", r.task, r.metric))
            .collect();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (160 + 110 * n as u32, 480)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| chart_err(&e))?;
            let mut chart = ChartBuilder::on(&root)
                .caption(format!("{} − {}", self.name_b, self.name_a), ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(60)
                .y_label_area_size(60)
                .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (lo - pad)..(hi + pad))
                .map_err(|e| chart_err(&e))?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(n.max(1))
                .x_label_formatter(&|x| {
                    let i = x.round();
                    if (x - i).abs() < 1e-6 && i >= 0.0 {
                        labels.get(i as usize).cloned().unwrap_or_default()
                    } else {
                        String::new()
                    }
                })
                .y_desc("Δ score (B − A), 95 % CI")
                .draw()
                .map_err(|e| chart_err(&e))?;
            for (i, r) in self.rows.iter().enumerate() {
                let x = i as f64;
                let color = if r.holm_p.is_some_and(|p| p < 0.05) {
                    RED
                } else {
                    BLUE
                };
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x - 0.3, 0.0), (x + 0.3, r.diff)],
                        color.mix(0.6).filled(),
                    )))
                    .map_err(|e| chart_err(&e))?;
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(x, r.ci_low), (x, r.ci_high)],
                        BLACK.stroke_width(2),
                    )))
                    .map_err(|e| chart_err(&e))?;
            }
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(-0.5, 0.0), (n as f64 - 0.5, 0.0)],
                    BLACK,
                )))
                .map_err(|e| chart_err(&e))?;
            root.present().map_err(|e| chart_err(&e))?;
        }
        Ok(svg)
    }
}
