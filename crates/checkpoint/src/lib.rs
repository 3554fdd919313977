//! Checkpoint I/O for mmreason: Hugging Face model directories (`config.json`, `generation_config.json`,
//! tokenizer files, safetensors weights — one file or sharded with an index) read lazily through memory maps,
//! LLaVA's three tensor-name layouts mapped to one canonical naming, and an atomic sharded writer.
//!
//! This crate has no deep-learning dependency: the model crate and the merge crate both build on it.

pub mod config;
pub mod dtype;
pub mod error;
pub mod header;
pub mod layout;
pub mod model_dir;
pub mod pairing;
pub mod safetensors_file;
pub mod tensor;
pub mod weights;
pub mod writer;

pub use config::{
    ClipVisionConfig, DecoderConfig, DecoderKind, FeatureSelect, GenerationConfig, LlavaConfig, ModelConfig,
    OriginalLlavaConfig, RopeScaling, TokenIds,
};
pub use dtype::Dtype;
pub use error::{CheckpointError, Result};
pub use header::{Header, TensorInfo, parse_header};
pub use layout::{LlavaLayout, LlavaPart, is_vocab_tensor, llm_to_vlm_name, part_of, vlm_to_llm_name};
pub use model_dir::{ModelDir, ModelSummary, TokenizerFiles};
pub use pairing::{PairedTensor, Pairing};
pub use safetensors_file::SafetensorsFile;
pub use tensor::TensorView;
pub use weights::{INDEX_FILE, SINGLE_FILE, Weights};
pub use writer::{
    CheckpointWriter, DEFAULT_MAX_SHARD_BYTES, WriteSummary, WriterOptions, write_safetensors_file,
};
