//! The models' element-wise chains, the decode-time attention and the few-row products as one GPU kernel each,
//! written in cubecl so the same code runs on burn-cuda (CUDA through NVRTC) and burn-wgpu (Vulkan/Metal; CI
//! runs it on Mesa's lavapipe). burn-cubecl runs each op of a composed chain as its own kernel — RMSNorm alone
//! is eight launches and four full passes over the activations in f32 — and those chains, not the GEMMs, took
//! most of a 7B prefill on an H100 (benches/gpu/NOTES.md, run 2). The kernels run on burn's own stream, so they
//! cost no host synchronisation (a cuBLAS call costs two: see `gemm`).
//!
//! Numerics follow transformers, as the composed versions do: statistics and softmax in f32, results rounded
//! to the activations' dtype where transformers rounds them.
//!
//! `MMREASON_FUSED=off` turns them off (burn's composition instead), to measure one against the other.

use std::any::{Any, TypeId};
use std::sync::OnceLock;

use burn::tensor::{DType, Tensor, TensorPrimitive, backend::Backend};
use burn_cubecl::CubeRuntime;
use burn_cubecl::cubecl;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

/// Units per cube of the row kernels (a power of two: the reductions halve it).
const BLOCK: u32 = 256;
/// Cubes along x before the grid wraps to y (wgpu allows 65 535 per dimension).
const GRID_X: usize = 32_768;

/// Whether the fused kernels are on (`MMREASON_FUSED=off` turns them off, the mma attention included).
pub(crate) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        !matches!(
            std::env::var("MMREASON_FUSED").as_deref(),
            Ok("off" | "0" | "false" | "no")
        )
    })
}

/// Sum (or, with `take_max`, maximum) of `v` over the `lanes` units of one segment `seg..seg + lanes` of the
/// cube's shared memory, `lanes` a power of two. Every unit of the cube takes part in the barriers; each gets
/// its own segment's result.
#[cube]
fn reduce(
    v: f32,
    smem: &mut SharedMemory<f32>,
    seg: usize,
    lane: usize,
    lanes: usize,
    #[comptime] take_max: bool,
) -> f32 {
    smem[seg + lane] = v;
    sync_cube();
    let mut stride = lanes / 2;
    while stride > 0 {
        if lane < stride {
            let (a, b) = (smem[seg + lane], smem[seg + lane + stride]);
            smem[seg + lane] = if take_max { max(a, b) } else { a + b };
        }
        sync_cube();
        stride /= 2;
    }
    let total = smem[seg];
    sync_cube();
    total
}

/// Sum of `v` over all the cube's units (all units get it). `smem` holds `CUBE_DIM` values.
#[cube]
fn cube_sum(v: f32, smem: &mut SharedMemory<f32>) -> f32 {
    reduce(v, smem, 0, UNIT_POS as usize, CUBE_DIM as usize, false)
}

/// Maximum of `v` over all the cube's units (all units get it).
#[cube]
fn cube_max(v: f32, smem: &mut SharedMemory<f32>) -> f32 {
    reduce(v, smem, 0, UNIT_POS as usize, CUBE_DIM as usize, true)
}

/// The row kernels' layout ([`NormLayout`]): `CUBE_DIM_Y` rows per cube, `CUBE_DIM_X` lanes per row. Returns
/// this unit's row, its lane, the lanes per row and the row's length in vectors — 0 for a row past `rows` (the
/// grid is rounded up to whole cubes), which then touches no memory but still reaches the cube's barriers.
#[cube]
fn norm_row(rows: u32, hv: usize) -> (usize, usize, usize, usize) {
    let row = CUBE_POS * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
    let mut len = 0usize;
    if row < rows as usize {
        len = hv;
    }
    (row, UNIT_POS_X as usize, CUBE_DIM_X as usize, len)
}

/// Sum of `v` over the lanes of this unit's row: with `plane` the row is one plane (register shuffles, no
/// barrier), otherwise its segment of the cube's shared memory (every unit of the cube takes part).
#[cube]
fn row_sum(v: f32, smem: &mut SharedMemory<f32>, lane: usize, lanes: usize, #[comptime] plane: bool) -> f32 {
    if plane {
        plane_sum(v)
    } else {
        reduce(v, smem, UNIT_POS_Y as usize * lanes, lane, lanes, false)
    }
}

/// Rows of `h` values ([`norm_row`]): torch's LayerNorm with statistics in f32 (biased variance), the normalised
/// value rounded to `F`, then `· w + bias` in `F`; of `v = x`, or — with `residual` — of `v = res + (x + pb)`
/// (a product `x`, its bias `pb` and the residual stream `res`, each sum in `F` as the composition adds), which
/// is written to `sum` too: CLIP's residual sum and the LayerNorm after it in one launch.
/// Every array is read and written in vectors of `N` values.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn layer_norm_kernel<F: Float, N: Size>(
    x: &Array<Vector<F, N>>,
    pb: &Array<Vector<F, N>>,
    res: &Array<Vector<F, N>>,
    w: &Array<Vector<F, N>>,
    bias: &Array<Vector<F, N>>,
    sum: &mut Array<Vector<F, N>>,
    out: &mut Array<Vector<F, N>>,
    rows: u32,
    h: u32,
    eps: f32,
    #[comptime] residual: bool,
    #[comptime] plane: bool,
) {
    let mut smem = SharedMemory::<f32>::new(BLOCK as usize);
    let vs = x.vector_size().comptime();
    let (row, lane, lanes, hv) = norm_row(rows, h as usize / vs);
    let base = row * hv;
    let mut acc = f32::new(0.0);
    let mut i = lane;
    while i < hv {
        let v = ln_input(x, pb, res, base, i, residual);
        if residual {
            sum[base + i] = v;
        }
        #[unroll]
        for j in 0..vs {
            acc += f32::cast_from(v[j]);
        }
        i += lanes;
    }
    let mean = row_sum(acc, &mut smem, lane, lanes, plane) / f32::cast_from(h);
    // Each unit reads only what it wrote itself (recomputed: no cross-unit global-memory ordering).
    let mut acc = f32::new(0.0);
    let mut i = lane;
    while i < hv {
        let v = ln_input(x, pb, res, base, i, residual);
        #[unroll]
        for j in 0..vs {
            let c = f32::cast_from(v[j]) - mean;
            acc += c * c;
        }
        i += lanes;
    }
    let r = f32::new(1.0) / f32::sqrt(row_sum(acc, &mut smem, lane, lanes, plane) / f32::cast_from(h) + eps);
    let mut i = lane;
    while i < hv {
        let v = ln_input(x, pb, res, base, i, residual);
        let (wv, bv) = (w[i], bias[i]);
        let mut o = Vector::<F, N>::empty();
        #[unroll]
        for j in 0..vs {
            o[j] = F::cast_from((f32::cast_from(v[j]) - mean) * r) * wv[j] + bv[j];
        }
        out[base + i] = o;
        i += lanes;
    }
}

/// `x[base + i]`, or `res[base + i] + (x[base + i] + pb[i])` with `residual`.
#[cube]
fn ln_input<F: Float, N: Size>(
    x: &Array<Vector<F, N>>,
    pb: &Array<Vector<F, N>>,
    res: &Array<Vector<F, N>>,
    base: usize,
    i: usize,
    #[comptime] residual: bool,
) -> Vector<F, N> {
    if residual {
        res[base + i] + (x[base + i] + pb[i])
    } else {
        x[base + i]
    }
}

/// Rows of `h` values ([`norm_row`]): `w · F(v · rsqrt(mean(v²) + ε))`, the mean in f32, for `v = x` or — with
/// `residual` — for the residual sum `v = x + a` (rounded to `F`, as transformers adds in the activations'
/// dtype), which is written to `sum` too: the decoder's `residual + output` and the next norm in one launch.
/// Every array is read and written in vectors of `N` values (16 bytes where the device allows: run 6 measured
/// the one-value-per-load version at 0.8 TB/s).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn rms_norm_kernel<F: Float, N: Size>(
    x: &Array<Vector<F, N>>,
    a: &Array<Vector<F, N>>,
    w: &Array<Vector<F, N>>,
    sum: &mut Array<Vector<F, N>>,
    out: &mut Array<Vector<F, N>>,
    rows: u32,
    h: u32,
    eps: f32,
    #[comptime] residual: bool,
    #[comptime] plane: bool,
) {
    let mut smem = SharedMemory::<f32>::new(BLOCK as usize);
    let vs = x.vector_size().comptime();
    let (row, lane, lanes, hv) = norm_row(rows, h as usize / vs);
    let base = row * hv;
    let mut acc = f32::new(0.0);
    let mut i = lane;
    while i < hv {
        let v = norm_input(x, a, base + i, residual);
        if residual {
            sum[base + i] = v;
        }
        #[unroll]
        for j in 0..vs {
            let e = f32::cast_from(v[j]);
            acc += e * e;
        }
        i += lanes;
    }
    let total = row_sum(acc, &mut smem, lane, lanes, plane);
    let r = f32::new(1.0) / f32::sqrt(total / f32::cast_from(h) + eps);
    // Each unit reads only what it summed itself (recomputed: no cross-unit global-memory ordering).
    let mut i = lane;
    while i < hv {
        let v = norm_input(x, a, base + i, residual);
        let wv = w[i];
        let mut o = Vector::<F, N>::empty();
        #[unroll]
        for j in 0..vs {
            o[j] = F::cast_from(f32::cast_from(v[j]) * r) * wv[j];
        }
        out[base + i] = o;
        i += lanes;
    }
}

/// [`rms_norm_kernel`] with the row read once: each lane keeps its `per` vectors (`lane + c·lanes`) in
/// registers between the sum of squares and the output ([`NormLayout::Registers`]). The same f32 operations in
/// the same order per lane, so the same results.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn rms_norm_regs_kernel<F: Float, N: Size>(
    x: &Array<Vector<F, N>>,
    a: &Array<Vector<F, N>>,
    w: &Array<Vector<F, N>>,
    sum: &mut Array<Vector<F, N>>,
    out: &mut Array<Vector<F, N>>,
    rows: u32,
    h: u32,
    eps: f32,
    #[comptime] residual: bool,
    #[comptime] plane: bool,
    #[comptime] per: usize,
) {
    let mut smem = SharedMemory::<f32>::new(BLOCK as usize);
    let vs = x.vector_size().comptime();
    let (row, lane, lanes, hv) = norm_row(rows, h as usize / vs);
    let base = row * hv;
    let mut vals = Array::<Vector<F, N>>::new(per);
    let mut acc = f32::new(0.0);
    #[unroll]
    for c in 0..per {
        let i = lane + c * lanes;
        if i < hv {
            let v = norm_input(x, a, base + i, residual);
            if residual {
                sum[base + i] = v;
            }
            vals[c] = v;
            #[unroll]
            for j in 0..vs {
                let e = f32::cast_from(v[j]);
                acc += e * e;
            }
        }
    }
    let total = row_sum(acc, &mut smem, lane, lanes, plane);
    let r = f32::new(1.0) / f32::sqrt(total / f32::cast_from(h) + eps);
    #[unroll]
    for c in 0..per {
        let i = lane + c * lanes;
        if i < hv {
            let (v, wv) = (vals[c], w[i]);
            let mut o = Vector::<F, N>::empty();
            #[unroll]
            for j in 0..vs {
                o[j] = F::cast_from(f32::cast_from(v[j]) * r) * wv[j];
            }
            out[base + i] = o;
        }
    }
}

/// [`layer_norm_kernel`] with the row read once ([`rms_norm_regs_kernel`]'s registers): the mean, the
/// variance and the output from the same `per` vectors per lane.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn layer_norm_regs_kernel<F: Float, N: Size>(
    x: &Array<Vector<F, N>>,
    pb: &Array<Vector<F, N>>,
    res: &Array<Vector<F, N>>,
    w: &Array<Vector<F, N>>,
    bias: &Array<Vector<F, N>>,
    sum: &mut Array<Vector<F, N>>,
    out: &mut Array<Vector<F, N>>,
    rows: u32,
    h: u32,
    eps: f32,
    #[comptime] residual: bool,
    #[comptime] plane: bool,
    #[comptime] per: usize,
) {
    let mut smem = SharedMemory::<f32>::new(BLOCK as usize);
    let vs = x.vector_size().comptime();
    let (row, lane, lanes, hv) = norm_row(rows, h as usize / vs);
    let base = row * hv;
    let mut vals = Array::<Vector<F, N>>::new(per);
    let mut acc = f32::new(0.0);
    #[unroll]
    for c in 0..per {
        let i = lane + c * lanes;
        if i < hv {
            let v = ln_input(x, pb, res, base, i, residual);
            if residual {
                sum[base + i] = v;
            }
            vals[c] = v;
            #[unroll]
            for j in 0..vs {
                acc += f32::cast_from(v[j]);
            }
        }
    }
    let mean = row_sum(acc, &mut smem, lane, lanes, plane) / f32::cast_from(h);
    let mut acc = f32::new(0.0);
    #[unroll]
    for c in 0..per {
        if lane + c * lanes < hv {
            let v = vals[c];
            #[unroll]
            for j in 0..vs {
                let d = f32::cast_from(v[j]) - mean;
                acc += d * d;
            }
        }
    }
    let r = f32::new(1.0) / f32::sqrt(row_sum(acc, &mut smem, lane, lanes, plane) / f32::cast_from(h) + eps);
    #[unroll]
    for c in 0..per {
        let i = lane + c * lanes;
        if i < hv {
            let (v, wv, bv) = (vals[c], w[i], bias[i]);
            let mut o = Vector::<F, N>::empty();
            #[unroll]
            for j in 0..vs {
                o[j] = F::cast_from((f32::cast_from(v[j]) - mean) * r) * wv[j] + bv[j];
            }
            out[base + i] = o;
        }
    }
}

/// `x[i]`, or `x[i] + a[i]` with `residual` (vectors).
#[cube]
fn norm_input<F: Float, N: Size>(
    x: &Array<Vector<F, N>>,
    a: &Array<Vector<F, N>>,
    i: usize,
    #[comptime] residual: bool,
) -> Vector<F, N> {
    if residual { x[i] + a[i] } else { x[i] }
}

/// CLIP's `quick_gelu`, `x · sigmoid(1.702·x)`, each step rounded to `F` as torch does.
#[cube(launch_unchecked)]
fn quick_gelu_kernel<F: Float>(x: &Array<F>, out: &mut Array<F>) {
    let pos = ABSOLUTE_POS;
    if pos >= out.len() {
        terminate!();
    }
    out[pos] = quick_gelu_of::<F>(x[pos]);
}

/// `quick_gelu` of one value, each step rounded to `F` as torch does ([`quick_gelu_kernel`]).
#[cube]
fn quick_gelu_of<F: Float>(v: F) -> F {
    let a = f32::cast_from(F::cast_from(f32::cast_from(v) * f32::new(1.702)));
    v * F::cast_from(f32::new(1.0) / (f32::new(1.0) + f32::exp(-a)))
}

/// `[res +] act(y + bias)` for rows of `width` values, each operation in `F` as the composition does; one
/// unit per vector of `N` values (`N` divides `width`), `total` vectors.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn bias_act_kernel<F: Float, N: Size>(
    y: &Array<Vector<F, N>>,
    bias: &Array<Vector<F, N>>,
    res: &Array<Vector<F, N>>,
    out: &mut Array<Vector<F, N>>,
    total: u32,
    width: u32,
    #[comptime] gelu: bool,
    #[comptime] residual: bool,
) {
    let pos = ABSOLUTE_POS;
    if pos >= total as usize {
        terminate!();
    }
    let vs = out.vector_size().comptime();
    let mut t = y[pos] + bias[pos % width as usize];
    if gelu {
        #[unroll]
        for j in 0..vs {
            t[j] = quick_gelu_of::<F>(t[j]);
        }
    }
    out[pos] = if residual { res[pos] + t } else { t };
}

