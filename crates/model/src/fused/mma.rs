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
//! (`crates/model/emulate/`, the `mma_attention_emulated` test) and by compiling every variant with NVRTC
//! (`cuda_source`, `benches/gpu/nvrtc_check.py`); on a GPU by `fused_kernels` and the model parity tests.

use std::any::TypeId;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Mutex, OnceLock};

use burn::tensor::{DType, Tensor, backend::Backend};
use burn_cubecl::cubecl::cuda::CudaRuntime;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cudarc::driver::{result as drv, sys as dsys};

use super::cube::{primitive_of, tensor_of};

type Cube = CubeTensor<CudaRuntime>;

/// The kernel's CUDA C++ (its parameters defined by [`source`]).
pub const SOURCE: &str = include_str!("mma_attention.cu");

/// Query rows per cube (`BR` in the source) and units per cube (4 warps).
const ROWS: usize = 64;
const UNITS: u32 = 128;

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

/// The source of one variant: its parameters defined ahead of [`SOURCE`].
pub fn source(bf16: bool, d: usize, masking: Masking) -> String {
    format!(
        "#define MMA_BF16 {}\n#define HEAD_DIM {d}\n#define MASK_MODE {}\n{SOURCE}",
        u8::from(bf16),
        masking.code()
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
}

/// A loaded kernel (the module is never unloaded, so the handle stays valid).
#[derive(Clone, Copy)]
struct Kernel(dsys::CUfunction);
// SAFETY: a function handle is a plain driver handle, usable from any thread with its context current.
unsafe impl Send for Kernel {}

type Variant = (bool, usize, Masking);

/// The primary context of the device, and the kernels compiled so far (a refusal remembered per variant).
struct State {
    ordinal: usize,
    ctx: dsys::CUcontext,
    arch: String,
    kernels: HashMap<Variant, Result<Kernel, String>>,
}
// SAFETY: the raw handles are only used under the mutex below, with the context made current first.
unsafe impl Send for State {}

static STATE: OnceLock<Result<Mutex<State>, String>> = OnceLock::new();

fn warn_once(msg: &str) {
    static WARNED: OnceLock<()> = OnceLock::new();
    WARNED.get_or_init(|| {
        eprintln!("mmreason: MMREASON_ATTENTION=mma declined, the default attention instead: {msg}")
    });
}

fn init(ordinal: usize) -> Result<Mutex<State>, String> {
    // SAFETY: plain driver calls on the primary context, the one cubecl-cuda uses.
    unsafe {
        let dev = drv::device::get(ordinal as i32).map_err(|e| format!("device {ordinal}: {e:?}"))?;
        let ctx = drv::primary_ctx::retain(dev).map_err(|e| format!("primary context: {e:?}"))?;
        let attr = |a| drv::device::get_attribute(dev, a).map_err(|e| format!("compute capability: {e:?}"));
        let major = attr(dsys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
        let minor = attr(dsys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
        if major < 8 {
            return Err(format!(
                "mma.sync on bf16 needs compute capability 8.0 or later; this GPU has {major}.{minor}"
            ));
        }
        Ok(Mutex::new(State {
            ordinal,
            ctx,
            arch: format!("--gpu-architecture=compute_{major}{minor}"),
            kernels: HashMap::new(),
        }))
    }
}

/// Compiles and loads one variant in the current context.
fn load(arch: &str, (bf16, d, masking): Variant) -> Result<Kernel, String> {
    let opts = cudarc::nvrtc::CompileOptions {
        options: vec![arch.to_string()],
        name: Some("mma_attention.cu".into()),
        ..Default::default()
    };
    let src = source(bf16, d, masking);
    let ptx = std::panic::catch_unwind(|| cudarc::nvrtc::compile_ptx_with_opts(src, opts))
        .map_err(|_| "NVRTC could not be loaded".to_string())?
        .map_err(|e| format!("NVRTC: {e:?}"))?;
    let image = std::ffi::CString::new(ptx.to_src()).map_err(|e| format!("PTX: {e}"))?;
    // SAFETY: `image` is a NUL-terminated PTX module, never unloaded, so the handle stays valid.
    unsafe {
        let module = drv::module::load_data(image.as_ptr().cast())
            .map_err(|e| format!("loading the kernel: {e:?}"))?;
        let f = drv::module::get_function(
            module,
            std::ffi::CString::new("mmreason_mma_attention").expect("no NUL"),
        )
        .map_err(|e| format!("mmreason_mma_attention: {e:?}"))?;
        Ok(Kernel(f))
    }
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
    if TypeId::of::<B>() != TypeId::of::<crate::backend::CudaBackend>() {
        return None;
    }
    let [b, nh, s, d] = q.dims();
    let [bk, nkv, cap, dk] = k.dims();
    let bf16 = match q.dtype() {
        DType::BF16 => true,
        DType::F16 => false,
        _ => return None,
    };
    if bk != b
        || dk != d
        || v.dims() != [b, nkv, cap, d]
        || k.dtype() != q.dtype()
        || v.dtype() != q.dtype()
        || !HEAD_DIMS.contains(&d)
        || nkv == 0
        || !nh.is_multiple_of(nkv)
        || t == 0
        || t > cap
        || (causal && t < s)
        || b * nh * s == 0
        || s > i32::MAX as usize
        || cap > i32::MAX as usize
        || s.div_ceil(ROWS) > i32::MAX as usize
        || nh > 65_535
        || b > 65_535
    {
        return None;
    }
    let masking = match (mask, causal) {
        (Some(m), _) if m.dims() == [b, 1, s, t] && m.dtype() == DType::F32 => Masking::Mask,
        (Some(_), _) => return None,
        (None, true) => Masking::Causal,
        (None, false) => Masking::None,
    };
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
    let client = qc.client.clone();
    let out = empty_device_contiguous_dtype(
        client.clone(),
        qc.device.clone(),
        vec![b, s, nh, d].into(),
        qc.dtype,
    );
    let args = Args {
        q: &qc,
        k: &kc,
        v: &vc,
        mask: mc.as_ref(),
        out: &out,
        t,
        group: nh / nkv,
        scale,
        variant: (bf16, d, masking),
    };
    let done = client
        .exclusive(|| launch(&args))
        .unwrap_or_else(|e| Err(format!("cubecl's device thread: {e:?}")));
    match done {
        Ok(()) => Some(tensor_of::<B, CudaRuntime, 4>(out)?.swap_dims(1, 2)),
        Err(e) => {
            warn_once(&e);
            None
        }
    }
}

struct Args<'a> {
    q: &'a Cube,
    k: &'a Cube,
    v: &'a Cube,
    mask: Option<&'a Cube>,
    out: &'a Cube,
    t: usize,
    group: usize,
    scale: f64,
    variant: Variant,
}

/// Resolves the operands on cubecl's device thread and queues the kernel on the stream they were resolved
/// for: burn's own, so it runs after what burn queued before it and before what burn queues next (the same
/// ordering as cuBLAS's stream order, `gemm::cuda`). Declines where cubecl-cuda did not say which stream.
fn launch(a: &Args) -> Result<(), String> {
    let ordinal = a.q.device.index;
    let state = STATE
        .get_or_init(|| {
            std::panic::catch_unwind(|| init(ordinal)).unwrap_or_else(|_| Err("CUDA setup panicked".into()))
        })
        .as_ref()
        .map_err(Clone::clone)?;
    let mut st = state.lock().map_err(|_| "state poisoned".to_string())?;
    if st.ordinal != ordinal {
        return Err(format!("set up on device {}, not {ordinal}", st.ordinal));
    }
    let [q_s, k_s, v_s] = [a.q, a.k, a.v].map(strides16);
    let (Some(q_s), Some(k_s), Some(v_s)) = (q_s, k_s, v_s) else {
        return Err("operands whose rows are not contiguous and 16-byte aligned".into());
    };
    let o_s = strides16(a.out).ok_or("output layout")?;
    let (m_sb, m_ss) = match a.mask {
        Some(m) => (m.meta.strides()[0] as i64, m.meta.strides()[2] as i64),
        None => (0, 0),
    };
    let client = a.q.client.clone();
    let get = |t: &Cube| {
        client
            .get_resource(t.handle.clone())
            .map_err(|e| format!("resource: {e:?}"))
    };
    // What an earlier resolution on this thread left is not this call's.
    let _ = mmreason_stream_hook::take();
    let (rq, rk, rv, ro) = (get(a.q)?, get(a.k)?, get(a.v)?, get(a.out)?);
    let rm = a.mask.map(get).transpose()?;
    let stream = mmreason_stream_hook::take().ok_or(
        "cubecl-cuda did not say which stream burn's kernels run on (built without vendor/cubecl-cuda's patch)",
    )? as dsys::CUstream;
    let (pq, pk, pv, po) = (
        rq.resource().ptr,
        rk.resource().ptr,
        rv.resource().ptr,
        ro.resource().ptr,
    );
    if [pq, pk, pv, po].iter().any(|p| p % 16 != 0) {
        return Err("operands not 16-byte aligned".into());
    }
    let pm = rm.as_ref().map_or(0, |r| r.resource().ptr);
    let [b, nh, s] = [0, 1, 2].map(|i| a.q.meta.shape()[i]);
    let mut params = Params {
        q: pq,
        k: pk,
        v: pv,
        o: po,
        mask: pm,
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
        t: a.t as i32,
        group: a.group as i32,
        pad: 0,
        scale: a.scale as f32,
    };
    // SAFETY: the context is the primary one cubecl uses; the pointers come from live resources whose layouts
    // were checked above and which burn frees or reuses only in this stream's order, after the kernel; the
    // parameters match `MmaParams` field for field and outlive the launch call, which copies them.
    unsafe {
        drv::ctx::set_current(st.ctx).map_err(|e| format!("set context: {e:?}"))?;
        let arch = st.arch.clone();
        let kernel = st
            .kernels
            .entry(a.variant)
            .or_insert_with(|| load(&arch, a.variant))
            .clone()?;
        let mut args = [(&mut params as *mut Params).cast::<c_void>()];
        drv::launch_kernel(
            kernel.0,
            (s.div_ceil(ROWS) as u32, nh as u32, b as u32),
            (UNITS, 1, 1),
            0,
            stream,
            &mut args,
        )
        .map_err(|e| format!("launch: {e:?}"))?;
    }
    Ok(())
}
