//! Which burn backend runs a model. The CPU backend (burn's `flex`) is always compiled so tests run anywhere;
//! wgpu and cuda are crate features so GPU code is type-checked in CI without a GPU.

use std::str::FromStr;

use crate::error::ModelError;

/// burn's portable CPU backend, f32 floats: what the tests use.
#[cfg(feature = "cpu")]
pub type CpuBackend = burn::backend::Flex;

/// Vulkan/Metal/WebGPU through wgpu.
#[cfg(feature = "wgpu")]
pub type WgpuBackend = burn::backend::Wgpu;

/// NVIDIA GPUs through burn-cuda.
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda;

/// Checks that CUDA can start here — driver library, a device, NVRTC (burn-cuda compiles its kernels at run
/// time) — so a CUDA build on a machine without them says what is missing instead of panicking inside cubecl.
#[cfg(feature = "cuda")]
pub fn check_cuda() -> Result<(), ModelError> {
    let missing = |m: String| ModelError::BackendUnavailable {
        backend: "cuda".into(),
        missing: m,
    };
    // SAFETY: library probes and cuInit/cuDeviceGetCount take no pointers from us.
    unsafe {
        if !cudarc::driver::sys::is_culib_present() {
            return Err(missing(
                "the NVIDIA driver library (libcuda.so) was not found — is there an NVIDIA GPU and driver?"
                    .into(),
            ));
        }
        cudarc::driver::result::init().map_err(|e| missing(format!("cuInit failed: {e:?}")))?;
        let n = cudarc::driver::result::device::get_count()
            .map_err(|e| missing(format!("cuDeviceGetCount: {e:?}")))?;
        if n == 0 {
            return Err(missing("the driver reports no CUDA device".into()));
        }
        if !cudarc::nvrtc::sys::is_culib_present() {
            return Err(missing(
                "libnvrtc (CUDA's runtime compiler, which burn-cuda needs) was not found: add CUDA's lib64 or the \
                 nvidia-cuda-nvrtc wheel's lib directory to LD_LIBRARY_PATH"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// A process-wide CUDA state for one device (a context, handles, loaded modules), set up by `init` on first use
/// and locked for this call. A panic in `init` (a symbol the loaded library lacks, say) is remembered as the
/// reason the state is off, rather than retried, and leaked, on every call. The state holds one device's
/// context, so a call for another device is refused. `what` names the state in the errors.
#[cfg(feature = "cuda")]
pub(crate) fn device_state<'a, S>(
    cell: &'a std::sync::OnceLock<Result<std::sync::Mutex<S>, String>>,
    what: &str,
    ordinal: usize,
    init: fn(usize) -> Result<std::sync::Mutex<S>, String>,
    ordinal_of: impl Fn(&S) -> usize,
) -> Result<std::sync::MutexGuard<'a, S>, String> {
    let state = cell
        .get_or_init(|| {
            std::panic::catch_unwind(|| init(ordinal))
                .unwrap_or_else(|_| Err(format!("{what} setup panicked")))
        })
        .as_ref()
        .map_err(Clone::clone)?;
    let st = state.lock().map_err(|_| format!("{what} state poisoned"))?;
    let set_up = ordinal_of(&st);
    if set_up != ordinal {
        return Err(format!("{what} is set up on device {set_up}, not {ordinal}"));
    }
    Ok(st)
}

/// A backend named on a command line (`--backend cpu|wgpu|cuda`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Cpu,
    Wgpu,
    Cuda,
}

impl BackendKind {
    /// Backends compiled into this build.
    pub fn compiled() -> Vec<BackendKind> {
        let mut v = Vec::new();
        if cfg!(feature = "cpu") {
            v.push(BackendKind::Cpu);
        }
        if cfg!(feature = "wgpu") {
            v.push(BackendKind::Wgpu);
        }
        if cfg!(feature = "cuda") {
            v.push(BackendKind::Cuda);
        }
        v
    }

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }
}

impl FromStr for BackendKind {
    type Err = ModelError;

    /// Parses a backend name and checks that it is compiled in, so a user learns which feature to enable
    /// before any model is loaded.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let kind = match s.to_ascii_lowercase().as_str() {
            "cpu" => BackendKind::Cpu,
            "wgpu" => BackendKind::Wgpu,
            "cuda" => BackendKind::Cuda,
            _ => return Err(ModelError::UnknownBackend(s.to_string())),
        };
        if !Self::compiled().contains(&kind) {
            let compiled: Vec<&str> = Self::compiled().into_iter().map(Self::name).collect();
            return Err(ModelError::BackendNotCompiled {
                name: kind.name().to_string(),
                compiled: compiled.join(", "),
            });
        }
        Ok(kind)
    }
}

