//! mergekit's YAML configuration (`merge_method`, `base_model`, `models[].model`, `models[].parameters`,
//! `parameters`, `dtype`, `out_dtype`) for the methods we implement, with mergekit's parameter evaluation:
//! a value is a scalar, a gradient (a list of numbers interpolated over the layers, t = layer / (layers − 1),
//! t = 0 outside the layers), or a list of `{filter, value}` where the first filter contained in the tensor
//! name (or no filter, or `*`) applies. Model parameters fall back to the global `parameters`.
//!
//! Our own keys, in `parameters` (mergekit has no equivalent): `seed` (DARE/DELLA), `topk_scope`
//! (`per_tensor` | `global`, for `ties` and `sparse_task_vector`), `direction` (`toward_model` |
//! `away_from_model`, for `sparse_task_vector`), `rescale_mode` (`l1` as mergekit, `inverse_probability` as the
//! DARE/DELLA papers, `none`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{MergeError, Result};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub model: String,
    #[serde(default)]
    pub parameters: BTreeMap<String, Value>,
}

/// A mergekit merge configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct MergeConfig {
    pub merge_method: String,
    #[serde(default)]
    pub base_model: Option<String>,
    #[serde(default)]
    pub models: Vec<ModelEntry>,
    #[serde(default)]
    pub parameters: BTreeMap<String, Value>,
    #[serde(default)]
    pub dtype: Option<String>,
    #[serde(default)]
    pub out_dtype: Option<String>,
    /// Accepted for compatibility; the tokenizer always comes from the base (or first) model.
    #[serde(default)]
    pub tokenizer_source: Option<Value>,
    #[serde(default)]
    pub slices: Option<Value>,
}

impl MergeConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| MergeError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let cfg: MergeConfig = serde_norway::from_str(&text).map_err(|e| MergeError::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if cfg.slices.is_some() {
            return Err(MergeError::Config {
                path: path.to_path_buf(),
                message: "`slices` (layer-range merges) are not supported; list whole models under `models`"
                    .into(),
            });
        }
        Ok(cfg)
    }

    /// Model paths in config order, with `base_model` appended if it is not listed (as mergekit does).
    pub fn model_paths(&self, config_dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<String> = self.models.iter().map(|m| m.model.clone()).collect();
        if let Some(b) = &self.base_model
            && !v.contains(b)
        {
            v.push(b.clone());
        }
        v.iter().map(|m| resolve(config_dir, m)).collect()
    }
}

/// Relative model paths are taken relative to the config file's directory.
pub fn resolve(config_dir: &Path, model: &str) -> PathBuf {
    let p = Path::new(model);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        config_dir.join(p)
    }
}

/// mergekit's `evaluate_setting`.
pub fn evaluate(tensor: &str, setting: &Value, t: f64) -> Option<Value> {
    match setting {
        Value::Array(items) if items.iter().all(Value::is_number) && !items.is_empty() => {
            let v: Vec<f64> = items.iter().filter_map(Value::as_f64).collect();
            let scaled = t * (v.len() - 1) as f64;
            let i0 = scaled as usize;
            let i1 = (i0 + 1).min(v.len() - 1);
            let frac = scaled - i0 as f64;
            Some(Value::from((1.0 - frac) * v[i0] + frac * v[i1]))
        }
        Value::Array(items) if items.iter().all(|e| !e.is_object() && !e.is_array()) && !items.is_empty() => {
            Some(items[(t * (items.len() - 1) as f64) as usize].clone())
        }
        Value::Array(conds) => {
            for c in conds {
                let filter = c.get("filter").and_then(Value::as_str);
                if filter.is_none_or(|f| f == "*" || tensor.contains(f)) {
                    return c.get("value").and_then(|v| evaluate(tensor, v, t));
                }
            }
            None
        }
        other => Some(other.clone()),
    }
}

/// mergekit's gradient position of a tensor: layer i of L → i / (L − 1) (1 when L = 1); 0 outside layers.
pub fn layer_t(tensor: &str, num_layers: usize) -> f64 {
    let Some(rest) = tensor.split(".layers.").nth(1) else {
        return 0.0;
    };
    let Some(idx) = rest.split('.').next().and_then(|s| s.parse::<usize>().ok()) else {
        return 0.0;
    };
    if num_layers > 1 {
        idx as f64 / (num_layers - 1) as f64
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_evaluate_like_mergekit() {
        assert_eq!(evaluate("x", &json!(0.3), 0.7), Some(json!(0.3)));
        let g = json!([0.0, 1.0, 0.5]);
        assert_eq!(evaluate("x", &g, 0.25), Some(json!(0.5)));
        assert_eq!(evaluate("x", &g, 1.0), Some(json!(0.5)));
        let f = json!([{"filter": "self_attn", "value": [0.0, 1.0]}, {"filter": "mlp", "value": 0.2}, {"value": 0.9}]);
        assert_eq!(
            evaluate("model.layers.1.self_attn.q_proj.weight", &f, 0.5),
            Some(json!(0.5))
        );
        assert_eq!(
            evaluate("model.layers.1.mlp.up_proj.weight", &f, 0.5),
            Some(json!(0.2))
        );
        assert_eq!(evaluate("model.norm.weight", &f, 0.0), Some(json!(0.9)));
        assert_eq!(layer_t("model.layers.2.mlp.up_proj.weight", 5), 0.5);
        assert_eq!(layer_t("model.embed_tokens.weight", 5), 0.0);
    }

    #[test]
    fn parses_a_mergekit_config() {
        let y = "merge_method: ties\nbase_model: base\nmodels:\n  - model: a\n    parameters: {weight: 0.5, density: 0.3}\n  - model: base\nparameters:\n  normalize: true\n  int8_mask: true\ndtype: float32\n";
        let c: MergeConfig = serde_norway::from_str(y).unwrap();
        assert_eq!(
            c.model_paths(Path::new("/c")),
            vec![PathBuf::from("/c/a"), PathBuf::from("/c/base")]
        );
        assert_eq!(c.models[0].parameters["density"], json!(0.3));
    }
}
