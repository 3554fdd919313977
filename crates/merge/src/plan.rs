//! Runs a mergekit-style configuration: streams the reference model's tensors (the base model's, else the
//! first model's) one at a time — each model's copy decoded from its memory map, merged, written to the
//! current output shard — so peak memory is a few copies of the largest tensor plus one shard. Methods with a
//! global top-K first make two streaming passes for the thresholds.

use std::path::{Path, PathBuf};

use mmreason_checkpoint::{CheckpointWriter, Dtype, ModelDir, WriterOptions};
use serde::Serialize;
use serde_json::Value;

use crate::config::{MergeConfig, evaluate, layer_t};
use crate::error::{MergeError, Result};
use crate::methods::{GlobalParams, Method, ModelParams, TensorInputs};
use crate::progress::Progress;
use crate::select::{self, GlobalSelect, Threshold};
use crate::sparse_task_vector::{Direction, Scope, TopK};
use crate::sparsify::Rescale;
use crate::vlm::{copy_side_files, finite, finite_output};

/// Options for [`run_config`].
#[derive(Debug, Clone)]
pub struct ConfigMergeOptions {
    pub config: PathBuf,
    pub out: PathBuf,
    pub force: bool,
    pub allow_nonfinite: bool,
    pub max_shard_bytes: u64,
    pub show_progress: bool,
}

/// What a configured merge did.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigMergeReport {
    pub method: String,
    pub out: PathBuf,
    pub tensors: usize,
    pub seconds: f64,
    pub bytes_read: u64,
    pub shards: usize,
}

fn dtype_of(name: &str, path: &Path) -> Result<Dtype> {
    match name {
        "float32" | "fp32" | "f32" => Ok(Dtype::F32),
        "float16" | "fp16" | "f16" | "half" => Ok(Dtype::F16),
        "bfloat16" | "bf16" => Ok(Dtype::BF16),
        other => Err(MergeError::Config {
            path: path.to_path_buf(),
            message: format!("dtype `{other}` is not supported (float32, float16, bfloat16)"),
        }),
    }
}

/// Rounds values to `dtype` and back, so inputs are what mergekit's `dtype` cast would make them.
fn round_to(dtype: Dtype, values: &mut [f32]) {
    match dtype {
        Dtype::F16 => values
            .iter_mut()
            .for_each(|x| *x = half::f16::from_f32(*x).to_f32()),
        Dtype::BF16 => values
            .iter_mut()
            .for_each(|x| *x = half::bf16::from_f32(*x).to_f32()),
        _ => {}
    }
}

struct Resolved {
    method: Method,
    cfg: MergeConfig,
    path: PathBuf,
    models: Vec<ModelDir>,
    /// Index into `models` of the base model.
    base: Option<usize>,
    /// Indices of the models merged into the base, in config order (for `linear`, every model, the base too).
    others: Vec<usize>,
    num_layers: usize,
}

impl Resolved {
    fn global_value(&self, name: &str, tensor: &str, t: f64) -> Option<Value> {
        self.cfg.parameters.get(name).and_then(|v| evaluate(tensor, v, t))
    }

    fn model_value(&self, model: usize, name: &str, tensor: &str, t: f64) -> Option<Value> {
        let entry = self.cfg.models.iter().find(|m| {
            crate::config::resolve(self.path.parent().unwrap_or(Path::new(".")), &m.model)
                == self.models[model].root
        });
        entry
            .and_then(|e| e.parameters.get(name))
            .and_then(|v| evaluate(tensor, v, t))
            .or_else(|| self.global_value(name, tensor, t))
    }

    fn number(&self, v: Option<Value>, what: &str, default: Option<f64>) -> Result<f64> {
        match v {
            Some(v) => v
                .as_f64()
                .or_else(|| v.as_bool().map(|b| b as u8 as f64))
                .ok_or_else(|| MergeError::Config {
                    path: self.path.clone(),
                    message: format!("`{what}` must be a number, got {v}"),
                }),
            None => default.ok_or_else(|| MergeError::Config {
                path: self.path.clone(),
                message: format!("missing required parameter `{what}`"),
            }),
        }
    }

