//! The one error type of the tasks crate. Data errors name the file and the row.

use std::path::PathBuf;

pub type Result<T, E = TasksError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum TasksError {
    #[error("no data for split `{split}`: looked for {}", .looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    MissingData { split: String, looked: Vec<PathBuf> },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}, line {line}: {message}")]
    BadLine {
        path: PathBuf,
        line: usize,
        message: String,
    },

    #[error("{path}: unreadable Parquet: {message}")]
    Parquet { path: PathBuf, message: String },

    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },

    #[error("{path}: the split is empty")]
    Empty { path: PathBuf },

    #[error("task `{task}`, document {doc_id}: {what}: {message}")]
    Template {
        task: String,
        doc_id: usize,
        what: String,
        message: String,
    },

    #[error("unknown task `{name}`{}; known tasks: {known}", if .close.is_empty() { String::new() } else { format!(" (did you mean {}?)", .close.join(", ")) })]
    UnknownTask {
        name: String,
        close: Vec<String>,
        known: String,
    },

    #[error("{path}, row {row}: field `{field}` {problem}")]
    Field {
        path: PathBuf,
        row: usize,
        field: String,
        problem: String,
    },
}
