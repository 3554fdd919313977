//! The models' element-wise chains — RMSNorm (also after a residual sum), LayerNorm, quick_gelu, SiLU·mul,
//! splitting heads out of the stacked q/k/v projection with RoPE, the attention softmax — and the decode-time
//! attention and few-row products, as one pass each where the backend allows it, burn's op-by-op composition
//! elsewhere. On burn's CPU backend, which runs such chains at ≈0.45 GB/s (each op a full pass, broadcasts and
//! strided halves on a slow path, a scalar `exp`), contiguous f32 tensors take a fused loop over rows in
//! parallel (`flex`); on burn-cuda and burn-wgpu they are cubecl kernels ([`cube`]).

use burn::tensor::{DType, Tensor, activation, backend::Backend};

#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub(crate) mod cube;
#[cfg(feature = "cuda")]
pub mod gemv;
#[cfg(feature = "cuda")]
pub mod mma;
#[cfg(feature = "cuda")]
pub(crate) mod nvrtc;

/// Returns from the calling function with the fused GPU kernel `cube::$f`'s result when `B` runs on a cubecl
/// runtime (burn-cuda, burn-wgpu) that takes it (`Some(result)` for the `Some:` form, whose callers return an
/// `Option`).
macro_rules! on_gpu {
    ($f:ident::<$b:ty>($($arg:expr),* $(,)?)) => {
        on_gpu!(@wrap std::convert::identity, $f::<$b>($($arg),*))
    };
    (Some: $f:ident::<$b:ty>($($arg:expr),* $(,)?)) => {
        on_gpu!(@wrap Some, $f::<$b>($($arg),*))
    };
    (@wrap $wrap:path, $f:ident::<$b:ty>($($arg:expr),*)) => {
        #[cfg(feature = "cuda")]
        if let Some(y) = cube::$f::<$b, burn_cubecl::cubecl::cuda::CudaRuntime>($($arg),*) {
            return $wrap(y);
        }
        #[cfg(feature = "wgpu")]
        if let Some(y) = cube::$f::<$b, burn::backend::wgpu::WgpuRuntime>($($arg),*) {
            return $wrap(y);
        }
    };
}

/// `x · rsqrt(mean(x²) + ε) · w` over the last dimension, statistics in f32 (transformers' `LlamaRMSNorm`:
/// normalised value back in the input dtype, then the weight).
pub fn rms_norm<B: Backend>(x: Tensor<B, 3>, weight: &Tensor<B, 1>, eps: f64) -> Tensor<B, 3> {
    on_gpu!(rms_norm::<B>(&x, weight, eps));
    #[cfg(feature = "cpu")]
    let x = match flex::rms_norm::<B>(x, weight, eps) {
        Ok(y) => return y,
        Err(x) => x,
    };
    let dtype = x.dtype();
    let x = x.cast(DType::F32);
    let var = x.clone().powi_scalar(2).mean_dim(2);
    let x = (x * (var + eps).sqrt().recip()).cast(dtype);
    x * weight.clone().unsqueeze::<3>()
}

/// The residual sum `x + a` (in the activations' dtype) and its RMSNorm — the decoder's `residual + output`
/// followed by the next layer's norm — as one GPU kernel where the backend allows it.
pub fn add_rms_norm<B: Backend>(
    x: Tensor<B, 3>,
    a: Tensor<B, 3>,
    weight: &Tensor<B, 1>,
    eps: f64,
) -> (Tensor<B, 3>, Tensor<B, 3>) {
    on_gpu!(add_rms_norm::<B>(&x, &a, weight, eps));
    let sum = x + a;
    (sum.clone(), rms_norm(sum, weight, eps))
}

/// The index of each row's maximum of `x` `[rows, n]` (greedy decoding's next token), read back to the host:
/// torch's `argmax` (the first of equal maxima; a NaN counts as the largest value). One kernel on the GPU
/// backends; on the host elsewhere (the CPU backend's rows are already there). Reading the result is the one
/// host synchronisation per decode step. Where a GPU backend does not take the kernel (`MMREASON_FUSED=off`,
/// f64, rows of 2²⁴ values or more), burn's `argmax` runs on the device instead, so that only the indices come
/// back: its rule for NaN is burn's.
pub fn argmax_rows<B: Backend>(x: Tensor<B, 2>) -> Vec<u32> {
    let on_device = || -> Option<Tensor<B, 1>> {
        on_gpu!(Some: argmax_rows::<B>(&x));
        None
    };
    if let Some(ids) = on_device().and_then(|t| t.into_data().convert::<f32>().to_vec::<f32>().ok()) {
        return ids.into_iter().map(|v| v as u32).collect();
    }
    if on_cube_backend::<B>() {
        return x
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .iter::<i64>()
            .map(|v| v as u32)
            .collect();
    }
    let n = x.dims()[1].max(1);
    let values = x.into_data().convert::<f32>();
    values
        .iter::<f32>()
        .collect::<Vec<_>>()
        .chunks(n)
        .map(first_max)
        .collect()
}

/// Whether `B` runs on a cubecl runtime (burn-cuda, burn-wgpu).
#[cfg_attr(
    not(any(feature = "cuda", feature = "wgpu")),
    allow(clippy::extra_unused_type_parameters)
)]
fn on_cube_backend<B: Backend>() -> bool {
    let probe = || -> Option<()> {
        on_gpu!(Some: runs_on::<B>());
        None
    };
    probe().is_some()
}