/// The stacked projection `qkv` `[b, s, 3·heads·d]` plus `bias`, split into `q`, `k`, `v` `[b, heads, s, d]`;
/// one unit per vector of `N` values (`N` divides `d`; 16-byte loads where the device allows: ptxas showed
/// the one-value version moving CLIP's ≈ 113 MB of q/k/v per layer at b32 in 2-byte accesses).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn qkv_bias_heads_kernel<F: Float, N: Size>(
    qkv: &Array<Vector<F, N>>,
    bias: &Array<Vector<F, N>>,
    q: &mut Array<Vector<F, N>>,
    k: &mut Array<Vector<F, N>>,
    v: &mut Array<Vector<F, N>>,
    s: u32,
    heads: u32,
    d: u32,
) {
    let pos = ABSOLUTE_POS;
    if pos >= qkv.len() {
        terminate!();
    }
    let vs = qkv.vector_size().comptime();
    // `d` and every index below in vectors.
    let (s, heads, d) = (s as usize, heads as usize, d as usize / vs);
    // `pos` walks the input: ((token · 3·heads) + j) · d + di.
    let di = pos % d;
    let rest = pos / d;
    let j = rest % (3 * heads);
    let token = rest / (3 * heads);
    let (bi, si) = (token / s, token % s);
    let value = qkv[pos] + bias[j * d + di];
    let hj = j % heads;
    let dst = ((bi * heads + hj) * s + si) * d + di;
    if j < heads {
        q[dst] = value;
    } else if j < 2 * heads {
        k[dst] = value;
    } else {
        v[dst] = value;
    }
}

/// `silu(gate) · up` for rows `[gate | up]` of `2i` values; silu in f32, rounded, then the product. One unit
/// per vector of `N` values (`N` divides `i`; 16-byte loads where the device allows), `total` vectors out.
#[cube(launch_unchecked)]
fn silu_mul_kernel<F: Float, N: Size>(
    gate_up: &Array<Vector<F, N>>,
    out: &mut Array<Vector<F, N>>,
    total: u32,
    iv: u32,
) {
    let pos = ABSOLUTE_POS;
    if pos >= total as usize {
        terminate!();
    }
    let vs = out.vector_size().comptime();
    let iv = iv as usize;
    let row = pos / iv;
    let col = pos % iv;
    let g = gate_up[row * 2 * iv + col];
    let u = gate_up[row * 2 * iv + iv + col];
    let mut o = Vector::<F, N>::empty();
    #[unroll]
    for j in 0..vs {
        let gj = f32::cast_from(g[j]);
        o[j] = F::cast_from(gj / (f32::new(1.0) + f32::exp(-gj))) * u[j];
    }
    out[pos] = o;
}

/// Heads `first..first + n` of `qkv` `[b, s, width]` as `[b, n, s, d]`, with RoPE (`x·cos + rotate_half(x)·sin`,
/// tables `[b, s, d]`) when `rope` is 1.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn heads_kernel<F: Float>(
    qkv: &Array<F>,
    cos: &Array<F>,
    sin: &Array<F>,
    out: &mut Array<F>,
    s: u32,
    width: u32,
    first: u32,
    n: u32,
    d: u32,
    rope: u32,
) {
    let pos = ABSOLUTE_POS;
    if pos >= out.len() {
        terminate!();
    }
    let (s, d, n) = (s as usize, d as usize, n as usize);
    let di = pos % d;
    let rest = pos / d;
    let si = rest % s;
    let rest = rest / s;
    let hi = rest % n;
    let bi = rest / n;
    let token = bi * s + si;
    let src = token * width as usize + (first as usize + hi) * d + di;
    if rope == 1 {
        out[pos] = rope_at(qkv, cos, sin, src, token * d + di, di, d);
    } else {
        out[pos] = qkv[src];
    }
}

/// `x·cos + rotate_half(x)·sin` of the element `qkv[src]`, at position `di` of its head of `d` values, its
/// table entry at `at`.
#[cube]
fn rope_at<F: Float>(
    qkv: &Array<F>,
    cos: &Array<F>,
    sin: &Array<F>,
    src: usize,
    at: usize,
    di: usize,
    d: usize,
) -> F {
    let half = d / 2;
    let rot = if di < half {
        -qkv[src + half]
    } else {
        qkv[src - half]
    };
    qkv[src] * cos[at] + rot * sin[at]
}

/// All heads of the stacked projection `qkv` `[b, s, (nh + 2·nkv)·d]` at once: queries `[b, nh, s, d]` and keys
/// with RoPE, values as they are — [`heads_kernel`] three times in one launch. Keys and values go to
/// `[b, nkv, cap, d]` at positions `at..at + s` (`cap = s`, `at = 0`: their own tensors; otherwise a KV cache's
/// storage, written in place).
/// One unit per vector of `N` values (`N` divides `d / 2`, so a vector and its rotation partner are both
/// whole vectors), `total` vectors.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn qkv_heads_kernel<F: Float, N: Size>(
    qkv: &Array<Vector<F, N>>,
    cos: &Array<Vector<F, N>>,
    sin: &Array<Vector<F, N>>,
    q: &mut Array<Vector<F, N>>,
    k: &mut Array<Vector<F, N>>,
    v: &mut Array<Vector<F, N>>,
    total: u32,
    s: u32,
    nh: u32,
    nkv: u32,
    d: u32,
    cap: u32,
    at: u32,
) {
    let pos = ABSOLUTE_POS;
    if pos >= total as usize {
        terminate!();
    }
    let vs = qkv.vector_size().comptime();
    // `d` and every index below in vectors.
    let (s, d, nh, nkv) = (s as usize, d as usize / vs, nh as usize, nkv as usize);
    let heads = nh + 2 * nkv;
    let di = pos % d;
    let rest = pos / d;
    let si = rest % s;
    let rest = rest / s;
    let j = rest % heads;
    let bi = rest / heads;
    let token = bi * s + si;
    let src = token * heads * d + j * d + di;
    let (cap, slot) = (cap as usize, at as usize + si);
    if j < nh + nkv {
        let half = d / 2;
        let t = token * d + di;
        // rotate_half's negation as a subtraction: CUDA's vector types are structs without a unary minus.
        let y = if di < half {
            qkv[src] * cos[t] - qkv[src + half] * sin[t]
        } else {
            qkv[src] * cos[t] + qkv[src - half] * sin[t]
        };
        if j < nh {
            q[((bi * nh + j) * s + si) * d + di] = y;
        } else {
            k[((bi * nkv + j - nh) * cap + slot) * d + di] = y;
        }
    } else {
        v[((bi * nkv + j - nh - nkv) * cap + slot) * d + di] = qkv[src];
    }
}

/// Rows of attention scores `[b, h, s, t]`, `CUBE_DIM_Y` rows per cube and `CUBE_DIM_X` units per row:
/// `softmax(f32(score)·scale + mask)`, the additive f32 mask `[b, s, t]` shared by the heads (`masked`;
/// without a mask it is not read); probabilities rounded to `F`. Several rows per cube share each barrier of
/// the reductions (a cube per row spent most of its time in them: run 6 measured the prefill attention at
/// 0.93 ms per layer).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn masked_softmax_kernel<F: Float>(
    scores: &Array<F>,
    mask: &Array<f32>,
    out: &mut Array<F>,
    rows: u32,
    heads: u32,
    s: u32,
    t: u32,
    scale: f32,
    #[comptime] masked: bool,
) {
    let mut smem = SharedMemory::<f32>::new(BLOCK as usize);
    let lanes = CUBE_DIM_X as usize;
    let lane = UNIT_POS_X as usize;
    let seg = UNIT_POS_Y as usize * lanes;
    let row = CUBE_POS * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
    let (s, t) = (s as usize, t as usize);
    // Rows past the end (the grid is rounded up) take part in the barriers and touch no memory.
    let mut width = 0usize;
    if row < rows as usize {
        width = t;
    }
    let base = row * t;
    let batch = row / (heads as usize * s);
    let mbase = (batch * s + row % s) * t;
    let mut m = f32::new(-3.4028235e38);
    let mut i = lane;
    while i < width {
        m = max(m, logit(scores, mask, base, mbase, i, scale, masked));
        i += lanes;
    }
    let m = reduce(m, &mut smem, seg, lane, lanes, true);
    let mut acc = f32::new(0.0);
    let mut i = lane;
    while i < width {
        acc += f32::exp(logit(scores, mask, base, mbase, i, scale, masked) - m);
        i += lanes;
    }
    let total = reduce(acc, &mut smem, seg, lane, lanes, false);
    let mut i = lane;
    while i < width {
        let e = f32::exp(logit(scores, mask, base, mbase, i, scale, masked) - m);
        out[base + i] = F::cast_from(e / total);
        i += lanes;
    }
}

/// [`masked_softmax_kernel`] reading each score once: a unit keeps its `per` values of the row (`per` =
/// ⌈t / CUBE_DIM_X⌉, at most 32) in registers between the maximum, the sum and the write, where the first
/// kernel reads the row three times.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn softmax_regs_kernel<F: Float>(
    scores: &Array<F>,
    mask: &Array<f32>,
    out: &mut Array<F>,
    rows: u32,
    heads: u32,
    s: u32,
    t: u32,
    scale: f32,
    #[comptime] masked: bool,
    #[comptime] per: usize,
) {
    let mut smem = SharedMemory::<f32>::new(BLOCK as usize);
    let lanes = CUBE_DIM_X as usize;
    let lane = UNIT_POS_X as usize;
    let seg = UNIT_POS_Y as usize * lanes;
    let row = CUBE_POS * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
    let (s, t) = (s as usize, t as usize);
    // Rows past the end (the grid is rounded up) take part in the barriers and touch no memory.
    let mut width = 0usize;
    if row < rows as usize {
        width = t;
    }
    let base = row * t;
    let batch = row / (heads as usize * s);
    let mbase = (batch * s + row % s) * t;
    let lowest = f32::new(-3.4028235e38);
    let mut vals = Array::<f32>::new(per);
    let mut m = lowest;
    #[unroll]
    for c in 0..per {
        let i = lane + c * lanes;
        let v = if i < width {
            logit(scores, mask, base, mbase, i, scale, masked)
        } else {
            lowest
        };
        vals[c] = v;
        m = max(m, v);
    }
    let m = reduce(m, &mut smem, seg, lane, lanes, true);
    let mut acc = f32::new(0.0);
    #[unroll]
    for c in 0..per {
        let e = if lane + c * lanes < width {
            f32::exp(vals[c] - m)
        } else {
            f32::new(0.0)
        };
        vals[c] = e;
        acc += e;
    }
    let total = reduce(acc, &mut smem, seg, lane, lanes, false);
    #[unroll]
    for c in 0..per {
        let i = lane + c * lanes;
        if i < width {
            out[base + i] = F::cast_from(vals[c] / total);
        }
    }
}

/// `f32(score)·scale (+ mask)` of column `i`.
#[cube]
fn logit<F: Float>(
    scores: &Array<F>,
    mask: &Array<f32>,
    base: usize,
    mbase: usize,
    i: usize,
    scale: f32,
    #[comptime] masked: bool,
) -> f32 {
    let v = f32::cast_from(scores[base + i]) * scale;
    if masked { v + mask[mbase + i] } else { v }
}

/// One cube per row of `n` values: the index of the row's maximum, as torch's `argmax` picks it (the first of
/// equal maxima; a NaN counts as larger than any number, the first NaN winning), written as an f32 (exact
/// below 2²⁴, far above any vocabulary). Greedy decoding's next token: burn 0.21's `argmax` took one unit per
/// row over the whole vocabulary (run 8's profile: ≈1 ms per decode step at batch 1, 0.5 ms at batch 32).
#[cube(launch_unchecked)]
fn argmax_kernel<F: Float>(x: &Array<F>, out: &mut Array<f32>, rows: u32, n: u32) {
    let row = CUBE_POS;
    if row >= rows as usize {
        terminate!();
    }
    let mut vals = SharedMemory::<f32>::new(BLOCK as usize);
    let mut idxs = SharedMemory::<u32>::new(BLOCK as usize);
    let base = row * n as usize;
    // `n` stands for "none yet": no index of the row is that large.
    let mut best_v = f32::new(0.0);
    let mut best_i = n;
    let mut i = UNIT_POS as usize;
    while i < n as usize {
        let v = f32::cast_from(x[base + i]);
        // A unit visits its indices in increasing order: an equal value later never wins.
        if arg_better(v, i as u32, best_v, best_i, n) {
            best_v = v;
            best_i = i as u32;
        }
        i += CUBE_DIM as usize;
    }
    let lane = UNIT_POS as usize;
    vals[lane] = best_v;
    idxs[lane] = best_i;
    sync_cube();
    let mut stride = CUBE_DIM as usize / 2;
    while stride > 0 {
        if lane < stride {
            let (bv, bi) = (vals[lane + stride], idxs[lane + stride]);
            if arg_better(bv, bi, vals[lane], idxs[lane], n) {
                vals[lane] = bv;
                idxs[lane] = bi;
            }
        }
        sync_cube();
        stride /= 2;
    }
    if lane == 0 {
        out[row] = f32::cast_from(idxs[0]);
    }
}

/// Whether `(v, i)` goes before `(w, j)` in [`argmax_kernel`]'s order: an index of `none` never does, NaN before
/// numbers, larger before smaller, and the smaller index among equals (and among NaNs).
#[cube]
fn arg_better(v: f32, i: u32, w: f32, j: u32, none: u32) -> bool {
    let mut better = false;
    if i != none {
        if j == none {
            better = true;
        } else {
            let (v_nan, w_nan) = (v.is_nan(), w.is_nan());
            if v_nan || w_nan {
                better = v_nan && (!w_nan || i < j);
            } else {
                better = v > w || (v == w && i < j);
            }
        }
    }
    better
}

/// One cube per query head of a decode step (one query token): `softmax(q·Kᵀ·scale + mask)·V` over the `t`
/// cached keys of its key/value head (grouped-query: query head `h` reads kv head `h / (nh / nkv)`), keys
/// taken a cube-width at a time with a running maximum (flash-decoding's online softmax), everything in f32,
/// the output rounded to `F`. Replaces two batched GEMMs and the softmax — and, on CUDA, the four host
/// synchronisations of the two cuBLAS calls — per layer and token. Needs `d ≤ CUBE_DIM`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn decode_attention_kernel<F: Float>(
    q: &Array<F>,
    k: &Array<F>,
    v: &Array<F>,
    mask: &Array<f32>,
    out: &mut Array<F>,
    rows: u32,
    nh: u32,
    nkv: u32,
    t: u32,
    cap: u32,
    d: u32,
    scale: f32,
) {
    let row = CUBE_POS;
    if row >= rows as usize {
        terminate!();
    }
    let mut smem = SharedMemory::<f32>::new(BLOCK as usize);
    let mut probs = SharedMemory::<f32>::new(BLOCK as usize);
    let mut qs = SharedMemory::<f32>::new(BLOCK as usize);
    let (nh, nkv, t, d) = (nh as usize, nkv as usize, t as usize, d as usize);
    let bi = row / nh;
    let kvh = (row % nh) / (nh / nkv);
    // Each (sequence, kv head) holds `cap` positions of storage, the first `t` cached.
    let kv_base = (bi * nkv + kvh) * (cap as usize) * d;
    let u = UNIT_POS as usize;
    let width = CUBE_DIM as usize;
    if u < d {
        qs[u] = f32::cast_from(q[row * d + u]);
    }
    sync_cube();
    let lowest = f32::new(-3.4028235e38);
    let mut m = lowest;
    let mut l = f32::new(0.0);
    let mut acc = f32::new(0.0);
    let mut c = 0usize;
    while c < t {
        let j = c + u;
        let score = if j < t {
            let kb = kv_base + j * d;
            let mut dot = f32::new(0.0);
            let mut e = 0usize;
            while e < d {
                dot += qs[e] * f32::cast_from(k[kb + e]);
                e += 1;
            }
            dot * scale + mask[bi * t + j]
        } else {
            lowest
        };
        let m_new = max(m, cube_max(score, &mut smem));
        let p = if j < t {
            f32::exp(score - m_new)
        } else {
            f32::new(0.0)
        };
        probs[u] = p;
        // `cube_sum` synchronises the cube, so every unit sees the chunk's `probs` after it.
        let chunk_sum = cube_sum(p, &mut smem);
        let correction = f32::exp(m - m_new);
        l = l * correction + chunk_sum;
        acc *= correction;
        if u < d {
            let n = min(width, t - c);
            let mut jj = 0usize;
            while jj < n {
                acc += probs[jj] * f32::cast_from(v[kv_base + (c + jj) * d + u]);
                jj += 1;
            }
        }
        sync_cube();
        m = m_new;
        c += width;
    }
    if u < d {
        out[row * d + u] = F::cast_from(acc / l);
    }
}