    fn params(&self, tensor: &str) -> Result<(GlobalParams, Vec<ModelParams>)> {
        let t = layer_t(tensor, self.num_layers);
        let (_, _, def_norm, def_rescale) = self.method.gta().unwrap_or((false, None, true, false));
        let flag = |name: &str, default: bool| -> Result<bool> {
            Ok(self.number(
                self.global_value(name, tensor, t),
                name,
                Some(default as u8 as f64),
            )? != 0.0)
        };
        let text = |name: &str| {
            self.global_value(name, tensor, t)
                .and_then(|v| v.as_str().map(str::to_string))
        };
        let rescale = match text("rescale_mode").as_deref() {
            Some("l1") => Rescale::L1,
            Some("inverse_probability") => Rescale::InverseProbability,
            Some("none") => Rescale::None,
            Some(other) => {
                return Err(MergeError::Param(format!(
                    "rescale_mode `{other}` (l1, inverse_probability, none)"
                )));
            }
            None if flag("rescale", def_rescale)? => Rescale::L1,
            None => Rescale::None,
        };
        let scope = match text("topk_scope").as_deref() {
            None | Some("per_tensor") => Scope::PerTensor,
            Some("global") => Scope::Global,
            Some(other) => {
                return Err(MergeError::Param(format!(
                    "topk_scope `{other}` (per_tensor, global)"
                )));
            }
        };
        let direction = match text("direction").as_deref() {
            None | Some("toward_model") => Direction::TowardLlm,
            Some("away_from_model") => Direction::AwayFromLlm,
            Some(other) => {
                return Err(MergeError::Param(format!(
                    "direction `{other}` (toward_model, away_from_model)"
                )));
            }
        };
        let g = GlobalParams {
            normalize: flag("normalize", def_norm)?,
            rescale,
            lambda: self.number(self.global_value("lambda", tensor, t), "lambda", Some(1.0))?,
            t: if self.method == Method::Slerp {
                self.number(self.global_value("t", tensor, t), "t", None)?
            } else {
                0.0
            },
            filter_wise: flag("filter_wise", false)?,
            seed: self.number(self.global_value("seed", tensor, t), "seed", Some(0.0))? as u64,
            scope,
            direction,
        };
        let needs_weight = !matches!(self.method, Method::Slerp | Method::ModelStock);
        let mut ps = Vec::with_capacity(self.others.len());
        for &m in &self.others {
            let get = |name: &str, default: Option<f64>| {
                self.number(self.model_value(m, name, tensor, t), name, default)
            };
            ps.push(ModelParams {
                weight: if needs_weight {
                    get("weight", None)?
                } else {
                    get("weight", Some(1.0))?
                },
                density: get("density", Some(1.0))?,
                gamma: get("gamma", Some(0.01))?,
                epsilon: get("epsilon", Some(0.15))?,
            });
        }
        self.check(tensor, &ps)?;
        Ok((g, ps))
    }

    /// Refuses values that would panic in a sparsifier or give a silently different merge: a density or γ
    /// outside [0, 1] (a negative one made Breadcrumbs slice past its tensor), a negative ε. (YAML's NaN and
    /// infinities reach here as no number at all, refused by [`Self::number`].)
    fn check(&self, tensor: &str, ps: &[ModelParams]) -> Result<()> {
        for (p, &m) in ps.iter().zip(&self.others) {
            let bad = |what: String| {
                Err(MergeError::Param(format!(
                    "tensor `{tensor}`, model {}: {what}",
                    self.models[m].root.display()
                )))
            };
            for (name, v) in [("density", p.density), ("gamma", p.gamma)] {
                if !(0.0..=1.0).contains(&v) {
                    return bad(format!("`{name}` = {v} is not in [0, 1]"));
                }
            }
            if p.epsilon < 0.0 {
                return bad(format!("`epsilon` = {} is negative", p.epsilon));
            }
        }
        Ok(())
    }
}

