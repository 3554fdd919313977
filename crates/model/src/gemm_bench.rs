//! The `gemm_bench` example's work: TFLOP/s of burn's matmul and of [`linear_nt`] on the same operands.

use std::time::Instant;

use burn::tensor::{Distribution, Tensor, backend::Backend};
use serde::Serialize;

use crate::backend::BackendKind;
use crate::error::{ModelError, Result};
use crate::gemm::{GemmImpl, linear_nt};
use crate::load::WeightDtype;

/// One shape's figures.
#[derive(Debug, Clone, Serialize)]
pub struct GemmFigures {
    pub backend: String,
    pub dtype: String,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub burn_tflops: f64,
    /// `linear_nt` (cuBLAS on CUDA unless `MMREASON_GEMM=burn`).
    pub linear_nt_tflops: f64,
    pub linear_nt_impl: String,
    /// max |Δ| between the two results, relative to max |burn|.
    pub max_rel_diff: f64,
}

/// Parses `m×k×n` (or `mxkxn`) shapes separated by commas.
pub fn parse_shapes(s: &str) -> Result<Vec<[usize; 3]>> {
    s.split(',')
        .map(|one| {
            let dims: Vec<usize> = one
                .split(['x', '×'])
                .map(|d| d.trim().parse::<usize>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| ModelError::Input(format!("shape `{one}`: {e}")))?;
            <[usize; 3]>::try_from(dims).map_err(|_| ModelError::Input(format!("shape `{one}` is not m×k×n")))
        })
        .collect()
}

pub fn run(
    backend: BackendKind,
    dtype: WeightDtype,
    shapes: &[[usize; 3]],
    iters: usize,
) -> Result<Vec<GemmFigures>> {
    crate::on_backend!(backend, run_on(backend, dtype, shapes, iters))
}

fn time<B: Backend>(iters: usize, f: impl Fn() -> Tensor<B, 2>) -> (f64, Tensor<B, 2>) {
    // Warm-up (compilation, autotuning), then the mean of `iters` runs ended by one read-back.
    let out = f();
    let _ = out.clone().slice([0..1, 0..1]).into_data();
    let t0 = Instant::now();
    let mut last = out;
    for _ in 0..iters.max(1) {
        last = f();
    }
    let _ = last.clone().slice([0..1, 0..1]).into_data();
    (t0.elapsed().as_secs_f64() / iters.max(1) as f64, last)
}

fn run_on<B: Backend>(
    backend: BackendKind,
    dtype: WeightDtype,
    shapes: &[[usize; 3]],
    iters: usize,
    device: &B::Device,
) -> Result<Vec<GemmFigures>> {
    let mut out = Vec::new();
    for &[m, k, n] in shapes {
        let x = Tensor::<B, 2>::random([m, k], Distribution::Normal(0.0, 1.0), device).cast(dtype.burn());
        let w = Tensor::<B, 2>::random([n, k], Distribution::Normal(0.0, 0.02), device).cast(dtype.burn());
        let flops = 2.0 * (m * k * n) as f64;
        let (t_burn, y_burn) = time(iters, || x.clone().matmul(w.clone().transpose()));
        let (t_ours, y_ours) = time(iters, || linear_nt(x.clone(), &w));
        let yb = y_burn.cast(burn::tensor::DType::F32);
        let diff = (yb.clone() - y_ours.cast(burn::tensor::DType::F32))
            .abs()
            .max()
            .into_scalar()
            .elem_f64();
        let scale = yb.abs().max().into_scalar().elem_f64().max(f64::MIN_POSITIVE);
        out.push(GemmFigures {
            backend: backend.name().into(),
            dtype: dtype.name().into(),
            m,
            k,
            n,
            burn_tflops: flops / t_burn / 1e12,
            linear_nt_tflops: flops / t_ours / 1e12,
            linear_nt_impl: GemmImpl::active::<B>().name().into(),
            max_rel_diff: diff / scale,
        });
    }
    Ok(out)
}

trait ElemF64 {
    fn elem_f64(self) -> f64;
}

impl<E: burn::tensor::ElementConversion> ElemF64 for E {
    fn elem_f64(self) -> f64 {
        self.elem::<f64>()
    }
}
