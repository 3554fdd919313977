//! The study: evaluate an LLM and its VLM on language tasks, compare them, merge the sparse task vector back
//! over an α × K grid, evaluate the merges, report (report.md, report.json, runs/, compare/, merges/).
//!
//! cargo run --release --example study                      # bundled tiny models and data samples, minutes
//! cargo run --release --example study -- --llm DIR --vlm DIR --data-dir DIR --tasks gsm8k,commonsense_qa \
//!     [--vision-tasks pope,mme] [--language-weight 0.5] [--limit N] [--alpha 0.5,1] [--density 0.1,1] \
//!     [--backend cuda --dtype bf16] [--out DIR]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mmreason::eval::{StudyOptions, run_study};
use mmreason::model::{BackendKind, WeightDtype};

#[derive(Parser)]
#[command(about = "LLM vs VLM on reasoning tasks, and the training-free merge that repairs the VLM")]
struct Args {
    #[arg(long, requires_all = ["vlm", "data_dir"])]
    llm: Option<PathBuf>,
    #[arg(long)]
    vlm: Option<PathBuf>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long, value_delimiter = ',')]
    tasks: Option<Vec<String>>,
    /// Vision tasks for the VLM and the merges (easy_vqa, pope, mme, scienceqa_img, mmbench_en, textvqa).
    #[arg(long, value_delimiter = ',')]
    vision_tasks: Option<Vec<String>>,
    /// Weight of the language score when picking the best merge (vision gets 1 − w).
    #[arg(long)]
    language_weight: Option<f64>,
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long)]
    num_fewshot: Option<usize>,
    #[arg(long, value_delimiter = ',')]
    alpha: Option<Vec<f64>>,
    #[arg(long, value_delimiter = ',')]
    density: Option<Vec<f64>>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long, default_value = "cpu")]
    backend: String,
    #[arg(long, default_value = "f32")]
    dtype: String,
    #[arg(long, default_value = "out/study")]
    out: PathBuf,
}

fn main() -> ExitCode {
    mmreason::init_logging();
    let a = Args::parse();
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let mut o = StudyOptions::bundled(&mmreason::bundled_fixtures(), a.out.clone());
        if let (Some(llm), Some(vlm), Some(data)) = (&a.llm, &a.vlm, &a.data_dir) {
            o.llm = llm.clone();
            o.vlm = vlm.clone();
            o.data_dir = data.clone();
            o.limit = None;
        }
        if let Some(t) = &a.tasks {
            o.tasks = t.clone();
        }
        if let Some(v) = &a.vision_tasks {
            o.vision_tasks = v.clone();
        }
        if let Some(w) = a.language_weight {
            o.language_weight = w;
        }
        if a.limit.is_some() {
            o.limit = a.limit;
        }
        if a.num_fewshot.is_some() {
            o.num_fewshot = a.num_fewshot;
        }
        if let Some(x) = &a.alpha {
            o.alphas = x.clone();
        }
        if let Some(x) = &a.density {
            o.densities = x.clone();
        }
        if let Some(b) = a.batch_size {
            o.batch_size = b;
        }
        o.backend = a.backend.parse::<BackendKind>()?;
        o.dtype = a.dtype.parse::<WeightDtype>()?;
        o.progress = true;
        let r = run_study(&o)?;
        print!("{}", r.markdown);
        println!(
            "\nwritten: {}/report.md, report.json, runs/, compare/, merges/",
            o.out.display()
        );
        Ok(())
    };
    mmreason::exit_code(run())
}