/// [`decode_attention_kernel`] with more memory requests in flight per unit, for a GPU's latency rather than
/// its bandwidth: at batch 8 over 513 positions the first kernel moves 56 GB/s (benches/gpu/NOTES.md run 6),
/// each unit waiting on one scalar load at a time. Here each key row is read in vectors of `N` values (16
/// bytes where the device allows) two at a time, and the `probs · V` pass spreads a chunk's positions over
/// `CUBE_DIM / d` lanes per output value with four independent loads per step, the lanes' partial sums added
/// once at the end.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn decode_attention_ilp_kernel<F: Float, N: Size>(
    q: &Array<F>,
    k: &Array<Vector<F, N>>,
    v: &Array<F>,
    mask: &Array<f32>,
    out: &mut Array<F>,
    rows: u32,
    nh: u32,
    nkv: u32,
    t: u32,
    cap: u32,
    d: u32,
    scale: f32,
) {
    let row = CUBE_POS;
    if row >= rows as usize {
        terminate!();
    }
    let mut smem = SharedMemory::<f32>::new(BLOCK as usize);
    let mut probs = SharedMemory::<f32>::new(BLOCK as usize);
    let mut qs = SharedMemory::<f32>::new(BLOCK as usize);
    let vs = k.vector_size().comptime();
    let (nh, nkv, t, d) = (nh as usize, nkv as usize, t as usize, d as usize);
    let dv = d / vs;
    let bi = row / nh;
    let kvh = (row % nh) / (nh / nkv);
    let kv_base = (bi * nkv + kvh) * (cap as usize) * d;
    let u = UNIT_POS as usize;
    let width = CUBE_DIM as usize;
    // The probs · V pass: unit u sums output value `dim` over positions `lane`, `lane + lanes`, …
    let lanes = width / d;
    let (dim, lane) = (u % d, u / d);
    let summing = lane < lanes;
    if u < d {
        qs[u] = f32::cast_from(q[row * d + u]);
    }
    sync_cube();
    let lowest = f32::new(-3.4028235e38);
    let mut m = lowest;
    let mut l = f32::new(0.0);
    let mut acc = f32::new(0.0);
    let mut c = 0usize;
    while c < t {
        let j = c + u;
        let score = if j < t {
            let kb = (kv_base + j * d) / vs;
            let (mut dot0, mut dot1) = (f32::new(0.0), f32::new(0.0));
            let mut e = 0usize;
            while e + 1 < dv {
                let (k0, k1) = (k[kb + e], k[kb + e + 1]);
                #[unroll]
                for x in 0..vs {
                    dot0 += qs[e * vs + x] * f32::cast_from(k0[x]);
                    dot1 += qs[(e + 1) * vs + x] * f32::cast_from(k1[x]);
                }
                e += 2;
            }
            if e < dv {
                let k0 = k[kb + e];
                #[unroll]
                for x in 0..vs {
                    dot0 += qs[e * vs + x] * f32::cast_from(k0[x]);
                }
            }
            (dot0 + dot1) * scale + mask[bi * t + j]
        } else {
            lowest
        };
        let m_new = max(m, cube_max(score, &mut smem));
        let p = if j < t {
            f32::exp(score - m_new)
        } else {
            f32::new(0.0)
        };
        probs[u] = p;
        // `cube_sum` synchronises the cube, so every unit sees the chunk's `probs` after it.
        let chunk_sum = cube_sum(p, &mut smem);
        let correction = f32::exp(m - m_new);
        l = l * correction + chunk_sum;
        acc *= correction;
        if summing {
            let n = min(width, t - c);
            let vb = kv_base + c * d + dim;
            let (mut a0, mut a1, mut a2, mut a3) =
                (f32::new(0.0), f32::new(0.0), f32::new(0.0), f32::new(0.0));
            let mut jj = lane;
            while jj + 3 * lanes < n {
                let (v0, v1) = (v[vb + jj * d], v[vb + (jj + lanes) * d]);
                let (v2, v3) = (v[vb + (jj + 2 * lanes) * d], v[vb + (jj + 3 * lanes) * d]);
                a0 += probs[jj] * f32::cast_from(v0);
                a1 += probs[jj + lanes] * f32::cast_from(v1);
                a2 += probs[jj + 2 * lanes] * f32::cast_from(v2);
                a3 += probs[jj + 3 * lanes] * f32::cast_from(v3);
                jj += 4 * lanes;
            }
            while jj < n {
                a0 += probs[jj] * f32::cast_from(v[vb + jj * d]);
                jj += lanes;
            }
            acc += (a0 + a1) + (a2 + a3);
        }
        sync_cube();
        m = m_new;
        c += width;
    }
    // The lanes' partial sums of each output value, added in shared memory.
    smem[u] = if summing { acc } else { f32::new(0.0) };
    sync_cube();
    if u < d {
        let mut total = f32::new(0.0);
        let mut p = 0usize;
        while p < lanes {
            total += smem[p * d + u];
            p += 1;
        }
        out[row * d + u] = F::cast_from(total / l);
    }
}

/// The most query heads per key/value head [`decode_attention_split_kernel`] takes (Mistral and Llama-3 have 4,
/// Llama-2-7B and Vicuna 1): its shared memory holds that many rows of scores.
const SPLIT_MAX_GROUP: usize = 8;
/// The most key splits per (sequence, kv head): past `SPLIT_MAX_SPLITS · BLOCK` keys each split takes several
/// rounds instead, so the partial results stay small.
const SPLIT_MAX_SPLITS: usize = 64;

/// Within each of the `group` segments of `BLOCK` values of `red`, the maximum (`take_max`) or sum left at the
/// segment's start: every head's tree in one pass, one barrier per level (the caller filled `red` and met a
/// barrier; it reads the results, then meets a barrier before writing `red` again).
#[cube]
fn heads_reduce(red: &mut SharedMemory<f32>, u: usize, #[comptime] group: usize, #[comptime] take_max: bool) {
    // The cube is `BLOCK` units (a runtime value here: cubecl cannot step a constant).
    let mut stride = CUBE_DIM as usize / 2;
    while stride > 0 {
        if u < stride {
            #[unroll]
            for g in 0..group {
                let (a, b) = (red[g * BLOCK as usize + u], red[g * BLOCK as usize + u + stride]);
                red[g * BLOCK as usize + u] = if take_max { max(a, b) } else { a + b };
            }
        }
        sync_cube();
        stride /= 2;
    }
}

/// Flash-decoding for one query token with grouped heads: one cube per (sequence, key/value head, split of the
/// cached keys) serves every query head of that kv head, so each key and value row is read once per step
/// instead of once per query head, and a short batch still fills the device (the keys split across cubes). In
/// each round of up to `BLOCK` keys, unit `u` scores key `u` against all the group's queries (its key row in
/// vectors of `N`, all `d / N` loads independent), the group's maxima and sums meet in one shared tree, and the
/// `probs · V` pass gives each unit one vector of a value row for every `BLOCK / (d / N)`-th key. With
/// `direct` (one split) the outputs are written normalised; otherwise each split writes its unnormalised sums
/// `part` (f32 `[cubes, group, d]`) and `(max, sum)` `stats` for [`decode_split_combine_kernel`].
///
/// Why: the ILP kernel gives each query head its own cube, which reads the kv head's keys and values again
/// (4 times over for Mistral), and its `probs · V` pass loads one 16-bit value per unit four at a time —
/// ≈ 25 µs per round of 256 keys, ≈ 76 µs at batch 8 over 513 keys (run 8), at ≈ 220 GB/s.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn decode_attention_split_kernel<F: Float, N: Size>(
    q: &Array<F>,
    k: &Array<Vector<F, N>>,
    v: &Array<Vector<F, N>>,
    mask: &Array<f32>,
    out: &mut Array<F>,
    part: &mut Array<f32>,
    stats: &mut Array<f32>,
    cubes: u32,
    splits: u32,
    nkv: u32,
    t: u32,
    cap: u32,
    chunk: u32,
    scale: f32,
    #[comptime] d: usize,
    #[comptime] group: usize,
    #[comptime] direct: bool,
) {
    let cube = CUBE_POS;
    if cube >= cubes as usize {
        terminate!();
    }
    let vs = k.vector_size().comptime();
    let dv = comptime!(d / vs);
    let block = BLOCK as usize;
    let mut qs = SharedMemory::<f32>::new(comptime!(group * d));
    let mut scores = SharedMemory::<f32>::new(comptime!(group * BLOCK as usize));
    let mut red = SharedMemory::<f32>::new(comptime!(group * BLOCK as usize));
    let mut sums = SharedMemory::<f32>::new(comptime!(BLOCK as usize * vs));
    let (splits, t) = (splits as usize, t as usize);
    let u = UNIT_POS as usize;
    let sp = cube % splits;
    // (sequence, kv head) as one index `bi · nkv + kvh`: its query heads are `bk · group ..` of `[b, nh]`.
    let bk = cube / splits;
    let kv_base = bk * (cap as usize) * d;
    let q_base = bk * group * d;
    let mask_base = (bk / nkv as usize) * t;
    let mut i = u;
    while i < group * d {
        qs[i] = f32::cast_from(q[q_base + i]);
        i += block;
    }
    let j0 = sp * chunk as usize;
    let j1 = min(t, j0 + chunk as usize);
    // The `probs · V` pass: unit u sums vector `slot` of a value row over keys `lane`, `lane + lanes`, …
    let lanes = block / dv;
    let (slot, lane) = (u % dv, u / dv);
    let summing = lane < lanes;
    let lowest = f32::new(-3.4028235e38);
    let mut m = Array::<f32>::new(group);
    let mut l = Array::<f32>::new(group);
    let mut acc = Array::<f32>::new(comptime!(group * vs));
    #[unroll]
    for g in 0..group {
        m[g] = lowest;
        l[g] = f32::new(0.0);
    }
    #[unroll]
    for i in 0..group * vs {
        acc[i] = f32::new(0.0);
    }
    sync_cube();
    let mut c = j0;
    while c < j1 {
        let n = min(block, j1 - c);
        let j = c + u;
        let mut dot = Array::<f32>::new(group);
        #[unroll]
        for g in 0..group {
            dot[g] = f32::new(0.0);
        }
        if u < n {
            let kb = (kv_base + j * d) / vs;
            #[unroll]
            for e in 0..dv {
                let kvec = k[kb + e];
                #[unroll]
                for x in 0..vs {
                    let kx = f32::cast_from(kvec[x]);
                    #[unroll]
                    for g in 0..group {
                        dot[g] += qs[g * d + e * vs + x] * kx;
                    }
                }
            }
            let add = mask[mask_base + j];
            #[unroll]
            for g in 0..group {
                let sc = dot[g] * scale + add;
                scores[g * block + u] = sc;
                red[g * block + u] = sc;
            }
        } else {
            #[unroll]
            for g in 0..group {
                scores[g * block + u] = lowest;
                red[g * block + u] = lowest;
            }
        }
        sync_cube();
        heads_reduce(&mut red, u, group, true);
        let mut corr = Array::<f32>::new(group);
        #[unroll]
        for g in 0..group {
            let m_new = max(m[g], red[g * block]);
            corr[g] = f32::exp(m[g] - m_new);
            m[g] = m_new;
        }
        sync_cube();
        #[unroll]
        for g in 0..group {
            let p = if u < n {
                f32::exp(scores[g * block + u] - m[g])
            } else {
                f32::new(0.0)
            };
            scores[g * block + u] = p;
            red[g * block + u] = p;
        }
        sync_cube();
        heads_reduce(&mut red, u, group, false);
        #[unroll]
        for g in 0..group {
            l[g] = l[g] * corr[g] + red[g * block];
            #[unroll]
            for x in 0..vs {
                acc[g * vs + x] *= corr[g];
            }
        }
        if summing {
            let vb = (kv_base + c * d) / vs + slot;
            let mut jj = lane;
            while jj + lanes < n {
                let (v0, v1) = (v[vb + jj * dv], v[vb + (jj + lanes) * dv]);
                #[unroll]
                for g in 0..group {
                    let (p0, p1) = (scores[g * block + jj], scores[g * block + jj + lanes]);
                    #[unroll]
                    for x in 0..vs {
                        acc[g * vs + x] += p0 * f32::cast_from(v0[x]) + p1 * f32::cast_from(v1[x]);
                    }
                }
                jj += 2 * lanes;
            }
            if jj < n {
                let v0 = v[vb + jj * dv];
                #[unroll]
                for g in 0..group {
                    let p0 = scores[g * block + jj];
                    #[unroll]
                    for x in 0..vs {
                        acc[g * vs + x] += p0 * f32::cast_from(v0[x]);
                    }
                }
            }
        }
        // The next round rewrites `scores` and `red`.
        sync_cube();
        c += block;
    }
    // Each head's output values: the lanes' partial sums added in shared memory.
    #[unroll]
    for g in 0..group {
        if summing {
            #[unroll]
            for x in 0..vs {
                sums[u * vs + x] = acc[g * vs + x];
            }
        }
        sync_cube();
        if u < d {
            let mut total = f32::new(0.0);
            let mut p = 0usize;
            while p < lanes {
                total += sums[p * d + u];
                p += 1;
            }
            if direct {
                out[(bk * group + g) * d + u] = F::cast_from(total / l[g]);
            } else {
                part[(cube * group + g) * d + u] = total;
            }
        }
        if !direct && u == 0 {
            stats[(cube * group + g) * 2] = m[g];
            stats[(cube * group + g) * 2 + 1] = l[g];
        }
        sync_cube();
    }
}

/// The splits of [`decode_attention_split_kernel`] joined, one cube per query head of a sequence: each split's
/// sums weighted by `exp(its max − the overall max)` over the same weighting of its softmax denominators.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn decode_split_combine_kernel<F: Float>(
    part: &Array<f32>,
    stats: &Array<f32>,
    out: &mut Array<F>,
    rows: u32,
    splits: u32,
    group: u32,
    d: u32,
) {
    let row = CUBE_POS;
    if row >= rows as usize {
        terminate!();
    }
    let (splits, group, d) = (splits as usize, group as usize, d as usize);
    let u = UNIT_POS as usize;
    // Row `bk · group + g`: query head g of kv head bk's group; its splits are cubes `bk · splits ..`.
    let (bk, g) = (row / group, row % group);
    let first = bk * splits;
    let mut top = f32::new(-3.4028235e38);
    let mut sp = 0usize;
    while sp < splits {
        top = max(top, stats[((first + sp) * group + g) * 2]);
        sp += 1;
    }
    if u < d {
        let (mut num, mut den) = (f32::new(0.0), f32::new(0.0));
        let mut sp = 0usize;
        while sp < splits {
            let at = ((first + sp) * group + g) * 2;
            let w = f32::exp(stats[at] - top);
            num += part[((first + sp) * group + g) * d + u] * w;
            den += stats[at + 1] * w;
            sp += 1;
        }
        out[row * d + u] = F::cast_from(num / den);
    }
}

