//! Typed views of the Hub's own `config.json` files. Fields a checkpoint omits take the defaults of the
//! corresponding transformers 4.x config class (`LlamaConfig`, `MistralConfig`, `CLIPVisionConfig`,
//! `LlavaConfig`, `LlavaNextConfig`) — llava-hf checkpoints rely on that, e.g. their `text_config` lists only
//! the fields that differ from `LlamaConfig()`.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{CheckpointError, Result};

/// `rope_scaling` as transformers writes it (`{"type": "linear", "factor": 2.0}`; newer files say `rope_type`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RopeScaling {
    #[serde(alias = "type")]
    pub rope_type: String,
    #[serde(default = "one")]
    pub factor: f64,
}

fn one() -> f64 {
    1.0
}

/// A token id field that may hold one id or a list (`eos_token_id` does both on the Hub).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(i) => vec![*i],
            TokenIds::Many(v) => v.clone(),
        }
    }
}

/// Which decoder family a [`DecoderConfig`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderKind {
    Llama,
    Mistral,
}

/// Configuration of a Llama- or Mistral-architecture decoder (Vicuna, Mistral-Instruct, LLaVA's text model).
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    pub kind: DecoderKind,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    /// Per-head size; transformers derives it as hidden_size / heads when the file has no `head_dim`.
    pub head_dim: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    /// Mistral's sliding-window attention span; `None` is full causal attention.
    pub sliding_window: Option<usize>,
    pub tie_word_embeddings: bool,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<TokenIds>,
    pub pad_token_id: Option<u32>,
    pub torch_dtype: Option<String>,
}

/// The fields as they may appear in a file, all optional; [`DecoderConfig::resolve`] fills in defaults.
#[derive(Debug, Default, Deserialize)]
struct RawDecoder {
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    hidden_act: Option<String>,
    max_position_embeddings: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    #[serde(default)]
    rope_scaling: Option<RopeScaling>,
    /// `null` in a file means "no sliding window", so keep the difference between absent and null.
    #[serde(default, deserialize_with = "present")]
    sliding_window: Option<Option<usize>>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<TokenIds>,
    pad_token_id: Option<u32>,
    /// transformers ≥ 4.56 writes `dtype`, older versions `torch_dtype`.
    #[serde(alias = "dtype")]
    torch_dtype: Option<String>,
}