/// The index of the first maximum of `row` under torch's `argmax` (NaN the largest value, the first NaN): the
/// host's [`argmax_rows`], and the rule the GPU kernel is tested against.
pub fn first_max(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        let b = row[best];
        if !b.is_nan() && (v.is_nan() || v > b) {
            best = i;
        }
    }
    best as u32
}

/// Queries, keys (both with RoPE) and values `[b, heads, s, d]` out of the stacked projection `qkv`
/// `[b, s, (nh + 2·nkv)·d]`: one GPU kernel where the backend allows it, [`heads`] three times elsewhere.
pub fn qkv_heads<B: Backend>(
    qkv: &Tensor<B, 3>,
    nh: usize,
    nkv: usize,
    d: usize,
    cos: &Tensor<B, 4>,
    sin: &Tensor<B, 4>,
) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
    on_gpu!(qkv_heads::<B>(qkv, nh, nkv, d, cos, sin));
    (
        heads(qkv, 0, nh, d, Some((cos, sin))),
        heads(qkv, nh, nkv, d, Some((cos, sin))),
        heads(qkv, nh + nkv, nkv, d, None),
    )
}

/// [`qkv_heads`] with keys and values written straight into a KV cache's storage (`stores`, each
/// `[b, nkv, cap, d]`) at positions `at..at + s`, in place: a decode step's cache write costs no launch of its
/// own. Returns the queries and the stores; `Err` hands the stores back untouched where there is no such kernel
/// (CPU) or it cannot write them (shapes, dtype, a store shared with another tensor) — the caller then appends.
#[allow(clippy::type_complexity)]
pub fn qkv_heads_into<B: Backend>(
    qkv: &Tensor<B, 3>,
    [nh, nkv, d]: [usize; 3],
    cos: &Tensor<B, 4>,
    sin: &Tensor<B, 4>,
    stores: (Tensor<B, 4>, Tensor<B, 4>),
    at: usize,
) -> Result<(Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>), (Tensor<B, 4>, Tensor<B, 4>)> {
    #[cfg(feature = "cuda")]
    let stores = match cube::qkv_heads_into::<B, burn_cubecl::cubecl::cuda::CudaRuntime>(
        qkv, nh, nkv, d, cos, sin, stores, at,
    ) {
        Ok(done) => return Ok(done),
        Err(stores) => stores,
    };
    #[cfg(feature = "wgpu")]
    let stores = match cube::qkv_heads_into::<B, burn::backend::wgpu::WgpuRuntime>(
        qkv, nh, nkv, d, cos, sin, stores, at,
    ) {
        Ok(done) => return Ok(done),
        Err(stores) => stores,
    };
    let _ = (qkv, nh, nkv, d, cos, sin, at);
    Err(stores)
}

/// What [`bias_act`] applies after the bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Identity,
    /// CLIP's `quick_gelu` ([`quick_gelu`]).
    QuickGelu,
}

/// `[residual +] act(y + bias)` over the last dimension — a linear layer's bias, CLIP's activation and the
/// residual sum after it, in the activations' dtype step by step as the composition computes it — as one GPU
/// kernel where the backend allows it (one pass over `y` instead of up to three).
pub fn bias_act<B: Backend>(
    y: Tensor<B, 3>,
    bias: Option<&Tensor<B, 1>>,
    act: Act,
    residual: Option<Tensor<B, 3>>,
) -> Tensor<B, 3> {
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    if let Some(b) = bias {
        on_gpu!(bias_act::<B>(&y, b, act, residual.as_ref()));
    }
    let y = match bias {
        Some(b) => y + b.clone().unsqueeze::<3>(),
        None => y,
    };
    let y = match act {
        Act::Identity => y,
        Act::QuickGelu => quick_gelu(y),
    };
    match residual {
        Some(x) => x + y,
        None => y,
    }
}

/// The stacked projection `qkv` `[b, s, 3·heads·d]` plus its `bias`, split into queries, keys and values
/// `[b, heads, s, d]` (CLIP's attention: no RoPE, as many key as query heads) — one GPU kernel where the
/// backend allows it, instead of a bias pass and three splits.
pub fn qkv_bias_heads<B: Backend>(
    qkv: &Tensor<B, 3>,
    nh: usize,
    d: usize,
    bias: Option<&Tensor<B, 1>>,
) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    if let Some(b) = bias {
        on_gpu!(qkv_bias_heads::<B>(qkv, nh, d, b));
    }
    let biased = match bias {
        Some(b) => qkv.clone() + b.clone().unsqueeze::<3>(),
        None => qkv.clone(),
    };
    (
        heads(&biased, 0, nh, d, None),
        heads(&biased, nh, nh, d, None),
        heads(&biased, 2 * nh, nh, d, None),
    )
}

/// CLIP's residual sum after a product and the LayerNorm after it: `sum = x + (y + product_bias)` (each sum in
/// the activations' dtype, as [`bias_act`]) and `layer_norm(sum)` — one GPU kernel where the backend allows
/// it. Returns `(sum, normed)`.
pub fn bias_add_layer_norm<B: Backend>(
    y: Tensor<B, 3>,
    product_bias: Option<&Tensor<B, 1>>,
    x: Tensor<B, 3>,
    [weight, bias]: [&Tensor<B, 1>; 2],
    eps: f64,
) -> (Tensor<B, 3>, Tensor<B, 3>) {
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    if let Some(pb) = product_bias {
        on_gpu!(bias_add_layer_norm::<B>(&y, pb, &x, weight, bias, eps));
    }
    let sum = bias_act(y, product_bias, Act::Identity, Some(x));
    (sum.clone(), layer_norm(sum, weight, bias, eps))
}

