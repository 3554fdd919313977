//! The `gemm_bench` example's work: TFLOP/s of burn's matmul and of [`linear_nt`] on the same operands, and
//! optionally of cubek's matmul strategies by name (`--cubek`, see [`crate::gemm::cubek`]).

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
    /// cubek's strategies asked for, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cubek: Vec<StrategyFigures>,
    /// The cuBLAS order the products asked for ([`crate::gemm::cublas_order`]); left out off CUDA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cublas_order: Option<&'static str>,
    /// cuBLAS products per order so far ([`crate::gemm::cublas_orders`]); left out off CUDA.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub cublas_orders: std::collections::BTreeMap<String, u64>,
}

/// One cubek strategy on one shape: `None`s where it declined (the reason is printed once).
#[derive(Debug, Clone, Serialize)]
pub struct StrategyFigures {
    pub name: String,
    pub tflops: Option<f64>,
    /// max |Δ| against burn's result, relative to max |burn|.
    pub max_rel_diff: Option<f64>,
}

/// Checks the `--cubek` names (comma-separated; `all` for every one) before anything runs.
pub fn parse_strategies(s: &str) -> Result<Vec<String>> {
    let names: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect();
    if names.is_empty() {
        return Ok(names);
    }
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    {
        use crate::gemm::cubek::CubekGemm;
        if names.iter().any(|n| n == "all") {
            return Ok(CubekGemm::NAMES.iter().map(|n| n.to_string()).collect());
        }
        for n in &names {
            if CubekGemm::parse(n).is_none() {
                return Err(ModelError::Input(format!(
                    "--cubek: no strategy `{n}` (one of all, {})",
                    CubekGemm::NAMES.join(", ")
                )));
            }
        }
        Ok(names)
    }
    #[cfg(not(any(feature = "cuda", feature = "wgpu")))]
    Err(ModelError::Input(
        "--cubek: cubek's kernels need a build with --features wgpu or cuda".into(),
    ))
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
    cubek: &[String],
) -> Result<Vec<GemmFigures>> {
    crate::on_backend!(backend, run_on(backend, dtype, shapes, iters, cubek))
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
    cubek: &[String],
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
        let scale = yb
            .clone()
            .abs()
            .max()
            .into_scalar()
            .elem_f64()
            .max(f64::MIN_POSITIVE);
        let rel = |y: Tensor<B, 2>| {
            (yb.clone() - y.cast(burn::tensor::DType::F32))
                .abs()
                .max()
                .into_scalar()
                .elem_f64()
                / scale
        };
        let strategies = cubek
            .iter()
            .map(|name| strategy_figures(name, &x, &w, iters, flops, rel))
            .collect();
        out.push(GemmFigures {
            backend: backend.name().into(),
            dtype: dtype.name().into(),
            m,
            k,
            n,
            burn_tflops: flops / t_burn / 1e12,
            linear_nt_tflops: flops / t_ours / 1e12,
            linear_nt_impl: GemmImpl::active::<B>().name(),
            max_rel_diff: rel(y_ours),
            cubek: strategies,
            cublas_order: crate::gemm::cublas_order(),
            cublas_orders: crate::gemm::cublas_orders(),
        });
    }
    Ok(out)
}

/// cubek's strategy `name` on `x · wᵀ` (the weight a transposed view, as `linear_nt` passes it).
fn strategy_figures<B: Backend>(
    name: &str,
    x: &Tensor<B, 2>,
    w: &Tensor<B, 2>,
    iters: usize,
    flops: f64,
    rel: impl Fn(Tensor<B, 2>) -> f64,
) -> StrategyFigures {
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    let (tflops, max_rel_diff) = match crate::gemm::cubek::CubekGemm::parse(name) {
        Some(kind) => {
            let wt = w.clone().transpose();
            let run = || crate::gemm::cubek::product(x, &wt, kind);
            match run() {
                // `product` declines the same way on every call with these operands.
                Some(_) => {
                    let (t, y) = time(iters, || run().unwrap_or_else(|| x.clone().matmul(wt.clone())));
                    (Some(flops / t / 1e12), Some(rel(y)))
                }
                None => (None, None),
            }
        }
        None => (None, None),
    };
    #[cfg(not(any(feature = "cuda", feature = "wgpu")))]
    let (tflops, max_rel_diff) = {
        let _ = (x, w, iters, flops, rel);
        (None, None)
    };
    StrategyFigures {
        name: name.into(),
        tflops,
        max_rel_diff,
    }
}

trait ElemF64 {
    fn elem_f64(self) -> f64;
}

impl<E: burn::tensor::ElementConversion> ElemF64 for E {
    fn elem_f64(self) -> f64 {
        self.elem::<f64>()
    }
}
