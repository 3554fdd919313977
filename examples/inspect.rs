//! Inspect a Hugging Face model directory and, for a VLM, how its language model pairs with a base LLM.
//!
//! cargo run --release --example inspect                       # the bundled tiny LLaVA-1.5 and its base
//! cargo run --release --example inspect -- --model DIR [--base DIR] [--json]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mmreason::checkpoint::{ModelDir, Pairing};

#[derive(Parser)]
#[command(about = "Summarise a model directory (config, layout, parameters, dtypes, tokenizer files)")]
struct Args {
    /// Model directory (config.json + safetensors). Default: the bundled tiny LLaVA-1.5.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Base LLM to pair the VLM's language model with. Default with the bundled model: its tiny Vicuna base.
    #[arg(long)]
    base: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let fixtures = mmreason::bundled_fixtures().join("models");
    let (model, base) = match args.model {
        Some(m) => (m, args.base),
        None => (
            fixtures.join("llava-1.5"),
            args.base.or(Some(fixtures.join("vicuna-base"))),
        ),
    };
    mmreason::exit_code(run(&model, base.as_deref(), args.json))
}

fn run(
    model: &std::path::Path,
    base: Option<&std::path::Path>,
    json: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let vlm = ModelDir::open(model)?;
    let pairing = base
        .map(ModelDir::open)
        .transpose()?
        .map(|llm| Pairing::new(&vlm, &llm));
    if json {
        let v = serde_json::json!({ "model": vlm.summary(), "pairing": pairing });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", vlm.summary());
        if let (Some(p), Some(b)) = (pairing, base) {
            println!("\nbase LLM   {}", b.display());
            println!("{p}");
        }
    }
    Ok(())
}
