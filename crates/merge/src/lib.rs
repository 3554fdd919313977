//! Training-free model merging for mmreason.
//!
//! The study's method ([`sparse_task_vector`]) and mergekit's methods ([`methods`]) are small pure functions
//! over one tensor's inputs; [`plan`] and [`vlm`] stream checkpoints tensor by tensor through them, reading
//! memory-mapped inputs and buffering one output shard. I/O (the checkpoint crate), planning and math stay apart.

pub mod analyze;
pub mod config;
pub mod error;
pub mod methods;
pub mod mt19937;
pub mod plan;
pub mod progress;
pub mod select;
pub mod sparse_task_vector;
pub mod sparsify;
pub mod vlm;

pub use analyze::{Analysis, AnalyzeOptions, analyze};
pub use error::{MergeError, Result};
pub use methods::Method;
pub use plan::{ConfigMergeOptions, ConfigMergeReport, run_config};
pub use sparse_task_vector::{Direction, Scope, SparseTaskVector, TopK};
pub use vlm::{VlmMergeOptions, VlmMergeReport, merge_vlm_with_llm};
