//! Prefill attention as FlashAttention-2's forward pass, in CUDA C++ of ours (`mma_attention.cu`) compiled at
//! run time with NVRTC and launched on burn-cuda's own stream (`MMREASON_ATTENTION=mma`).
//!
//! Why not cubecl: our cubecl attention kernel (`cube::prefill`) reaches 20–30 TFLOP/s because cubecl's
//! tensor-core fragments are opaque — the scores go through shared memory for the softmax and the output
//! accumulator is rescaled there on every key block (benches/gpu/NOTES.md, "Why our attention kernel is
//! slow"). `mma.sync` fragments have a documented register layout, so here the scores, the probabilities and
//! the output never leave registers: one pass over the keys per tile of 64 queries, K and V tiles copied
//! asynchronously (`cp.async`) while the previous one is multiplied.
//!
//! What it takes: bf16 or f16, heads of 64 or 128, any strides with the head dimension contiguous and rows
//! 16-byte aligned (a cache longer than `t`, a permuted view), grouped key/value heads read in place, and no
//! mask, the causal triangle from positions, or an additive f32 mask (left padding, a sliding window). It
//! needs a GPU of compute capability 8.0 or later, NVRTC, and cubecl-cuda patched to say which stream burn's
//! kernels run on (`mmreason-stream-hook`); elsewhere it declines (said once) and the caller composes the
//! attention.
//!
//! Checked without a GPU by running the same source on the CPU with its warp-level operations emulated
//! (`crates/model/emulate/`, the `cuda_kernels_emulated` test) and by compiling every variant with NVRTC
//! (`cuda_source`, `benches/gpu/nvrtc_check.py`); on a GPU by `fused_kernels` and the model parity tests.

use std::any::TypeId;

use burn::tensor::{DType, Tensor, backend::Backend};
use burn_cubecl::cubecl::cuda::CudaRuntime;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use cudarc::driver::sys as dsys;

use super::AttentionShape;
use super::cube::{primitive_of, tensor_of};
use super::nvrtc::{self, Cube, Launch, Refusal};

/// The kernel's CUDA C++ (its parameters defined by [`source`]).
pub const SOURCE: &str = include_str!("mma_attention.cu");

/// Query rows in one m-tile of a warp; the most rows a cube takes (8 warps of one m-tile, or 4 of two).
const ROWS_PER_MTILE: usize = 16;
const MAX_ROWS: usize = 128;

/// Warps per cube (`MMREASON_MMA_WARPS`: 4, the default, or 8 — 128 query rows sharing each K/V tile, half
/// the tiles' traffic, at the same warps per SM): a knob for a device run.
fn warps() -> usize {
    static ASKED: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *ASKED.get_or_init(|| match std::env::var("MMREASON_MMA_WARPS").as_deref() {
        Ok("8") => 8,
        _ => 4,
    })
}

/// Stages of K/V tiles in shared memory at heads of 64 (`MMREASON_MMA_STAGES`: 1, the default, or 2 — block
/// j + 2's copies in flight while block j is worked on, where one stage overlaps each copy with half a block's
/// work): a knob for a device run. Heads of 128 keep one stage (two would pass static shared memory's 48 KiB).
/// Run 10 (H200, one call; its kernel test passed): CLIP 1,037 against 1,034 images/s, within noise — the
/// copies' latency is not what holds the kernel back.
fn stages(d: usize) -> usize {
    static ASKED: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let asked = *ASKED.get_or_init(|| match std::env::var("MMREASON_MMA_STAGES").as_deref() {
        Ok("2") => 2,
        _ => 1,
    });
    if d == 64 { asked } else { 1 }
}

