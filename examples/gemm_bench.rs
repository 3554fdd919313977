//! The linear-layer product `x · wᵀ` on one backend: burn's matmul against the path the models use
//! (`gemm::linear_nt`: cuBLAS on CUDA), same shapes, same run — TFLOP/s and the largest difference.
//!
//! cargo run --release --features cuda --example gemm_bench -- --backend cuda --dtype bf16
//!
//! Default shapes: 8192³ and the 7B MLP (m = 4096 tokens, k = 4096, n = 14336), plus a decode-sized m = 32.
//! `--cubek simple_mma,specialized_tma_mma` (or `all`) times cubek's kernels by strategy on the same operands.

use std::process::ExitCode;

use clap::Parser;
use mmreason::model::{BackendKind, WeightDtype, gemm_bench};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "cpu")]
    backend: String,
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Shapes as m×k×n, comma-separated.
    #[arg(long, default_value = "8192x8192x8192,4096x4096x14336,32x4096x14336")]
    shapes: String,
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// cubek matmul strategies to time beside them, comma-separated (`all` for every one; GPU builds only):
    /// see `mmreason::model::gemm::cubek`.
    #[arg(long, default_value = "")]
    cubek: String,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let backend = a.backend.parse::<BackendKind>()?;
        let dtype = a.dtype.parse::<WeightDtype>()?;
        let shapes = gemm_bench::parse_shapes(&a.shapes)?;
        let cubek = gemm_bench::parse_strategies(&a.cubek)?;
        for r in gemm_bench::run(backend, dtype, &shapes, a.iters, &cubek)? {
            println!("{}", serde_json::to_string(&r)?);
        }
        Ok(())
    };
    mmreason::exit_code(run())
}