/// `y = x · wᵀ` for a few rows of `x` (`[m, k]`, `w` `[n, k]` as checkpoints store it): eight output columns
/// per cube, 32 units per column reading its weight row in coalesced vectors (16 bytes per load where the
/// device allows, two loads in flight), the dot products in f32, reduced in shared memory. Decoding at batch
/// 1 streams every weight once per token; this keeps those products on burn's stream (no cuBLAS call, so no
/// host synchronisation) near memory speed (1.77 TB/s on an H100, benches/gpu/NOTES.md run 6).
#[cube(launch_unchecked)]
fn skinny_nt_kernel<F: Float, N: Size>(
    x: &Array<Vector<F, N>>,
    w: &Array<Vector<F, N>>,
    out: &mut Array<F>,
    rows: u32,
    cols: u32,
    depth: u32,
) {
    let mut smem = SharedMemory::<f32>::new(BLOCK as usize);
    let vs = w.vector_size().comptime();
    let lanes = CUBE_DIM_X as usize;
    let lane = UNIT_POS_X as usize;
    let seg = UNIT_POS_Y as usize * lanes;
    let col = CUBE_POS * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
    // `k` in vectors of `vs` values.
    let (m, n, k) = (rows as usize, cols as usize, depth as usize / vs);
    // Columns past `n` (the grid is rounded up) take part in the cube's synchronisations and write nothing.
    let valid = col < n;
    let wbase = col * k;
    let mut mi = 0usize;
    while mi < m {
        let mut acc = f32::new(0.0);
        if valid {
            let xb = mi * k;
            let mut kk = lane;
            while kk + lanes < k {
                let (w0, x0) = (w[wbase + kk], x[xb + kk]);
                let (w1, x1) = (w[wbase + kk + lanes], x[xb + kk + lanes]);
                #[unroll]
                for j in 0..vs {
                    acc += f32::cast_from(w0[j]) * f32::cast_from(x0[j]);
                    acc += f32::cast_from(w1[j]) * f32::cast_from(x1[j]);
                }
                kk += 2 * lanes;
            }
            while kk < k {
                let (w0, x0) = (w[wbase + kk], x[xb + kk]);
                #[unroll]
                for j in 0..vs {
                    acc += f32::cast_from(w0[j]) * f32::cast_from(x0[j]);
                }
                kk += lanes;
            }
        }
        let total = reduce(acc, &mut smem, seg, lane, lanes, false);
        if valid && lane == 0 {
            out[mi * n + col] = F::cast_from(total);
        }
        mi += 1;
    }
}

/// [`skinny_nt_kernel`] with each output column one plane (warp) of the cube (`CUBE_DIM_X` = the plane size,
/// `CUBE_DIM_Y` columns per cube): the dot product reduced by `plane_sum` (register shuffles) instead of a
/// tree in shared memory with a cube-wide barrier per level, so a plane that is done does not wait for the
/// others, and `unroll` loads of the weight row in flight per unit instead of two.
#[cube(launch_unchecked)]
fn skinny_plane_kernel<F: Float, N: Size>(
    x: &Array<Vector<F, N>>,
    w: &Array<Vector<F, N>>,
    out: &mut Array<F>,
    rows: u32,
    cols: u32,
    depth: u32,
    #[comptime] unroll: usize,
) {
    let vs = w.vector_size().comptime();
    let lanes = CUBE_DIM_X as usize;
    let lane = UNIT_POS_X as usize;
    let col = CUBE_POS * CUBE_DIM_Y as usize + UNIT_POS_Y as usize;
    let (m, n, k) = (rows as usize, cols as usize, depth as usize / vs);
    // A whole plane shares its column: planes past `n` leave together, no barrier waits for them.
    if col < n {
        let wbase = col * k;
        let step = unroll * lanes;
        let mut mi = 0usize;
        while mi < m {
            let xb = mi * k;
            let mut acc = f32::new(0.0);
            let mut kk = lane;
            while kk + step - lanes < k {
                #[unroll]
                for u in 0..unroll {
                    let (wv, xv) = (w[wbase + kk + u * lanes], x[xb + kk + u * lanes]);
                    #[unroll]
                    for j in 0..vs {
                        acc += f32::cast_from(wv[j]) * f32::cast_from(xv[j]);
                    }
                }
                kk += step;
            }
            while kk < k {
                let (wv, xv) = (w[wbase + kk], x[xb + kk]);
                #[unroll]
                for j in 0..vs {
                    acc += f32::cast_from(wv[j]) * f32::cast_from(xv[j]);
                }
                kk += lanes;
            }
            let total = plane_sum(acc);
            if lane == 0 {
                out[mi * n + col] = F::cast_from(total);
            }
            mi += 1;
        }
    }
}

/// Planes of [`skinny_multi_kernel`] per cube (its shared memory is sized for this many).
const MULTI_PLANES: u32 = 4;
/// Units per plane of [`skinny_multi_kernel`]: a layout, not the hardware's plane size (no plane operations).
const MULTI_LANES: u32 = 32;

/// `y = x · wᵀ` for `x` of a few dozen rows (decoding at batch 8–32), reading each weight vector from memory
/// once for `mb` rows of `x` at a time: cuBLAS moves these products at ≈0.9 TB/s (128 µs for 8×4096×14336 in
/// run 6, a third of the H100's bandwidth), where [`skinny_nt_kernel`] would re-read the weights once per
/// row. Each cube has [`MULTI_PLANES`] groups of [`MULTI_LANES`] units; a group owns `cb` output columns and
/// its units stride over `k` in vectors, each keeping `mb × cb` sums in registers (the `mb` rows' vectors of
/// `x` converted once per step, `cb` weight vectors loaded per step). The groups' sums meet in shared memory
/// (padded against bank conflicts) and one unit per output adds its 32 partial sums. Rows past `m` and
/// columns past `n` read the last valid row or column and write nothing.
#[cube(launch_unchecked)]
fn skinny_multi_kernel<F: Float, N: Size>(
    x: &Array<Vector<F, N>>,
    w: &Array<Vector<F, N>>,
    out: &mut Array<F>,
    rows: u32,
    cols: u32,
    depth: u32,
    #[comptime] mb: usize,
    #[comptime] cb: usize,
) {
    let vs = w.vector_size().comptime();
    let lanes = MULTI_LANES as usize;
    let planes = MULTI_PLANES as usize;
    let outs = comptime!(MULTI_PLANES as usize * mb * cb);
    // One row of partial sums per lane, `outs + 1` apart so that both the writes (one output, all lanes) and
    // the reads (one lane, consecutive outputs) fall in distinct banks.
    let mut smem = SharedMemory::<f32>::new(comptime!(
        MULTI_LANES as usize * (MULTI_PLANES as usize * mb * cb + 1)
    ));
    let lane = UNIT_POS_X as usize;
    let plane = UNIT_POS_Y as usize;
    let u = UNIT_POS as usize;
    let (m, n, k) = (rows as usize, cols as usize, depth as usize / vs);
    let col0 = (CUBE_POS * planes + plane) * cb;
    let mut r0 = 0usize;
    while r0 < m {
        let mut acc = Array::<f32>::new(comptime!(mb * cb));
        #[unroll]
        for i in 0..mb * cb {
            acc[i] = f32::new(0.0);
        }
        let mut xs = Array::<f32>::new(comptime!(mb * vs));
        let mut kk = lane;
        while kk < k {
            #[unroll]
            for r in 0..mb {
                let xv = x[min(r0 + r, m - 1) * k + kk];
                #[unroll]
                for j in 0..vs {
                    xs[r * vs + j] = f32::cast_from(xv[j]);
                }
            }
            #[unroll]
            for c in 0..cb {
                let wv = w[min(col0 + c, n - 1) * k + kk];
                #[unroll]
                for j in 0..vs {
                    let wj = f32::cast_from(wv[j]);
                    #[unroll]
                    for r in 0..mb {
                        acc[r * cb + c] += xs[r * vs + j] * wj;
                    }
                }
            }
            kk += lanes;
        }
        #[unroll]
        for i in 0..mb * cb {
            smem[lane * (outs + 1) + plane * mb * cb + i] = acc[i];
        }
        sync_cube();
        let mut o = u;
        while o < outs {
            let mut total = f32::new(0.0);
            let mut l = 0usize;
            while l < lanes {
                total += smem[l * (outs + 1) + o];
                l += 1;
            }
            let (p, i) = (o / (mb * cb), o % (mb * cb));
            let (row, col) = (r0 + i / cb, (CUBE_POS * planes + p) * cb + i % cb);
            if row < m && col < n {
                out[row * n + col] = F::cast_from(total);
            }
            o += lanes * planes;
        }
        // The next block of rows reuses the shared memory.
        sync_cube();
        r0 += mb;
    }
}

/// The burn-cubecl tensor behind `t` when `B` runs on runtime `R` and `t` holds f32, f16 or bf16, contiguous.
fn cube_of<B: Backend, R: CubeRuntime, const D: usize>(t: &Tensor<B, D>) -> Option<CubeTensor<R>> {
    if TypeId::of::<B::FloatTensorPrimitive>() != TypeId::of::<CubeTensor<R>>() || !float_dtype(t.dtype()) {
        return None;
    }
    // The kernels index in 32 bits: larger tensors (a long prompt's attention scores can pass 2³² values)
    // keep burn's composition rather than wrap around.
    if t.dims().iter().product::<usize>() >= u32::MAX as usize {
        return None;
    }
    let c = into_contiguous(primitive_of::<B, R, D>(t.clone())?);
    // A contiguous view may still sit at an offset in a larger buffer; the kernels index from the
    // binding's start, which carries the offset.
    Some(c)
}

/// `Some` when `B` runs on runtime `R`.
pub fn runs_on<B: Backend, R: CubeRuntime>() -> Option<()> {
    (TypeId::of::<B::FloatTensorPrimitive>() == TypeId::of::<CubeTensor<R>>()).then_some(())
}

/// The burn-cubecl tensor `t` is, taken by value, when `B` runs on runtime `R`.
pub(crate) fn primitive_of<B: Backend, R: CubeRuntime, const D: usize>(
    t: Tensor<B, D>,
) -> Option<CubeTensor<R>> {
    let p: Box<dyn Any> = Box::new(t.into_primitive().tensor());
    p.downcast::<CubeTensor<R>>().ok().map(|c| *c)
}

/// The burn tensor of `c` when `B` runs on runtime `R`.
pub(crate) fn tensor_of<B: Backend, R: CubeRuntime, const D: usize>(
    c: CubeTensor<R>,
) -> Option<Tensor<B, D>> {
    let p: Box<dyn Any> = Box::new(c);
    let p = p.downcast::<B::FloatTensorPrimitive>().ok()?;
    Some(Tensor::from_primitive(TensorPrimitive::Float(*p)))
}

/// A kernel variant's first launch, checked: cubecl checks a launch on its device thread (the kernel's
/// compilation, its shared memory against the device's, the driver's launch call, a TMA tile's shape) and keeps
/// a failure in the stream until a command that takes the stream's errors, so that unchecked it surfaces as a
/// panic when some later result is read. Around the first launch of each variant the stream is flushed twice
/// (no wait for the device to finish): before it ([`LaunchCheck::before`]), so that an error of earlier work is
/// not taken for this launch's but reported as the device's, and after it ([`LaunchCheck::confirm`]), where
/// a failure makes that variant refused from then on ([`LaunchCheck::refused`]), its caller falling back to
/// another path. Errors an asynchronous kernel raises while running are not launch failures and are not seen
/// here.
pub(crate) struct LaunchCheck {
    key: String,
    seen: Option<bool>,
}

fn launch_checks() -> &'static std::sync::Mutex<std::collections::HashMap<String, bool>> {
    static CHECKS: OnceLock<std::sync::Mutex<std::collections::HashMap<String, bool>>> = OnceLock::new();
    CHECKS.get_or_init(Default::default)
}

impl LaunchCheck {
    /// The check of the variant named `key` (whatever selects its compiled kernel and launch).
    pub(crate) fn of(key: String) -> Self {
        let checks = launch_checks().lock().unwrap_or_else(|p| p.into_inner());
        let seen = checks.get(&key).copied();
        LaunchCheck { key, seen }
    }

    /// Whether this variant's first launch failed.
    pub(crate) fn refused(&self) -> bool {
        self.seen == Some(false)
    }

    /// Whether the launch to come is this variant's first.
    pub(crate) fn first(&self) -> bool {
        self.seen.is_none()
    }

    /// Before a launch: on the variant's first, flushes `client`'s stream; the error it hands back belongs to
    /// earlier work (see [`earlier_work_failed`]).
    pub(crate) fn before<R: CubeRuntime>(&self, client: &ComputeClient<R>) -> Result<(), String> {
        if self.first() {
            client.flush().map_err(|e| format!("{e:?}"))?;
        }
        Ok(())
    }

    /// After a launch: on the variant's first, flushes `client`'s stream and records the outcome; the launch
    /// failure's description where it failed.
    pub(crate) fn confirm<R: CubeRuntime>(self, client: &ComputeClient<R>) -> Result<(), String> {
        if !self.first() {
            return Ok(());
        }
        let outcome = client.flush();
        launch_checks()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.key, outcome.is_ok());
        outcome.map_err(|e| format!("{e:?}"))
    }
}

/// An error of earlier work that a flush handed back ([`LaunchCheck::before`]): what that work wrote is wrong,
/// so it is not ours to hide behind a fallback. A panic with it, as cubecl's own next read would.
pub(crate) fn earlier_work_failed(e: &str) -> ! {
    panic!("mmreason: the device reported an error from earlier work: {e}")
}

fn float_dtype(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F16 | DType::BF16)
}

fn empty_like<R: CubeRuntime>(like: &CubeTensor<R>, shape: Vec<usize>) -> CubeTensor<R> {
    empty_device_contiguous_dtype(like.client.clone(), like.device.clone(), shape.into(), like.dtype)
}

fn array<R: CubeRuntime>(t: &CubeTensor<R>) -> ArrayArg<R> {
    // SAFETY: `t` is contiguous (callers pass tensors through `cube_of`/`empty_like`), so its binding holds
    // exactly `num_elements` values.
    unsafe { ArrayArg::from_raw_parts(t.handle.clone(), t.meta.shape().num_elements()) }
}

/// The widest vector (values per load) the device moves at once for `dtype` that divides `len` (rows of
/// `len` values then start on vector boundaries) and at which every tensor of `bound` starts (a view at an
/// offset in a larger buffer — a narrowed tensor — may not: a vector load there would be misaligned); 1 at
/// worst.
fn vector_for<R: CubeRuntime>(
    client: &ComputeClient<R>,
    dtype: DType,
    len: usize,
    bound: &[&CubeTensor<R>],
) -> usize {
    client
        .io_optimized_vector_sizes(dtype.size())
        .find(|v| {
            let bytes = (*v * dtype.size()) as u64;
            len.is_multiple_of(*v)
                && bound
                    .iter()
                    .all(|t| t.handle.offset_start.unwrap_or(0).is_multiple_of(bytes))
        })
        .unwrap_or(1)
}

/// Cube size and count for `n` elements, one unit each (the element-wise kernels).
fn elementwise<R: CubeRuntime>(client: &ComputeClient<R>, n: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new(client, n);
    (cubecl::calculate_cube_count_elemwise(client, n, dim), dim)
}

/// A grid of `rows` cubes (wrapped onto y past `GRID_X`), for the one-cube-per-row kernels.
fn row_grid(rows: usize) -> CubeCount {
    let x = rows.clamp(1, GRID_X);
    CubeCount::Static(x as u32, rows.div_ceil(x).max(1) as u32, 1)
}

