//! Kernels of ours in CUDA C++ (`fused::mma`, `fused::gemv`): compiled at run time with NVRTC for the device's
//! compute capability, loaded once per variant, and queued on burn-cuda's own stream on cubecl's device thread,
//! the way the stream order queues cuBLAS (`gemm::cuda`): no host wait, and burn frees or reuses the operands'
//! memory only in that stream's order, after the kernel. Where something is missing (a GPU before compute
//! capability 8.0, NVRTC, cubecl-cuda's stream patch) the call declines with the reason, and the caller falls
//! back to the cubecl kernel or the composition.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Mutex, OnceLock};

use burn_cubecl::cubecl::cuda::CudaRuntime;
use burn_cubecl::tensor::CubeTensor;
use cudarc::driver::{result as drv, sys as dsys};

pub(crate) type Cube = CubeTensor<CudaRuntime>;

/// What every kernel source of ours starts with (`cuda_prelude.cuh`: types, `MMA_DEVICE`, `shfl_xor`), after
/// its variant's definitions.
pub const PRELUDE: &str = include_str!("cuda_prelude.cuh");

/// A loaded kernel (its module is never unloaded, so the handle stays valid).
#[derive(Clone, Copy)]
struct Kernel(dsys::CUfunction);

/// The primary context of the device, and the kernels compiled so far (a refusal remembered per variant).
struct State {
    ordinal: usize,
    ctx: dsys::CUcontext,
    arch: String,
    kernels: HashMap<String, Result<Kernel, String>>,
}
// SAFETY: the raw handles are only used under the mutex below, with the context made current first.
unsafe impl Send for State {}

static STATE: OnceLock<Result<Mutex<State>, String>> = OnceLock::new();

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
                "our CUDA C++ kernels use mma.sync on bf16 and cp.async (compute capability 8.0 or later); this \
                 GPU has {major}.{minor}"
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

/// A driver error as a refusal: the errors CUDA reports for a fault of earlier work on the device (sticky: every
/// later call in the context returns them) stop the caller; any other is this call's own (a launch or module
/// the driver refuses, memory it could not get) and declines it.
fn driver_refusal(e: cudarc::driver::DriverError, what: &str) -> Refusal {
    use dsys::CUresult as C;
    let sticky = matches!(
        e.0,
        C::CUDA_ERROR_ILLEGAL_ADDRESS
            | C::CUDA_ERROR_LAUNCH_FAILED
            | C::CUDA_ERROR_ILLEGAL_INSTRUCTION
            | C::CUDA_ERROR_MISALIGNED_ADDRESS
            | C::CUDA_ERROR_INVALID_ADDRESS_SPACE
            | C::CUDA_ERROR_INVALID_PC
            | C::CUDA_ERROR_HARDWARE_STACK_ERROR
            | C::CUDA_ERROR_ASSERT
            | C::CUDA_ERROR_ECC_UNCORRECTABLE
            | C::CUDA_ERROR_LAUNCH_TIMEOUT
            | C::CUDA_ERROR_CONTEXT_IS_DESTROYED
    );
    let msg = format!("{what}: {e:?}");
    if sticky {
        Refusal::Device(msg)
    } else {
        Refusal::Declined(msg)
    }
}

/// Compiles `source` and loads its `entry` in the current context. `Err(Ok(reason))`: this variant cannot run
/// here (NVRTC's or the driver's refusal), remembered; `Err(Err(refusal))`: a driver error left by earlier
/// work, not remembered.
fn load(arch: &str, entry: &str, source: String) -> Result<Kernel, Result<String, Refusal>> {
    let opts = cudarc::nvrtc::CompileOptions {
        options: vec![arch.to_string()],
        ..Default::default()
    };
    let ptx = std::panic::catch_unwind(|| cudarc::nvrtc::compile_ptx_with_opts(source, opts))
        .map_err(|_| Ok("NVRTC could not be loaded".to_string()))?
        .map_err(|e| Ok(format!("NVRTC: {e:?}")))?;
    let image = std::ffi::CString::new(ptx.to_src()).map_err(|e| Ok(format!("PTX: {e}")))?;
    let name = std::ffi::CString::new(entry).map_err(|e| Ok(format!("kernel name: {e}")))?;
    let kept = |r: Refusal| match r {
        Refusal::Declined(e) => Ok(e),
        device => Err(device),
    };
    // SAFETY: `image` is a NUL-terminated PTX module, never unloaded, so the function handle stays valid.
    unsafe {
        let module = drv::module::load_data(image.as_ptr().cast())
            .map_err(|e| kept(driver_refusal(e, &format!("loading {entry}"))))?;
        let f = drv::module::get_function(module, name).map_err(|e| kept(driver_refusal(e, entry)))?;
        Ok(Kernel(f))
    }
}