/// torch's LayerNorm over the last dimension with statistics in f32 (biased variance), the normalised value
/// back in the input dtype, then `· weight + bias` — CLIP's layer norms.
pub fn layer_norm<B: Backend>(
    x: Tensor<B, 3>,
    weight: &Tensor<B, 1>,
    bias: &Tensor<B, 1>,
    eps: f64,
) -> Tensor<B, 3> {
    on_gpu!(layer_norm::<B>(&x, weight, bias, eps));
    let dtype = x.dtype();
    let x = x.cast(DType::F32);
    let mean = x.clone().mean_dim(2);
    let centered = x - mean;
    let var = centered.clone().powi_scalar(2).mean_dim(2);
    let y = (centered * (var + eps).sqrt().recip()).cast(dtype);
    y * weight.clone().unsqueeze::<3>() + bias.clone().unsqueeze::<3>()
}

/// CLIP's `quick_gelu`: `x · sigmoid(1.702·x)`.
pub fn quick_gelu<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
    on_gpu!(quick_gelu::<B>(&x));
    x.clone() * activation::sigmoid(x * 1.702)
}

/// `softmax(f32(scores)·scale + mask)` back in the scores' dtype, over the last dimension (`mask`: additive,
/// f32, `[b, 1, s, t]` for scores `[b, h, s, t]`) — transformers' eager attention.
pub fn softmax_f32<B: Backend>(
    scores: Tensor<B, 4>,
    mask: Option<&Tensor<B, 4>>,
    scale: f64,
) -> Tensor<B, 4> {
    on_gpu!(masked_softmax::<B>(&scores, mask, scale));
    let dtype = scores.dtype();
    let x = scores.cast(DType::F32) * scale;
    let x = match mask {
        Some(m) => x + m.clone(),
        None => x,
    };
    activation::softmax(x, 3).cast(dtype)
}

/// `x · wᵀ` for `x` of a few rows (`[m, k]`, `w` `[n, k]`) as one GPU kernel (`cube::skinny_linear`: decode
/// steps at small batch); `None` on other backends and shapes.
pub fn skinny_linear<B: Backend>(x: &Tensor<B, 2>, w: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
    // `MMREASON_GEMV=cuda`: our CUDA C++ kernel for the rows it takes (`gemv`), the cubecl kernel otherwise.
    #[cfg(feature = "cuda")]
    if let Some(unroll) = gemv::wanted()
        && x.dims()[0] <= gemv::MAX_M.min(cube::skinny_max_m())
        && let Some(y) = gemv::linear(x, w, unroll)
    {
        return Some(y);
    }
    on_gpu!(Some: skinny_linear::<B>(x, w));
    let _ = (x, w);
    None
}

/// Attention of one query token over cached keys (`q` `[b, nh, 1, d]`, `k`/`v` `[b, nkv, c, d]` of which the
/// first `t` positions are read, additive f32 `mask` `[b, 1, 1, t]`, `t ≤ c`) as one GPU kernel
/// (`cube::decode_attention`); `None` on other backends and shapes,
/// where [`crate::attention::grouped_query_attention`] composes it.
pub fn decode_attention<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    mask: &Tensor<B, 4>,
    scale: f64,
) -> Option<Tensor<B, 4>> {
    on_gpu!(Some: decode_attention::<B>(q, k, v, mask, scale));
    let _ = (q, k, v, mask, scale);
    None
}

/// Whether prefill attention runs as one kernel of ours ([`prefill_attention`]) for the vision tower
/// (`vision`) or the decoder. By default the vision tower's does and the decoder's does not: run 8 (H200, one
/// call) timed the kernel on CLIP's attention (32 images, 16 heads of 64 over 577 positions) at 1.50 ms against
/// the composition's 1.83 ms, CLIP ViT-L/14-336 at +15…+18 % images/s, and on Mistral's causal prefill (b8, 32
/// heads of 128 over 512) at 0.83 ms against 0.55 ms. `MMREASON_ATTENTION=own` takes it for both, `composed`
/// (or a cubek flash kernel's name: [`flash_kind`]) for neither.
pub fn own_attention_wanted(vision: bool) -> bool {
    // Where the mma kernel declines, the vision tower keeps its default.
    attention_asked().map_or(vision, |v| v == "own" || (v == "mma" && vision))
}

/// Whether prefill attention may run as our FlashAttention-2 kernel on tensor cores (`mma`: CUDA C++ through
/// NVRTC, burn-cuda in bf16/f16, heads of 64 or 128) for both towers: by default, or where
/// `MMREASON_ATTENTION=mma` asks; another `MMREASON_ATTENTION` turns it off. Where it declines (another backend,
/// dtype or head size) each tower keeps its own default. Run 9 (H200, one call, its kernel test passed): CLIP
/// ViT-L/14-336 at 1,023 against 574 images/s, Mistral-7B prefill b8×512 at 36,948 against 36,169 tok/s and
/// b32×256 at 41,247 against 38,743; the kernel alone 0.47 ms against 1.49 ms (CLIP's attention) and 0.32 ms
/// against 0.46 ms (Mistral's causal b8×512). Run 10, as the default: 1,034 images/s (our cubecl kernel
/// instead: 578), prefill b8×512 37,453 tok/s.
pub fn mma_attention_wanted() -> bool {
    // `MMREASON_FUSED=off` (burn's composition, a baseline) turns it off with our other kernels.
    #[cfg(feature = "cuda")]
    return cube::enabled() && attention_asked().is_none_or(|v| v == "mma");
    #[cfg(not(feature = "cuda"))]
    false
}

