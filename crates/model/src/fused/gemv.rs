//! `y = x · wᵀ` for `x` of 1–4 rows as CUDA C++ of ours (`gemv.cu`, `MMREASON_GEMV=cuda[:UNROLL]`), compiled
//! with NVRTC and queued on burn-cuda's stream (`fused::nvrtc`).
//!
//! Why: decoding at batch 1 reads every weight once per token, so its products run at memory speed or not at
//! all. Our cubecl kernel (`cube::skinny_nt_kernel`) moves the 7B MLP's down projection at 2.0–2.2 TB/s on an
//! H200 (≈ 4.8 TB/s; run 8) and 1.77 TB/s on an H100 (run 6): a cube of 8 output columns issues two 16-byte loads
//! per unit before it waits for them, at about half occupancy on 4,096 columns — too few bytes in flight to hide
//! the memory's latency. Here each unit issues `UNROLL` (default 8) weight loads before using any, the weights
//! bypass L1 (x stays there for every column), and no barrier or shared memory is involved (one warp per
//! column, reduced by shuffles). At 56 registers per unit (UNROLL 8) an SM holds 4 cubes, 1,024 units: 128 KiB
//! of weight loads in flight per SM (UNROLL 16: 119 registers, 2 cubes, the same bytes). Off by default until
//! a device run has timed it against the cubecl kernel.

use std::any::TypeId;
use std::sync::OnceLock;

use burn::tensor::{DType, Tensor, backend::Backend};
use burn_cubecl::cubecl::cuda::CudaRuntime;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use cudarc::driver::sys as dsys;

use super::cube::{primitive_of, tensor_of};
use super::nvrtc::{self, Cube, Launch};

/// The kernel's CUDA C++ (its parameters defined by [`source`]).
pub const SOURCE: &str = include_str!("gemv.cu");

/// Rows of `x` the kernel takes (`GEMV_MAX_M`), output columns per cube (`GEMV_WARPS`), units per cube.
pub const MAX_M: usize = 4;
const COLUMNS: usize = 8;
const UNITS: u32 = 256;

/// The source of one variant: bf16 or f16, `unroll` weight loads in flight per unit.
pub fn source(bf16: bool, unroll: usize) -> String {
    format!(
        "#define MMA_BF16 {}\n#define UNROLL {unroll}\n{}{SOURCE}",
        u8::from(bf16),
        nvrtc::PRELUDE
    )
}

/// `MMREASON_GEMV=cuda[:UNROLL]` (UNROLL 1–16, default 8): the loads in flight per unit, or `None` where another
/// kernel is asked for (read once).
pub fn wanted() -> Option<usize> {
    static ASKED: OnceLock<Option<usize>> = OnceLock::new();
    *ASKED.get_or_init(|| {
        let v = std::env::var("MMREASON_GEMV").ok()?;
        let mut parts = v.split(':');
        if parts.next() != Some("cuda") {
            return None;
        }
        Some(
            parts
                .next()
                .and_then(|u| u.parse().ok())
                .unwrap_or(8usize)
                .clamp(1, 16),
        )
    })
}

/// `GemvParams` in the source, field for field.
#[repr(C)]
struct Params {
    x: dsys::CUdeviceptr,
    w: dsys::CUdeviceptr,
    y: dsys::CUdeviceptr,
    x_stride: i64,
    w_stride: i64,
    y_stride: i64,
    m: i32,
    n: i32,
    k: i32,
    pad: i32,
}

/// The row stride (elements) of a rank-2 tensor whose rows are contiguous and start 16-byte aligned (relative
/// to its first, whose address the launch checks).
fn row_stride(t: &Cube) -> Option<usize> {
    let (shape, strides) = (t.meta.shape(), t.meta.strides());
    if shape.num_dims() != 2 || (shape[1] > 1 && strides[1] != 1) {
        return None;
    }
    let s = if shape[0] > 1 { strides[0] } else { shape[1] };
    s.is_multiple_of(8).then_some(s)
}

/// `x · wᵀ` (`x` `[m, k]` with `m` ≤ [`MAX_M`], `w` `[n, k]` as checkpoints store it) with `unroll` loads in
/// flight per unit, in bf16 or f16 on burn-cuda with `k` a multiple of 8; `None` where it does not apply (the
/// caller takes the cubecl kernel or cuBLAS).
pub fn linear<B: Backend>(x: &Tensor<B, 2>, w: &Tensor<B, 2>, unroll: usize) -> Option<Tensor<B, 2>> {
    if TypeId::of::<B>() != TypeId::of::<crate::backend::CudaBackend>() {
        return None;
    }
    let [m, k] = x.dims();
    let [n, kw] = w.dims();
    let bf16 = match x.dtype() {
        DType::BF16 => true,
        DType::F16 => false,
        _ => return None,
    };
    if w.dtype() != x.dtype()
        || m == 0
        || m > MAX_M
        || k != kw
        || k == 0
        || !k.is_multiple_of(8)
        || n == 0
        || k > i32::MAX as usize
        || n > i32::MAX as usize - COLUMNS
        || !(1..=16).contains(&unroll)
    {
        return None;
    }
    let variant = format!("{}_{unroll}", u8::from(bf16));
    if nvrtc::refused("mmreason_gemv", &variant) {
        return None;
    }
    let prepared = |t: &Tensor<B, 2>| -> Option<Cube> {
        let c = primitive_of::<B, CudaRuntime, 2>(t.clone())?;
        Some(if row_stride(&c).is_some() {
            c
        } else {
            burn_cubecl::kernel::into_contiguous(c)
        })
    };
    let (xc, wc) = (prepared(x)?, prepared(w)?);
    let (xs, ws) = (row_stride(&xc)?, row_stride(&wc)?);
    let out =
        empty_device_contiguous_dtype(xc.client.clone(), xc.device.clone(), vec![m, n].into(), xc.dtype);
    let params = |p: &[dsys::CUdeviceptr]| -> Result<Params, String> {
        Ok(Params {
            x: p[0],
            w: p[1],
            y: p[2],
            x_stride: xs as i64,
            w_stride: ws as i64,
            y_stride: n as i64,
            m: m as i32,
            n: n as i32,
            k: k as i32,
            pad: 0,
        })
    };
    let done = nvrtc::run(
        &[&xc, &wc, &out],
        Launch {
            entry: "mmreason_gemv",
            variant,
            source: &|| source(bf16, unroll),
            grid: (n.div_ceil(COLUMNS) as u32, 1, 1),
            block: (UNITS, 1, 1),
            params: &params,
        },
    );
    nvrtc::declined("MMREASON_GEMV=cuda", done)?;
    tensor_of::<B, CudaRuntime, 2>(out)
}
