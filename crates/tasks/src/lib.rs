//! Task definitions: local evaluation data in the Hugging Face layouts (`data`), lm-evaluation-harness YAML
//! tasks (`task`, bundled definitions in `tasks/*.yaml`, looked up by `registry`) rendered to requests and dry
//! runs, lm-eval's Python hooks as named Rust functions (`process`), and its answer filters (`filters`). This
//! crate knows no model.

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
    Chat, FewShot, GroupStderr, Request, TaskConfig, doc_choices, doc_target, dry_run_jsonl, gold_index,
    requests, requests_chat, requests_with,
};
