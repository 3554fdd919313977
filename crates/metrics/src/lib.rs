//! Scoring metrics with lm-evaluation-harness's definitions (`lm_eval/api/metrics.py`) and the paired
//! statistics lm-eval lacks for comparing an LLM with its multimodal descendant on the same documents. This
//! crate knows no model and no task. Standard errors: closed form for means, lm-eval's bootstrap
//! (draw for draw) for the rest.

pub mod aggregate;
pub mod bootstrap;
pub mod choice;
pub mod error;
pub mod exact_match;
pub mod math;
pub mod paired;
pub mod python_random;
pub mod vision;

pub use aggregate::{group_mean, mean, mean_stderr, pooled_stderr, sample_stddev};
pub use bootstrap::{bootstrap_stderr, f1, matthews, median};
pub use choice::{ChoiceScores, multiple_choice};
pub use error::{MetricsError, Result};
pub use exact_match::{ExactMatch, exact_match};
pub use paired::{PairedComparison, holm, mcnemar_exact, paired_bootstrap};