fn u32_of(v: usize) -> Option<u32> {
    u32::try_from(v).ok()
}

/// Runs `$kernel::launch_unchecked::<F, R>` with `F` picked from `$dtype` (f32, f16, bf16).
macro_rules! launch_float {
    ($dtype:expr, $kernel:ident, $($arg:expr),+ $(,)?) => {
        // SAFETY: every index the kernels compute is bounded by the shapes checked by the caller.
        unsafe {
            match $dtype {
                DType::F32 => $kernel::launch_unchecked::<f32, R>($($arg),+),
                DType::F16 => $kernel::launch_unchecked::<half::f16, R>($($arg),+),
                DType::BF16 => $kernel::launch_unchecked::<half::bf16, R>($($arg),+),
                _ => return None,
            }
        }
    };
}

/// How the norm kernels (RMSNorm, LayerNorm) lay rows on cubes. Run 9 (H200) profiled the one-cube-per-row
/// kernels at 79 µs per CLIP LayerNorm (18,464 rows of 1,024 bf16 values, ≈ 1 TB/s) and 46 µs per Mistral
/// RMSNorm (4,096 rows of 4,096): a row of 128 vectors left half of a 256-unit cube idle, and each unit's one
/// load waited on two 8-level shared-memory trees per row. With many rows, smaller rows per cube keep more
/// loads in flight per SM and reduce in 5 steps. Run 10 (H200, one call): Mistral-7B prefill b8×512 37,453
/// tok/s against 35,349 with a cube per row (`Rows`: 36,634); b32×256 and CLIP within 1 % either way; the
/// LayerNorm still ≈ 77 µs per launch in the profile (each row is read three times: the passes re-read it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormLayout {
    /// One cube of 256 units per row, reduced in shared memory (the layout for a few rows: decoding).
    Cube,
    /// 8 rows of 32 lanes per cube, each row reduced in its segment of shared memory.
    Rows,
    /// One plane (warp) per row, `256 / plane size` rows per cube, reduced by `plane_sum` without barriers;
    /// [`NormLayout::Rows`] where the device has no plane operations of one size.
    Plane,
    /// [`NormLayout::Plane`]'s layout (or [`NormLayout::Rows`]'s) with the row read once: each lane holds its
    /// vectors in registers through the passes, for rows of at most [`REGS_MAX`] vectors per lane; longer rows
    /// get more lanes ([`WIDE_PER`] vectors each, reduced in shared memory), and past 256 such lanes the plane
    /// layout, re-read. Run 10's profile still had CLIP's LayerNorm at 77 µs per launch with the
    /// passes re-reading each row (three reads of two inputs, two writes); opt-in until a device run times it.
    Registers,
}

/// The most vectors per lane [`NormLayout::Registers`] holds: a 2,048-wide bf16 row over 32 lanes (CLIP's
/// 1,024 take 4). ptxas (NVRTC 13.5, sm_90a) gives 16 vectors per lane (Mistral's 4,096) 154–220 registers:
/// one 256-unit cube per SM.
const REGS_MAX: usize = 8;

/// Vectors per lane where a row passes [`REGS_MAX`] per lane of one plane ([`NormLayout::Registers`]): the row
/// gets as many lanes as that takes (a power of two, up to the cube's 256), so Mistral's 4,096 bf16 values
/// (512 vectors) take 128 lanes of 4 vectors, two rows per cube — 16 registers of values per lane, where 16
/// vectors per lane of one plane took cubecl-cuda's code 154–220 registers. Rows longer than 256 lanes of this
/// keep the re-reading kernel.
const WIDE_PER: usize = 4;

/// Rows from which the norms take [`NormLayout::Plane`] by default (prefill, the vision tower); below it a cube
/// per row, whose 256 units share a long row at small batch.
const MANY_ROWS: usize = 1024;

/// `MMREASON_NORM=cube|rows|plane|regs` fixes the norms' layout (a knob for a device run); by default
/// [`NormLayout::Plane`] from [`MANY_ROWS`] rows, [`NormLayout::Cube`] below.
fn norm_layout(rows: usize) -> NormLayout {
    static ASKED: OnceLock<Option<NormLayout>> = OnceLock::new();
    let asked = *ASKED.get_or_init(|| match std::env::var("MMREASON_NORM").as_deref() {
        Ok("cube") => Some(NormLayout::Cube),
        Ok("rows") => Some(NormLayout::Rows),
        Ok("plane") => Some(NormLayout::Plane),
        Ok("regs") => Some(NormLayout::Registers),
        _ => None,
    });
    asked.unwrap_or(if rows >= MANY_ROWS {
        NormLayout::Plane
    } else {
        NormLayout::Cube
    })
}

/// How a norm over `rows` rows of `hv` vectors is launched ([`norm_layout`]).
struct NormLaunch {
    count: CubeCount,
    dim: CubeDim,
    /// The kernels' `plane` flag: the row's lanes are one plane.
    plane: bool,
    /// Vectors per lane held in registers ([`NormLayout::Registers`]); 0: the passes re-read the row.
    per: usize,
}

fn norm_launch<R: CubeRuntime>(client: &ComputeClient<R>, rows: usize, hv: usize) -> NormLaunch {
    let layout = norm_layout(rows);
    let plane = matches!(layout, NormLayout::Plane | NormLayout::Registers)
        .then(|| plane_for(client, 1))
        .flatten()
        .filter(|&p| BLOCK.is_multiple_of(p));
    let (count, dim, plane) = match (layout, plane) {
        (NormLayout::Cube, _) => (row_grid(rows), CubeDim::new_1d(BLOCK), false),
        (_, Some(p)) => (
            row_grid(rows.div_ceil((BLOCK / p) as usize)),
            CubeDim::new_2d(p, BLOCK / p),
            true,
        ),
        _ => (row_grid(rows.div_ceil(8)), CubeDim::new_2d(32, 8), false),
    };
    let per = hv.div_ceil(dim.x as usize);
    if layout == NormLayout::Registers && per > REGS_MAX {
        // A row too long for one plane's registers: more lanes per row, [`WIDE_PER`] vectors each, reduced in the
        // row's segment of shared memory.
        let lanes = hv.div_ceil(WIDE_PER).next_power_of_two();
        if lanes <= BLOCK as usize {
            let rows_per_cube = BLOCK as usize / lanes;
            return NormLaunch {
                count: row_grid(rows.div_ceil(rows_per_cube)),
                dim: CubeDim::new_2d(lanes as u32, rows_per_cube as u32),
                plane: false,
                per: hv.div_ceil(lanes),
            };
        }
    }
    let per = if layout == NormLayout::Registers && (1..=REGS_MAX).contains(&per) {
        per
    } else {
        0
    };
    NormLaunch {
        count,
        dim,
        plane,
        per,
    }
}

/// RMSNorm over the rows of `x` `[b, s, h]` — of `x + a` when `a` is given, whose sum is returned too.
fn rms_norm_rows<R: CubeRuntime>(
    xc: &CubeTensor<R>,
    a: Option<&CubeTensor<R>>,
    wc: &CubeTensor<R>,
    [b, s, h]: [usize; 3],
    eps: f64,
) -> Option<(CubeTensor<R>, CubeTensor<R>)> {
    if wc.dtype != xc.dtype || a.is_some_and(|a| a.dtype != xc.dtype) || h == 0 {
        return None;
    }
    let rows = b * s;
    let out = empty_like(xc, vec![b, s, h]);
    let client = xc.client.clone();
    let vector = vector_for(&client, xc.dtype, h, &[xc, wc, a.unwrap_or(xc)]);
    // Without a residual, `a` and `sum` are not touched; one-vector stand-ins (not `x` itself: wgpu rejects a
    // buffer bound both read-only and read-write).
    let (ac, sum) = match a {
        Some(a) => (a.clone(), empty_like(xc, vec![b, s, h])),
        None => (empty_like(xc, vec![vector]), empty_like(xc, vec![vector])),
    };
    if rows > 0 {
        let NormLaunch {
            count,
            dim,
            plane,
            per,
        } = norm_launch(&client, rows, h / vector);
        if per > 0 {
            launch_float!(
                xc.dtype,
                rms_norm_regs_kernel,
                &client,
                count,
                dim,
                vector,
                array(xc),
                array(&ac),
                array(wc),
                array(&sum),
                array(&out),
                u32_of(rows)?,
                u32_of(h)?,
                eps as f32,
                a.is_some(),
                plane,
                per,
            );
        } else {
            launch_float!(
                xc.dtype,
                rms_norm_kernel,
                &client,
                count,
                dim,
                vector,
                array(xc),
                array(&ac),
                array(wc),
                array(&sum),
                array(&out),
                u32_of(rows)?,
                u32_of(h)?,
                eps as f32,
                a.is_some(),
                plane,
            );
        }
    }
    Some((sum, out))
}

/// [`super::rms_norm`] as one kernel; `None` when `B` is not on runtime `R` (or the kernels are off).
pub fn rms_norm<B: Backend, R: CubeRuntime>(
    x: &Tensor<B, 3>,
    weight: &Tensor<B, 1>,
    eps: f64,
) -> Option<Tensor<B, 3>> {
    if !enabled() || weight.dims()[0] != x.dims()[2] {
        return None;
    }
    let (xc, wc) = (cube_of::<B, R, 3>(x)?, cube_of::<B, R, 1>(weight)?);
    let (_, out) = rms_norm_rows(&xc, None, &wc, x.dims(), eps)?;
    tensor_of::<B, R, 3>(out)
}

/// [`super::add_rms_norm`] as one kernel: `(x + a, rms_norm(x + a))`.
pub fn add_rms_norm<B: Backend, R: CubeRuntime>(
    x: &Tensor<B, 3>,
    a: &Tensor<B, 3>,
    weight: &Tensor<B, 1>,
    eps: f64,
) -> Option<(Tensor<B, 3>, Tensor<B, 3>)> {
    if !enabled() || a.dims() != x.dims() || weight.dims()[0] != x.dims()[2] {
        return None;
    }
    let (xc, ac, wc) = (
        cube_of::<B, R, 3>(x)?,
        cube_of::<B, R, 3>(a)?,
        cube_of::<B, R, 1>(weight)?,
    );
    let (sum, out) = rms_norm_rows(&xc, Some(&ac), &wc, x.dims(), eps)?;
    Some((tensor_of::<B, R, 3>(sum)?, tensor_of::<B, R, 3>(out)?))
}

/// [`super::qkv_heads`] as one kernel.
pub fn qkv_heads<B: Backend, R: CubeRuntime>(
    qkv: &Tensor<B, 3>,
    nh: usize,
    nkv: usize,
    d: usize,
    cos: &Tensor<B, 4>,
    sin: &Tensor<B, 4>,
) -> Option<(Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>)> {
    if !enabled() {
        return None;
    }
    let [b, s, _] = qkv.dims();
    let (qc, cc, sc) = qkv_inputs::<B, R>(qkv, [nh, nkv, d], cos, sin)?;
    let k = empty_like(&qc, vec![b, nkv, s, d]);
    let v = empty_like(&qc, vec![b, nkv, s, d]);
    let q = launch_qkv_heads(&qc, &cc, &sc, (&k, &v, 0), [nh, nkv, d])?;
    Some((
        tensor_of::<B, R, 4>(q)?,
        tensor_of::<B, R, 4>(k)?,
        tensor_of::<B, R, 4>(v)?,
    ))
}

/// The projection and RoPE tables of [`qkv_heads`] on runtime `R` when their shapes and dtypes fit the kernel.
#[allow(clippy::type_complexity)]
fn qkv_inputs<B: Backend, R: CubeRuntime>(
    qkv: &Tensor<B, 3>,
    [nh, nkv, d]: [usize; 3],
    cos: &Tensor<B, 4>,
    sin: &Tensor<B, 4>,
) -> Option<(CubeTensor<R>, CubeTensor<R>, CubeTensor<R>)> {
    let [b, s, width] = qkv.dims();
    if width != (nh + 2 * nkv) * d
        || d == 0
        || !d.is_multiple_of(2)
        || cos.dims() != [b, 1, s, d]
        || sin.dims() != [b, 1, s, d]
    {
        return None;
    }
    let (qc, cc, sc) = (
        cube_of::<B, R, 3>(qkv)?,
        cube_of::<B, R, 4>(cos)?,
        cube_of::<B, R, 4>(sin)?,
    );
    (cc.dtype == qc.dtype && sc.dtype == qc.dtype).then_some((qc, cc, sc))
}

/// Launches [`qkv_heads_kernel`] for `qkv` `[b, s, ·]` (checked by the callers), keys and values into
/// `kv` = (keys, values, first position) shaped `[b, nkv, cap, d]`; returns the new queries.
fn launch_qkv_heads<R: CubeRuntime>(
    qc: &CubeTensor<R>,
    cc: &CubeTensor<R>,
    sc: &CubeTensor<R>,
    kv: (&CubeTensor<R>, &CubeTensor<R>, usize),
    [nh, nkv, d]: [usize; 3],
) -> Option<CubeTensor<R>> {
    let (k, v, at) = kv;
    let (b, s, width) = (qc.meta.shape()[0], qc.meta.shape()[1], qc.meta.shape()[2]);
    let cap = k.meta.shape()[2];
    let q = empty_like(qc, vec![b, nh, s, d]);
    let total = b * s * width;
    let client = qc.client.clone();
    let vector = vector_for(&client, qc.dtype, d / 2, &[qc, cc, sc, k, v]);
    let total = total / vector;
    if total > 0 {
        let (count, dim) = elementwise(&client, total);
        launch_float!(
            qc.dtype,
            qkv_heads_kernel,
            &client,
            count,
            dim,
            vector,
            array(qc),
            array(cc),
            array(sc),
            array(&q),
            array(k),
            array(v),
            u32_of(total)?,
            u32_of(s)?,
            u32_of(nh)?,
            u32_of(nkv)?,
            u32_of(d)?,
            u32_of(cap)?,
            u32_of(at)?,
        );
    }
    Some(q)
}

/// [`super::qkv_heads_into`] as one kernel writing keys and values into the stores in place; the stores come
/// back untouched (`Err`) unless this runtime has them, each is contiguous, `[b, nkv, cap, d]` with room for
/// `s` positions at `at`, in the projection's dtype, and held by nobody else (writing a shared buffer would
/// change another tensor).
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn qkv_heads_into<B: Backend, R: CubeRuntime>(
    qkv: &Tensor<B, 3>,
    nh: usize,
    nkv: usize,
    d: usize,
    cos: &Tensor<B, 4>,
    sin: &Tensor<B, 4>,
    stores: (Tensor<B, 4>, Tensor<B, 4>),
    at: usize,
) -> Result<(Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>), (Tensor<B, 4>, Tensor<B, 4>)> {
    let [b, s, _] = qkv.dims();
    let [sb, sh, cap, sd] = stores.0.dims();
    if !enabled()
        || TypeId::of::<B::FloatTensorPrimitive>() != TypeId::of::<CubeTensor<R>>()
        || [sb, sh, sd] != [b, nkv, d]
        || stores.1.dims() != [b, nkv, cap, d]
        || at + s > cap
        || stores.0.dtype() != qkv.dtype()
        || stores.1.dtype() != qkv.dtype()
        || b * nkv * cap * d >= u32::MAX as usize
    {
        return Err(stores);
    }
    let Some((qc, cc, sc)) = qkv_inputs::<B, R>(qkv, [nh, nkv, d], cos, sin) else {
        return Err(stores);
    };
    // Owned, so the stores' reference counts are theirs alone.
    let owned =
        |t: Tensor<B, 4>| primitive_of::<B, R, 4>(t).expect("checked: B's float tensors are CubeTensor<R>");
    let (kc, vc) = (owned(stores.0), owned(stores.1));
    let writable = |t: &CubeTensor<R>| t.can_mut() && t.is_contiguous();
    let q = if writable(&kc) && writable(&vc) {
        launch_qkv_heads(&qc, &cc, &sc, (&kc, &vc, at), [nh, nkv, d])
    } else {
        None
    };
    let back =
        |t: CubeTensor<R>| tensor_of::<B, R, 4>(t).expect("checked: B's float tensors are CubeTensor<R>");
    match q {
        Some(q) => Ok((back(q), back(kc), back(vc))),
        None => Err((back(kc), back(vc))),
    }
}

