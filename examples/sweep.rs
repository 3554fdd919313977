//! Sweep the study's merge over an α × K grid: merge the VLM with its LLM at every point (finished points are
//! skipped), evaluate each on language and vision tasks, table + language-vs-vision chart with the Pareto front,
//! and the best point for a weighting. (The same loop as `study`, which also evaluates and compares the two
//! originals — the sweep's reference points.)
//!
//! cargo run --release --example sweep -- --vlm DIR --llm DIR --data-dir DIR --alpha 0.5,1,1.5 \
//!     --density 0.01,0.1,1 --tasks gsm8k,commonsense_qa --vision-tasks pope,mme [--language-weight 0.5] \
//!     [--backend cuda --dtype bf16] [--out DIR]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mmreason::eval::{StudyOptions, run_study};
use mmreason::model::{BackendKind, WeightDtype};

#[derive(Parser)]
#[command(about = "Merge and evaluate every (alpha, K) grid point; Pareto front of language vs vision")]
struct Args {
    #[arg(long)]
    vlm: PathBuf,
    #[arg(long)]
    llm: PathBuf,
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long, value_delimiter = ',', required = true)]
    alpha: Vec<f64>,
    #[arg(long, value_delimiter = ',', required = true)]
    density: Vec<f64>,
    #[arg(long, value_delimiter = ',', required = true)]
    tasks: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "")]
    vision_tasks: Vec<String>,
    #[arg(long, default_value_t = 0.5)]
    language_weight: f64,
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long)]
    num_fewshot: Option<usize>,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    #[arg(long, default_value = "cpu")]
    backend: String,
    #[arg(long, default_value = "f32")]
    dtype: String,
    #[arg(long, default_value = "out/sweep")]
    out: PathBuf,
}

fn main() -> ExitCode {
    mmreason::init_logging();
    let a = Args::parse();
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let o = StudyOptions {
            llm: a.llm.clone(),
            vlm: a.vlm.clone(),
            data_dir: a.data_dir.clone(),
            tasks: a.tasks.clone(),
            vision_tasks: a.vision_tasks.iter().filter(|t| !t.is_empty()).cloned().collect(),
            language_weight: a.language_weight,
            limit: a.limit,
            num_fewshot: a.num_fewshot,
            alphas: a.alpha.clone(),
            densities: a.density.clone(),
            batch_size: a.batch_size,
            backend: a.backend.parse::<BackendKind>()?,
            dtype: a.dtype.parse::<WeightDtype>()?,
            out: a.out.clone(),
            progress: true,
        };
        let r = run_study(&o)?;
        print!("{}", r.markdown);
        println!(
            "\nwritten: {}/report.md, report.json, report.svg, runs/, merges/",
            o.out.display()
        );
        Ok(())
    };
    mmreason::exit_code(run())
}
