//! What instruction tuning changed: the task vector T = θ_vlm − θ_llm per layer and module — its L2 norm,
//! its size relative to the LLM's weights, the share of its L1 mass that the top-K entries (per tensor) hold,
//! and how often the two models' weights agree in sign — as Markdown, CSV and an SVG chart.

use std::path::{Path, PathBuf};

use mmreason_checkpoint::{ModelDir, Pairing};
use plotters::prelude::*;
use serde::Serialize;

use crate::error::{MergeError, Result};
use crate::progress::Progress;
use crate::select;
use crate::sparse_task_vector::TopK;

/// Inputs of an analysis.
#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    pub vlm: PathBuf,
    pub llm: PathBuf,
    /// K for "share of mass kept", as a density.
    pub density: f64,
    pub show_progress: bool,
}

/// One language-model tensor's statistics.
#[derive(Debug, Clone, Serialize)]
pub struct TensorStats {
    /// Base-LLM name.
    pub tensor: String,
    /// Decoder layer, if the tensor belongs to one.
    pub layer: Option<usize>,
    /// Module within the layer (`self_attn.q_proj`, `mlp.down_proj`, `input_layernorm`) or the tensor's name
    /// outside layers (`embed_tokens`, `norm`, `lm_head`).
    pub module: String,
    pub numel: u64,
    /// ‖T‖₂ over the LLM's vocabulary rows.
    pub norm_t: f64,
    /// ‖T‖₂ / ‖θ_llm‖₂.
    pub relative: f64,
    /// Σ|T| of the top-K entries / Σ|T|.
    pub mass_kept: f64,
    /// Fraction of entries where θ_vlm and θ_llm have the same sign.
    pub sign_agreement: f64,
}

/// The whole analysis.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub vlm: PathBuf,
    pub llm: PathBuf,
    pub density: f64,
    pub tensors: Vec<TensorStats>,
}

/// Splits `model.layers.3.self_attn.q_proj.weight` into (Some(3), "self_attn.q_proj").
fn locate(name: &str) -> (Option<usize>, String) {
    let stem = name
        .strip_suffix(".weight")
        .or_else(|| name.strip_suffix(".bias"))
        .unwrap_or(name);
    if let Some(rest) = stem.strip_prefix("model.layers.")
        && let Some((idx, module)) = rest.split_once('.')
        && let Ok(i) = idx.parse()
    {
        return (Some(i), module.to_string());
    }
    (None, stem.trim_start_matches("model.").to_string())
}

/// Computes the statistics, streaming one tensor pair at a time.
pub fn analyze(opts: &AnalyzeOptions) -> Result<Analysis> {
    let vlm = ModelDir::open(&opts.vlm)?;
    let llm = ModelDir::open(&opts.llm)?;
    let pairing = Pairing::new(&vlm, &llm);
    if pairing.paired.is_empty() {
        return Err(MergeError::Unpaired {
            vlm: opts.vlm.clone(),
            llm: opts.llm.clone(),
            detail: "no language-model tensors in common".into(),
        });
    }
    let mut bar = Progress::new("analyze", pairing.paired.len() as u64, opts.show_progress);
    let mut tensors = Vec::with_capacity(pairing.paired.len());
    for p in &pairing.paired {
        let l = llm.weights.get(&p.llm_name)?.to_f32()?;
        let mut v = vlm.weights.get(&p.vlm_name)?.to_f32()?;
        v.truncate(l.len());
        vlm.weights.release(&p.vlm_name);
        llm.weights.release(&p.llm_name);
        let t: Vec<f64> = v.iter().zip(&l).map(|(a, b)| *a as f64 - *b as f64).collect();
        let norm_t = t.iter().map(|x| x * x).sum::<f64>().sqrt();
        let norm_l = l.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let l1: f64 = t.iter().map(|x| x.abs()).sum();
        let keys: Vec<u32> = t.iter().map(|&x| select::key(x)).collect();
        let k = select::k_of(TopK::Density(opts.density), keys.len() as u64);
        let mask = select::threshold_for(&keys, k).mask(&keys, &mut 0);
        let kept: f64 = t
            .iter()
            .zip(&mask)
            .filter(|(_, m)| **m)
            .map(|(x, _)| x.abs())
            .sum();
        let agree = v
            .iter()
            .zip(&l)
            .filter(|(a, b)| a.is_sign_negative() == b.is_sign_negative())
            .count();
        let (layer, module) = locate(&p.llm_name);
        tensors.push(TensorStats {
            tensor: p.llm_name.clone(),
            layer,
            module,
            numel: t.len() as u64,
            norm_t,
            relative: if norm_l > 0.0 { norm_t / norm_l } else { f64::NAN },
            mass_kept: if l1 > 0.0 { kept / l1 } else { 1.0 },
            sign_agreement: agree as f64 / t.len().max(1) as f64,
        });
        bar.tick(((v.len() + l.len()) * 4) as u64);
    }
    bar.finish();
    tensors.sort_by(|a, b| (a.layer, &a.module).cmp(&(b.layer, &b.module)));
    Ok(Analysis {
        vlm: opts.vlm.clone(),
        llm: opts.llm.clone(),
        density: opts.density,
        tensors,
    })
}