/// m-tiles of 16 query rows per warp (`MMREASON_MMA_ROWS`: 16, the default, or 32 with 4 warps per cube):
/// with 32, each K and V fragment a warp loads from shared memory serves two m-tiles' products instead of one,
/// half the `ldmatrix` traffic per query row, as FlashAttention-2 lays its warps out. Run 9's figures put
/// CLIP's attention at ≈ 93 TFLOP/s, where per 64×64 block a cube's fragment loads (64 KiB at 128 bytes per
/// cycle) take about twice its products' cycles: this is the candidate for that. At heads of 128 the key blocks
/// shrink to 32 so that two m-tiles' scores fit beside their output (ptxas: 255 registers, 44–72 bytes
/// spilled). Untimed: a knob for a device run.
fn mtiles() -> usize {
    static ASKED: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let asked = *ASKED.get_or_init(|| match std::env::var("MMREASON_MMA_ROWS").as_deref() {
        Ok("32") => 2,
        _ => 1,
    });
    if warps() == 4 { asked } else { 1 }
}

/// The lean block loop (`MMREASON_MMA_LEAN=1`, `LEAN` in the source): a key block that every row of a warp sees
/// whole runs as straight-line code, with no condition per n-tile or per key; the scale folds into each
/// probability's one FMA (unmasked); fragment addresses are the compiler's, so their offsets become immediates;
/// tiles are copied in a fixed count per thread. Why: ptxas's SASS of the default kernel (NVRTC 13.5, sm_90a)
/// has a branch around each n-tile of Q·Kᵀ, so each `ldmatrix` is followed at once by the `mma.sync` that waits
/// for it, and ≈ 1,200 instructions per key block per warp at CLIP's shape for 64 `mma.sync`; the lean loop
/// has ≈ 420, with its `ldmatrix` issued ahead of the products (`benches/gpu/nvrtc_check.py --sass`). Untimed:
/// a knob for a device run.
fn lean() -> bool {
    static ASKED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ASKED.get_or_init(|| std::env::var("MMREASON_MMA_LEAN").as_deref() == Ok("1"))
}

/// Which keys each query sees: `MASK_MODE` in the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Masking {
    /// Every key (the vision tower).
    None,
    /// Keys up to its position (`i + t − s`).
    Causal,
    /// Every key, plus an additive f32 mask `[b, 1, s, t]`.
    Mask,
}

impl Masking {
    pub const ALL: [Masking; 3] = [Masking::None, Masking::Causal, Masking::Mask];

    fn code(self) -> u8 {
        match self {
            Masking::None => 0,
            Masking::Causal => 1,
            Masking::Mask => 2,
        }
    }
}

/// The dtypes and head sizes the kernel is built for.
pub const HEAD_DIMS: [usize; 2] = [64, 128];

/// The source of one variant: its parameters defined ahead of [`SOURCE`]; with `MMREASON_MMA_CUBES=N` (1–8)
/// the registers budgeted for N cubes per SM instead of the source's choice per head size (a knob for a device
/// run: fewer registers per unit against spills; run 10: 5 cubes at heads of 64, 96 registers with 132 bytes
/// spilled, CLIP 1,037 against 1,034 images/s).
pub fn source(bf16: bool, d: usize, masking: Masking, bias: bool) -> String {
    source_for(bf16, d, masking, Layout::asked(d), cubes_asked(), bias)
}

/// How a cube of the kernel is laid out and runs: `WARPS`, `MTILES`, `BC`, `STAGES` and `LEAN` in the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Warps per cube: 4 or 8.
    pub warps: usize,
    /// m-tiles of 16 query rows per warp: 1, or 2 with 4 warps.
    pub mtiles: usize,
    /// Keys per block: 64, or 32 for two m-tiles at heads of 128.
    pub block: usize,
    /// Stages of K/V tiles in shared memory: 1, or 2 at heads of 64.
    pub stages: usize,
    /// The lean block loop ([`lean`]).
    pub lean: bool,
}

impl Layout {
    /// What the knobs ask for at heads of `d`.
    fn asked(d: usize) -> Layout {
        Layout {
            lean: lean(),
            ..Layout::of(d, warps(), mtiles(), stages(d))
        }
    }

