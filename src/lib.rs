//! mmreason: measure what multimodal instruction tuning does to a language model's reasoning, and repair it
//! without training. This facade re-exports the workspace's crates and owns the examples and benchmarks.

pub use mmreason_checkpoint as checkpoint;
pub use mmreason_eval as eval;
pub use mmreason_merge as merge;
pub use mmreason_metrics as metrics;
pub use mmreason_model as model;
pub use mmreason_tasks as tasks;

/// Directory of the bundled fixtures (tiny checkpoints made by `scripts/make_fixtures.py`), for examples' defaults.
pub fn bundled_fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Prints the libraries' `tracing` logs on stderr (level from `RUST_LOG`, `info` by default): what the
/// examples call first.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// An example's exit status: success, or the error on stderr (`error: …`) and failure. Every example ends with it.
pub fn exit_code<E: std::fmt::Display>(result: Result<(), E>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