impl Analysis {
    pub fn to_csv(&self) -> String {
        let mut s = String::from("tensor,layer,module,numel,norm_t,relative,mass_kept,sign_agreement\n");
        for t in &self.tensors {
            s += &format!(
                "{},{},{},{},{:.6e},{:.6e},{:.6},{:.6}\n",
                t.tensor,
                t.layer.map_or(String::new(), |l| l.to_string()),
                t.module,
                t.numel,
                t.norm_t,
                t.relative,
                t.mass_kept,
                t.sign_agreement
            );
        }
        s
    }

    pub fn to_markdown(&self) -> String {
        let mut s = format!(
            "# Task vector T = θ_vlm − θ_llm\n\nVLM `{}`, LLM `{}`; mass kept at K = {:.1} % per tensor.\n\n\
             | layer | module | ‖T‖₂ | ‖T‖/‖θ_llm‖ | mass kept | sign agreement |\n|---|---|---|---|---|---|\n",
            self.vlm.display(),
            self.llm.display(),
            self.density * 100.0
        );
        for t in &self.tensors {
            s += &format!(
                "| {} | {} | {:.4e} | {:.4} | {:.3} | {:.3} |\n",
                t.layer.map_or("–".to_string(), |l| l.to_string()),
                t.module,
                t.norm_t,
                t.relative,
                t.mass_kept,
                t.sign_agreement
            );
        }
        s
    }

    /// An SVG line chart of ‖T‖/‖θ_llm‖ over layers, one line per module.
    pub fn to_svg(&self) -> Result<String> {
        let mut modules: Vec<&str> = self
            .tensors
            .iter()
            .filter(|t| t.layer.is_some())
            .map(|t| t.module.as_str())
            .collect();
        modules.sort_unstable();
        modules.dedup();
        let layers = self
            .tensors
            .iter()
            .filter_map(|t| t.layer)
            .max()
            .map_or(1, |m| m + 1);
        let ymax = self
            .tensors
            .iter()
            .filter(|t| t.layer.is_some())
            .map(|t| t.relative)
            .fold(0.0, f64::max)
            .max(1e-12)
            * 1.1;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (900, 520)).into_drawing_area();
            let chart_err = |e: &dyn std::fmt::Display| MergeError::Chart(e.to_string());
            root.fill(&WHITE).map_err(|e| chart_err(&e))?;
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    "relative task-vector norm ‖θ_vlm − θ_llm‖ / ‖θ_llm‖ per layer",
                    ("sans-serif", 18),
                )
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..(layers.max(2) - 1) as f64, 0f64..ymax)
                .map_err(|e| chart_err(&e))?;
            chart
                .configure_mesh()
                .x_desc("layer")
                .y_desc("‖T‖ / ‖θ‖")
                .draw()
                .map_err(|e| chart_err(&e))?;
            for (i, m) in modules.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                let pts: Vec<(f64, f64)> = self
                    .tensors
                    .iter()
                    .filter(|t| t.module == *m)
                    .filter_map(|t| Some((t.layer? as f64, t.relative)))
                    .collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                    .map_err(|e| chart_err(&e))?
                    .label(*m)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
                chart
                    .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| chart_err(&e))?;
            }
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE.mix(0.8))
                .draw()
                .map_err(|e| chart_err(&e))?;
            root.present().map_err(|e| chart_err(&e))?;
        }
        Ok(svg)
    }

    /// Writes `analysis.md`, `analysis.csv`, `analysis.svg` and `analysis.json` into `dir` (each via a temporary
    /// file and a rename). Returns the paths.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|e| MergeError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
        let json = serde_json::to_string_pretty(self).expect("analysis serialises");
        let files = [
            ("analysis.md", self.to_markdown()),
            ("analysis.csv", self.to_csv()),
            ("analysis.svg", self.to_svg()?),
            ("analysis.json", json),
        ];
        let mut out = Vec::new();
        for (name, text) in files {
            let path = dir.join(name);
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, text).map_err(|e| MergeError::Io {
                path: tmp.clone(),
                source: e,
            })?;
            std::fs::rename(&tmp, &path).map_err(|e| MergeError::Io {
                path: path.clone(),
                source: e,
            })?;
            out.push(path);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_layer_and_module() {
        assert_eq!(
            locate("model.layers.12.self_attn.q_proj.weight"),
            (Some(12), "self_attn.q_proj".into())
        );
        assert_eq!(
            locate("model.layers.0.input_layernorm.weight"),
            (Some(0), "input_layernorm".into())
        );
        assert_eq!(locate("lm_head.weight"), (None, "lm_head".into()));
        assert_eq!(locate("model.embed_tokens.weight"), (None, "embed_tokens".into()));
    }
}