    /// The layout of `warps`, `mtiles` and `stages` at heads of `d`, with the key block that goes with them.
    pub fn of(d: usize, warps: usize, mtiles: usize, stages: usize) -> Layout {
        let block = if d == 128 && mtiles == 2 { 32 } else { 64 };
        Layout {
            warps,
            mtiles,
            block,
            stages,
            lean: false,
        }
    }

    /// Query rows per cube (`BR` in the source).
    fn rows(self) -> usize {
        ROWS_PER_MTILE * self.mtiles * self.warps
    }

    /// The variant's name in file names and refusals.
    pub fn name(self) -> String {
        format!(
            "w{}_m{}_b{}_s{}{}",
            self.warps,
            self.mtiles,
            self.block,
            self.stages,
            if self.lean { "_lean" } else { "" }
        )
    }
}

/// [`source`] with the cube's layout and the register budget named (the NVRTC check writes every layout); with
/// `bias`, the query and value biases folded in (`QV_BIAS`).
pub fn source_for(
    bf16: bool,
    d: usize,
    masking: Masking,
    Layout {
        warps,
        mtiles,
        block,
        stages,
        lean,
    }: Layout,
    cubes: Option<usize>,
    bias: bool,
) -> String {
    let cubes = cubes.map_or(String::new(), |n| format!("#define MIN_CUBES {n}\n"));
    format!(
        "#define MMA_BF16 {}\n#define HEAD_DIM {d}\n#define MASK_MODE {}\n#define WARPS {warps}\n#define MTILES {mtiles}\n#define BC {block}\n#define STAGES {stages}\n#define QV_BIAS {}\n#define LEAN {}\n{cubes}{}{SOURCE}",
        u8::from(bf16),
        masking.code(),
        u8::from(bias),
        u8::from(lean),
        nvrtc::PRELUDE,
    )
}

fn cubes_asked() -> Option<usize> {
    static ASKED: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *ASKED.get_or_init(|| {
        std::env::var("MMREASON_MMA_CUBES")
            .ok()?
            .parse()
            .ok()
            .filter(|n| (1..=8).contains(n))
    })
}

fn variant_name(bf16: bool, d: usize, masking: Masking, bias: bool) -> String {
    format!(
        "{}_{d}_{masking:?}_{}{}",
        u8::from(bf16),
        Layout::asked(d).name(),
        if bias { "_qv" } else { "" }
    )
}

/// `MmaParams` in the source, field for field.
#[repr(C)]
struct Params {
    q: dsys::CUdeviceptr,
    k: dsys::CUdeviceptr,
    v: dsys::CUdeviceptr,
    o: dsys::CUdeviceptr,
    mask: dsys::CUdeviceptr,
    q_sb: i64,
    q_sh: i64,
    q_ss: i64,
    k_sb: i64,
    k_sh: i64,
    k_ss: i64,
    v_sb: i64,
    v_sh: i64,
    v_ss: i64,
    o_sb: i64,
    o_sh: i64,
    o_ss: i64,
    m_sb: i64,
    m_ss: i64,
    s: i32,
    t: i32,
    group: i32,
    pad: i32,
    scale: f32,
    qb: dsys::CUdeviceptr,
    vb: dsys::CUdeviceptr,
}

/// Shape and strides (elements) of a rank-4 tensor whose last dimension is contiguous and whose other strides
/// keep rows 16-byte aligned; `None` otherwise.
fn strides16(t: &Cube) -> Option<[i64; 3]> {
    let (shape, strides) = (t.meta.shape(), t.meta.strides());
    if shape.num_dims() != 4 || (shape[3] > 1 && strides[3] != 1) {
        return None;
    }
    let s = [strides[0], strides[1], strides[2]];
    if s.iter().any(|x| x % 8 != 0) {
        return None;
    }
    Some(s.map(|x| x as i64))
}