/// [`crate::clip::LayerNorm`] as one kernel.
pub fn layer_norm<B: Backend, R: CubeRuntime>(
    x: &Tensor<B, 3>,
    weight: &Tensor<B, 1>,
    bias: &Tensor<B, 1>,
    eps: f64,
) -> Option<Tensor<B, 3>> {
    if !enabled() {
        return None;
    }
    let (_, out) = layer_norm_rows::<B, R>(x, None, weight, bias, eps)?;
    tensor_of::<B, R, 3>(out)
}

/// [`super::bias_add_layer_norm`] as one kernel.
pub fn bias_add_layer_norm<B: Backend, R: CubeRuntime>(
    y: &Tensor<B, 3>,
    product_bias: &Tensor<B, 1>,
    x: &Tensor<B, 3>,
    weight: &Tensor<B, 1>,
    bias: &Tensor<B, 1>,
    eps: f64,
) -> Option<(Tensor<B, 3>, Tensor<B, 3>)> {
    if !enabled() {
        return None;
    }
    let (sum, out) = layer_norm_rows::<B, R>(y, Some((product_bias, x)), weight, bias, eps)?;
    Some((tensor_of::<B, R, 3>(sum?)?, tensor_of::<B, R, 3>(out)?))
}

/// Launches [`layer_norm_kernel`] over the rows of `x`, with `(product bias, residual)` when given; returns the
/// residual sum (with them) and the normalised rows.
#[allow(clippy::type_complexity)]
fn layer_norm_rows<B: Backend, R: CubeRuntime>(
    x: &Tensor<B, 3>,
    residual: Option<(&Tensor<B, 1>, &Tensor<B, 3>)>,
    weight: &Tensor<B, 1>,
    bias: &Tensor<B, 1>,
    eps: f64,
) -> Option<(Option<CubeTensor<R>>, CubeTensor<R>)> {
    let xc = cube_of::<B, R, 3>(x)?;
    let (wc, bc) = (cube_of::<B, R, 1>(weight)?, cube_of::<B, R, 1>(bias)?);
    let [b, s, h] = x.dims();
    if wc.dtype != xc.dtype || bc.dtype != xc.dtype || weight.dims()[0] != h || bias.dims()[0] != h || h == 0
    {
        return None;
    }
    let client = xc.client.clone();
    let inputs = match residual {
        Some((pb, r)) => {
            if pb.dims() != [h] || r.dims() != [b, s, h] {
                return None;
            }
            let (pc, rc) = (cube_of::<B, R, 1>(pb)?, cube_of::<B, R, 3>(r)?);
            if pc.dtype != xc.dtype || rc.dtype != xc.dtype {
                return None;
            }
            Some((pc, rc))
        }
        None => None,
    };
    let vector = match &inputs {
        Some((pc, rc)) => vector_for(&client, xc.dtype, h, &[&xc, &wc, &bc, pc, rc]),
        None => vector_for(&client, xc.dtype, h, &[&xc, &wc, &bc]),
    };
    // Without a residual, `pb`, `res` and `sum` are not touched: one-vector stand-ins (wgpu rejects a buffer
    // bound both read-only and read-write).
    let (pc, rc, sum) = match inputs {
        Some((pc, rc)) => (pc, rc, empty_like(&xc, vec![b, s, h])),
        None => (
            empty_like(&xc, vec![vector]),
            empty_like(&xc, vec![vector]),
            empty_like(&xc, vec![vector]),
        ),
    };
    let rows = b * s;
    let out = empty_like(&xc, vec![b, s, h]);
    if rows > 0 {
        let NormLaunch {
            count,
            dim,
            plane,
            per,
        } = norm_launch(&client, rows, h / vector);
        if per > 0 {
            launch_float!(
                xc.dtype,
                layer_norm_regs_kernel,
                &client,
                count,
                dim,
                vector,
                array(&xc),
                array(&pc),
                array(&rc),
                array(&wc),
                array(&bc),
                array(&sum),
                array(&out),
                u32_of(rows)?,
                u32_of(h)?,
                eps as f32,
                residual.is_some(),
                plane,
                per,
            );
        } else {
            launch_float!(
                xc.dtype,
                layer_norm_kernel,
                &client,
                count,
                dim,
                vector,
                array(&xc),
                array(&pc),
                array(&rc),
                array(&wc),
                array(&bc),
                array(&sum),
                array(&out),
                u32_of(rows)?,
                u32_of(h)?,
                eps as f32,
                residual.is_some(),
                plane,
            );
        }
    }
    Some((residual.map(|_| sum), out))
}

/// CLIP's `quick_gelu` as one kernel.
pub fn quick_gelu<B: Backend, R: CubeRuntime>(x: &Tensor<B, 3>) -> Option<Tensor<B, 3>> {
    if !enabled() {
        return None;
    }
    let xc = cube_of::<B, R, 3>(x)?;
    let out = empty_like(&xc, x.dims().to_vec());
    let n = x.dims().iter().product::<usize>();
    if n > 0 {
        let client = xc.client.clone();
        let (count, dim) = elementwise(&client, n);
        launch_float!(
            xc.dtype,
            quick_gelu_kernel,
            &client,
            count,
            dim,
            array(&xc),
            array(&out)
        );
    }
    tensor_of::<B, R, 3>(out)
}

/// [`super::bias_act`] as one kernel.
pub fn bias_act<B: Backend, R: CubeRuntime>(
    y: &Tensor<B, 3>,
    bias: &Tensor<B, 1>,
    act: super::Act,
    residual: Option<&Tensor<B, 3>>,
) -> Option<Tensor<B, 3>> {
    if !enabled() {
        return None;
    }
    let dims = y.dims();
    let width = dims[2];
    if bias.dims() != [width] || residual.is_some_and(|r| r.dims() != dims) {
        return None;
    }
    let (yc, bc) = (cube_of::<B, R, 3>(y)?, cube_of::<B, R, 1>(bias)?);
    let rc = match residual {
        Some(r) => cube_of::<B, R, 3>(r)?,
        // Unused without a residual; any array of the right type will do.
        None => yc.clone(),
    };
    if bc.dtype != yc.dtype || rc.dtype != yc.dtype {
        return None;
    }
    let out = empty_like(&yc, dims.to_vec());
    let client = yc.client.clone();
    let vector = vector_for(&client, yc.dtype, width, &[&yc, &bc, &rc]);
    let n = dims.iter().product::<usize>() / vector;
    if n > 0 {
        let (count, dim) = elementwise(&client, n);
        launch_float!(
            yc.dtype,
            bias_act_kernel,
            &client,
            count,
            dim,
            vector,
            array(&yc),
            array(&bc),
            array(&rc),
            array(&out),
            u32_of(n)?,
            u32_of(width / vector)?,
            act == super::Act::QuickGelu,
            residual.is_some(),
        );
    }
    tensor_of::<B, R, 3>(out)
}

/// [`super::qkv_bias_heads`] as one kernel.
#[allow(clippy::type_complexity)]
pub fn qkv_bias_heads<B: Backend, R: CubeRuntime>(
    qkv: &Tensor<B, 3>,
    heads: usize,
    d: usize,
    bias: &Tensor<B, 1>,
) -> Option<(Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>)> {
    if !enabled() {
        return None;
    }
    let [b, s, width] = qkv.dims();
    if width != 3 * heads * d || d == 0 || bias.dims() != [width] {
        return None;
    }
    let (qc, bc) = (cube_of::<B, R, 3>(qkv)?, cube_of::<B, R, 1>(bias)?);
    if bc.dtype != qc.dtype {
        return None;
    }
    let out = || empty_like(&qc, vec![b, heads, s, d]);
    let (q, k, v) = (out(), out(), out());
    let client = qc.client.clone();
    let vector = vector_for(&client, qc.dtype, d, &[&qc, &bc]);
    let total = b * s * width / vector;
    if total > 0 {
        let (count, dim) = elementwise(&client, total);
        launch_float!(
            qc.dtype,
            qkv_bias_heads_kernel,
            &client,
            count,
            dim,
            vector,
            array(&qc),
            array(&bc),
            array(&q),
            array(&k),
            array(&v),
            u32_of(s)?,
            u32_of(heads)?,
            u32_of(d)?,
        );
    }
    Some((
        tensor_of::<B, R, 4>(q)?,
        tensor_of::<B, R, 4>(k)?,
        tensor_of::<B, R, 4>(v)?,
    ))
}

/// [`super::silu_mul`] as one kernel.
pub fn silu_mul<B: Backend, R: CubeRuntime>(gate_up: &Tensor<B, 3>, i: usize) -> Option<Tensor<B, 3>> {
    if !enabled() {
        return None;
    }
    let gc = cube_of::<B, R, 3>(gate_up)?;
    let [b, s, w] = gate_up.dims();
    if w != 2 * i || i == 0 {
        return None;
    }
    let out = empty_like(&gc, vec![b, s, i]);
    let client = gc.client.clone();
    let vector = vector_for(&client, gc.dtype, i, &[&gc]);
    let n = b * s * i / vector;
    if n > 0 {
        let (count, dim) = elementwise(&client, n);
        launch_float!(
            gc.dtype,
            silu_mul_kernel,
            &client,
            count,
            dim,
            vector,
            array(&gc),
            array(&out),
            u32_of(n)?,
            u32_of(i / vector)?
        );
    }
    tensor_of::<B, R, 3>(out)
}

/// [`super::heads`] as one kernel.
pub fn heads<B: Backend, R: CubeRuntime>(
    qkv: &Tensor<B, 3>,
    first: usize,
    n: usize,
    d: usize,
    rope: Option<(&Tensor<B, 4>, &Tensor<B, 4>)>,
) -> Option<Tensor<B, 4>> {
    if !enabled() {
        return None;
    }
    let qc = cube_of::<B, R, 3>(qkv)?;
    let [b, s, width] = qkv.dims();
    if (first + n) * d > width || d == 0 || !d.is_multiple_of(2) {
        return None;
    }
    let (cos, sin, on) = match rope {
        Some((c, sn)) => {
            if c.dims() != [b, 1, s, d] || sn.dims() != [b, 1, s, d] {
                return None;
            }
            let (c, sn) = (cube_of::<B, R, 4>(c)?, cube_of::<B, R, 4>(sn)?);
            if c.dtype != qc.dtype || sn.dtype != qc.dtype {
                return None;
            }
            (c, sn, 1)
        }
        // Unused by the kernel without RoPE; any array of the right type will do.
        None => (qc.clone(), qc.clone(), 0),
    };
    let out = empty_like(&qc, vec![b, n, s, d]);
    let total = b * n * s * d;
    if total > 0 {
        let client = qc.client.clone();
        let (count, dim) = elementwise(&client, total);
        launch_float!(
            qc.dtype,
            heads_kernel,
            &client,
            count,
            dim,
            array(&qc),
            array(&cos),
            array(&sin),
            array(&out),
            u32_of(s)?,
            u32_of(width)?,
            u32_of(first)?,
            u32_of(n)?,
            u32_of(d)?,
            on,
        );
    }
    tensor_of::<B, R, 4>(out)
}

/// `softmax(f32(scores)·scale (+ mask))` rounded to the scores' dtype, for `scores` `[b, h, s, t]` and an
/// optional f32 `mask` `[b, 1, s, t]`, as one kernel.
pub fn masked_softmax<B: Backend, R: CubeRuntime>(
    scores: &Tensor<B, 4>,
    mask: Option<&Tensor<B, 4>>,
    scale: f64,
) -> Option<Tensor<B, 4>> {
    let kernel = match softmax_in_registers() {
        true => SoftmaxKernel::Registers,
        false => SoftmaxKernel::Passes,
    };
    masked_softmax_with::<B, R>(scores, mask, scale, kernel)
}

/// Which attention softmax kernel runs: `Registers` ([`softmax_regs_kernel`], one read of each row; the
/// default since run 8; rows of more than 1024 take `Passes`) or `Passes` ([`masked_softmax_kernel`], three
/// reads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SoftmaxKernel {
    Passes,
    Registers,
}

/// [`masked_softmax`] with the kernel named (tests, benches).
pub fn masked_softmax_with<B: Backend, R: CubeRuntime>(
    scores: &Tensor<B, 4>,
    mask: Option<&Tensor<B, 4>>,
    scale: f64,
    kernel: SoftmaxKernel,
) -> Option<Tensor<B, 4>> {
    if !enabled() {
        return None;
    }
    let [b, h, s, t] = scores.dims();
    let sc = cube_of::<B, R, 4>(scores)?;
    let mc = match mask {
        Some(m) if m.dims() == [b, 1, s, t] && m.dtype() == DType::F32 => cube_of::<B, R, 4>(m)?,
        Some(_) => return None,
        // Not read by the kernel; an f32 buffer of any size stands in for it.
        None => {
            empty_device_contiguous_dtype(sc.client.clone(), sc.device.clone(), vec![1].into(), DType::F32)
        }
    };
    let out = empty_like(&sc, vec![b, h, s, t]);
    let rows = b * h * s;
    let per = t.div_ceil(32);
    if rows > 0 && t > 0 && kernel == SoftmaxKernel::Registers && per <= 32 {
        let client = sc.client.clone();
        launch_float!(
            sc.dtype,
            softmax_regs_kernel,
            &client,
            row_grid(rows.div_ceil(8)),
            CubeDim::new_2d(32, 8),
            array(&sc),
            array(&mc),
            array(&out),
            u32_of(rows)?,
            u32_of(h)?,
            u32_of(s)?,
            u32_of(t)?,
            scale as f32,
            mask.is_some(),
            per,
        );
    } else if rows > 0 && t > 0 {
        let client = sc.client.clone();
        launch_float!(
            sc.dtype,
            masked_softmax_kernel,
            &client,
            row_grid(rows.div_ceil(8)),
            CubeDim::new_2d(32, 8),
            array(&sc),
            array(&mc),
            array(&out),
            u32_of(rows)?,
            u32_of(h)?,
            u32_of(s)?,
            u32_of(t)?,
            scale as f32,
            mask.is_some(),
        );
    }
    tensor_of::<B, R, 4>(out)
}

/// The attention softmax keeps each row in registers ([`softmax_regs_kernel`], rows up to 1024) unless
/// `MMREASON_SOFTMAX=passes`. Run 8 (H200, one call) timed it on CLIP's scores (32·16·577 rows of 577) at
/// 663 µs against the three-pass kernel's 701 µs; on CUDA it matches the composition (`fused_kernels`).
fn softmax_in_registers() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("MMREASON_SOFTMAX").as_deref() != Ok("passes"))
}

/// [`super::argmax_rows`] as one kernel: the index of each row's maximum of `x` `[rows, n]`, as f32 values
/// `[rows]`; `None` when `B` is not on runtime `R` (or the kernels are off).
pub fn argmax_rows<B: Backend, R: CubeRuntime>(x: &Tensor<B, 2>) -> Option<Tensor<B, 1>> {
    let [rows, n] = x.dims();
    if !enabled() || n == 0 || n >= 1 << 24 {
        return None;
    }
    let xc = cube_of::<B, R, 2>(x)?;
    let out = empty_device_contiguous_dtype(
        xc.client.clone(),
        xc.device.clone(),
        vec![rows].into(),
        DType::F32,
    );
    if rows > 0 {
        let client = xc.client.clone();
        launch_float!(
            xc.dtype,
            argmax_kernel,
            &client,
            row_grid(rows),
            CubeDim::new_1d(BLOCK),
            array(&xc),
            array(&out),
            u32_of(rows)?,
            u32_of(n)?,
        );
    }
    tensor_of::<B, R, 1>(out)
}