fn resolve_config(path: &Path) -> Result<Resolved> {
    let cfg = MergeConfig::from_file(path)?;
    let method = Method::from_name(&cfg.merge_method)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let paths = cfg.model_paths(dir);
    if paths.is_empty() {
        return Err(MergeError::Config {
            path: path.to_path_buf(),
            message: "no models listed".into(),
        });
    }
    let mut models = Vec::with_capacity(paths.len());
    for p in &paths {
        models.push(ModelDir::open(p)?);
    }
    let base = cfg.base_model.as_ref().map(|b| {
        let bp = crate::config::resolve(dir, b);
        paths
            .iter()
            .position(|p| *p == bp)
            .expect("model_paths always includes the base model")
    });
    if method.needs_base() && base.is_none() {
        return Err(MergeError::Config {
            path: path.to_path_buf(),
            message: format!("{} needs `base_model`", method.name()),
        });
    }
    // mergekit always gathers the base model's tensors too; `linear` averages every gathered tensor, so there the
    // base is one of the averaged models (its `weight` is then required: mergekit fails without one as well).
    let others: Vec<usize> = (0..models.len())
        .filter(|i| method == Method::Linear || Some(*i) != base)
        .collect();
    let reference = base.unwrap_or(0);
    let num_layers = models[reference].config.text().map_or(0, |t| t.num_hidden_layers);
    Ok(Resolved {
        method,
        cfg,
        path: path.to_path_buf(),
        models,
        base,
        others,
        num_layers,
    })
}

/// Loads one tensor of every model (reference shape checked, NaN/Inf refused unless allowed).
fn load_all(
    r: &Resolved,
    name: &str,
    shape: &[usize],
    compute: Option<Dtype>,
    allow_nonfinite: bool,
) -> Result<Vec<Vec<f32>>> {
    let reference = r.base.unwrap_or(0);
    r.models
        .iter()
        .map(|m| {
            let view = m.weights.try_get(name).ok_or_else(|| MergeError::MissingTensor {
                tensor: name.to_string(),
                model: m.root.clone(),
            })?;
            if view.shape() != shape {
                return Err(MergeError::ShapeMismatch {
                    tensor: name.to_string(),
                    model: m.root.clone(),
                    found: view.shape().to_vec(),
                    reference: r.models[reference].root.clone(),
                    expected: shape.to_vec(),
                });
            }
            let mut v = finite(&view, allow_nonfinite)?;
            if let Some(d) = compute {
                round_to(d, &mut v);
            }
            m.weights.release(name);
            Ok(v)
        })
        .collect()
}

