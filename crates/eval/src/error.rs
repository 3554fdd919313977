//! The one error type of the harness: what it wraps names the file, task, document or field.

use std::path::PathBuf;

pub type Result<T, E = EvalError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Tasks(#[from] mmreason_tasks::TasksError),

    #[error("task `{task}`: {source}")]
    TaskData {
        task: String,
        #[source]
        source: mmreason_tasks::TasksError,
    },

    #[error(transparent)]
    Model(#[from] mmreason_model::ModelError),

    #[error(transparent)]
    Metrics(#[from] mmreason_metrics::MetricsError),

    /// Boxed: the merge crate's error is large and rare.
    #[error(transparent)]
    Merge(Box<mmreason_merge::MergeError>),

    #[error(transparent)]
    Checkpoint(#[from] mmreason_checkpoint::CheckpointError),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },

    #[error(
        "{dir} holds a run of another configuration ({what}); resume there only with the same model, tasks, \
         data and options, or choose a new --output directory"
    )]
    OtherRun { dir: PathBuf, what: String },

    #[error("{0}")]
    Input(String),
}

impl From<mmreason_merge::MergeError> for EvalError {
    fn from(e: mmreason_merge::MergeError) -> Self {
        EvalError::Merge(Box::new(e))
    }
}

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> EvalError + '_ {
    move |source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a JSON file; a parse error names the file.
pub(crate) fn read_json(path: &std::path::Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|e| EvalError::BadFile {
        path: path.into(),
        message: e.to_string(),
    })
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a reader (or a
/// crash) never sees a half-written file.
pub(crate) fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io(path))
}
