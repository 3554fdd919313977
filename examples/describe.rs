//! Ask a LLaVA model about an image (greedy decoding).
//!
//! cargo run --release --example describe -- --model DIR --image PATH --prompt "What is shown?"

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mmreason::model::{BackendKind, DescribeOptions, WeightDtype, run_describe};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    image: PathBuf,
    #[arg(long)]
    prompt: String,
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    #[arg(long, default_value = "cpu")]
    backend: String,
    #[arg(long, default_value = "f32")]
    dtype: String,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let d = run_describe(&DescribeOptions {
            model: a.model,
            image: a.image,
            prompt: a.prompt,
            max_new_tokens: a.max_new_tokens,
            backend: a.backend.parse::<BackendKind>()?,
            dtype: a.dtype.parse::<WeightDtype>()?,
        })?;
        eprintln!("prompt ({} image tokens): {}", d.image_tokens, d.prompt);
        println!("{}", d.text);
        Ok(())
    };
    mmreason::exit_code(run())
}
