//! The one error type of the model crate.

use mmreason_checkpoint::CheckpointError;

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),

    #[error("tensor `{tensor}` has shape {found:?}, the model needs {expected:?}")]
    Shape {
        tensor: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },

    #[error("backend `{name}` is not compiled in; rebuild with `--features {name}` (compiled: {compiled})")]
    BackendNotCompiled { name: String, compiled: String },

    #[error("unknown backend `{0}` (expected cpu, wgpu or cuda)")]
    UnknownBackend(String),

    #[error("unknown dtype `{0}` (expected f32, f16 or bf16)")]
    UnknownDtype(String),

    #[error("not supported: {0}")]
    Unsupported(String),

    #[error("--backend {backend} cannot start on this machine: {missing}")]
    BackendUnavailable { backend: String, missing: String },

    #[error("bad input: {0}")]
    Input(String),

    #[error("{path}: {message}")]
    Tokenizer {
        path: std::path::PathBuf,
        message: String,
    },

    #[error("chat template: {0}")]
    Template(String),

    #[error("image: {0}")]
    Image(String),
}