fn present<'de, D, T>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl DecoderConfig {
    /// transformers' `LlamaConfig()` defaults (Llama-2-7B shapes, MHA, rope_theta 1e4).
    pub fn llama_defaults() -> Self {
        Self {
            kind: DecoderKind::Llama,
            vocab_size: 32000,
            hidden_size: 4096,
            intermediate_size: 11008,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: 32,
            head_dim: 128,
            hidden_act: "silu".into(),
            max_position_embeddings: 2048,
            rms_norm_eps: 1e-6,
            rope_theta: 10000.0,
            rope_scaling: None,
            sliding_window: None,
            tie_word_embeddings: false,
            attention_bias: false,
            mlp_bias: false,
            bos_token_id: Some(1),
            eos_token_id: Some(TokenIds::One(2)),
            pad_token_id: None,
            torch_dtype: None,
        }
    }

    /// transformers' `MistralConfig()` defaults (Mistral-7B shapes, GQA 32/8, sliding window 4096).
    pub fn mistral_defaults() -> Self {
        Self {
            kind: DecoderKind::Mistral,
            intermediate_size: 14336,
            num_key_value_heads: 8,
            max_position_embeddings: 4096 * 32,
            sliding_window: Some(4096),
            ..Self::llama_defaults()
        }
    }

    /// Vicuna-7B-v1.5 as published (Llama-2-7B shapes, 4096 context, rms eps 1e-5).
    pub fn vicuna_7b_v1_5() -> Self {
        Self {
            max_position_embeddings: 4096,
            rms_norm_eps: 1e-5,
            pad_token_id: Some(0),
            ..Self::llama_defaults()
        }
    }

    /// Mistral-7B-Instruct-v0.2 as published (rope_theta 1e6, no sliding window, 32k context).
    pub fn mistral_7b_instruct_v0_2() -> Self {
        Self {
            max_position_embeddings: 32768,
            rms_norm_eps: 1e-5,
            rope_theta: 1e6,
            sliding_window: None,
            ..Self::mistral_defaults()
        }
    }

    /// Reads a decoder config from JSON; `kind` picks the defaults for absent fields.
    pub fn from_value(kind: DecoderKind, value: &Value) -> std::result::Result<Self, String> {
        let raw: RawDecoder = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        let d = match kind {
            DecoderKind::Llama => Self::llama_defaults(),
            DecoderKind::Mistral => Self::mistral_defaults(),
        };
        let hidden_size = raw.hidden_size.unwrap_or(d.hidden_size);
        let heads = raw.num_attention_heads.unwrap_or(d.num_attention_heads);
        if heads == 0 || hidden_size == 0 {
            return Err("hidden_size and num_attention_heads must be positive".into());
        }
        // LlamaConfig: num_key_value_heads defaults to num_attention_heads; MistralConfig: to 8.
        let kv = raw.num_key_value_heads.unwrap_or(match kind {
            DecoderKind::Llama => heads,
            DecoderKind::Mistral => d.num_key_value_heads,
        });
        if kv == 0 || !heads.is_multiple_of(kv) {
            return Err(format!(
                "num_attention_heads ({heads}) is not a multiple of num_key_value_heads ({kv})"
            ));
        }
        let head_dim = raw.head_dim.unwrap_or(hidden_size / heads);
        Ok(Self {
            kind,
            vocab_size: raw.vocab_size.unwrap_or(d.vocab_size),
            hidden_size,
            intermediate_size: raw.intermediate_size.unwrap_or(d.intermediate_size),
            num_hidden_layers: raw.num_hidden_layers.unwrap_or(d.num_hidden_layers),
            num_attention_heads: heads,
            num_key_value_heads: kv,
            head_dim,
            hidden_act: raw.hidden_act.unwrap_or(d.hidden_act),
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(d.max_position_embeddings),
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(d.rms_norm_eps),
            rope_theta: raw.rope_theta.unwrap_or(d.rope_theta),
            rope_scaling: raw.rope_scaling,
            sliding_window: match raw.sliding_window {
                Some(v) => v,
                None => d.sliding_window,
            },
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(d.tie_word_embeddings),
            attention_bias: raw.attention_bias.unwrap_or(false),
            mlp_bias: raw.mlp_bias.unwrap_or(false),
            bos_token_id: raw.bos_token_id.or(d.bos_token_id),
            eos_token_id: raw.eos_token_id.or(d.eos_token_id),
            pad_token_id: raw.pad_token_id,
            torch_dtype: raw.torch_dtype,
        })
    }
}

/// Configuration of a CLIP vision tower (`CLIPVisionConfig`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipVisionConfig {
    #[serde(default = "clip::hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "clip::intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default = "clip::projection_dim")]
    pub projection_dim: usize,
    #[serde(default = "clip::num_hidden_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "clip::num_attention_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "clip::num_channels")]
    pub num_channels: usize,
    #[serde(default = "clip::image_size")]
    pub image_size: usize,
    #[serde(default = "clip::patch_size")]
    pub patch_size: usize,
    #[serde(default = "clip::hidden_act")]
    pub hidden_act: String,
    #[serde(default = "clip::layer_norm_eps")]
    pub layer_norm_eps: f64,
}

mod clip {
    pub fn hidden_size() -> usize {
        768
    }
    pub fn intermediate_size() -> usize {
        3072
    }
    pub fn projection_dim() -> usize {
        512
    }
    pub fn num_hidden_layers() -> usize {
        12
    }
    pub fn num_attention_heads() -> usize {
        12
    }
    pub fn num_channels() -> usize {
        3
    }
    pub fn image_size() -> usize {
        224
    }
    pub fn patch_size() -> usize {
        32
    }
    pub fn hidden_act() -> String {
        "quick_gelu".into()
    }
    pub fn layer_norm_eps() -> f64 {
        1e-5
    }
}