/// [`crate::attention::grouped_query_attention`] for one query token (`q` `[b, nh, 1, d]`, `k`/`v`
/// `[b, nkv, t, d]`, f32 `mask` `[b, 1, 1, t]`) as one kernel; `None` where it does not apply.
pub fn decode_attention<B: Backend, R: CubeRuntime>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    mask: &Tensor<B, 4>,
    scale: f64,
) -> Option<Tensor<B, 4>> {
    decode_attention_with::<B, R>(q, k, v, mask, scale, decode_kernel())
}

/// Which decode attention kernel runs: `Ilp` ([`decode_attention_ilp_kernel`]: vector loads of the keys, four
/// loads in flight in the `probs · V` pass; the default of run 8), `Chunked` ([`decode_attention_kernel`],
/// the default of runs 5–7) or `Split` (flash-decoding over grouped heads, the default since run 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeKernel {
    Chunked,
    Ilp,
    /// [`decode_attention_split_kernel`]: one cube per (sequence, kv head, split of the keys) for the whole
    /// group of query heads, the splits joined by [`decode_split_combine_kernel`]; more than
    /// `SPLIT_MAX_GROUP` query heads per kv head take the ILP kernel. `splits`: how many splits per (sequence,
    /// kv head), at most the keys' count (`None`: one per `BLOCK` keys, at most `SPLIT_MAX_SPLITS`; fewer
    /// than that make each split take several rounds).
    Split {
        splits: Option<usize>,
    },
}

impl DecodeKernel {
    /// The split kernel with its own choice of splits.
    pub const SPLIT: DecodeKernel = DecodeKernel::Split { splits: None };

    /// A short name for labels (benches): `chunked`, `ilp`, `split`, `split4`.
    pub fn label(self) -> String {
        match self {
            DecodeKernel::Chunked => "chunked".into(),
            DecodeKernel::Ilp => "ilp".into(),
            DecodeKernel::Split { splits: None } => "split".into(),
            DecodeKernel::Split { splits: Some(n) } => format!("split{n}"),
        }
    }
}

/// `MMREASON_DECODE_ATTN=chunked` picks [`DecodeKernel::Chunked`], `ilp` [`DecodeKernel::Ilp`], `split:N`
/// [`DecodeKernel::Split`] with N splits per sequence and kv head (a knob for a device run); by default the
/// split kernel with its own choice. Run 9 (H200, one call): the kernel alone 59.8 µs against the ILP kernel's
/// 74.8 µs (b8, 513 cached positions); Mistral-7B decode at batch 1 192.6 against 185.8 tok/s, at batch 32
/// 4,443 against 4,331, and the model parity tests pass with it on CUDA. Run 10, as the default: 191.8 against
/// 181.8 at batch 1, 4,330 against 3,694 at batch 32. Run 8 had put the ILP kernel ahead of the chunked one (76
/// against 154 µs).
fn decode_kernel() -> DecodeKernel {
    static KIND: OnceLock<DecodeKernel> = OnceLock::new();
    *KIND.get_or_init(|| match std::env::var("MMREASON_DECODE_ATTN").as_deref() {
        Ok("chunked") => DecodeKernel::Chunked,
        Ok("ilp") => DecodeKernel::Ilp,
        Ok(v) if v.starts_with("split:") => match v["split:".len()..].parse::<usize>() {
            Ok(n) if n > 0 => DecodeKernel::Split { splits: Some(n) },
            _ => {
                eprintln!("mmreason: MMREASON_DECODE_ATTN={v}: not split:N with N ≥ 1; the split kernel's own choice");
                DecodeKernel::SPLIT
            }
        },
        _ => DecodeKernel::SPLIT,
    })
}

/// [`decode_attention`] with the kernel named (tests, benches).
pub fn decode_attention_with<B: Backend, R: CubeRuntime>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    mask: &Tensor<B, 4>,
    scale: f64,
    kernel: DecodeKernel,
) -> Option<Tensor<B, 4>> {
    if !enabled() {
        return None;
    }
    let [b, nh, s, d] = q.dims();
    let [bk, nkv, cap, dk] = k.dims();
    let t = mask.dims()[3];
    if s != 1
        || bk != b
        || dk != d
        || v.dims() != [b, nkv, cap, d]
        || mask.dims() != [b, 1, 1, t]
        || t > cap
        || mask.dtype() != DType::F32
        || d == 0
        || d > BLOCK as usize
        || nkv == 0
        || !nh.is_multiple_of(nkv)
        || t == 0
    {
        return None;
    }
    let qc = cube_of::<B, R, 4>(q)?;
    let (kc, vc, mc) = (
        cube_of::<B, R, 4>(k)?,
        cube_of::<B, R, 4>(v)?,
        cube_of::<B, R, 4>(mask)?,
    );
    if kc.dtype != qc.dtype || vc.dtype != qc.dtype {
        return None;
    }
    let out = empty_like(&qc, vec![b, nh, 1, d]);
    let rows = b * nh;
    if rows > 0 {
        let client = qc.client.clone();
        // More query heads per kv head than its shared memory holds: the ILP kernel instead.
        let group = nh / nkv;
        if let DecodeKernel::Split { splits: asked } = kernel
            && group <= SPLIT_MAX_GROUP
        {
            // Keys and values read in vectors (rows start at multiples of d).
            let vector = vector_for(&client, qc.dtype, d, &[&kc, &vc]);
            // One round of `BLOCK` keys per split where the keys allow; a short batch then still spreads over
            // the device, and a long cache over at most `SPLIT_MAX_SPLITS` splits.
            let splits = asked.map_or(t.div_ceil(BLOCK as usize).clamp(1, SPLIT_MAX_SPLITS), |n| {
                n.min(t)
            });
            let chunk = t.div_ceil(splits);
            let cubes = b * nkv * splits;
            let direct = splits == 1;
            let f32_buffer = |len: usize| {
                empty_device_contiguous_dtype(client.clone(), qc.device.clone(), vec![len].into(), DType::F32)
            };
            // With one split the partial results are not written: one-value stand-ins.
            let (part, stats) = if direct {
                (f32_buffer(1), f32_buffer(1))
            } else {
                (f32_buffer(cubes * group * d), f32_buffer(cubes * group * 2))
            };
            launch_float!(
                qc.dtype,
                decode_attention_split_kernel,
                &client,
                row_grid(cubes),
                CubeDim::new_1d(BLOCK),
                vector,
                array(&qc),
                array(&kc),
                array(&vc),
                array(&mc),
                array(&out),
                array(&part),
                array(&stats),
                u32_of(cubes)?,
                u32_of(splits)?,
                u32_of(nkv)?,
                u32_of(t)?,
                u32_of(cap)?,
                u32_of(chunk)?,
                scale as f32,
                d,
                group,
                direct,
            );
            if !direct {
                launch_float!(
                    qc.dtype,
                    decode_split_combine_kernel,
                    &client,
                    row_grid(rows),
                    CubeDim::new_1d(BLOCK),
                    array(&part),
                    array(&stats),
                    array(&out),
                    u32_of(rows)?,
                    u32_of(splits)?,
                    u32_of(group)?,
                    u32_of(d)?,
                );
            }
            return tensor_of::<B, R, 4>(out);
        }
        if kernel != DecodeKernel::Chunked {
            // The widest vector the device loads at once that divides a key row (rows start at multiples of d).
            let vector = vector_for(&client, qc.dtype, d, &[&kc]);
            launch_float!(
                qc.dtype,
                decode_attention_ilp_kernel,
                &client,
                row_grid(rows),
                CubeDim::new_1d(BLOCK),
                vector,
                array(&qc),
                array(&kc),
                array(&vc),
                array(&mc),
                array(&out),
                u32_of(rows)?,
                u32_of(nh)?,
                u32_of(nkv)?,
                u32_of(t)?,
                u32_of(cap)?,
                u32_of(d)?,
                scale as f32,
            );
            return tensor_of::<B, R, 4>(out);
        }
        launch_float!(
            qc.dtype,
            decode_attention_kernel,
            &client,
            row_grid(rows),
            CubeDim::new_1d(BLOCK),
            array(&qc),
            array(&kc),
            array(&vc),
            array(&mc),
            array(&out),
            u32_of(rows)?,
            u32_of(nh)?,
            u32_of(nkv)?,
            u32_of(t)?,
            u32_of(cap)?,
            u32_of(d)?,
            scale as f32,
        );
    }
    tensor_of::<B, R, 4>(out)
}

/// Which flash attention kernel prefill and the CLIP tower take instead of two products around the softmax
/// kernel: cubek's (the kernels behind burn-cubecl's `attention` op, which without burn's `autotune` feature —
/// off in this build — would run its op-by-op fallback instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlashKind {
    /// Tensor-core tiles (`cmma`), this many planes (warps) per cube, each a tile of query rows.
    Accelerated(u8),
    /// Plain units, no tensor cores (any device with planes).
    Unit,
}

/// `MMREASON_ATTENTION`: `flash` (tensor cores, 4 planes per cube), `flash2` / `flash8` (2 or 8 planes),
/// `flash-unit`; anything else (default) keeps the composed attention. Off by default until a device run
/// has timed it against the composition.
pub(crate) fn flash_kind() -> Option<FlashKind> {
    static KIND: OnceLock<Option<FlashKind>> = OnceLock::new();
    *KIND.get_or_init(|| match super::attention_asked() {
        Some("flash") | Some("flash4") => Some(FlashKind::Accelerated(4)),
        Some("flash2") => Some(FlashKind::Accelerated(2)),
        Some("flash8") => Some(FlashKind::Accelerated(8)),
        Some("flash-unit") => Some(FlashKind::Unit),
        _ => None,
    })
}

/// `softmax(q·kᵀ/√d [+ causal mask])·v` for `q` `[b, h, s, d]` and `k`/`v` `[b, h, t, d]` (as many heads as the
/// queries: callers repeat grouped key/value heads) in bf16 or f16, as one cubek flash attention kernel of
/// `kind`; `None` where it does not apply or the kernel cannot run here (the reason printed once).
///
/// f32 is refused: cubek stages its tiles in f16, which is further from transformers' f32 attention than the
/// 1e-3 the f32 path holds to. With `causal`, query `i` sees keys `0..=i` (s = t: a prompt without padding).
/// Shapes the kernel does not take as they are go through [`flash_attention_padded`].
pub fn flash_attention<B: Backend, R: CubeRuntime>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    causal: bool,
    kind: FlashKind,
) -> Option<Tensor<B, 4>> {
    use burn::tensor::ops::AttentionModuleOptions;
    use burn_cubecl::kernel::attention::{AttentionStrategy, attention};
    use cubek_attention::routines::blackbox_accelerated::BlackboxAcceleratedStrategy;

    let [b, h, s, d] = q.dims();
    let [_, _, t, _] = k.dims();
    // Values may be narrower than queries and keys (the padded path widens only those).
    let dv = v.dims()[3];
    if !matches!(q.dtype(), DType::BF16 | DType::F16)
        || k.dims() != [b, h, t, d]
        || v.dims() != [b, h, t, dv]
        || dv == 0
        || (causal && s != t)
        || b * h * s * t == 0
    {
        return None;
    }
    let (qc, kc, vc) = (
        cube_of::<B, R, 4>(q)?,
        cube_of::<B, R, 4>(k)?,
        cube_of::<B, R, 4>(v)?,
    );
    if kc.dtype != qc.dtype || vc.dtype != qc.dtype {
        return None;
    }
    // Shapes cubek 0.2 runs correctly. Its bounds checks are switched on when the stage's rows are not a
    // multiple of the problem's (`AttentionTilingScheme::check_bounds`: the test reads the wrong way round), so
    // a problem smaller than a stage that divides it (s = 128 for the unit kernel's 8 · 32 rows on CUDA) would
    // be read and written past its end; and the tensor-core kernel takes only whole stages of 16 rows per plane
    // (CLIP's 577 positions are refused). Such shapes are padded to whole stages ([`flash_attention_padded`]).
    let plane = qc.client.properties().hardware.plane_size_max as usize;
    let stage = flash_stage(kind, plane);
    let refused = match kind {
        FlashKind::Accelerated(_) => !s.is_multiple_of(stage) || t < 16,
        FlashKind::Unit => (s < stage && stage.is_multiple_of(s)) || (t < 8 && 8usize.is_multiple_of(t)),
    };
    // cubek refuses a configuration (tile types, head sizes) when it is set up, on every call alike: after one
    // refusal the same configuration is not tried again (run 7: a refused try per layer cost Mistral's
    // prefill 11–17 %). Sequence lengths are not part of it: a length cubek refused would keep the composed
    // attention for every length from then on.
    let config = (kind, qc.dtype, d, dv, causal);
    if flash_declined(config) {
        return None;
    }
    if refused {
        // The padded operands' refusal (recorded under their f16 configuration) is this one's as well, so
        // that the next call neither pads nor repeats grouped heads for it (`fused::flash_wanted`).
        let known = flash_refused().lock().map_or(0, |r| r.len());
        let out = flash_attention_padded::<B, R>(q, k, v, causal, kind, stage);
        if out.is_none()
            && let Ok(mut refused) = flash_refused().lock()
            && refused.len() > known
        {
            refused.push(config);
        }
        return out;
    }
    let strategy = match kind {
        FlashKind::Accelerated(planes) => {
            AttentionStrategy::FlashBlackboxAccelerated(BlackboxAcceleratedStrategy {
                num_planes: planes,
                seq_q: 1,
                seq_kv: 1,
            })
        }
        FlashKind::Unit => AttentionStrategy::FlashUnit,
    };
    let options = AttentionModuleOptions {
        scale: None,
        softcap: None,
        is_causal: causal,
    };
    match attention::<R>(qc, kc, vc, None, None, options, strategy) {
        Ok(out) => tensor_of::<B, R, 4>(out),
        Err(e) => {
            static WARNED: OnceLock<()> = OnceLock::new();
            WARNED.get_or_init(|| eprintln!("mmreason: flash attention ({kind:?}) not used: {e:?}"));
            if let Ok(mut refused) = flash_refused().lock() {
                refused.push(config);
            }
            None
        }
    }
}

/// A configuration of cubek's flash attention: kind, dtype, head, value head, causal.
pub(crate) type FlashConfig = (FlashKind, DType, usize, usize, bool);

/// Whether cubek has refused this configuration before in this process ([`flash_attention`] does not try it
/// again).
pub(crate) fn flash_declined(config: FlashConfig) -> bool {
    flash_refused().lock().is_ok_and(|r| r.contains(&config))
}

/// The configurations cubek's flash attention has refused in this process.
fn flash_refused() -> &'static std::sync::Mutex<Vec<FlashConfig>> {
    static REFUSED: OnceLock<std::sync::Mutex<Vec<FlashConfig>>> = OnceLock::new();
    REFUSED.get_or_init(Default::default)
}

/// Query rows per cube of cubek's kernel `kind` on a device with planes of `plane` units: 16 per plane for the
/// tensor-core kernel, 8 per unit of one plane for the unit kernel.
fn flash_stage(kind: FlashKind, plane: usize) -> usize {
    match kind {
        FlashKind::Accelerated(planes) => 16 * planes as usize,
        FlashKind::Unit => 8 * plane.max(1),
    }
}

