//! The one error type of the merge crate.

use std::path::PathBuf;

use mmreason_checkpoint::CheckpointError;

pub type Result<T, E = MergeError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),

    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },

    #[error("invalid merge parameter: {0}")]
    Param(String),

    #[error("unknown merge method `{name}` (known: {known})")]
    UnknownMethod { name: String, known: String },

    #[error("tensor `{tensor}`: {model} has shape {found:?}, {reference} has {expected:?}")]
    ShapeMismatch {
        tensor: String,
        model: PathBuf,
        found: Vec<usize>,
        reference: PathBuf,
        expected: Vec<usize>,
    },

    #[error("tensor `{tensor}` is missing from {model}")]
    MissingTensor { tensor: String, model: PathBuf },

    #[error(
        "tensor `{tensor}` of {model} holds {count} non-finite value(s) (first at index {first}); refusing to merge \
         (allow_nonfinite / --allow-nonfinite to merge anyway)"
    )]
    NonFinite {
        tensor: String,
        model: PathBuf,
        count: usize,
        first: usize,
    },

    #[error(
        "the merged tensor `{tensor}` would hold {count} non-finite value(s) in {dtype} (first at index {first}): \
         weights that cancel, a degenerate angle or values past the dtype's range; refusing to write it \
         (allow_nonfinite / --allow-nonfinite to write anyway)"
    )]
    NonFiniteOutput {
        tensor: String,
        dtype: String,
        count: usize,
        first: usize,
    },

    #[error("{vlm} and {llm} do not pair up: {detail}")]
    Unpaired {
        vlm: PathBuf,
        llm: PathBuf,
        detail: String,
    },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("chart: {0}")]
    Chart(String),
}