impl ClipVisionConfig {
    /// OpenAI CLIP ViT-L/14 at 336 px — what `LlavaConfig` assumes when `vision_config` is absent.
    pub fn vit_l_14_336() -> Self {
        Self {
            hidden_size: 1024,
            intermediate_size: 4096,
            projection_dim: 768,
            num_hidden_layers: 24,
            num_attention_heads: 16,
            num_channels: 3,
            image_size: 336,
            patch_size: 14,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
        }
    }

    /// Patches per side of the (square) input.
    pub fn patches_per_side(&self) -> usize {
        self.image_size / self.patch_size
    }
}

/// How LLaVA picks vision features (`vision_feature_select_strategy`): `default` drops the CLS token, `full`
/// keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureSelect {
    Default,
    Full,
}

/// `LlavaConfig` / `LlavaNextConfig` (llava-hf layout). `image_grid_pinpoints` and `image_newline` only matter
/// for NeXT.
#[derive(Debug, Clone, PartialEq)]
pub struct LlavaConfig {
    pub text: DecoderConfig,
    pub vision: ClipVisionConfig,
    pub image_token_index: u32,
    pub projector_hidden_act: String,
    pub multimodal_projector_bias: bool,
    pub vision_feature_layer: i64,
    pub vision_feature_select_strategy: FeatureSelect,
    /// (height, width) pairs, as transformers reads them.
    pub image_grid_pinpoints: Vec<[usize; 2]>,
    pub image_seq_length: usize,
    pub tie_word_embeddings: bool,
}

#[derive(Debug, Deserialize)]
struct RawLlava {
    text_config: Option<Value>,
    vision_config: Option<Value>,
    #[serde(default = "llava::image_token_index")]
    image_token_index: u32,
    #[serde(default = "llava::gelu")]
    projector_hidden_act: String,
    #[serde(default = "llava::yes")]
    multimodal_projector_bias: bool,
    #[serde(default = "llava::feature_layer")]
    vision_feature_layer: i64,
    #[serde(default = "llava::select")]
    vision_feature_select_strategy: FeatureSelect,
    image_grid_pinpoints: Option<Vec<[usize; 2]>>,
    #[serde(default = "llava::seq_len")]
    image_seq_length: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
}

mod llava {
    use super::FeatureSelect;
    pub fn image_token_index() -> u32 {
        32000
    }
    pub fn gelu() -> String {
        "gelu".into()
    }
    pub fn yes() -> bool {
        true
    }
    pub fn feature_layer() -> i64 {
        -2
    }
    pub fn select() -> FeatureSelect {
        FeatureSelect::Default
    }
    pub fn seq_len() -> usize {
        576
    }
    /// `LlavaNextConfig`'s default pinpoints.
    pub fn pinpoints() -> Vec<[usize; 2]> {
        vec![[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
    }
}

/// The configuration of an original (liuhaotian) LLaVA checkpoint: a flat decoder config plus `mm_*` keys; its
/// vision tower is named by `mm_vision_tower`, not described.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginalLlavaConfig {
    pub text: DecoderConfig,
    pub mm_vision_tower: Option<String>,
    pub mm_projector_type: String,
    pub mm_hidden_size: Option<usize>,
    pub mm_vision_select_layer: i64,
    /// `patch` (drop CLS) or `cls_patch`.
    pub mm_vision_select_feature: String,
    /// `pad` (LLaVA-1.5) or `anyres` (1.6).
    pub image_aspect_ratio: Option<String>,
    pub image_grid_pinpoints: Option<Vec<[usize; 2]>>,
    pub mm_patch_merge_type: Option<String>,
}

/// A parsed `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    Llama(DecoderConfig),
    Mistral(DecoderConfig),
    ClipVision(ClipVisionConfig),
    Llava(LlavaConfig),
    LlavaNext(LlavaConfig),
    LlavaOriginal(OriginalLlavaConfig),
}