/// `softmax(q·kᵀ·scale [+ mask])·v` as the mma kernel, with the contract of [`super::prefill_attention`]: `q`
/// `[b, nh, s, d]`, `k`/`v` `[b, nkv, cap, d]` of which the first `t` positions are read, `mask` f32
/// `[b, 1, s, t]`; with `causal` (no mask) query `i` sees keys up to `i + t − s`. Returns `[b, nh, s, d]` (a
/// view of `[b, s, nh, d]` in memory); `None` where the kernel does not apply (the caller composes it).
#[allow(clippy::too_many_arguments)]
pub fn attention<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    mask: Option<&Tensor<B, 4>>,
    t: usize,
    causal: bool,
    scale: f64,
) -> Option<Tensor<B, 4>> {
    attend(q, k, v, mask, t, causal, scale, None)
}

/// [`attention`] over `q + qb`, `k + kb` and `v + vb` (no mask, every key seen) given `(qb, vb)`, each `[heads ·
/// d]` for the heads of `q` and of `v` (`QV_BIAS` in the source: the key bias is not needed, as it adds the
/// same `q·kb` to every score of a row). `None` where the kernel does not apply.
pub fn attention_biased<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    (qb, vb): (&Tensor<B, 1>, &Tensor<B, 1>),
    t: usize,
    scale: f64,
) -> Option<Tensor<B, 4>> {
    attend(q, k, v, None, t, false, scale, Some((qb, vb)))
}

#[allow(clippy::too_many_arguments)]
fn attend<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    mask: Option<&Tensor<B, 4>>,
    t: usize,
    causal: bool,
    scale: f64,
    bias: Option<(&Tensor<B, 1>, &Tensor<B, 1>)>,
) -> Option<Tensor<B, 4>> {
    if TypeId::of::<B>() != TypeId::of::<crate::backend::CudaBackend>() {
        return None;
    }
    let AttentionShape {
        b,
        nh,
        s,
        d,
        nkv,
        cap,
    } = AttentionShape::of(q, k, v, mask, t, causal)?;
    let bf16 = match q.dtype() {
        DType::BF16 => true,
        DType::F16 => false,
        _ => return None,
    };
    let masking = match (mask, causal) {
        (Some(_), _) => Masking::Mask,
        (None, true) => Masking::Causal,
        (None, false) => Masking::None,
    };
    if !HEAD_DIMS.contains(&d)
        // The lean loop takes the maximum of raw scores where there is no mask, which is the scaled scores' only
        // for a positive scale (as the kernel gets it, in f32).
        || (lean() && masking != Masking::Mask && !((scale as f32) > 0.0 && (scale as f32).is_finite()))
        // The kernel's positions are 32-bit, with a tile's length of headroom.
        || s > (i32::MAX as usize) - 2 * MAX_ROWS
        || cap > (i32::MAX as usize) - 2 * MAX_ROWS
        || nh > 65_535
        || b > 65_535
    {
        return None;
    }
    if let Some((qb, vb)) = bias
        && (qb.dims() != [nh * d]
            || vb.dims() != [nkv * d]
            || qb.dtype() != q.dtype()
            || vb.dtype() != q.dtype())
    {
        return None;
    }
    if nvrtc::refused(
        "mmreason_mma_attention",
        &variant_name(bf16, d, masking, bias.is_some()),
    ) {
        return None;
    }
    let qc = primitive_of::<B, CudaRuntime, 4>(q.clone())?;
    let kc = primitive_of::<B, CudaRuntime, 4>(k.clone())?;
    let vc = primitive_of::<B, CudaRuntime, 4>(v.clone())?;
    let mc = match mask {
        Some(m) => {
            let m = primitive_of::<B, CudaRuntime, 4>(m.clone())?;
            // Keys contiguous; batch and row strides as they are (a broadcast batch has stride 0).
            Some(if m.meta.strides()[3] == 1 || t == 1 {
                m
            } else {
                burn_cubecl::kernel::into_contiguous(m)
            })
        }
        None => None,
    };
    // The biases as dense vectors (a slice of the stacked projection's bias is one already).
    let bias = match bias {
        Some((qb, vb)) => Some((dense_vector::<B>(qb)?, dense_vector::<B>(vb)?)),
        None => None,
    };
    let out = empty_device_contiguous_dtype(
        qc.client.clone(),
        qc.device.clone(),
        vec![b, s, nh, d].into(),
        qc.dtype,
    );
    let done = launch(
        &qc,
        &kc,
        &vc,
        mc.as_ref(),
        &out,
        t,
        nh / nkv,
        scale,
        (bf16, d, masking),
        bias.as_ref().map(|(qb, vb)| (qb, vb)),
    );
    nvrtc::declined("MMREASON_ATTENTION=mma", done)?;
    Some(tensor_of::<B, CudaRuntime, 4>(out)?.swap_dims(1, 2))
}