/// [`prefill_attention`] as the mma kernel whatever `MMREASON_ATTENTION` says (tests, benches); `None` where
/// it does not apply (not burn-cuda, f32, another head size, no GPU of compute capability 8.0, no NVRTC).
#[allow(clippy::too_many_arguments)]
pub fn mma_attention_of<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    mask: Option<&Tensor<B, 4>>,
    t: usize,
    causal: bool,
    scale: f64,
) -> Option<Tensor<B, 4>> {
    #[cfg(feature = "cuda")]
    return mma::attention(q, k, v, mask, t, causal, scale);
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (q, k, v, mask, t, causal, scale);
        None
    }
}

/// Whether the vision tower's attention reads q, k and v as views of its one projection, with the query and
/// value biases folded into the mma kernel (`MMREASON_QKV_VIEWS=1`, opt-in until a device run times it): that
/// drops the pass that adds the bias and splits the heads (`QkvBiasHeadsKernel`: run 10's CLIP profile puts
/// it at 1.9 ms of ≈ 31, a read and a write of the 113 MB projection per layer). Only with the mma kernel.
pub fn qkv_views_wanted() -> bool {
    static ASKED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ASKED.get_or_init(|| std::env::var("MMREASON_QKV_VIEWS").as_deref() == Ok("1")) && mma_attention_wanted()
}

/// The vision tower's attention from its stacked projection `qkv` `[b, s, 3·nh·d]` and that projection's
/// `bias` (`[3·nh·d]`, or none), every key seen: `softmax(q·kᵀ·scale)·v` `[b, nh, s, d]` as
/// [`qkv_bias_heads`] then [`prefill_attention`] compute it, with the mma kernel reading q, k and v in place
/// where [`qkv_views_wanted`]; `None` otherwise (the caller splits the heads and attends as before).
pub fn qkv_attention<B: Backend>(
    qkv: &Tensor<B, 3>,
    nh: usize,
    d: usize,
    bias: Option<&Tensor<B, 1>>,
    scale: f64,
) -> Option<Tensor<B, 4>> {
    if !qkv_views_wanted() {
        return None;
    }
    qkv_attention_of(qkv, nh, d, bias, scale)
}

/// [`qkv_attention`] whatever `MMREASON_QKV_VIEWS` says (tests, benches).
pub fn qkv_attention_of<B: Backend>(
    qkv: &Tensor<B, 3>,
    nh: usize,
    d: usize,
    bias: Option<&Tensor<B, 1>>,
    scale: f64,
) -> Option<Tensor<B, 4>> {
    #[cfg(feature = "cuda")]
    {
        let [b, s, width] = qkv.dims();
        if width != 3 * nh * d || bias.is_some_and(|bb| bb.dims() != [width]) {
            return None;
        }
        // [b, 3·nh, s, d] → three [b, nh, s, d] views: strides (s·width, d, width, 1), no copy. (Reshaped
        // whole first: burn copies a strided slice reshaped at b = 1, and a slice whose byte offset is not a
        // multiple of the device's alignment, 512 on CUDA.)
        let heads = qkv.clone().reshape([b, s, 3 * nh, d]).swap_dims(1, 2);
        let view = |i: usize| heads.clone().narrow(1, i * nh, nh);
        let (q, k, v) = (view(0), view(1), view(2));
        match bias {
            Some(bb) => {
                let (qb, vb) = (
                    bb.clone().narrow(0, 0, nh * d),
                    bb.clone().narrow(0, 2 * nh * d, nh * d),
                );
                mma::attention_biased(&q, &k, &v, (&qb, &vb), s, scale)
            }
            None => mma::attention(&q, &k, &v, None, s, false, scale),
        }
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (qkv, nh, d, bias, scale);
        None
    }
}

/// Whether `MMREASON_ATTENTION=padded` asks for the vision tower's composed attention over keys padded to whole
/// 16-byte rows (`clip::KeyPad`), instead of our kernel. Off by default until a device run has timed it.
pub fn padded_keys_wanted() -> bool {
    attention_asked() == Some("padded")
}

/// `MMREASON_ATTENTION`, read once for every attention switch (ours, padded keys, cubek's flash kernels);
/// `None` where it is unset, empty or `default`.
pub(crate) fn attention_asked() -> Option<&'static str> {
    static ASKED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ASKED
        .get_or_init(|| {
            std::env::var("MMREASON_ATTENTION")
                .ok()
                .filter(|v| !v.is_empty() && v != "default")
        })
        .as_deref()
}

