//! A Hugging Face model directory as a whole: config, generation config, tokenizer files and weights.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::config::{GenerationConfig, ModelConfig};
use crate::error::{CheckpointError, Result};
use crate::layout::{LlavaLayout, LlavaPart, is_vocab_tensor, part_of, vlm_to_llm_name};
use crate::weights::Weights;

/// Tokenizer-related files present in a model directory (the tokenizer itself is loaded by the model crate).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TokenizerFiles {
    pub tokenizer_json: Option<PathBuf>,
    pub tokenizer_config: Option<PathBuf>,
    pub tokenizer_model: Option<PathBuf>,
    pub special_tokens_map: Option<PathBuf>,
    /// `chat_template.jinja` or `chat_template.json` (newer transformers keep the template outside
    /// tokenizer_config.json).
    pub chat_template: Option<PathBuf>,
    pub preprocessor_config: Option<PathBuf>,
    pub processor_config: Option<PathBuf>,
}

impl TokenizerFiles {
    /// Finds the files that exist in `dir`.
    pub fn find(dir: &Path) -> Self {
        let f = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        Self {
            tokenizer_json: f("tokenizer.json"),
            tokenizer_config: f("tokenizer_config.json"),
            tokenizer_model: f("tokenizer.model"),
            special_tokens_map: f("special_tokens_map.json"),
            chat_template: f("chat_template.jinja").or_else(|| f("chat_template.json")),
            preprocessor_config: f("preprocessor_config.json"),
            processor_config: f("processor_config.json"),
        }
    }

    /// All present files, for copying a model directory's side files.
    pub fn paths(&self) -> Vec<&Path> {
        [
            &self.tokenizer_json,
            &self.tokenizer_config,
            &self.tokenizer_model,
            &self.special_tokens_map,
            &self.chat_template,
            &self.preprocessor_config,
            &self.processor_config,
        ]
        .into_iter()
        .filter_map(|p| p.as_deref())
        .collect()
    }
}

/// An opened model directory. Weights are memory-mapped, not read.
#[derive(Debug)]
pub struct ModelDir {
    pub root: PathBuf,
    pub config: ModelConfig,
    /// `config.json` exactly as parsed, for passing through unchanged.
    pub config_raw: Value,
    pub generation: Option<GenerationConfig>,
    pub tokenizer: TokenizerFiles,
    pub weights: Weights,
    /// Tensor-name layout, for LLaVA checkpoints.
    pub layout: Option<LlavaLayout>,
}

