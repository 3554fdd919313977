//! The evaluation harness: a model (any LLM directory, or a VLM's language model) against lm-eval tasks on local
//! data, with lm-eval-shaped outputs (`results.json`, `samples_<task>.jsonl`), a resume journal that survives a
//! kill at any point, and paired comparisons of two runs. Sweeps, the `study` command, vision tasks and
//! sharding are the rest of the harness issue.

pub mod compare;
pub mod error;
pub mod evaluate;
pub mod journal;
mod progress;
pub mod results;

pub use compare::{CompareOptions, Comparison, compare_runs};
pub use error::{EvalError, Result};
pub use evaluate::{EvalOptions, EvalSummary, evaluate};
