//! Task definitions (in progress, see the README's status table): local evaluation data in the Hugging Face
//! layouts is implemented (`data`); lm-evaluation-harness YAML tasks, Jinja rendering, few-shot sampling,
//! requests and filters arrive with the rest of the tasks issue. This crate knows no model.

pub mod data;
pub mod error;

pub use data::{Doc, Split, load_split};
pub use error::{Result, TasksError};