impl ModelDir {
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let root = dir.as_ref().to_path_buf();
        if !root.is_dir() {
            return Err(CheckpointError::Config {
                path: root,
                message: "not a directory (expected a Hugging Face model directory with config.json)".into(),
            });
        }
        let config_path = root.join("config.json");
        if !config_path.is_file() {
            return Err(CheckpointError::Config {
                path: config_path,
                message: "missing; a model directory needs config.json".into(),
            });
        }
        let (config, config_raw) = ModelConfig::from_file(&config_path)?;
        let gen_path = root.join("generation_config.json");
        let generation = if gen_path.is_file() {
            let text = std::fs::read_to_string(&gen_path).map_err(|e| CheckpointError::io(&gen_path, e))?;
            Some(serde_json::from_str(&text).map_err(|e| CheckpointError::Config {
                path: gen_path.clone(),
                message: e.to_string(),
            })?)
        } else {
            None
        };
        let weights = Weights::open_dir(&root)?;
        let layout = if config.is_vlm() {
            LlavaLayout::detect(weights.names())
        } else {
            None
        };
        Ok(Self {
            tokenizer: TokenizerFiles::find(&root),
            root,
            config,
            config_raw,
            generation,
            weights,
            layout,
        })
    }

    /// canonical name → name in the file, for every tensor (identity for non-LLaVA checkpoints). Tensors of a
    /// LLaVA that fit no known part keep their own name.
    pub fn canonical_names(&self) -> BTreeMap<String, String> {
        self.weights
            .names()
            .map(|n| {
                let c = self
                    .layout
                    .and_then(|l| l.to_canonical(n))
                    .unwrap_or_else(|| n.to_string());
                (c, n.to_string())
            })
            .collect()
    }

    /// For a VLM: its language-model tensors as (base-LLM name, name in this checkpoint), in file order.
    pub fn language_model_tensors(&self) -> Vec<(String, String)> {
        let Some(layout) = self.layout else {
            return Vec::new();
        };
        self.weights
            .names()
            .filter_map(|n| {
                let c = layout.to_canonical(n)?;
                Some((vlm_to_llm_name(&c)?, n.to_string()))
            })
            .collect()
    }

    /// A summary for people: kind, layout, parameters per part, dtypes, tokenizer files.
    pub fn summary(&self) -> ModelSummary {
        let mut parts: BTreeMap<String, PartSummary> = BTreeMap::new();
        let mut dtypes: BTreeMap<String, u64> = BTreeMap::new();
        for t in self.weights.tensors() {
            let part = match self
                .layout
                .and_then(|l| l.to_canonical(t.name()))
                .as_deref()
                .and_then(part_of)
            {
                Some(LlavaPart::LanguageModel) => "language_model",
                Some(LlavaPart::VisionTower) => "vision_tower",
                Some(LlavaPart::Projector) => "multi_modal_projector",
                Some(LlavaPart::ImageNewline) => "image_newline",
                None if self.layout.is_some() => "other",
                None => "all",
            };
            let p = parts.entry(part.to_string()).or_default();
            p.tensors += 1;
            p.params += t.numel() as u64;
            *dtypes.entry(t.dtype().name().to_string()).or_default() += t.numel() as u64;
        }
        let named: Vec<(String, String)> = if self.layout.is_some() {
            self.language_model_tensors()
        } else {
            self.weights
                .names()
                .map(|n| (n.to_string(), n.to_string()))
                .collect()
        };
        let vocab_rows = named
            .into_iter()
            .filter(|(llm, _)| is_vocab_tensor(llm))
            .filter_map(|(llm, actual)| Some((llm, *self.weights.info(&actual)?.shape.first()?)))
            .collect();
        ModelSummary {
            dir: self.root.clone(),
            kind: self.config.kind_name().to_string(),
            layout: self.layout.map(|l| l.to_string()),
            shards: self.weights.shards().len(),
            tensors: self.weights.len(),
            params: self.weights.total_params(),
            bytes: self.weights.total_bytes(),
            parts,
            dtypes,
            vocab_rows,
            tokenizer: self
                .tokenizer
                .paths()
                .iter()
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .collect(),
        }
    }
}

/// Parameter count of one part of a model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PartSummary {
    pub tensors: usize,
    pub params: u64,
}

/// What `inspect` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelSummary {
    pub dir: PathBuf,
    pub kind: String,
    pub layout: Option<String>,
    pub shards: usize,
    pub tensors: usize,
    pub params: u64,
    pub bytes: u64,
    pub parts: BTreeMap<String, PartSummary>,
    /// Parameters per dtype.
    pub dtypes: BTreeMap<String, u64>,
    /// Rows of the vocabulary-shaped tensors, by base-LLM name (shows llava-hf's 32064 vs 32000).
    pub vocab_rows: BTreeMap<String, usize>,
    pub tokenizer: Vec<String>,
}

impl std::fmt::Display for ModelSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "model      {}", self.dir.display())?;
        writeln!(f, "kind       {}", self.kind)?;
        if let Some(l) = &self.layout {
            writeln!(f, "layout     {l}")?;
        }
        writeln!(
            f,
            "weights    {} tensors, {} parameters, {} bytes in {} shard(s)",
            self.tensors, self.params, self.bytes, self.shards
        )?;
        writeln!(f, "{:<24} {:>8} {:>14}", "part", "tensors", "parameters")?;
        for (name, p) in &self.parts {
            writeln!(f, "{name:<24} {:>8} {:>14}", p.tensors, p.params)?;
        }
        let dt: Vec<String> = self.dtypes.iter().map(|(d, n)| format!("{d}: {n}")).collect();
        writeln!(f, "dtypes     {}", dt.join(", "))?;
        for (name, rows) in &self.vocab_rows {
            writeln!(f, "vocab rows {name}: {rows}")?;
        }
        write!(
            f,
            "tokenizer  {}",
            if self.tokenizer.is_empty() {
                "(none)".to_string()
            } else {
                self.tokenizer.join(", ")
            }
        )
    }
}