/// Calls `f::<Backend>(args…, &device)` on the backend `kind` names (a generic function cannot be passed as a
/// value, so dispatch is a macro). Backends not compiled in give `BackendNotCompiled`.
#[macro_export]
macro_rules! on_backend {
    ($kind:expr, $f:ident ( $($arg:expr),* )) => {{
        #[allow(unreachable_patterns)]
        match $kind {
            #[cfg(feature = "cpu")]
            $crate::BackendKind::Cpu => $f::<$crate::backend::CpuBackend>($($arg,)* &Default::default()),
            #[cfg(feature = "wgpu")]
            $crate::BackendKind::Wgpu => $f::<$crate::backend::WgpuBackend>($($arg,)* &Default::default()),
            #[cfg(feature = "cuda")]
            $crate::BackendKind::Cuda => match $crate::backend::check_cuda() {
                Ok(()) => $f::<$crate::backend::CudaBackend>($($arg,)* &Default::default()),
                Err(e) => Err(e),
            },
            other => Err($crate::ModelError::BackendNotCompiled { name: other.name().into(), compiled: String::new() }),
        }
    }};
}

/// `values` as a tensor of `shape` in `dtype` whose strides are compact on every backend: uploaded flat, then
/// reshaped (a change of metadata only).
///
/// Why: burn-cuda lays out a tensor uploaded with two or more dimensions in cubecl's pitched policy, each row
/// padded to an aligned pitch unless its bytes already are a multiple of it. A decode step's attention mask
/// `[b, 1, 1, t]` in f32 with t = 129 comes out with rows of 192; our kernels want dense operands, so each one
/// copied it (`into_contiguous`): run 10's decode profiles show that copy once per layer per step (32 per token
/// of Mistral-7B, at batch 1 and 32 alike).
pub fn dense<B: burn::tensor::backend::Backend, const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &B::Device,
    dtype: burn::tensor::DType,
) -> burn::tensor::Tensor<B, D> {
    let n = values.len();
    let data = burn::tensor::TensorData::new(values, [n]).convert_dtype(dtype);
    burn::tensor::Tensor::<B, 1>::from_data(data, (device, dtype)).reshape(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "cpu")]
    #[test]
    fn dense_keeps_values_shape_and_dtype() {
        use burn::tensor::DType;
        let values: Vec<f32> = (0..2 * 3 * 5).map(|i| i as f32 * 0.5).collect();
        let t =
            super::dense::<super::CpuBackend, 3>(values.clone(), [2, 3, 5], &Default::default(), DType::F32);
        assert_eq!(t.dims(), [2, 3, 5]);
        assert_eq!(t.dtype(), DType::F32);
        assert_eq!(t.into_data().to_vec::<f32>().expect("f32 values"), values);
        let h = super::dense::<super::CpuBackend, 2>(
            vec![1.0, -2.5, 3.25, 0.0],
            [2, 2],
            &Default::default(),
            DType::F16,
        );
        assert_eq!(h.dtype(), DType::F16);
        assert_eq!(
            h.cast(DType::F32)
                .into_data()
                .to_vec::<f32>()
                .expect("f32 values"),
            vec![1.0, -2.5, 3.25, 0.0]
        );
    }

    #[test]
    fn parses_compiled_backends_and_explains_the_rest() {
        assert_eq!("CPU".parse::<BackendKind>().unwrap(), BackendKind::Cpu);
        assert!(matches!(
            "tpu".parse::<BackendKind>(),
            Err(ModelError::UnknownBackend(_))
        ));
        if !cfg!(feature = "cuda") {
            let e = "cuda".parse::<BackendKind>().unwrap_err();
            assert!(e.to_string().contains("--features cuda"), "{e}");
        }
    }
}