/// Whether `entry`'s `variant` is known not to run here (no usable GPU or NVRTC, no stream from cubecl-cuda, or
/// the variant refused to compile or load): callers skip preparing its operands.
pub(crate) fn refused(entry: &str, variant: &str) -> bool {
    if NO_STREAM.load(std::sync::atomic::Ordering::Relaxed) {
        return true;
    }
    match STATE.get() {
        None => false,
        Some(Err(_)) => true,
        Some(Ok(state)) => state.lock().map_or(true, |st| {
            matches!(st.kernels.get(&format!("{entry}/{variant}")), Some(Err(_)))
        }),
    }
}

/// Set when cubecl-cuda did not say which stream it resolved a resource for: it never will (built without the
/// patch), so every later call declines at once.
static NO_STREAM: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// One launch: the kernel (`entry` in the source `source` builds; `variant` names that source among the
/// entry's others), its grid and cube, and its one parameter, a `#[repr(C)]` struct built from the operands'
/// device addresses.
pub(crate) struct Launch<'a, P> {
    pub entry: &'static str,
    pub variant: String,
    pub source: &'a (dyn Fn() -> String + Sync),
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    /// The parameter struct from the addresses of `tensors` (in their order); an error declines the call.
    pub params: &'a (dyn Fn(&[dsys::CUdeviceptr]) -> Result<P, String> + Sync),
}

/// Why a kernel of ours did not run.
pub(crate) enum Refusal {
    /// It cannot run here (what is missing, or a launch the driver refuses as configured): the caller falls back.
    Declined(String),
    /// The driver reported an error left by earlier work on the device: what that work wrote is wrong, so the
    /// caller must not fall back as if nothing happened (`cube::earlier_work_failed`).
    Device(String),
}

impl From<String> for Refusal {
    fn from(e: String) -> Self {
        Refusal::Declined(e)
    }
}

impl From<&str> for Refusal {
    fn from(e: &str) -> Self {
        Refusal::Declined(e.into())
    }
}

/// `r` if it is Ok; a refusal that stops the caller (`earlier_work_failed`) for a device error; else the reason
/// the kernel declined, said once per distinct reason.
pub(crate) fn declined(what: &str, r: Result<(), Refusal>) -> Option<()> {
    match r {
        Ok(()) => Some(()),
        Err(Refusal::Device(e)) => super::cube::earlier_work_failed(&e),
        Err(Refusal::Declined(e)) => {
            static SAID: Mutex<Vec<String>> = Mutex::new(Vec::new());
            let msg = format!("mmreason: {what} declined, the default path instead: {e}");
            if let Ok(mut said) = SAID.lock()
                && !said.contains(&msg)
            {
                eprintln!("{msg}");
                said.push(msg);
            }
            None
        }
    }
}

/// Queues `launch` on burn's stream for `tensors` (every one the kernel reads or writes, each address 16-byte
/// aligned or the call declines). Runs on cubecl's device thread, where cubecl has already queued every kernel
/// burn asked for before it.
pub(crate) fn run<P>(tensors: &[&Cube], launch: Launch<'_, P>) -> Result<(), Refusal> {
    on_stream(tensors, |st, ptrs, stream| launch_here(st, ptrs, stream, &launch))
}

/// Records a new CUDA event on burn's stream for `t`, after everything cubecl has queued there so far
/// (`crate::timeline`): the event and its context, as addresses. It shares our kernels' set-up, so it declines
/// where they do (a GPU before compute capability 8.0), though an event needs none of it.
pub(crate) fn record_event(t: &Cube) -> Result<(usize, usize), Refusal> {
    on_stream(&[t], |st, _, stream| {
        // SAFETY: the context is current (`on_stream`); the event is new and recorded on a live stream.
        unsafe {
            let event = drv::event::create(dsys::CUevent_flags::CU_EVENT_DEFAULT)
                .map_err(|e| driver_refusal(e, "creating an event"))?;
            if let Err(e) = drv::event::record(event, stream) {
                let _ = drv::event::destroy(event);
                return Err(driver_refusal(e, "recording an event"));
            }
            Ok((event as usize, st.ctx as usize))
        }
    })
}

