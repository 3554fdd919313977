//! Task definitions (in progress, see the README's status table): local evaluation data in the Hugging Face
//! layouts (`data`) and lm-evaluation-harness YAML tasks rendered to zero-shot requests and dry runs (`task`,
//! definitions in `tasks/*.yaml`); few-shot sampling, chat templates, filters and metrics wiring arrive with the
//! rest of the tasks issue. This crate knows no model.

pub mod data;
pub mod error;
pub mod filters;
pub mod process;
/// CPython's `random.Random` (few-shot sampling), shared with the metrics crate's bootstrap.
pub use mmreason_metrics::python_random;
pub mod registry;
pub mod task;

pub use data::{Doc, Split, load_split};
pub use error::{Result, TasksError};
pub use filters::{Filter, Pipeline};
pub use task::{
    Chat, FewShot, Request, TaskConfig, doc_choices, doc_target, dry_run_jsonl, gold_index, requests,
    requests_chat, requests_with,
};