/// `model_type` values this crate understands.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &[
    "llama",
    "mistral",
    "clip_vision_model",
    "clip",
    "llava",
    "llava_next",
    "llava_llama",
    "llava_mistral",
];

impl ModelConfig {
    /// Reads `config.json` (or any file of that format) from disk.
    pub fn from_file(path: impl AsRef<Path>) -> Result<(Self, Value)> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| CheckpointError::io(path, e))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| CheckpointError::Config {
            path: path.to_path_buf(),
            message: format!("not valid JSON: {e}"),
        })?;
        Ok((Self::from_value(path, &value)?, value))
    }

    /// Interprets a parsed `config.json`; `path` only labels errors.
    pub fn from_value(path: &Path, value: &Value) -> Result<Self> {
        let cfg_err = |message: String| CheckpointError::Config {
            path: path.to_path_buf(),
            message,
        };
        let model_type = value
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| cfg_err("missing string field `model_type`".into()))?;
        let is_original = value.get("mm_vision_tower").is_some() || value.get("mm_projector_type").is_some();
        match model_type {
            "llama" => Ok(ModelConfig::Llama(
                DecoderConfig::from_value(DecoderKind::Llama, value).map_err(cfg_err)?,
            )),
            "mistral" => Ok(ModelConfig::Mistral(
                DecoderConfig::from_value(DecoderKind::Mistral, value).map_err(cfg_err)?,
            )),
            "clip_vision_model" => Ok(ModelConfig::ClipVision(
                serde_json::from_value(value.clone()).map_err(|e| cfg_err(e.to_string()))?,
            )),
            "clip" => {
                let vision = value.get("vision_config").cloned().unwrap_or(Value::Null);
                let vision = if vision.is_null() {
                    serde_json::json!({})
                } else {
                    vision
                };
                Ok(ModelConfig::ClipVision(
                    serde_json::from_value(vision).map_err(|e| cfg_err(format!("vision_config: {e}")))?,
                ))
            }
            "llava_llama" | "llava_mistral" => Self::original(path, value, model_type),
            "llava" if is_original => Self::original(path, value, model_type),
            "llava" => Ok(ModelConfig::Llava(Self::llava(path, value, false)?)),
            "llava_next" => Ok(ModelConfig::LlavaNext(Self::llava(path, value, true)?)),
            other => Err(CheckpointError::UnknownModelType {
                path: path.to_path_buf(),
                model_type: other.to_string(),
                supported: SUPPORTED_MODEL_TYPES.join(", "),
            }),
        }
    }

    fn llava(path: &Path, value: &Value, next: bool) -> Result<LlavaConfig> {
        let cfg_err = |message: String| CheckpointError::Config {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawLlava = serde_json::from_value(value.clone()).map_err(|e| cfg_err(e.to_string()))?;
        let text_value = raw.text_config.unwrap_or(Value::Null);
        let text = if text_value.is_null() {
            DecoderConfig::llama_defaults()
        } else {
            // LlavaConfig: a text_config without model_type is a Llama config.
            let kind = match text_value.get("model_type").and_then(Value::as_str) {
                None | Some("llama") => DecoderKind::Llama,
                Some("mistral") => DecoderKind::Mistral,
                Some(other) => {
                    return Err(cfg_err(format!(
                        "text_config.model_type `{other}` is not supported (llama, mistral)"
                    )));
                }
            };
            DecoderConfig::from_value(kind, &text_value).map_err(|e| cfg_err(format!("text_config: {e}")))?
        };
        let vision = match raw.vision_config {
            None | Some(Value::Null) => ClipVisionConfig::vit_l_14_336(),
            Some(v) => {
                let kind = v
                    .get("model_type")
                    .and_then(Value::as_str)
                    .unwrap_or("clip_vision_model");
                if kind != "clip_vision_model" {
                    return Err(cfg_err(format!(
                        "vision_config.model_type `{kind}` is not supported (clip_vision_model)"
                    )));
                }
                serde_json::from_value(v).map_err(|e| cfg_err(format!("vision_config: {e}")))?
            }
        };
        let image_grid_pinpoints = match raw.image_grid_pinpoints {
            Some(p) => p,
            None if next => llava::pinpoints(),
            None => Vec::new(),
        };
        Ok(LlavaConfig {
            text,
            vision,
            image_token_index: raw.image_token_index,
            projector_hidden_act: raw.projector_hidden_act,
            multimodal_projector_bias: raw.multimodal_projector_bias,
            vision_feature_layer: raw.vision_feature_layer,
            vision_feature_select_strategy: raw.vision_feature_select_strategy,
            image_grid_pinpoints,
            image_seq_length: raw.image_seq_length,
            tie_word_embeddings: raw.tie_word_embeddings,
        })
    }

    fn original(path: &Path, value: &Value, model_type: &str) -> Result<Self> {
        let cfg_err = |message: String| CheckpointError::Config {
            path: path.to_path_buf(),
            message,
        };
        let arch_mistral = value
            .get("architectures")
            .and_then(Value::as_array)
            .is_some_and(|a| {
                a.iter()
                    .any(|x| x.as_str().is_some_and(|s| s.contains("Mistral")))
            });
        let kind = if model_type == "llava_mistral" || arch_mistral {
            DecoderKind::Mistral
        } else {
            DecoderKind::Llama
        };
        let text = DecoderConfig::from_value(kind, value).map_err(cfg_err)?;
        let s = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
        let pinpoints = match value.get("image_grid_pinpoints") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                serde_json::from_value(v.clone())
                    .map_err(|e| cfg_err(format!("image_grid_pinpoints: {e}")))?,
            ),
        };
        Ok(ModelConfig::LlavaOriginal(OriginalLlavaConfig {
            text,
            mm_vision_tower: s("mm_vision_tower"),
            mm_projector_type: s("mm_projector_type").unwrap_or_else(|| "linear".into()),
            mm_hidden_size: value
                .get("mm_hidden_size")
                .and_then(Value::as_u64)
                .map(|v| v as usize),
            mm_vision_select_layer: value
                .get("mm_vision_select_layer")
                .and_then(Value::as_i64)
                .unwrap_or(-1),
            mm_vision_select_feature: s("mm_vision_select_feature").unwrap_or_else(|| "patch".into()),
            image_aspect_ratio: s("image_aspect_ratio"),
            image_grid_pinpoints: pinpoints,
            mm_patch_merge_type: s("mm_patch_merge_type"),
        }))
    }

    /// The language model's configuration, for every kind that has one.
    pub fn text(&self) -> Option<&DecoderConfig> {
        match self {
            ModelConfig::Llama(c) | ModelConfig::Mistral(c) => Some(c),
            ModelConfig::Llava(c) | ModelConfig::LlavaNext(c) => Some(&c.text),
            ModelConfig::LlavaOriginal(c) => Some(&c.text),
            ModelConfig::ClipVision(_) => None,
        }
    }

    /// Whether this is a vision-language model.
    pub fn is_vlm(&self) -> bool {
        matches!(
            self,
            ModelConfig::Llava(_) | ModelConfig::LlavaNext(_) | ModelConfig::LlavaOriginal(_)
        )
    }

    /// A short name for reports.
    pub fn kind_name(&self) -> &'static str {
        match self {
            ModelConfig::Llama(_) => "llama",
            ModelConfig::Mistral(_) => "mistral",
            ModelConfig::ClipVision(_) => "clip_vision_model",
            ModelConfig::Llava(_) => "llava",
            ModelConfig::LlavaNext(_) => "llava_next",
            ModelConfig::LlavaOriginal(_) => "llava (original liuhaotian layout)",
        }
    }
}

