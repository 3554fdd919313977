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

/// Compiles `source` and loads its `entry` in the current context.
fn load(arch: &str, entry: &str, source: String) -> Result<Kernel, String> {
    let opts = cudarc::nvrtc::CompileOptions {
        options: vec![arch.to_string()],
        name: Some(format!("{entry}.cu")),
        ..Default::default()
    };
    let ptx = std::panic::catch_unwind(|| cudarc::nvrtc::compile_ptx_with_opts(source, opts))
        .map_err(|_| "NVRTC could not be loaded".to_string())?
        .map_err(|e| format!("NVRTC: {e:?}"))?;
    let image = std::ffi::CString::new(ptx.to_src()).map_err(|e| format!("PTX: {e}"))?;
    let name = std::ffi::CString::new(entry).map_err(|e| format!("kernel name: {e}"))?;
    // SAFETY: `image` is a NUL-terminated PTX module, never unloaded, so the function handle stays valid.
    unsafe {
        let module =
            drv::module::load_data(image.as_ptr().cast()).map_err(|e| format!("loading {entry}: {e:?}"))?;
        let f = drv::module::get_function(module, name).map_err(|e| format!("{entry}: {e:?}"))?;
        Ok(Kernel(f))
    }
}

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
    let first = tensors.first().ok_or("no operands")?;
    let client = first.client.clone();
    client
        .exclusive(|| run_here(&client, first.device.index, tensors, &launch))
        .unwrap_or_else(|e| Err(format!("cubecl's device thread: {e:?}").into()))
}

fn run_here<P>(
    client: &burn_cubecl::cubecl::client::ComputeClient<CudaRuntime>,
    ordinal: usize,
    tensors: &[&Cube],
    launch: &Launch<'_, P>,
) -> Result<(), Refusal> {
    let state = STATE
        .get_or_init(|| {
            std::panic::catch_unwind(|| init(ordinal)).unwrap_or_else(|_| Err("CUDA setup panicked".into()))
        })
        .as_ref()
        .map_err(Clone::clone)?;
    let mut st = state.lock().map_err(|_| "state poisoned".to_string())?;
    if st.ordinal != ordinal {
        return Err(format!("set up on device {}, not {ordinal}", st.ordinal).into());
    }
    // What an earlier resolution on this thread left is not this call's.
    let _ = mmreason_stream_hook::take();
    let resources = tensors
        .iter()
        .map(|t| {
            client
                .get_resource(t.handle.clone())
                .map_err(|e| Refusal::Device(format!("resource: {e:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let stream = mmreason_stream_hook::take().ok_or(
        "cubecl-cuda did not say which stream burn's kernels run on (built without vendor/cubecl-cuda's patch)",
    )? as dsys::CUstream;
    let ptrs: Vec<dsys::CUdeviceptr> = resources.iter().map(|r| r.resource().ptr).collect();
    if ptrs.iter().any(|p| p % 16 != 0) {
        return Err("operands not 16-byte aligned".into());
    }
    let mut params = (launch.params)(&ptrs)?;
    let key = format!("{}/{}", launch.entry, launch.variant);
    // SAFETY: the context is the primary one cubecl uses; the addresses come from live resources (held until
    // after the launch) which burn frees or reuses only in this stream's order, after the kernel; the caller's
    // `P` matches the kernel's parameter struct and outlives the launch call, which copies it.
    unsafe {
        drv::ctx::set_current(st.ctx).map_err(|e| format!("set context: {e:?}"))?;
        let arch = st.arch.clone();
        let kernel = st
            .kernels
            .entry(key)
            .or_insert_with(|| load(&arch, launch.entry, (launch.source)()))
            .clone()?;
        let mut args = [(&mut params as *mut P).cast::<c_void>()];
        drv::launch_kernel(kernel.0, launch.grid, launch.block, 0, stream, &mut args).map_err(|e| {
            use dsys::CUresult as C;
            // What a launch as configured can be refused with; any other error was left by earlier work.
            let refused = matches!(
                e.0,
                C::CUDA_ERROR_INVALID_VALUE
                    | C::CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES
                    | C::CUDA_ERROR_INVALID_HANDLE
                    | C::CUDA_ERROR_NOT_FOUND
                    | C::CUDA_ERROR_INVALID_IMAGE
            );
            let msg = format!("launching {}: {e:?}", launch.entry);
            if refused {
                Refusal::Declined(msg)
            } else {
                Refusal::Device(msg)
            }
        })?;
    }
    drop(resources);
    Ok(())
}