/// [`flash_attention`] on operands padded to whole `stage`s of positions, in f16 (cubek's tile type: the
/// bf16 → f16 casts are exact in range), the result cast back and its padded query rows dropped.
///
/// With the causal mask, padded keys (at the end) are already hidden from every real query. Without it they
/// are hidden by one more head column: queries carry 1 there, real keys 0 and padded keys −10⁴, so a padded
/// key scores −10⁴/√d′ and gets no weight. The head grows to d′ (the next multiple of 16 above d), and the
/// queries are scaled by √(d′/d) in f32 before the cast, so cubek's 1/√d′ scaling stays transformers' 1/√d.
pub fn flash_attention_padded<B: Backend, R: CubeRuntime>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    causal: bool,
    kind: FlashKind,
    stage: usize,
) -> Option<Tensor<B, 4>> {
    let [b, h, s, d] = q.dims();
    let t = k.dims()[2];
    if (causal && s != t) || stage == 0 || d == 0 {
        return None;
    }
    let (dtype, device) = (q.dtype(), q.device());
    let (sp, tp) = (s.div_ceil(stage) * stage, t.div_ceil(stage).max(1) * stage);
    let f16 = (&device, DType::F16);
    let zeros = |shape: [usize; 4]| Tensor::<B, 4>::zeros(shape, f16);
    // Rows `from..to` of zeros appended along the positions (none when equal).
    let pad_rows = |x: Tensor<B, 4>, from: usize, to: usize| {
        let width = x.dims()[3];
        if to > from {
            Tensor::cat(vec![x, zeros([b, h, to - from, width])], 2)
        } else {
            x
        }
    };
    let (qx, kx, vx) = if causal {
        (
            pad_rows(q.clone().cast(DType::F16), s, sp),
            pad_rows(k.clone().cast(DType::F16), t, tp),
            pad_rows(v.clone().cast(DType::F16), t, tp),
        )
    } else {
        let dp = (d + 1).div_ceil(16) * 16;
        let c = (dp as f64 / d as f64).sqrt();
        let q_scaled = (q.clone().cast(DType::F32) * c).cast(DType::F16);
        let qx = Tensor::cat(
            vec![
                q_scaled,
                Tensor::<B, 4>::ones([b, h, s, 1], f16),
                zeros([b, h, s, dp - d - 1]),
            ],
            3,
        );
        let mut keys = vec![Tensor::cat(
            vec![k.clone().cast(DType::F16), zeros([b, h, t, dp - d])],
            3,
        )];
        if tp > t {
            keys.push(Tensor::cat(
                vec![
                    zeros([b, h, tp - t, d]),
                    Tensor::<B, 4>::full([b, h, tp - t, 1], -1.0e4, f16),
                    zeros([b, h, tp - t, dp - d - 1]),
                ],
                3,
            ));
        }
        (
            pad_rows(qx, s, sp),
            Tensor::cat(keys, 2),
            pad_rows(v.clone().cast(DType::F16), t, tp),
        )
    };
    let out = flash_attention::<B, R>(&qx, &kx, &vx, causal, kind)?;
    Some(out.narrow(2, 0, s).cast(dtype))
}

/// Rows of `x` up to which [`skinny_linear`] takes a product (`MMREASON_GEMV_MAX_M`, default 4; 0 turns it
/// off).
pub(crate) fn skinny_max_m() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| {
        std::env::var("MMREASON_GEMV_MAX_M")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4)
    })
}

/// `MMREASON_GEMV_MULTI=ROWS:COLUMNS[:MAX_M]` sends products of more than [`skinny_max_m`] and at most
/// `MAX_M` (default 32) rows to [`skinny_multi_kernel`] instead of cuBLAS; unset (default), they stay with
/// cuBLAS until a device run has timed the two.
fn skinny_multi() -> Option<(SkinnyKernel, usize)> {
    static ASKED: OnceLock<Option<(SkinnyKernel, usize)>> = OnceLock::new();
    *ASKED.get_or_init(|| {
        let v = std::env::var("MMREASON_GEMV_MULTI").ok()?;
        let mut parts = v.split(':').map(|p| p.parse::<usize>().ok());
        let rows = parts.next().flatten()?.clamp(1, 16);
        let columns = parts.next().flatten()?.clamp(1, 8);
        let max_m = parts.next().flatten().unwrap_or(32);
        Some((SkinnyKernel::Multi { rows, columns }, max_m))
    })
}

/// [`crate::gemm::linear_nt`] for `x` of at most [`skinny_max_m`] rows, as one kernel ([`skinny_kernel`]); of
/// more rows where `MMREASON_GEMV_MULTI` asks ([`skinny_multi`]).
pub fn skinny_linear<B: Backend, R: CubeRuntime>(x: &Tensor<B, 2>, w: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
    let m = x.dims()[0];
    if m > skinny_max_m() {
        return match skinny_multi() {
            Some((kernel, max_m)) if m <= max_m => skinny_linear_with::<B, R>(x, w, kernel),
            _ => None,
        };
    }
    // A variant that cannot run here falls back to the shared kernel; the shared kernel's own refusal is final
    // (trying it again would repeat its checks and operand copies on every product).
    match skinny_kernel() {
        SkinnyKernel::Shared => skinny_linear_with::<B, R>(x, w, SkinnyKernel::Shared),
        asked => skinny_linear_with::<B, R>(x, w, asked)
            .or_else(|| skinny_linear_with::<B, R>(x, w, SkinnyKernel::Shared)),
    }
}

/// [`skinny_linear`] with the kernel named (tests, benches); `None` also where the named kernel cannot run
/// on this device (the plane kernel without plane operations).
pub fn skinny_linear_with<B: Backend, R: CubeRuntime>(
    x: &Tensor<B, 2>,
    w: &Tensor<B, 2>,
    kernel: SkinnyKernel,
) -> Option<Tensor<B, 2>> {
    let [m, k] = x.dims();
    let [n, kw] = w.dims();
    // The multi-row kernel takes any number of rows (its callers bound them); the others a few.
    let rows_ok = match kernel {
        // Its shared memory holds MULTI_LANES × (MULTI_PLANES · rows · columns + 1) f32 sums: at most 256
        // outputs per cube keeps that within the 48 KB every device gives a cube (and the sums in registers).
        SkinnyKernel::Multi { rows, columns } => {
            rows * columns * MULTI_PLANES as usize <= 256 && rows * columns > 0
        }
        _ => m <= skinny_max_m(),
    };
    if !enabled() || m == 0 || !rows_ok || k != kw || n == 0 || k == 0 || m * n >= u32::MAX as usize {
        return None;
    }
    let xc = cube_of::<B, R, 2>(x)?;
    let wc = cube_of::<B, R, 2>(w)?;
    if wc.dtype != xc.dtype {
        return None;
    }
    let out = empty_like(&xc, vec![m, n]);
    let client = xc.client.clone();
    // The widest vector the device loads at once that divides the rows.
    let vector = vector_for(&client, xc.dtype, k, &[&xc, &wc]);
    let plane = match kernel {
        SkinnyKernel::Plane { columns, .. } => plane_for(&client, columns),
        _ => None,
    };
    match (kernel, plane) {
        (SkinnyKernel::Multi { rows, columns }, _) => launch_float!(
            xc.dtype,
            skinny_multi_kernel,
            &client,
            row_grid(n.div_ceil(MULTI_PLANES as usize * columns)),
            CubeDim::new_2d(MULTI_LANES, MULTI_PLANES),
            vector,
            array(&xc),
            array(&wc),
            array(&out),
            u32_of(m)?,
            u32_of(n)?,
            u32_of(k)?,
            rows,
            columns,
        ),
        (SkinnyKernel::Plane { .. }, None) => return None,
        (SkinnyKernel::Plane { unroll, columns }, Some(plane)) => launch_float!(
            xc.dtype,
            skinny_plane_kernel,
            &client,
            row_grid(n.div_ceil(columns)),
            CubeDim::new_2d(plane, columns as u32),
            vector,
            array(&xc),
            array(&wc),
            array(&out),
            u32_of(m)?,
            u32_of(n)?,
            u32_of(k)?,
            unroll,
        ),
        _ => launch_float!(
            xc.dtype,
            skinny_nt_kernel,
            &client,
            row_grid(n.div_ceil(8)),
            CubeDim::new_2d(32, 8),
            vector,
            array(&xc),
            array(&wc),
            array(&out),
            u32_of(m)?,
            u32_of(n)?,
            u32_of(k)?,
        ),
    }
    tensor_of::<B, R, 2>(out)
}

/// Which few-row product kernel runs: `Shared` ([`skinny_nt_kernel`]: a reduction in shared memory, the
/// kernel timed in runs 5–6; the default) or `Plane` ([`skinny_plane_kernel`]: one plane per column, `unroll`
/// loads in flight per unit, `columns` per cube). The plane kernel needs plane operations and one fixed plane
/// size (NVIDIA: 32; burn-wgpu on lavapipe has no plane operations); elsewhere the shared kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkinnyKernel {
    Shared,
    Plane {
        unroll: usize,
        columns: usize,
    },
    /// [`skinny_multi_kernel`]: `rows` rows of `x` per pass over the weights, `columns` per group of units.
    Multi {
        rows: usize,
        columns: usize,
    },
}

/// `MMREASON_GEMV`: `shared` (default) or `plane[:UNROLL[:COLUMNS]]` (defaults 4 and 8), for timing them
/// against each other on a device before one becomes the default.
fn skinny_kernel() -> SkinnyKernel {
    static ASKED: OnceLock<SkinnyKernel> = OnceLock::new();
    *ASKED.get_or_init(|| {
        let Ok(v) = std::env::var("MMREASON_GEMV") else {
            return SkinnyKernel::Shared;
        };
        let mut parts = v.split(':');
        if parts.next() != Some("plane") {
            return SkinnyKernel::Shared;
        }
        let unroll = parts
            .next()
            .and_then(|u| u.parse().ok())
            .unwrap_or(4usize)
            .clamp(1, 16);
        let columns = parts
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or(8usize)
            .clamp(1, 32);
        SkinnyKernel::Plane { unroll, columns }
    })
}

/// The plane size a [`SkinnyKernel::Plane`] launch of `columns` per cube uses here, if it can run.
fn plane_for<R: CubeRuntime>(client: &ComputeClient<R>, columns: usize) -> Option<u32> {
    let props = client.properties();
    let hw = &props.hardware;
    (props.features.plane.contains(cubecl::ir::features::Plane::Ops)
        && hw.plane_size_min == hw.plane_size_max
        && hw.plane_size_max >= 1
        && hw.plane_size_max as usize * columns <= hw.max_units_per_cube as usize)
        .then_some(hw.plane_size_max)
}

// Ordering words: how work on another CUDA stream (cuBLAS, `gemm::cuda`) is ordered with burn's stream on the
// device, without the host waiting. A one-unit kernel on burn's stream sets a word once everything before it
// has run; the other stream waits for that value (`cuStreamWaitValue32`), works, and writes a second word; a
// one-unit kernel on burn's stream waits for that one, holding back what burn queues after it.

/// With `wait`, returns once `flags[slot] == value` (atomic loads, so each read goes to memory); otherwise sets
/// `flags[slot] = value` atomically (visible to the other stream's wait once this kernel runs).
#[cube(launch_unchecked)]
fn flag_kernel(flags: &mut Array<Atomic<u32>>, slot: u32, value: u32, #[comptime] wait: bool) {
    if UNIT_POS == 0 {
        if wait {
            loop {
                if flags[slot as usize].load() == value {
                    break;
                }
            }
        } else {
            flags[slot as usize].store(value);
        }
    }
}

/// Queues on the current stream of `client` a kernel that sets word `slot` of `flags` (a buffer of `words`
/// `u32`s) to `value`.
// Used by `gemm::cuda`; other builds only test it.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) fn set_flag<R: CubeRuntime>(
    client: &ComputeClient<R>,
    flags: &cubecl::server::Handle,
    words: usize,
    slot: u32,
    value: u32,
) {
    launch_flag(client, flags, words, slot, value, false);
}

/// Queues on the current stream of `client` a kernel that returns once word `slot` of `flags` equals
/// `value`: what is queued after it waits for whoever writes that value.
// Used by `gemm::cuda`; other builds only test it.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) fn wait_flag<R: CubeRuntime>(
    client: &ComputeClient<R>,
    flags: &cubecl::server::Handle,
    words: usize,
    slot: u32,
    value: u32,
) {
    launch_flag(client, flags, words, slot, value, true);
}

fn launch_flag<R: CubeRuntime>(
    client: &ComputeClient<R>,
    flags: &cubecl::server::Handle,
    words: usize,
    slot: u32,
    value: u32,
    wait: bool,
) {
    assert!((slot as usize) < words, "flag slot {slot} outside {words} words");
    // SAFETY: one unit reads or writes word `slot` of a buffer of `words` u32s (checked above).
    unsafe {
        flag_kernel::launch_unchecked::<R>(
            client,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(1),
            ArrayArg::from_raw_parts(flags.clone(), words),
            slot,
            value,
            wait,
        )
    }
}

#[cfg(all(test, feature = "wgpu", feature = "cuda"))]
mod cuda_source;

mod prefill;
pub use prefill::{TileLayout, tile_attention};

#[cfg(all(test, feature = "wgpu"))]
mod tests {
    use super::*;
    use burn::backend::wgpu::{WgpuDevice, WgpuRuntime};

    #[test]
    fn a_set_flag_releases_the_wait_for_its_value() {
        let client = <WgpuRuntime as Runtime>::client(&WgpuDevice::default());
        let flags = client.create_from_slice(&[0u8; 12]);
        set_flag(&client, &flags, 3, 1, 7);
        // Returns only if word 1 holds 7 by the time it runs (a wrong word or value would spin).
        wait_flag(&client, &flags, 3, 1, 7);
        set_flag(&client, &flags, 3, 2, 9);
        let bytes = client.read_one(flags).expect("reading the flags");
        let words: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(words, [0, 7, 9]);
    }

    #[test]
    fn a_failed_first_launch_is_refused_from_then_on() {
        let client = <WgpuRuntime as Runtime>::client(&WgpuDevice::default());
        let flags = client.create_from_slice(&[0u8; 4]);
        let launch = |units: u32| unsafe {
            flag_kernel::launch_unchecked::<WgpuRuntime>(
                &client,
                CubeCount::Static(1, 1, 1),
                CubeDim::new_1d(units),
                ArrayArg::from_raw_parts(flags.clone(), 1),
                0,
                5,
                false,
            )
        };
        let key = |what: &str| format!("test {what} {:?}", std::thread::current().id());
        // A launch the device takes confirms, and stays confirmed.
        let ok = LaunchCheck::of(key("one unit"));
        assert!(!ok.refused() && ok.first());
        assert_eq!(ok.before(&client), Ok(()));
        launch(1);
        assert_eq!(ok.confirm(&client), Ok(()));
        assert!(!LaunchCheck::of(key("one unit")).refused());
        assert!(!LaunchCheck::of(key("one unit")).first());
        // More units per cube than the device allows: the failure is taken from the stream here, not left to
        // a later read, and the variant is refused from then on.
        let units = client.properties().hardware.max_units_per_cube * 2;
        let bad = LaunchCheck::of(key("too many units"));
        assert_eq!(bad.before(&client), Ok(()));
        launch(units);
        assert!(bad.confirm(&client).is_err());
        assert!(LaunchCheck::of(key("too many units")).refused());
        // An earlier launch's failure is handed back before a new variant's first launch, not blamed on it.
        launch(units);
        let next = LaunchCheck::of(key("after a failure"));
        assert!(next.before(&client).is_err());
        launch(1);
        assert_eq!(next.confirm(&client), Ok(()));
        assert!(!LaunchCheck::of(key("after a failure")).refused());
        // The stream is healthy again: the first launch's word is there to read.
        let bytes = client.read_one(flags).expect("reading after the refused launch");
        assert_eq!(bytes[..4], 5u32.to_le_bytes());
    }
}
