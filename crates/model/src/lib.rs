//! The models of the study on burn, loaded from Hugging Face checkpoints through `mmreason-checkpoint`:
//! the Llama/Mistral decoder (with KV cache), backend choice and tensor loading. CLIP ViT, projector and
//! LLaVA 1.5/NeXT arrive with their own issue (see the README's status table).

pub mod anyres;
pub mod attention;
pub mod backend;
pub mod chat;
pub mod clip;
pub mod describe;
pub mod error;
pub mod fused;
pub mod gemm;
pub mod gemm_bench;
pub mod generate;
pub mod host_probe;
pub mod image_processor;
pub mod kv_cache;
pub mod llama;
pub mod llava;
pub mod load;
pub mod logits;
pub mod resample;
pub mod rope;
pub mod scoring;
pub mod throughput;
pub mod timeline;
pub mod tokenizer;

pub use backend::{BackendKind, CpuBackend};
pub use chat::{Conversation, Message, render_chat_template};
pub use clip::ClipVision;
pub use describe::{DescribeOptions, Description, VisionModel, run_describe};
pub use error::{ModelError, Result};
pub use generate::{GenerateOptions, Generation, run_generate};
pub use kv_cache::KvCache;
pub use llama::{Batch, Decoder, TensorSource};
pub use llava::{Llava, Pixels, Projector};
pub use load::{WeightDtype, load_float};
pub use logits::{LogitsOptions, LogitsReport, load_decoder, run_logits};
pub use scoring::{GenerateRequest, Loglikelihood, LoglikelihoodRequest, Sampling, TextModel, VocabScope};
pub use throughput::{Throughput, ThroughputOptions, preset, run_throughput};
pub use tokenizer::TextTokenizer;