/// `softmax(q·kᵀ·scale [+ mask])·v` as one GPU kernel of ours (`cube::tile_attention`: tensor-core tiles where
/// the device has them, an online softmax) when [`own_attention_wanted`] for `vision` (the vision tower's
/// attention, or the decoder's); `None` otherwise and off the GPU backends, where the caller composes it.
/// `q` `[b, nh, s, d]`; `k`/`v` `[b, nkv, c, d]` of which the first `t` positions are read (grouped heads read
/// in place, a cache without a copy); `mask` f32 `[b, 1, s, t]`; with `causal` (no mask needed), query `i` sees
/// keys up to position `i + t − s`.
#[allow(clippy::too_many_arguments)]
pub fn prefill_attention<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    mask: Option<&Tensor<B, 4>>,
    t: usize,
    causal: bool,
    scale: f64,
    vision: bool,
) -> Option<Tensor<B, 4>> {
    #[cfg(feature = "cuda")]
    if mma_attention_wanted()
        && let Some(y) = mma::attention(q, k, v, mask, t, causal, scale)
    {
        return Some(y);
    }
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    if own_attention_wanted(vision) {
        return prefill_attention_with(q, k, v, mask, t, causal, scale, None);
    }
    let _ = (q, k, v, mask, t, causal, scale, vision);
    None
}

/// The sizes of a [`prefill_attention`] call, where its operands keep the contract every kernel behind it
/// shares: `q` `[b, nh, s, d]` with `b·nh·s·d > 0`, `k`/`v` `[b, nkv, cap, d]` of one dtype with `q`, `nkv`
/// dividing `nh`, `0 < t ≤ cap`, `t ≥ s` when causal, and a mask (if any) f32 `[b, 1, s, t]`. `None` where they
/// do not: the kernel declines and the caller composes the attention. Each kernel adds its own limits.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AttentionShape {
    pub b: usize,
    pub nh: usize,
    pub s: usize,
    pub d: usize,
    pub nkv: usize,
    pub cap: usize,
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
impl AttentionShape {
    pub(crate) fn of<B: Backend>(
        q: &Tensor<B, 4>,
        k: &Tensor<B, 4>,
        v: &Tensor<B, 4>,
        mask: Option<&Tensor<B, 4>>,
        t: usize,
        causal: bool,
    ) -> Option<Self> {
        let [b, nh, s, d] = q.dims();
        let [bk, nkv, cap, dk] = k.dims();
        let fits = bk == b
            && dk == d
            && v.dims() == [b, nkv, cap, d]
            && k.dtype() == q.dtype()
            && v.dtype() == q.dtype()
            && nkv > 0
            && nh.is_multiple_of(nkv)
            && b * nh * s * d > 0
            && t > 0
            && t <= cap
            && (!causal || t >= s)
            && mask.is_none_or(|m| m.dims() == [b, 1, s, t] && m.dtype() == DType::F32);
        fits.then_some(Self {
            b,
            nh,
            s,
            d,
            nkv,
            cap,
        })
    }
}

/// [`prefill_attention`] whatever `MMREASON_ATTENTION` says, its layout named (or else `MMREASON_TILE_ATTN`'s
/// or the default; tests, benches).
#[cfg(any(feature = "cuda", feature = "wgpu"))]
#[allow(clippy::too_many_arguments)]
pub fn prefill_attention_with<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    mask: Option<&Tensor<B, 4>>,
    t: usize,
    causal: bool,
    scale: f64,
    layout: Option<TileLayout>,
) -> Option<Tensor<B, 4>> {
    on_gpu!(Some: tile_attention::<B>(q, k, v, mask, t, causal, scale, layout));
    None
}

/// Whether `MMREASON_ATTENTION` asks for a flash attention kernel (see [`flash_attention`]) and cubek has not
/// already refused it for queries of this dtype and head `d` (with as wide values); callers check it before
/// preparing operands the kernel alone needs.
pub fn flash_wanted(dtype: burn::tensor::DType, d: usize, causal: bool) -> bool {
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    return cube::flash_kind().is_some_and(|kind| !cube::flash_declined((kind, dtype, d, d, causal)));
    #[cfg(not(any(feature = "cuda", feature = "wgpu")))]
    {
        let _ = (dtype, d, causal);
        false
    }
}

/// `softmax(q·kᵀ/√d [+ causal])·v` (`q` `[b, h, s, d]`, `k`/`v` `[b, h, t, d]`) as cubek's flash attention kernel
/// when `MMREASON_ATTENTION=flash…` asks for it (`cube::flash_kind`), on the GPU backends in bf16/f16;
/// `None` otherwise, and the caller composes it.
pub fn flash_attention<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    causal: bool,
) -> Option<Tensor<B, 4>> {
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    if let Some(kind) = cube::flash_kind() {
        return flash_attention_of(q, k, v, causal, kind);
    }
    let _ = (q, k, v, causal);
    None
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub use cube::{DecodeKernel, FlashKind, SkinnyKernel, SoftmaxKernel, TileLayout};

/// [`softmax_f32`] as the named GPU kernel (tests, benches); `None` off the GPU backends.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub fn softmax_f32_with<B: Backend>(
    scores: &Tensor<B, 4>,
    mask: Option<&Tensor<B, 4>>,
    scale: f64,
    kernel: SoftmaxKernel,
) -> Option<Tensor<B, 4>> {
    on_gpu!(Some: masked_softmax_with::<B>(scores, mask, scale, kernel));
    None
}

/// [`decode_attention`] with the kernel named rather than read from `MMREASON_DECODE_ATTN` (tests, benches).
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub fn decode_attention_with<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    mask: &Tensor<B, 4>,
    scale: f64,
    kernel: DecodeKernel,
) -> Option<Tensor<B, 4>> {
    on_gpu!(Some: decode_attention_with::<B>(q, k, v, mask, scale, kernel));
    None
}