/// `t` as a contiguous burn-cuda vector whose start is 4-byte aligned (the kernel reads two values at a time).
fn dense_vector<B: Backend>(t: &Tensor<B, 1>) -> Option<Cube> {
    let c = primitive_of::<B, CudaRuntime, 1>(t.clone())?;
    let c = if c.meta.strides()[0] == 1 {
        c
    } else {
        burn_cubecl::kernel::into_contiguous(c)
    };
    c.handle.offset_start.is_none_or(|o| o % 4 == 0).then_some(c)
}

/// Queues the kernel on burn's stream (`nvrtc::run`).
#[allow(clippy::too_many_arguments)]
fn launch(
    q: &Cube,
    k: &Cube,
    v: &Cube,
    mask: Option<&Cube>,
    out: &Cube,
    t: usize,
    group: usize,
    scale: f64,
    (bf16, d, masking): (bool, usize, Masking),
    bias: Option<(&Cube, &Cube)>,
) -> Result<(), Refusal> {
    let [q_s, k_s, v_s] = [q, k, v].map(strides16);
    let (Some(q_s), Some(k_s), Some(v_s)) = (q_s, k_s, v_s) else {
        return Err("operands whose rows are not contiguous and 16-byte aligned".into());
    };
    let o_s = strides16(out).ok_or("output layout")?;
    let (m_sb, m_ss) = match mask {
        Some(m) => (m.meta.strides()[0] as i64, m.meta.strides()[2] as i64),
        None => (0, 0),
    };
    let [b, nh, s] = [0, 1, 2].map(|i| q.meta.shape()[i]);
    let layout = Layout::asked(d);
    let mut tensors = vec![q, k, v, out];
    // The biases at 4 and 5, the mask after them.
    if let Some((qb, vb)) = bias {
        tensors.extend([qb, vb]);
    }
    tensors.extend(mask);
    let mask_at = if bias.is_some() { 6 } else { 4 };
    let params = |p: &[dsys::CUdeviceptr]| -> Result<Params, String> {
        Ok(Params {
            q: p[0],
            k: p[1],
            v: p[2],
            o: p[3],
            mask: p.get(mask_at).copied().unwrap_or(0),
            q_sb: q_s[0],
            q_sh: q_s[1],
            q_ss: q_s[2],
            k_sb: k_s[0],
            k_sh: k_s[1],
            k_ss: k_s[2],
            v_sb: v_s[0],
            v_sh: v_s[1],
            v_ss: v_s[2],
            // The output is [b, s, nh, d]: batch, head, position strides.
            o_sb: o_s[0],
            o_sh: o_s[2],
            o_ss: o_s[1],
            m_sb,
            m_ss,
            s: s as i32,
            t: t as i32,
            group: group as i32,
            pad: 0,
            scale: scale as f32,
            qb: if bias.is_some() { p[4] } else { 0 },
            vb: if bias.is_some() { p[5] } else { 0 },
        })
    };
    nvrtc::run(
        &tensors,
        Launch {
            entry: "mmreason_mma_attention",
            variant: variant_name(bf16, d, masking, bias.is_some()),
            source: &|| source(bf16, d, masking, bias.is_some()),
            grid: (s.div_ceil(layout.rows()) as u32, nh as u32, b as u32),
            block: (32 * layout.warps as u32, 1, 1),
            params: &params,
        },
    )
}