/// Runs `f` on cubecl's device thread with the state, the context current, the device addresses of `tensors`
/// (their resources held until `f` returns) and burn's stream for them. There cubecl has already queued every
/// kernel burn asked for before the call, so what `f` queues on that stream runs after them, and burn frees or
/// reuses the operands' memory only in that stream's order, after it.
fn on_stream<T: Send + 'static>(
    tensors: &[&Cube],
    f: impl FnOnce(&mut State, &[dsys::CUdeviceptr], dsys::CUstream) -> Result<T, Refusal> + Send,
) -> Result<T, Refusal> {
    let first = tensors.first().ok_or("no operands")?;
    let client = first.client.clone();
    let ordinal = first.device.index;
    client
        .exclusive(|| {
            let mut st = crate::backend::device_state(&STATE, "CUDA", ordinal, init, |s| s.ordinal)?;
            // What an earlier resolution on this thread left is not this call's.
            let _ = mmreason_stream_hook::take();
            let resources = tensors
                .iter()
                .map(|t| {
                    client
                        .get_resource(t.handle.clone())
                        .map_err(|e| Refusal::Declined(format!("resource: {e:?}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let Some(stream) = mmreason_stream_hook::take() else {
                NO_STREAM.store(true, std::sync::atomic::Ordering::Relaxed);
                return Err(
                    "cubecl-cuda did not say which stream burn's kernels run on (built without \
                            vendor/cubecl-cuda's patch)"
                        .into(),
                );
            };
            let ptrs: Vec<dsys::CUdeviceptr> = resources.iter().map(|r| r.resource().ptr).collect();
            // SAFETY: the primary context, the one cubecl uses.
            unsafe { drv::ctx::set_current(st.ctx) }.map_err(|e| driver_refusal(e, "set context"))?;
            let out = f(&mut st, &ptrs, stream as dsys::CUstream);
            drop(resources);
            out
        })
        .unwrap_or_else(|e| Err(format!("cubecl's device thread: {e:?}").into()))
}

fn launch_here<P>(
    st: &mut State,
    ptrs: &[dsys::CUdeviceptr],
    stream: dsys::CUstream,
    launch: &Launch<'_, P>,
) -> Result<(), Refusal> {
    if ptrs.iter().any(|p| p % 16 != 0) {
        return Err("operands not 16-byte aligned".into());
    }
    let mut params = (launch.params)(ptrs)?;
    let key = format!("{}/{}", launch.entry, launch.variant);
    // SAFETY: the context is current (`on_stream`); the addresses come from live resources (held until after
    // the launch) which burn frees or reuses only in this stream's order, after the kernel; the caller's `P`
    // matches the kernel's parameter struct and outlives the launch call, which copies it.
    unsafe {
        let arch = st.arch.clone();
        let kernel = match st.kernels.get(&key) {
            Some(k) => k.clone()?,
            None => match load(&arch, launch.entry, (launch.source)()) {
                Ok(k) => *st
                    .kernels
                    .entry(key)
                    .or_insert(Ok(k))
                    .as_ref()
                    .map_err(Clone::clone)?,
                Err(Ok(reason)) => {
                    st.kernels.insert(key, Err(reason.clone()));
                    return Err(reason.into());
                }
                Err(Err(device)) => return Err(device),
            },
        };
        let mut args = [(&mut params as *mut P).cast::<c_void>()];
        drv::launch_kernel(kernel.0, launch.grid, launch.block, 0, stream, &mut args)
            .map_err(|e| driver_refusal(e, &format!("launching {}", launch.entry)))?;
    }
    Ok(())
}

/// Runs `f` with the device's primary context current (the one [`record_event`] records in), on this thread.
pub(crate) fn with_context<T>(ctx: usize, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    // SAFETY: `ctx` is the primary context `record_event` returned, retained for the process's life.
    unsafe { drv::ctx::set_current(ctx as dsys::CUcontext) }.map_err(|e| format!("set context: {e:?}"))?;
    f()
}