/// `x · wᵀ` for `x` of 1–4 rows as our CUDA C++ kernel (`gemv`, `MMREASON_GEMV=cuda`) with `unroll` (1–16)
/// weight loads in flight per unit, whatever `MMREASON_GEMV` says (tests, benches); `None` where it does not
/// apply (not burn-cuda, f32, a depth not a multiple of 8, more rows, no GPU of compute capability 8.0, no NVRTC).
pub fn cuda_gemv_of<B: Backend>(x: &Tensor<B, 2>, w: &Tensor<B, 2>, unroll: usize) -> Option<Tensor<B, 2>> {
    #[cfg(feature = "cuda")]
    return gemv::linear(x, w, unroll);
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (x, w, unroll);
        None
    }
}

/// [`skinny_linear`] with the kernel named rather than read from `MMREASON_GEMV` (tests, benches).
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub fn skinny_linear_with<B: Backend>(
    x: &Tensor<B, 2>,
    w: &Tensor<B, 2>,
    kernel: SkinnyKernel,
) -> Option<Tensor<B, 2>> {
    on_gpu!(Some: skinny_linear_with::<B>(x, w, kernel));
    None
}

/// [`flash_attention_of`] on operands padded to whole stages of `stage` positions (with a masking head column
/// when not causal), as the kernel is run on shapes it does not take itself (tests).
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub fn flash_attention_padded_of<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    causal: bool,
    kind: FlashKind,
    stage: usize,
) -> Option<Tensor<B, 4>> {
    on_gpu!(Some: flash_attention_padded::<B>(q, k, v, causal, kind, stage));
    None
}

/// [`flash_attention`] with the kernel named rather than read from `MMREASON_ATTENTION` (tests, benches).
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub fn flash_attention_of<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    causal: bool,
    kind: FlashKind,
) -> Option<Tensor<B, 4>> {
    on_gpu!(Some: flash_attention::<B>(q, k, v, causal, kind));
    None
}

/// `silu(gate) · up` for `gate_up` = `[…, gate | up]` (each half `i` wide on the last dimension).
pub fn silu_mul<B: Backend>(gate_up: Tensor<B, 3>, i: usize) -> Tensor<B, 3> {
    on_gpu!(silu_mul::<B>(&gate_up, i));
    #[cfg(feature = "cpu")]
    let gate_up = match flex::silu_mul::<B>(gate_up, i) {
        Ok(y) => return y,
        Err(t) => t,
    };
    activation::silu(gate_up.clone().narrow(2, 0, i)) * gate_up.narrow(2, i, i)
}

/// Heads `first..first + n` (each `d` wide) of the stacked projection `qkv` `[b, s, ·]` as `[b, n, s, d]`, with
/// rotary embeddings applied when `cos`/`sin` (`[b, 1, s, d]`) are given — `rope::apply` on the split heads.
pub fn heads<B: Backend>(
    qkv: &Tensor<B, 3>,
    first: usize,
    n: usize,
    d: usize,
    rope: Option<(&Tensor<B, 4>, &Tensor<B, 4>)>,
) -> Tensor<B, 4> {
    on_gpu!(heads::<B>(qkv, first, n, d, rope));
    #[cfg(feature = "cpu")]
    if let Some(t) = flex::heads::<B>(qkv, first, n, d, rope) {
        return t;
    }
    let [b, s, _] = qkv.dims();
    let x = qkv
        .clone()
        .narrow(2, first * d, n * d)
        .reshape([b, s, n, d])
        .swap_dims(1, 2);
    match rope {
        Some((cos, sin)) => crate::rope::apply(x, cos, sin),
        None => x,
    }
}

#[cfg(feature = "cpu")]
mod flex {
    use std::any::{Any, TypeId};

    use burn::tensor::{Tensor, TensorData, TensorPrimitive, backend::Backend};
    use burn_flex::{Flex, FlexTensor};
    use rayon::prelude::*;

    /// Rows per parallel task: large enough that scheduling costs nothing next to the row work.
    const MIN_ELEMS_PER_TASK: usize = 1 << 14;

    /// The f32 values of a contiguous Flex tensor, or the tensor back when it is not one.
    fn flex_f32<B: Backend, const D: usize>(
        t: Tensor<B, D>,
    ) -> Result<(FlexTensor, Vec<usize>), Tensor<B, D>> {
        if TypeId::of::<B>() != TypeId::of::<Flex>() || t.dtype() != burn::tensor::DType::F32 {
            return Err(t);
        }
        let dims = t.dims().to_vec();
        let p: Box<dyn Any> = Box::new(t.into_primitive().tensor());
        let ft = *p.downcast::<FlexTensor>().expect("B is Flex");
        if ft.as_slice::<f32>().is_some() {
            Ok((ft, dims))
        } else {
            Err(from_flex(ft))
        }
    }

    /// A Flex tensor as a `Tensor<B>` (`B` is Flex: checked by the caller through `flex_f32`).
    fn from_flex<B: Backend, const D: usize>(ft: FlexTensor) -> Tensor<B, D> {
        let p: Box<dyn Any> = Box::new(ft);
        let prim = *p.downcast::<B::FloatTensorPrimitive>().expect("B is Flex");
        Tensor::from_primitive(TensorPrimitive::Float(prim))
    }

    fn to_tensor<B: Backend, const D: usize>(values: Vec<f32>, dims: [usize; D]) -> Tensor<B, D> {
        from_flex(FlexTensor::from_data(TensorData::new(values, dims)))
    }