/// Runs the merge a configuration file describes.
pub fn run_config(opts: &ConfigMergeOptions) -> Result<ConfigMergeReport> {
    let r = resolve_config(&opts.config)?;
    let compute = r.cfg.dtype.as_deref().map(|d| dtype_of(d, &r.path)).transpose()?;
    let out_dtype = r
        .cfg
        .out_dtype
        .as_deref()
        .map(|d| dtype_of(d, &r.path))
        .transpose()?
        .or(compute);
    let reference = &r.models[r.base.unwrap_or(0)];
    let mut names: Vec<(String, Vec<usize>, Dtype)> = reference
        .weights
        .tensors()
        .map(|t| (t.name().to_string(), t.shape().to_vec(), t.dtype()))
        .collect();
    if names.is_empty() {
        return Err(MergeError::Config {
            path: r.path.clone(),
            message: format!(
                "the reference model {} holds no tensors",
                reference.root.display()
            ),
        });
    }
    // mergekit runs its tensor tasks in ascending name order and random methods draw from one stream in that
    // order; doing the same makes a seeded DARE/DELLA run equal `mergekit-yaml --random-seed`.
    if r.method.is_random() {
        names.sort_by(|a, b| a.0.cmp(&b.0));
    }

    // Global top-K (sparse_task_vector / ties with topk_scope: global): per-model thresholds in two passes.
    let (g0, p0) = r.params(&names[0].0)?;
    let global_scope =
        g0.scope == Scope::Global && matches!(r.method, Method::Ties | Method::SparseTaskVector);
    let mut thresholds: Option<Vec<(Threshold, u64)>> = None;
    if global_scope && g0.rescale == Rescale::L1 {
        // mergekit's L1 rescaling restores each tensor's norm; under one model-wide threshold a tensor that
        // keeps a few large entries would be scaled up many times over.
        return Err(MergeError::Param(
            "rescale_mode l1 rescales per tensor and does not go with topk_scope global (inverse_probability or \
             none do)"
                .into(),
        ));
    }
    if global_scope {
        // One threshold over the whole model: a density that varies by tensor (a gradient, a filter) has no
        // meaning there, and taking the first tensor's would be silent.
        for (name, _, _) in &names[1..] {
            let (_, p) = r.params(name)?;
            if let Some((k, (a, b))) = p
                .iter()
                .zip(&p0)
                .enumerate()
                .find(|(_, (a, b))| a.density != b.density)
            {
                return Err(MergeError::Param(format!(
                    "tensor `{name}`: topk_scope global keeps one share of the whole model, but {}'s density is {} \
                     here and {} at `{}`",
                    r.models[r.others[k]].root.display(),
                    a.density,
                    b.density,
                    names[0].0
                )));
            }
        }
        let base = r.base.expect("ties and sparse_task_vector need a base");
        let total: u64 = names
            .iter()
            .map(|(_, s, _)| s.iter().product::<usize>() as u64)
            .sum();
        let mut sel: Vec<GlobalSelect> = p0
            .iter()
            .map(|p| GlobalSelect::new(select::k_of(TopK::Density(p.density), total)))
            .collect();
        let mut bar = Progress::new("threshold", names.len() as u64 * 2, opts.show_progress);
        for pass in 0..2 {
            if pass == 1
                && sel
                    .iter_mut()
                    .map(|s| s.refine_bin().is_some())
                    .filter(|x| *x)
                    .count()
                    == 0
            {
                break;
            }
            for (name, shape, _) in &names {
                let all = load_all(&r, name, shape, compute, opts.allow_nonfinite)?;
                for (k, &m) in r.others.iter().enumerate() {
                    let keys: Vec<u32> = all[m]
                        .iter()
                        .zip(&all[base])
                        .map(|(x, b)| select::key(*x as f64 - *b as f64))
                        .collect();
                    if pass == 0 {
                        sel[k].coarse(&keys)
                    } else {
                        sel[k].fine(&keys)
                    }
                }
                bar.tick(0);
            }
        }
        bar.finish();
        thresholds = Some(sel.iter().map(|s| (s.threshold(), 0)).collect());
    }

    let wopts = WriterOptions {
        max_shard_bytes: opts.max_shard_bytes,
        force: opts.force,
        protected: r.models.iter().map(|m| m.root.clone()).collect(),
        ..WriterOptions::default()
    };
    let mut writer = CheckpointWriter::create(&opts.out, wopts)?;
    let mut rng = crate::mt19937::Mt19937::new(g0.seed as u32);
    let mut bar = Progress::new(r.method.name(), names.len() as u64, opts.show_progress);
    for (name, shape, dtype) in &names {
        let all = load_all(&r, name, shape, compute, opts.allow_nonfinite)?;
        let (g, ps) = r.params(name)?;
        let inputs = TensorInputs {
            name,
            shape,
            base: r.base.map(|b| all[b].as_slice()),
            models: r
                .others
                .iter()
                .zip(ps)
                .map(|(&m, p)| (all[m].as_slice(), p))
                .collect(),
        };
        let out = r.method.merge(&inputs, &g, thresholds.as_deref_mut(), &mut rng)?;
        let read: u64 = all.iter().map(|v| v.len() as u64 * dtype.size() as u64).sum();
        finite_output(name, out_dtype.unwrap_or(*dtype), &out, opts.allow_nonfinite)?;
        writer.add_f32(name, out_dtype.unwrap_or(*dtype), shape, &out)?;
        bar.tick(read);
    }
    copy_side_files(&reference.root, &mut writer)?;
    if let Some(d) = out_dtype {
        // Say the new dtype in config.json, as mergekit does.
        let mut cfg = reference.config_raw.clone();
        let torch = match d {
            Dtype::F16 => "float16",
            Dtype::BF16 => "bfloat16",
            _ => "float32",
        };
        for key in ["torch_dtype", "dtype"] {
            if cfg.get(key).is_some() || key == "torch_dtype" {
                cfg[key] = Value::from(torch);
            }
        }
        let text = serde_json::to_string_pretty(&cfg).expect("config JSON re-serialises");
        writer.add_file("config.json", text.as_bytes())?;
    }
    let summary = writer.finish()?;
    let (seconds, bytes_read) = bar.finish();
    Ok(ConfigMergeReport {
        method: r.method.name().to_string(),
        out: summary.dir,
        tensors: names.len(),
        seconds,
        bytes_read,
        shards: summary.shard_files.len(),
    })
}
