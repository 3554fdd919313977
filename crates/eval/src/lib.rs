//! The evaluation harness: a model (any LLM directory, or a VLM's language model) against lm-eval tasks on local
//! data, with lm-eval-shaped outputs (`results.json`, `samples_<task>.jsonl`), a resume journal that survives a
//! kill at any point, paired comparisons of two runs, and the study's loop (`study`: evaluate LLM and VLM,
//! compare, merge over an α × K grid, evaluate the merges, report). Vision tasks, sharding and the Pareto chart
//! of the sweep are the rest of the harness issue.

pub mod combine;
pub mod compare;
pub mod error;
pub mod evaluate;
pub mod journal;
mod progress;
pub mod results;
pub mod study;
pub mod vision;

pub use combine::combine;
pub use compare::{CompareOptions, Comparison, compare_runs};
pub use error::{EvalError, Result};
pub use evaluate::{EvalOptions, EvalSummary, evaluate};
pub use study::{StudyOptions, StudyReport, run_study};