    fn rows_per_task(width: usize) -> usize {
        (MIN_ELEMS_PER_TASK / width.max(1)).max(1)
    }

    /// `f(k, chunk k of out)` over `chunk`-sized pieces: in parallel when there is more than one task's worth
    /// of work, on this thread otherwise (handing a decode step's few rows to the thread pool costs more than
    /// the rows).
    fn for_chunks(out: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
        if out.len() <= MIN_ELEMS_PER_TASK {
            out.chunks_mut(chunk).enumerate().for_each(|(k, o)| f(k, o));
        } else {
            out.par_chunks_mut(chunk).enumerate().for_each(|(k, o)| f(k, o));
        }
    }

    pub(super) fn rms_norm<B: Backend>(
        x: Tensor<B, 3>,
        weight: &Tensor<B, 1>,
        eps: f64,
    ) -> Result<Tensor<B, 3>, Tensor<B, 3>> {
        let w = match flex_f32::<B, 1>(weight.clone()) {
            Ok((w, _)) => w,
            Err(_) => return Err(x),
        };
        let (xt, dims) = flex_f32::<B, 3>(x)?;
        let (xs, ws) = (
            xt.as_slice::<f32>().expect("checked"),
            w.as_slice::<f32>().expect("checked"),
        );
        let h = dims[2];
        let mut out = vec![0f32; xs.len()];
        let per = rows_per_task(h);
        for_chunks(&mut out, h * per, |k, o| {
            let x = &xs[k * h * per..][..o.len()];
            for (o, x) in o.chunks_mut(h).zip(x.chunks(h)) {
                let ms = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / h as f64;
                let r = 1.0 / ((ms as f32) + eps as f32).sqrt();
                for ((o, &v), &w) in o.iter_mut().zip(x).zip(ws) {
                    *o = v * r * w;
                }
            }
        });
        Ok(to_tensor::<B, 3>(out, [dims[0], dims[1], h]))
    }

    pub(super) fn heads<B: Backend>(
        qkv: &Tensor<B, 3>,
        first: usize,
        n: usize,
        d: usize,
        rope: Option<(&Tensor<B, 4>, &Tensor<B, 4>)>,
    ) -> Option<Tensor<B, 4>> {
        let (t, dims) = flex_f32::<B, 3>(qkv.clone()).ok()?;
        let owners = match rope {
            Some((cos, sin)) => {
                let (c, _) = flex_f32::<B, 4>(cos.clone()).ok()?;
                let (s, _) = flex_f32::<B, 4>(sin.clone()).ok()?;
                Some((c, s))
            }
            None => None,
        };
        let tables = owners.as_ref().map(|(c, s)| {
            (
                c.as_slice::<f32>().expect("checked"),
                s.as_slice::<f32>().expect("checked"),
            )
        });
        let (b, s, width) = (dims[0], dims[1], dims[2]);
        let x = t.as_slice::<f32>().expect("checked");
        let half = d / 2;
        let mut out = vec![0f32; b * n * s * d];
        // One task per (sequence, head): `s` rows of `d` values, read from the stacked rows.
        for_chunks(&mut out, s * d, |bh, o| {
            let (bi, h) = (bh / n, bh % n);
            for (si, o) in o.chunks_mut(d).enumerate() {
                let src = &x[(bi * s + si) * width + (first + h) * d..][..d];
                match tables {
                    None => o.copy_from_slice(src),
                    Some((c, sn)) => {
                        let at = (bi * s + si) * d;
                        let (c, sn) = (&c[at..at + d], &sn[at..at + d]);
                        for j in 0..d {
                            let rot = if j < half { -src[j + half] } else { src[j - half] };
                            o[j] = src[j] * c[j] + rot * sn[j];
                        }
                    }
                }
            }
        });
        Some(to_tensor::<B, 4>(out, [b, n, s, d]))
    }

