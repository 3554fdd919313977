//! The one error type of this crate. Every variant names the file and, where there is one, the tensor, so a
//! user can find the culprit with `grep` or a hex editor.

use std::path::PathBuf;

use crate::dtype::Dtype;

/// Result alias for this crate.
pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;

/// Everything that can go wrong while reading or writing a model directory.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: file is {len} bytes, too short for a safetensors header (needs at least 8)")]
    Truncated { path: PathBuf, len: u64 },

    #[error("{path}: header length {header_len} runs past the end of the file ({file_len} bytes)")]
    HeaderPastEof {
        path: PathBuf,
        header_len: u64,
        file_len: u64,
    },

    #[error("{path}: invalid safetensors header: {message}")]
    HeaderJson { path: PathBuf, message: String },

    #[error("{path}: tensor `{tensor}` has unknown dtype `{dtype}` (known: {known})")]
    UnknownDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
        known: String,
    },

    #[error(
        "{path}: tensor `{tensor}` is {dtype:?} {shape:?} = {expected} bytes but its offsets span {actual} bytes"
    )]
    SizeMismatch {
        path: PathBuf,
        tensor: String,
        dtype: Dtype,
        shape: Vec<usize>,
        expected: u128,
        actual: u64,
    },

    #[error(
        "{path}: tensor `{tensor}` has data offsets [{begin}, {end}) outside the data section of {data_len} bytes"
    )]
    OffsetsOutOfBounds {
        path: PathBuf,
        tensor: String,
        begin: u64,
        end: u64,
        data_len: u64,
    },

    #[error("{path}: tensors `{first}` and `{second}` overlap in the data section")]
    OffsetsOverlap {
        path: PathBuf,
        first: String,
        second: String,
    },

    #[error("{index}: names shard `{shard}`, which does not exist")]
    IndexMissingShard { index: PathBuf, shard: String },

    #[error("{index}: maps tensor `{tensor}` to `{shard}`, but that shard has no such tensor")]
    IndexMissingTensor {
        index: PathBuf,
        shard: String,
        tensor: String,
    },

    #[error("{index}: invalid index: {message}")]
    IndexJson { index: PathBuf, message: String },

    #[error("tensor `{tensor}` appears in both {first} and {second}")]
    DuplicateTensor {
        tensor: String,
        first: PathBuf,
        second: PathBuf,
    },

    #[error("{dir}: no tensor named `{tensor}`")]
    TensorNotFound { dir: PathBuf, tensor: String },

    #[error("{path}: tensor `{tensor}` is {found:?} {found_shape:?}, expected {expected}")]
    Unexpected {
        path: PathBuf,
        tensor: String,
        found: Dtype,
        found_shape: Vec<usize>,
        expected: String,
    },

    #[error("{path}: tensor `{tensor}` has dtype {dtype:?}, which cannot be converted to f32")]
    NotFloat {
        path: PathBuf,
        tensor: String,
        dtype: Dtype,
    },

    #[error(
        "{dir}: no weights found (looked for model.safetensors and model.safetensors.index.json, then any *.safetensors)"
    )]
    NoWeights { dir: PathBuf },

    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },

    #[error("{path}: unknown model_type `{model_type}` (supported: {supported})")]
    UnknownModelType {
        path: PathBuf,
        model_type: String,
        supported: String,
    },

    #[error("{path}: already exists; refusing to overwrite (pass force/--force to replace it)")]
    OutputExists { path: PathBuf },

    #[error("{path}: refusing to write over an input of this operation")]
    OutputIsInput { path: PathBuf },

    #[error("writer: {message}")]
    Writer { message: String },
}

impl CheckpointError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
