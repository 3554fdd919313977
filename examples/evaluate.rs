//! Evaluate a model on lm-eval tasks with local data; results.json and samples_<task>.jsonl in lm-eval's shapes.
//! Re-running into the same --output resumes an interrupted run.
//!
//! cargo run --release --example evaluate -- --model DIR --tasks commonsense_qa,gsm8k --data-dir DIR \
//!     [--limit N] [--num-fewshot K] [--batch-size B] [--backend cpu|wgpu|cuda] [--dtype f32|bf16|f16] \
//!     [--output DIR] [--dry-run] [--shard I/N] [--apply-chat-template [--fewshot-as-multiturn]]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mmreason::eval::{EvalOptions, evaluate};
use mmreason::model::{BackendKind, WeightDtype};

#[derive(Parser)]
#[command(about = "Evaluate a model on lm-evaluation-harness tasks (local data)")]
struct Args {
    /// Model directory (an LLM, or a VLM whose language model is evaluated).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Comma-separated task names.
    #[arg(long, value_delimiter = ',', required = true)]
    tasks: Vec<String>,
    /// Directory with <dataset_path>/<split>.{jsonl,parquet,json} per task.
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long)]
    num_fewshot: Option<usize>,
    #[arg(long, default_value_t = 1234)]
    fewshot_seed: u64,
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    #[arg(long, default_value = "cpu")]
    backend: String,
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Score over the first N vocabulary rows (a VLM against its base LLM's vocabulary).
    #[arg(long)]
    vocab_limit: Option<usize>,
    /// Render contexts with the model's chat template (lm-eval's --apply_chat_template).
    #[arg(long)]
    apply_chat_template: bool,
    /// With --apply-chat-template: few-shot examples as separate user/assistant turns.
    #[arg(long)]
    fewshot_as_multiturn: bool,
    #[arg(long, default_value = "out/evaluate")]
    output: PathBuf,
    /// Write the rendered requests without loading a model.
    #[arg(long)]
    dry_run: bool,
    /// I/N: evaluate the documents with doc_id % N == I (then `combine` the N outputs).
    #[arg(long)]
    shard: Option<String>,
}

fn main() -> ExitCode {
    mmreason::init_logging();
    let a = Args::parse();
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let mut o = EvalOptions::new(a.tasks.clone(), a.data_dir.clone(), a.output.clone());
        o.model = a.model.clone();
        o.limit = a.limit;
        o.num_fewshot = a.num_fewshot;
        o.fewshot_seed = a.fewshot_seed;
        o.batch_size = a.batch_size;
        o.backend = a.backend.parse::<BackendKind>()?;
        o.dtype = a.dtype.parse::<WeightDtype>()?;
        o.vocab_limit = a.vocab_limit;
        o.dry_run = a.dry_run;
        o.apply_chat_template = a.apply_chat_template;
        o.fewshot_as_multiturn = a.fewshot_as_multiturn;
        if let Some(sh) = &a.shard {
            let (i, n) = sh
                .split_once('/')
                .and_then(|(i, n)| Some((i.parse().ok()?, n.parse().ok()?)))
                .ok_or_else(|| format!("--shard {sh}: expected I/N, e.g. 0/4"))?;
            o.shard = Some((i, n));
        }
        o.progress = true;
        let s = evaluate(&o)?;
        if s.dry_run {
            println!("{} requests written to {}", s.requests, s.output.display());
            return Ok(());
        }
        println!("| task | metric | filter | n | value | stderr |\n|---|---|---|---|---|---|");
        for t in &s.tasks {
            for m in &t.metrics {
                let se = m.stderr.map_or("N/A".to_string(), |v| format!("{v:.4}"));
                println!(
                    "| {} | {} | {} | {} | {:.4} | {se} |",
                    t.task, m.metric, m.filter, t.n, m.value
                );
            }
        }
        println!(
            "{} requests ({} resumed from the journal) in {:.1} s → {}",
            s.requests,
            s.resumed,
            s.seconds,
            s.output.display()
        );
        Ok(())
    };
    mmreason::exit_code(run())
}
