//! Merge models: the study's sparse task-vector merge of a VLM with its base LLM, a mergekit YAML config,
//! or an analysis of the task vector.
//!
//! cargo run --release --example merge -- --vlm DIR --llm DIR --alpha A --density K --out DIR
//! cargo run --release --example merge -- --config merge.yml --out DIR
//! cargo run --release --example merge -- --analyze --vlm DIR --llm DIR [--density K] --out DIR

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use mmreason::merge::{
    AnalyzeOptions, ConfigMergeOptions, Direction, Scope, SparseTaskVector, TopK, VlmMergeOptions, analyze,
    merge_vlm_with_llm, run_config,
};

#[derive(Clone, Copy, ValueEnum)]
enum ScopeArg {
    PerTensor,
    Global,
}

#[derive(Clone, Copy, ValueEnum)]
enum DirectionArg {
    /// M = θ_vlm + α·TopK(θ_llm − θ_vlm): repair toward the base LLM.
    TowardLlm,
    /// M = θ_vlm + α·TopK(θ_vlm − θ_llm): the paper summaries' literal formula.
    AwayFromLlm,
}

#[derive(Parser)]
#[command(about = "Training-free merging: sparse task vectors (the study), mergekit configs, analysis")]
struct Args {
    /// The VLM (LLaVA, any of the three layouts).
    #[arg(long)]
    vlm: Option<PathBuf>,
    /// Its base LLM (Vicuna, Mistral).
    #[arg(long)]
    llm: Option<PathBuf>,
    /// Weight α of the sparse task vector.
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
    /// Fraction K of task-vector entries kept (top by magnitude).
    #[arg(long)]
    density: Option<f64>,
    /// Number of entries kept instead of a fraction.
    #[arg(long, conflicts_with = "density")]
    count: Option<u64>,
    /// Top-K per tensor or over all merged tensors.
    #[arg(long, value_enum, default_value = "per-tensor")]
    scope: ScopeArg,
    #[arg(long, value_enum, default_value = "toward-llm")]
    direction: DirectionArg,
    /// A mergekit YAML configuration instead of --vlm/--llm.
    #[arg(long, conflicts_with_all = ["vlm", "llm"])]
    config: Option<PathBuf>,
    /// Report the task vector per layer and module instead of merging (files go to --out).
    #[arg(long)]
    analyze: bool,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing output directory.
    #[arg(long)]
    force: bool,
    /// Merge even if an input holds NaN or Inf.
    #[arg(long)]
    allow_nonfinite: bool,
    /// Largest output shard in bytes.
    #[arg(long, default_value_t = mmreason::checkpoint::DEFAULT_MAX_SHARD_BYTES)]
    max_shard_bytes: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    mmreason::exit_code(run(Args::parse()))
}

fn run(a: Args) -> Result<(), Box<dyn std::error::Error>> {
    let show_progress = !a.json;
    if let Some(config) = a.config {
        let r = run_config(&ConfigMergeOptions {
            config,
            out: a.out,
            force: a.force,
            allow_nonfinite: a.allow_nonfinite,
            max_shard_bytes: a.max_shard_bytes,
            show_progress,
        })?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            println!(
                "{}: {} tensors in {:.2} s ({:.1} MB/s read) -> {} ({} shard(s))",
                r.method,
                r.tensors,
                r.seconds,
                r.bytes_read as f64 / r.seconds.max(1e-9) / 1e6,
                r.out.display(),
                r.shards
            );
        }
        return Ok(());
    }
    let (Some(vlm), Some(llm)) = (a.vlm, a.llm) else {
        return Err("give --vlm and --llm (or --config)".into());
    };
    if a.analyze {
        let an = analyze(&AnalyzeOptions {
            vlm,
            llm,
            density: a.density.unwrap_or(0.1),
            show_progress,
        })?;
        let files = an.write(&a.out)?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&an)?);
        } else {
            print!("{}", an.to_markdown());
            for f in files {
                println!("wrote {}", f.display());
            }
        }
        return Ok(());
    }
    let topk = match (a.density, a.count) {
        (Some(d), _) => TopK::Density(d),
        (None, Some(c)) => TopK::Count(c),
        (None, None) => return Err("give --density K (fraction kept) or --count N".into()),
    };
    let method = SparseTaskVector {
        alpha: a.alpha,
        topk,
        scope: match a.scope {
            ScopeArg::PerTensor => Scope::PerTensor,
            ScopeArg::Global => Scope::Global,
        },
        direction: match a.direction {
            DirectionArg::TowardLlm => Direction::TowardLlm,
            DirectionArg::AwayFromLlm => Direction::AwayFromLlm,
        },
    };
    let r = merge_vlm_with_llm(&VlmMergeOptions {
        vlm,
        llm,
        out: a.out,
        method,
        force: a.force,
        allow_nonfinite: a.allow_nonfinite,
        max_shard_bytes: a.max_shard_bytes,
        show_progress,
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "merged {} language-model tensors, passed {} through; kept {} of {} task-vector entries ({:.2} %)",
            r.merged_tensors,
            r.passed_through,
            r.kept,
            r.population,
            100.0 * r.kept as f64 / r.population.max(1) as f64
        );
        println!(
            "{:.2} s, {:.1} MB/s read -> {} ({} shard(s))",
            r.seconds,
            r.bytes_read as f64 / r.seconds.max(1e-9) / 1e6,
            r.out.display(),
            r.shards
        );
    }
    Ok(())
}
