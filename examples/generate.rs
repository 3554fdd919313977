//! Generate a continuation (greedy unless --temperature is given).
//!
//! cargo run --release --example generate -- --model DIR --prompt "…" [--chat] [--max-new-tokens N]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mmreason::model::{BackendKind, GenerateOptions, Sampling, WeightDtype, run_generate};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    prompt: String,
    /// Wrap the prompt in the model's chat template (LLaVA's conversation format when it has none).
    #[arg(long)]
    chat: bool,
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Sample with this temperature instead of greedy decoding.
    #[arg(long)]
    temperature: Option<f64>,
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "cpu")]
    backend: String,
    #[arg(long, default_value = "f32")]
    dtype: String,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let g = run_generate(&GenerateOptions {
            model: a.model,
            prompt: a.prompt,
            chat: a.chat,
            max_new_tokens: a.max_new_tokens,
            sampling: a.temperature.map(|temperature| Sampling {
                temperature,
                top_p: a.top_p,
                seed: a.seed,
            }),
            backend: a.backend.parse::<BackendKind>()?,
            dtype: a.dtype.parse::<WeightDtype>()?,
        })?;
        println!("{}{}", g.prompt, g.text);
        Ok(())
    };
    mmreason::exit_code(run())
}