    pub(super) fn silu_mul<B: Backend>(
        gate_up: Tensor<B, 3>,
        i: usize,
    ) -> Result<Tensor<B, 3>, Tensor<B, 3>> {
        let (t, dims) = flex_f32::<B, 3>(gate_up)?;
        let gu = t.as_slice::<f32>().expect("checked");
        let rows = dims[0] * dims[1];
        let mut out = vec![0f32; rows * i];
        let per = rows_per_task(i);
        for_chunks(&mut out, i * per, |k, o| {
            let gu = &gu[k * 2 * i * per..][..2 * o.len()];
            for (o, row) in o.chunks_mut(i).zip(gu.chunks(2 * i)) {
                let (g, u) = row.split_at(i);
                for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                    *o = g / (1.0 + (-g).exp()) * u;
                }
            }
        });
        Ok(to_tensor::<B, 3>(out, [dims[0], dims[1], i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    type Cpu = crate::backend::CpuBackend;

    /// The shared contract of the prefill attention kernels: every operand that breaks it is named and refused
    /// (the kernels then decline and the caller composes), and a call that keeps it gives its sizes.
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    #[test]
    fn attention_shape_refuses_operands_outside_the_contract() {
        let dev = Default::default();
        let z = |dims: [usize; 4]| Tensor::<Cpu, 4>::zeros(dims, &dev);
        let (q, k, v) = (z([2, 4, 5, 8]), z([2, 2, 9, 8]), z([2, 2, 9, 8]));
        let mask = z([2, 1, 5, 7]);
        let of =
            |q: &Tensor<Cpu, 4>, k: &Tensor<Cpu, 4>, v: &Tensor<Cpu, 4>, m: Option<&Tensor<Cpu, 4>>, t, c| {
                AttentionShape::of(q, k, v, m, t, c)
            };
        let want = AttentionShape {
            b: 2,
            nh: 4,
            s: 5,
            d: 8,
            nkv: 2,
            cap: 9,
        };
        assert_eq!(of(&q, &k, &v, None, 7, true), Some(want));
        assert_eq!(of(&q, &k, &v, Some(&mask), 7, false), Some(want));
        // t past the cache, no keys, fewer keys than causal queries need.
        assert_eq!(of(&q, &k, &v, None, 10, false), None);
        assert_eq!(of(&q, &k, &v, None, 0, false), None);
        assert_eq!(of(&q, &k, &v, None, 4, true), None);
        assert!(of(&q, &k, &v, None, 4, false).is_some());
        // Heads that do not group, a batch or head size that differs, values unlike keys.
        assert_eq!(of(&z([2, 3, 5, 8]), &k, &v, None, 7, false), None);
        assert_eq!(of(&q, &z([1, 2, 9, 8]), &v, None, 7, false), None);
        assert_eq!(of(&q, &z([2, 2, 9, 16]), &v, None, 7, false), None);
        assert_eq!(of(&q, &k, &z([2, 2, 8, 8]), None, 7, false), None);
        // No queries.
        assert_eq!(of(&z([2, 4, 0, 8]), &k, &v, None, 7, false), None);
        // A mask of the wrong size or dtype; operands of two dtypes.
        assert_eq!(of(&q, &k, &v, Some(&z([2, 1, 5, 9])), 7, false), None);
        assert_eq!(
            of(&q, &k, &v, Some(&mask.clone().cast(DType::F16)), 7, false),
            None
        );
        assert_eq!(of(&q, &k.clone().cast(DType::F16), &v, None, 7, false), None);
    }

    /// Greedy decoding's argmax on the host follows torch: the first of equal maxima, NaN above numbers.
    #[test]
    fn argmax_rows_takes_the_first_maximum_and_nan_first() {
        let d = Default::default();
        let rows = [
            [1.0, 3.0, -2.0, 3.0, 0.5],
            [f32::NEG_INFINITY; 5],
            [0.0, f32::NAN, 9.0, f32::NAN, 1.0],
            [-1.0, -2.0, -3.0, -4.0, -0.5],
        ];
        let x = Tensor::<Cpu, 2>::from_data(burn::tensor::TensorData::new(rows.concat(), [4, 5]), &d);
        assert_eq!(argmax_rows(x), [1, 0, 1, 4]);
    }

    /// The fused loops equal burn's composition (what other backends run) on the CPU.
    #[test]
    fn fused_cpu_loops_equal_the_op_by_op_composition() {
        let d = Default::default();
        let x = Tensor::<Cpu, 3>::random([3, 5, 64], Distribution::Normal(0.0, 2.0), &d);
        let w = Tensor::<Cpu, 1>::random([64], Distribution::Normal(1.0, 0.5), &d);
        let want = {
            let var = x.clone().powi_scalar(2).mean_dim(2);
            x.clone() * (var + 1e-5).sqrt().recip() * w.clone().unsqueeze::<3>()
        };
        rms_norm(x.clone(), &w, 1e-5)
            .into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Tolerance::relative(1e-5));
        let want = activation::silu(x.clone().narrow(2, 0, 32)) * x.clone().narrow(2, 32, 32);
        silu_mul(x.clone(), 32)
            .into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Tolerance::relative(1e-5));
        // Heads split out of a stacked projection, with and without RoPE.
        let qkv = Tensor::<Cpu, 3>::random([2, 3, 5 * 8], Distribution::Normal(0.0, 1.0), &d);
        let cos = Tensor::<Cpu, 4>::random([2, 1, 3, 8], Distribution::Normal(0.0, 1.0), &d);
        let sin = Tensor::<Cpu, 4>::random([2, 1, 3, 8], Distribution::Normal(0.0, 1.0), &d);
        let split = qkv
            .clone()
            .narrow(2, 8, 3 * 8)
            .reshape([2, 3, 3, 8])
            .swap_dims(1, 2);
        heads(&qkv, 1, 3, 8, Some((&cos, &sin)))
            .into_data()
            .assert_approx_eq::<f32>(
                &crate::rope::apply(split.clone(), &cos, &sin).into_data(),
                Tolerance::relative(1e-6),
            );
        heads(&qkv, 1, 3, 8, None)
            .into_data()
            .assert_approx_eq::<f32>(&split.into_data(), Tolerance::relative(0.0));
        assert!(flex::heads::<Cpu>(&qkv, 1, 3, 8, None).is_some());
        // Contiguous f32 takes the fused loop; a strided input (not one buffer) the composition, same answer.
        assert!(flex::silu_mul::<Cpu>(x.clone(), 32).is_ok());
        assert!(flex::rms_norm::<Cpu>(x.clone(), &w, 1e-5).is_ok());
        let strided = x.clone().swap_dims(0, 1);
        assert!(flex::silu_mul::<Cpu>(strided.clone(), 32).is_err());
        let want = activation::silu(strided.clone().narrow(2, 0, 32)) * strided.clone().narrow(2, 32, 32);
        silu_mul(strided, 32)
            .into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Tolerance::relative(1e-6));
    }
}
