//! Prefill and decode tokens/s of a decoder (a benchmark, not a test).
//!
//! cargo run --release --example throughput -- --config llama-30m --random-weights --batch 1 \
//!     --prompt-len 128 --gen-len 32
//!
//! --config takes a model directory or a preset (llama-30m, llama-2-7b, vicuna-7b, mistral-7b, and
//! clip-vit-l-336 for LLaVA's vision tower, which reports images/s at --batch).
//!
//! On `--backend cuda` the linear layers run in cuBLAS; `MMREASON_GEMM=burn` selects burn's matmul instead.
//! `MMREASON_TIMELINE=1` (burn-cuda) records one more forward step by step after the timed runs and prints
//! where its device time went (a table; in `--json`, the `timeline` field).

use std::process::ExitCode;

use clap::Parser;
use mmreason::model::{BackendKind, ThroughputOptions, WeightDtype, run_throughput};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    config: String,
    #[arg(long)]
    random_weights: bool,
    #[arg(long, default_value_t = 1)]
    batch: usize,
    #[arg(long, default_value_t = 128)]
    prompt_len: usize,
    #[arg(long, default_value_t = 32)]
    gen_len: usize,
    #[arg(long, default_value = "cpu")]
    backend: String,
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Runs per measurement; the best is reported.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Several runs on one loaded model: BATCHxPROMPTxGEN, comma-separated (overrides the three above).
    #[arg(long)]
    runs: Option<String>,
    /// One JSON line per run instead of a table row.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let runs = match &a.runs {
            Some(r) => mmreason::model::gemm_bench::parse_shapes(r)?,
            None => Vec::new(),
        };
        for t in run_throughput(&ThroughputOptions {
            config: a.config.clone(),
            random_weights: a.random_weights,
            batch: a.batch,
            prompt_len: a.prompt_len,
            gen_len: a.gen_len,
            backend: a.backend.parse::<BackendKind>()?,
            dtype: a.dtype.parse::<WeightDtype>()?,
            repeats: a.repeats,
            runs,
        })? {
            if a.json {
                println!("{}", serde_json::to_string(&t)?);
                continue;
            }
            if let Some(images) = t.images_s {
                println!(
                    "{} ({:.1} M params, {} {} gemm {}): batch {} → {:.1} images/s",
                    t.config,
                    t.params as f64 / 1e6,
                    t.backend,
                    t.dtype,
                    t.gemm,
                    t.batch,
                    images
                );
            } else {
                let share =
                    |s: Option<f64>| s.map_or(String::new(), |s| format!(" (host {:.0}%)", 100.0 * s));
                println!(
                    "{} ({:.1} M params, {}): batch {} × prompt {} → prefill {:.0} tok/s{}; decode {} steps → {:.1} tok/s{}",
                    t.config,
                    t.params as f64 / 1e6,
                    t.backend,
                    t.batch,
                    t.prompt_len,
                    t.prefill_tok_s,
                    share(t.prefill_host_share),
                    t.gen_len,
                    t.decode_tok_s,
                    share(t.decode_host_share)
                );
            }
            if let Some(timeline) = &t.timeline {
                println!("\n{}", timeline.markdown(t.timeline_wall_ms));
            }
        }
        Ok(())
    };
    mmreason::exit_code(run())
}
