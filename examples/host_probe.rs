//! What a busy spell of the host costs beyond its own length when a round trip to cubecl's device thread
//! follows, with the spell on the calling thread or on the device thread itself (`mmreason::model::host_probe`
//! says why it matters: the cuBLAS calls' host waits). JSON lines, then a table on stderr.
//!
//! cargo run --release --features wgpu --example host_probe -- --backend wgpu
//! cargo run --release --features cuda --example host_probe -- --backend cuda

use std::process::ExitCode;

use clap::Parser;
use mmreason::model::{BackendKind, host_probe};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "wgpu")]
    backend: String,
    /// How long the host is busy before each round trip, in µs, comma-separated.
    #[arg(long, default_value = "0,100,200,500,1000,3000")]
    away_us: String,
    #[arg(long, default_value_t = 40)]
    samples: usize,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let backend = a.backend.parse::<BackendKind>()?;
        let aways = a
            .away_us
            .split(',')
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|e| format!("--away-us `{v}`: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let figures = host_probe::run(backend, &aways, a.samples)?;
        for f in &figures {
            println!("{}", serde_json::to_string(f)?);
        }
        eprintln!("| busy (µs) | busy on | cost beyond the busy time, median (µs) | p90 (µs) |");
        eprintln!("|---|---|---|---|");
        for f in &figures {
            let side = if f.on_device_thread {
                "device thread"
            } else {
                "caller"
            };
            eprintln!(
                "| {} | {side} | {:.1} | {:.1} |",
                f.away_us, f.median_us, f.p90_us
            );
        }
        Ok(())
    };
    mmreason::exit_code(run())
}