/// `generation_config.json`: what generation defaults the checkpoint ships.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct GenerationConfig {
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<TokenIds>,
    pub pad_token_id: Option<u32>,
    pub max_length: Option<usize>,
    pub max_new_tokens: Option<usize>,
    pub do_sample: Option<bool>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<ModelConfig> {
        ModelConfig::from_value(Path::new("config.json"), &v)
    }

    #[test]
    fn llava_hf_text_config_takes_llama_defaults() {
        // Abridged from llava-hf/llava-1.5-7b-hf: only fields differing from LlamaConfig() are present.
        let c = parse(json!({
            "model_type": "llava", "image_token_index": 32000, "projector_hidden_act": "gelu",
            "text_config": {"model_type": "llama", "vocab_size": 32064, "rms_norm_eps": 1e-5,
                            "max_position_embeddings": 4096},
            "vision_config": {"model_type": "clip_vision_model", "hidden_size": 1024, "image_size": 336,
                              "intermediate_size": 4096, "num_attention_heads": 16, "num_hidden_layers": 24,
                              "patch_size": 14, "projection_dim": 768},
            "vision_feature_layer": -2, "vision_feature_select_strategy": "default"
        }))
        .unwrap();
        let ModelConfig::Llava(c) = c else {
            panic!("not llava")
        };
        assert_eq!(c.text.vocab_size, 32064);
        assert_eq!(c.text.hidden_size, 4096);
        assert_eq!(c.text.num_key_value_heads, 32);
        assert_eq!(c.text.rope_theta, 10000.0);
        assert_eq!(c.vision, ClipVisionConfig::vit_l_14_336());
        assert_eq!(c.vision.patches_per_side(), 24);
    }

    #[test]
    fn mistral_sliding_window_null_differs_from_absent() {
        let absent = parse(json!({"model_type": "mistral"})).unwrap();
        assert_eq!(absent.text().unwrap().sliding_window, Some(4096));
        let null =
            parse(json!({"model_type": "mistral", "sliding_window": null, "rope_theta": 1e6})).unwrap();
        let t = null.text().unwrap();
        assert_eq!(t.sliding_window, None);
        assert_eq!(t.num_key_value_heads, 8);
        assert_eq!(
            t,
            &DecoderConfig {
                rms_norm_eps: 1e-6,
                max_position_embeddings: 131072,
                ..DecoderConfig::mistral_7b_instruct_v0_2()
            }
        );
    }

    #[test]
    fn llava_next_defaults_and_original_layout() {
        let c = parse(json!({"model_type": "llava_next", "text_config": {"model_type": "mistral"}})).unwrap();
        let ModelConfig::LlavaNext(n) = c else { panic!() };
        assert_eq!(n.image_grid_pinpoints.len(), 5);
        assert_eq!(n.text.kind, DecoderKind::Mistral);
        let o = parse(
            json!({"model_type": "llava_mistral", "mm_projector_type": "mlp2x_gelu",
                             "mm_vision_select_layer": -2, "image_aspect_ratio": "anyres",
                             "image_grid_pinpoints": [[336, 672]], "rope_theta": 1e6}),
        )
        .unwrap();
        let ModelConfig::LlavaOriginal(o) = o else {
            panic!()
        };
        assert_eq!(o.text.kind, DecoderKind::Mistral);
        assert_eq!(o.mm_vision_select_layer, -2);
        assert_eq!(o.image_grid_pinpoints, Some(vec![[336, 672]]));
    }

    #[test]
    fn errors_name_the_problem() {
        let e = parse(json!({"model_type": "gpt2"})).unwrap_err();
        assert!(
            e.to_string().contains("gpt2") && e.to_string().contains("llama"),
            "{e}"
        );
        let e = parse(json!({"hidden_size": 4})).unwrap_err();
        assert!(e.to_string().contains("model_type"), "{e}");
        let e = parse(json!({"model_type": "llama", "num_attention_heads": 6, "num_key_value_heads": 4}))
            .unwrap_err();
        assert!(e.to_string().contains("multiple"), "{e}");
        let e = parse(json!({"model_type": "llama", "hidden_size": "big"})).unwrap_err();
        assert!(
            e.to_string().contains("hidden_size") || e.to_string().contains("invalid type"),
            "{e}"
        );
        let e = parse(json!({"model_type": "llava", "text_config": {"model_type": "gpt2"}})).unwrap_err();
        assert!(e.to_string().contains("text_config"), "{e}");
    }
}
