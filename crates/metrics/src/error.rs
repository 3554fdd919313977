//! The one error type of the metrics crate.

pub type Result<T, E = MetricsError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("{what}: no values to aggregate")]
    Empty { what: String },

    #[error(
        "{what}: {left} values on one side, {right} on the other (paired statistics need the same documents)"
    )]
    Unpaired { what: String, left: usize, right: usize },

    #[error("invalid regex `{pattern}`: {message}")]
    Regex { pattern: String, message: String },

    #[error("{0}")]
    Invalid(String),
}
