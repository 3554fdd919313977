//! Logits of a model for token ids given in a safetensors file.
//!
//! cargo run --release --example logits -- --model DIR --inputs IN.safetensors --out OUT.safetensors \
//!     [--backend cpu|wgpu|cuda] [--dtype f32|bf16|f16]
//!
//! IN holds `input_ids` (I64 [B,S]) and optionally `attention_mask` (I64 [B,S], 1 = token, 0 = left pad);
//! OUT gets `logits` (F32 [B,S,V]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mmreason::model::{BackendKind, LogitsOptions, WeightDtype, run_logits};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    inputs: PathBuf,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value = "cpu")]
    backend: String,
    #[arg(long, default_value = "f32")]
    dtype: String,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let r = run_logits(&LogitsOptions {
            model: a.model,
            inputs: a.inputs,
            out: a.out,
            backend: a.backend.parse::<BackendKind>()?,
            dtype: a.dtype.parse::<WeightDtype>()?,
        })?;
        println!("logits {:?} -> {}", r.shape, r.out.display());
        Ok(())
    };
    mmreason::exit_code(run())
}
