//! Compare two evaluation runs document by document: scores, difference with a paired-bootstrap interval,
//! McNemar's p, Holm-adjusted significance; Markdown + CSV + SVG chart.
//!
//! cargo run --release --example compare -- RUN_A RUN_B [--out DIR]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mmreason::eval::{CompareOptions, compare_runs};

#[derive(Parser)]
#[command(about = "Paired comparison of two evaluate runs")]
struct Args {
    run_a: PathBuf,
    run_b: PathBuf,
    /// Where compare.md, compare.csv and compare.svg are written.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value_t = 10_000)]
    bootstrap_iters: usize,
    #[arg(long, default_value_t = 1234)]
    seed: u64,
}

fn main() -> ExitCode {
    mmreason::init_logging();
    let a = Args::parse();
    let opts = CompareOptions {
        a: a.run_a,
        b: a.run_b,
        out: a.out,
        bootstrap_iters: a.bootstrap_iters,
        seed: a.seed,
    };
    mmreason::exit_code(compare_runs(&opts).map(|c| {
        print!("{}", c.markdown());
        if let Some(out) = &opts.out {
            println!("\nwritten: {}/compare.{{md,csv,svg}}", out.display());
        }
    }))
}
