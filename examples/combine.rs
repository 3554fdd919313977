//! Join the outputs of `evaluate --shard I/N` into one run equal to an unsharded one.
//!
//! cargo run --release --example combine -- --output DIR SHARD_DIR...

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(about = "Combine sharded evaluate outputs")]
struct Args {
    #[arg(long)]
    output: PathBuf,
    #[arg(required = true)]
    shards: Vec<PathBuf>,
}

fn main() -> ExitCode {
    mmreason::init_logging();
    let a = Args::parse();
    mmreason::exit_code(
        mmreason::eval::combine(&a.shards, &a.output)
            .map(|()| println!("combined {} shards into {}", a.shards.len(), a.output.display())),
    )
}
