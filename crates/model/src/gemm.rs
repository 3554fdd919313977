//! The dense products of the linear layers and the head, `y = x · wᵀ` with `w` stored as the checkpoint does
//! (`[out, in]`, row-major).
//!
//! On burn-cuda the product runs in cuBLAS (`cublasGemmEx`, fp32 accumulation, tensor cores for bf16/f16) on the
//! device buffers of the burn tensors themselves: burn's own matmul kernel reaches ≈94 TFLOP/s on an H100 where
//! cuBLAS reaches ≈800 (measured in the GPU issue), and the linear layers are ≈95 % of a 7B model's FLOPs.
//! Everywhere else — CPU, wgpu, a machine without `libcublas`, or `MMREASON_GEMM=burn` — burn's matmul runs.
//! `MMREASON_GEMM=cubek:NAME` runs one of cubek's kernels by name instead, on CUDA and wgpu ([`cubek`]).

use burn::tensor::{Tensor, backend::Backend};

#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub mod cubek;

/// Which implementation `linear_nt` uses on CUDA (`MMREASON_GEMM=cublas|burn|cubek:NAME`, read once; cuBLAS by
/// default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmImpl {
    Burn,
    Cublas,
    /// One of cubek's matmul strategies by name (burn-cuda and burn-wgpu).
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    Cubek(cubek::CubekGemm),
}

impl GemmImpl {
    /// Lower-case name for reports (`burn`, `cublas`, `cubek-NAME`).
    pub fn name(self) -> String {
        match self {
            GemmImpl::Burn => "burn".into(),
            GemmImpl::Cublas => "cublas".into(),
            #[cfg(any(feature = "cuda", feature = "wgpu"))]
            GemmImpl::Cubek(k) => format!("cubek-{}", k.name()),
        }
    }

    /// The implementation the environment selects (an unknown `cubek:` name is reported once, with the
    /// names there are, and the default kept).
    pub fn selected() -> GemmImpl {
        static SEL: std::sync::OnceLock<GemmImpl> = std::sync::OnceLock::new();
        *SEL.get_or_init(|| match std::env::var("MMREASON_GEMM").as_deref() {
            Ok("burn") => GemmImpl::Burn,
            #[cfg(any(feature = "cuda", feature = "wgpu"))]
            Ok(v) if v.starts_with("cubek:") => match cubek::CubekGemm::parse(&v["cubek:".len()..]) {
                Some(k) => GemmImpl::Cubek(k),
                None => {
                    eprintln!(
                        "mmreason: MMREASON_GEMM={v}: no such cubek strategy (one of {}); the default instead",
                        cubek::CubekGemm::NAMES.join(", ")
                    );
                    GemmImpl::Cublas
                }
            },
            _ => GemmImpl::Cublas,
        })
    }
}

impl GemmImpl {
    /// What `linear_nt` runs on backend `B`: cuBLAS only on burn-cuda (and only if the library loads — a
    /// missing library is reported once when first used), a cubek strategy on burn-cuda and burn-wgpu (a
    /// product it declines, said once per strategy, goes to cuBLAS on CUDA and to burn's matmul on wgpu).
    pub fn active<B: Backend>() -> GemmImpl {
        let sel = GemmImpl::selected();
        #[cfg(feature = "cuda")]
        if std::any::TypeId::of::<B>() == std::any::TypeId::of::<crate::backend::CudaBackend>() {
            return sel;
        }
        #[cfg(feature = "wgpu")]
        if std::any::TypeId::of::<B>() == std::any::TypeId::of::<crate::backend::WgpuBackend>()
            && matches!(sel, GemmImpl::Cubek(_))
        {
            return sel;
        }
        let _ = sel;
        GemmImpl::Burn
    }
}

/// How many products each cuBLAS order has taken in this process so far (`host`, `stream`, `device`,
/// `wait`; orders that took none are left out): what a benchmark row measured under the stream order (the
/// default) or `MMREASON_CUBLAS_ORDER=device|wait` actually ran — products counted under `host` fell back
/// (stderr says why). Empty off CUDA.
pub fn cublas_orders() -> std::collections::BTreeMap<String, u64> {
    #[cfg(feature = "cuda")]
    {
        cuda::orders_used()
    }
    #[cfg(not(feature = "cuda"))]
    {
        std::collections::BTreeMap::new()
    }
}

/// The cuBLAS order products ask for in this process (`stream` by default, or what `MMREASON_CUBLAS_ORDER`
/// says), where cuBLAS has made a product; `None` off CUDA or before the first. With [`cublas_orders`] a
/// benchmark row says both what it asked for and what ran.
pub fn cublas_order() -> Option<&'static str> {
    #[cfg(feature = "cuda")]
    {
        (!cuda::orders_used().is_empty()).then(|| cuda::Order::selected().name())
    }
    #[cfg(not(feature = "cuda"))]
    {
        None
    }
}

/// `x · wᵀ` for `x: [m, k]`, `w: [n, k]` → `[m, n]`.
pub fn linear_nt<B: Backend>(x: Tensor<B, 2>, w: &Tensor<B, 2>) -> Tensor<B, 2> {
    // A few rows (decoding at small batch): a memory-bound kernel on burn's stream, no cuBLAS synchronisation.
    if let Some(y) = crate::fused::skinny_linear(&x, w) {
        return y;
    }
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    if let GemmImpl::Cubek(kind) = GemmImpl::selected()
        && let Some(y) = cubek::product(&x, &w.clone().transpose(), kind)
    {
        return y;
    }
    #[cfg(feature = "cuda")]
    if GemmImpl::selected() != GemmImpl::Burn
        && let Some(y) = cuda::product(&x, w, true)
    {
        return y;
    }
    x.matmul(w.clone().transpose())
}

/// Batched `a · bᵀ`: `a: [g, m, k]`, `b: [g, n, k]` → `[g, m, n]` (attention scores `q · kᵀ`, one batch entry
/// per (sequence, key/value head), the query heads sharing that key head stacked in `m`: no repeated keys).
pub fn bmm_nt<B: Backend>(a: Tensor<B, 3>, b: Tensor<B, 3>) -> Tensor<B, 3> {
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    if let GemmImpl::Cubek(kind) = GemmImpl::selected()
        && let Some(y) = cubek::product(&a, &b.clone().swap_dims(1, 2), kind)
    {
        return y;
    }
    #[cfg(feature = "cuda")]
    if GemmImpl::selected() != GemmImpl::Burn
        && let Some(y) = cuda::product(&a, &b, true)
    {
        return y;
    }
    a.matmul(b.swap_dims(1, 2))
}

/// Batched `a · b`: `a: [g, m, k]`, `b: [g, k, n]` → `[g, m, n]` (attention output `p · v`).
pub fn bmm_nn<B: Backend>(a: Tensor<B, 3>, b: Tensor<B, 3>) -> Tensor<B, 3> {
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    if let GemmImpl::Cubek(kind) = GemmImpl::selected()
        && let Some(y) = cubek::product(&a, &b, kind)
    {
        return y;
    }
    #[cfg(feature = "cuda")]
    if GemmImpl::selected() != GemmImpl::Burn
        && let Some(y) = cuda::product(&a, &b, false)
    {
        return y;
    }
    a.matmul(b)
}

#[cfg(feature = "cuda")]
pub mod cuda {
    //! cuBLAS on burn-cuda tensors. The library is opened at run time (cudarc's dynamic loading): a binary
    //! built with `--features cuda` starts on a machine without CUDA, and a machine without `libcublas` says so
    //! once and keeps burn's matmul.
    //!
    //! Operands are used in place whatever their row pitch (cubecl pads rows of some shapes): any rank-2/3
    //! tensor whose last dimension is unit-stride maps to cuBLAS's leading dimension and batch stride. Others
    //! are made contiguous first.
    //!
    //! Ordering: cubecl runs its kernels on its own non-blocking streams and does not expose them. By default
    //! cuBLAS queues on burn's own stream, as cubecl-cuda patched here says which it is
    //! (`MMREASON_CUBLAS_ORDER=stream`, below). In the host order (`MMREASON_CUBLAS_ORDER=host`, and the
    //! fallback where no stream was said) a cuBLAS call waits on the host for the device queue
    //! (`client.sync()`) and for its own stream before returning: two host synchronisations per product, which
    //! cost little against a prefill GEMM but bound decoding at batch 32 (run 8 in benches/gpu/NOTES.md: decode
    //! at batch 32 1,887 tok/s in the host order, 3,143 in the stream order).
    //! `MMREASON_CUBLAS_ORDER=device` orders the two streams on the device instead, through two words of
    //! device memory: a one-unit kernel on burn's stream sets word 0 to the call's number once all before it
    //! has run; cuBLAS's stream waits for that value (`cuStreamWaitValue32`), runs the product and writes the
    //! number to word 1 (`cuStreamWriteValue32`, after the product's writes; where the driver refuses stream
    //! memory operations on cubecl's memory, two one-unit kernels of ours wait and write instead); a one-unit
    //! kernel on burn's stream spins until word 1 holds it, so what burn queues next reads the product. The
    //! host waits for nothing. Inputs and output stay valid: burn frees or reuses their memory only in its
    //! stream's order, which now runs after the product. Only the first thread that multiplies uses it (cubecl
    //! gives each thread its own stream; the equality waits assume one stream's calls in order); other threads,
    //! and devices where neither way of waiting can be set up, keep the host order.
    //!
    //! `MMREASON_CUBLAS_ORDER=wait` is the first half of that alone: cuBLAS's stream waits on the device for
    //! word 0, and the host then waits for cuBLAS's stream, as in the host order. It keeps one of the two
    //! host round trips per product (the GPU idles while the host queues what follows) but runs no spinning
    //! kernel on burn's stream: if a cuBLAS kernel needs every SM at once, or a profiler serialises kernels, the
    //! device order's spin could slow or stall it, and this cannot (where the ordering kernels stand in for the
    //! stream wait, their spin runs on cuBLAS's stream, before the product, never beside it).
    //!
    //! The stream order (the default) needs no handshake: cuBLAS runs on burn's own stream. cubecl-cuda 0.10
    //! hands that stream out only as patched in this workspace (`vendor/README.md`): its `get_resource` records
    //! the stream it resolved the request for (`mmreason-stream-hook`). The call runs on cubecl's device thread,
    //! where cubecl has already queued every kernel burn asked for before it, so a product queued on that
    //! stream runs after them and before anything burn queues next, and that stream's memory pool, which is
    //! ordered by it, frees and reuses operands and output only after the product (an operand from another
    //! thread's stream has cubecl's own cross-stream protection, as for its kernels): no host wait, no flag
    //! kernel. What the stream order gives up is the host order's check, at its sync, that no earlier launch
    //! failed (cubecl keeps such a failure in the stream): the product then reads what the failed kernel did
    //! not write, and the next read reports the failure, as it would for burn's own kernels. Where no stream
    //! was recorded (cubecl-cuda built without the patch, or the call not on cubecl's thread) the product
    //! takes the host order, said once.
    //!
    //! Whichever the order, the call and its host waits run on cubecl's device thread by default
    //! ([`host_thread`] says why).

    use std::any::TypeId;
    use std::ffi::c_void;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, OnceLock};

    use burn::tensor::{DType, Tensor, backend::Backend};
    use burn_cubecl::cubecl::cuda::CudaRuntime;

    use crate::fused::cube::{LaunchCheck, primitive_of, tensor_of};
    use burn_cubecl::cubecl::future::block_on;
    use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
    use burn_cubecl::tensor::CubeTensor;
    use cudarc::cublas::sys as cb;
    use cudarc::driver::{result as drv, sys as dsys};

    type Cube = CubeTensor<CudaRuntime>;

    struct Cublas {
        ordinal: usize,
        ctx: dsys::CUcontext,
        /// cuBLAS's own stream (every order but `stream`).
        stream: dsys::CUstream,
        handle: cb::cublasHandle_t,
        /// The stream the handle queues on now: `stream`, or burn's in the stream order ([`Cublas::bind`]).
        bound: dsys::CUstream,
        /// The workspace handed to cuBLAS (address, bytes), set again whenever the handle changes stream.
        workspace: Option<(dsys::CUdeviceptr, usize)>,
        /// Device-side ordering, set up by the first product when `MMREASON_CUBLAS_ORDER=device|wait`.
        flags: Option<Result<Flags, String>>,
    }

    impl Cublas {
        /// Orders on the host from the next product on, for reason `e` — returned, as this product's error.
        fn order_on_host(&mut self, e: String) -> String {
            self.flags = Some(Err(e.clone()));
            e
        }

        /// Puts the handle on `stream` if it is on another one. The handle's workspace is one buffer whatever
        /// the stream, so the stream it leaves must first have finished with it: a host wait, only when the
        /// stream changes (a second thread's products in the stream order, or a fallback to the host order).
        /// `cublasSetStream` also drops a workspace set before it, so the workspace is set again.
        ///
        /// An error of the wait is earlier work's ([`Refusal::Device`]).
        ///
        /// # Safety
        /// The context is current and `stream` lives in it.
        unsafe fn bind(&mut self, stream: dsys::CUstream) -> Result<(), Refusal> {
            if self.bound == stream {
                return Ok(());
            }
            // SAFETY: the caller's; `bound` is cuBLAS's stream or a stream of cubecl's, which lives as long as
            // its server (the process).
            unsafe {
                drv::stream::synchronize(self.bound)
                    .map_err(|e| Refusal::Device(format!("stream sync: {e:?}")))?;
                cudarc::cublas::result::set_stream(self.handle, stream as cb::cudaStream_t)
                    .map_err(|e| format!("cublasSetStream: {e:?}"))?;
                self.bound = stream;
                // Kept if refused (cuBLAS then uses its default pool): tried again at the next move.
                if let Some((ws, bytes)) = self.workspace
                    && let Err(e) = cb::cublasSetWorkspace_v2(self.handle, ws as *mut c_void, bytes).result()
                {
                    eprintln!(
                        "mmreason: cuBLAS uses its default workspace on this stream: cublasSetWorkspace: {e:?}"
                    );
                }
            }
            Ok(())
        }
    }

    /// The two ordering words (see the module's doc) and the number of the last call.
    struct Flags {
        handle: burn_cubecl::cubecl::server::Handle,
        ptr: dsys::CUdeviceptr,
        last: u32,
        thread: std::thread::ThreadId,
        /// How cuBLAS's stream waits for word 0 and writes word 1: stream memory operations, or (where the
        /// driver refuses those on cubecl's memory) two one-unit kernels of ours.
        spin: Option<Spin>,
    }

    /// The CUDA C++ of the two one-unit kernels cuBLAS's stream runs when the driver refuses stream memory
    /// operations on cubecl's memory (H100 run 7: `cuStreamWaitValue32` → `CUDA_ERROR_INVALID_VALUE` on a word
    /// from cubecl's stream-ordered pool). Compiled with NVRTC at the first product that needs them; the
    /// `cuda_source` test writes it beside cubecl's kernels for `benches/gpu/nvrtc_check.py`.
    pub const ORDERING_KERNELS: &str = r#"
// Spins until another stream's kernel has written `value` to `word` (volatile: each test reads memory).
extern "C" __global__ void mmreason_wait_word(const unsigned int* word, unsigned int value) {
    while (*(const volatile unsigned int*)word != value) {
    }
    __threadfence();
}
// Writes `value` once everything queued before it on this stream has run (kernel order: the product's writes
// are complete and visible device-wide before this kernel starts).
extern "C" __global__ void mmreason_set_word(unsigned int* word, unsigned int value) {
    __threadfence();
    *(volatile unsigned int*)word = value;
}
"#;

    /// The two ordering kernels, loaded (function handles of a module that lives as long as the process).
    #[derive(Clone, Copy)]
    struct Spin {
        wait: dsys::CUfunction,
        set: dsys::CUfunction,
    }

    impl Spin {
        /// Compiles and loads [`ORDERING_KERNELS`] in the current context.
        fn load() -> Result<Spin, String> {
            let ptx = std::panic::catch_unwind(|| cudarc::nvrtc::compile_ptx(ORDERING_KERNELS))
                .map_err(|_| "NVRTC could not be loaded".to_string())?
                .map_err(|e| format!("NVRTC: {e:?}"))?;
            let image = std::ffi::CString::new(ptx.to_src()).map_err(|e| format!("PTX: {e}"))?;
            // SAFETY: `image` is a NUL-terminated PTX module; the module is never unloaded, so the function
            // handles stay valid.
            unsafe {
                let module = drv::module::load_data(image.as_ptr().cast())
                    .map_err(|e| format!("loading the ordering kernels: {e:?}"))?;
                let function = |name: &str| {
                    drv::module::get_function(module, std::ffi::CString::new(name).expect("no NUL"))
                        .map_err(|e| format!("{name}: {e:?}"))
                };
                Ok(Spin {
                    wait: function("mmreason_wait_word")?,
                    set: function("mmreason_set_word")?,
                })
            }
        }

        /// Queues `f(word, value)` as one unit on `stream`.
        ///
        /// # Safety
        /// The context is current, `stream` lives in it and `word` is device memory that outlives the launch.
        unsafe fn launch(
            f: dsys::CUfunction,
            stream: dsys::CUstream,
            word: dsys::CUdeviceptr,
            value: u32,
        ) -> Result<(), String> {
            let (mut word, mut value) = (word, value);
            let mut params = [
                (&mut word as *mut dsys::CUdeviceptr).cast::<c_void>(),
                (&mut value as *mut u32).cast::<c_void>(),
            ];
            // SAFETY: the parameters match the kernels' (pointer, unsigned int) and outlive the call, which
            // copies them.
            unsafe { drv::launch_kernel(f, (1, 1, 1), (1, 1, 1), 0, stream, &mut params) }
                .map_err(|e| format!("launch: {e:?}"))
        }
    }

    /// Queues cuBLAS's side of waiting for the word at `ptr` to hold `n`: a stream memory wait, or with
    /// `spin` the wait kernel.
    ///
    /// # Safety
    /// As [`Spin::launch`].
    unsafe fn wait_word(
        spin: Option<Spin>,
        stream: dsys::CUstream,
        ptr: dsys::CUdeviceptr,
        n: u32,
    ) -> Result<(), String> {
        match spin {
            // SAFETY: the caller's.
            Some(k) => {
                unsafe { Spin::launch(k.wait, stream, ptr, n) }.map_err(|e| format!("wait kernel: {e}"))
            }
            // SAFETY: the caller's.
            None => unsafe {
                dsys::cuStreamWaitValue32_v2(
                    stream,
                    ptr,
                    n,
                    dsys::CUstreamWaitValue_flags::CU_STREAM_WAIT_VALUE_EQ as u32,
                )
            }
            .result()
            .map_err(|e| format!("cuStreamWaitValue32: {e:?}")),
        }
    }

    /// Queues cuBLAS's side of writing `n` to the word at `ptr` once all queued before it on `stream` has
    /// run: a stream memory write (the default flags order earlier writes before it), or with `spin` the set
    /// kernel (kernel order does).
    ///
    /// # Safety
    /// As [`Spin::launch`].
    unsafe fn set_word(
        spin: Option<Spin>,
        stream: dsys::CUstream,
        ptr: dsys::CUdeviceptr,
        n: u32,
    ) -> Result<(), String> {
        match spin {
            // SAFETY: the caller's.
            Some(k) => unsafe { Spin::launch(k.set, stream, ptr, n) }.map_err(|e| format!("set kernel: {e}")),
            // SAFETY: the caller's.
            None => unsafe {
                dsys::cuStreamWriteValue32_v2(
                    stream,
                    ptr,
                    n,
                    dsys::CUstreamWriteValue_flags::CU_STREAM_WRITE_VALUE_DEFAULT as u32,
                )
            }
            .result()
            .map_err(|e| format!("cuStreamWriteValue32: {e:?}")),
        }
    }

    /// How cuBLAS's stream is ordered with burn's (`MMREASON_CUBLAS_ORDER=stream|host|device|wait`, read once).
    /// The stream order is the default since run 8 (H200, PyTorch in the same call): parity as the host order's,
    /// decode at batch 32 +67 %, prefill +12…+14 %, CLIP +18 %, and 0…17 µs per product over PyTorch's
    /// `F.linear` where the host order paid 24…91 µs (`benches/gpu/NOTES.md`). Where cubecl-cuda does not say
    /// which stream burn's kernels run on (a build without `vendor/cubecl-cuda`'s patch) it falls back to the
    /// host order, and says so once.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Order {
        /// The host waits for burn's queue before each product and for cuBLAS's stream after it.
        Host,
        /// Both ways on the device (a stream wait on cuBLAS's side, a spinning kernel on burn's).
        Device,
        /// cuBLAS's stream waits on the device; the host waits for it after the product.
        Wait,
        /// cuBLAS queues on burn's own stream (cubecl-cuda as patched here): nothing to order.
        Stream,
    }

    impl Order {
        const ALL: [Order; 4] = [Order::Host, Order::Stream, Order::Device, Order::Wait];

        /// Lower-case name, as `MMREASON_CUBLAS_ORDER` spells it.
        pub fn name(self) -> &'static str {
            match self {
                Order::Host => "host",
                Order::Stream => "stream",
                Order::Device => "device",
                Order::Wait => "wait",
            }
        }

        pub fn selected() -> Order {
            static SEL: OnceLock<Order> = OnceLock::new();
            *SEL.get_or_init(|| match std::env::var("MMREASON_CUBLAS_ORDER").as_deref() {
                Ok("device") => Order::Device,
                Ok("wait") => Order::Wait,
                Ok("host") => Order::Host,
                Ok("stream") | Err(_) => Order::Stream,
                Ok(other) => {
                    eprintln!(
                        "mmreason: MMREASON_CUBLAS_ORDER={other:?} is none of stream, host, device, wait: the \
                         stream order"
                    );
                    Order::Stream
                }
            })
        }
    }

    impl Order {
        /// The order a product takes when `selected` is asked for, the call runs on `thread` and cubecl-cuda
        /// did or did not say which stream it resolved the operands for (`resolved`); with why, where that is
        /// not the selected one. The stream order needs that stream; the device and wait orders need the
        /// device thread (on the caller's thread they could hang: [`host_thread`]).
        fn kept(thread: HostThread, selected: Order, resolved: bool) -> (Order, Option<&'static str>) {
            match (thread, selected) {
                (_, Order::Stream) if !resolved => (
                    Order::Host,
                    Some(
                        "the stream order needs the stream burn's kernels run on, and cubecl-cuda did not say \
                         which (built without vendor/cubecl-cuda's patch, or the call not on cubecl's thread)",
                    ),
                ),
                (HostThread::Device, order) | (HostThread::Caller, order @ (Order::Host | Order::Stream)) => {
                    (order, None)
                }
                (HostThread::Caller, Order::Device | Order::Wait) => (
                    Order::Host,
                    Some("MMREASON_CUBLAS_THREAD=caller takes the host order"),
                ),
            }
        }
    }

    /// Allocates the ordering words in cubecl's memory, so its kernels can bind them, once the driver is
    /// known to have the `_v2` stream memory operations (CUDA 11.7; an older one would lack the symbols, which
    /// dynamic loading reports by panicking). A wait and a write that order nothing probe whether the driver
    /// takes them on this memory; where it does not (the H100 of run 7 refused them on cubecl's pool memory), cuBLAS's
    /// side of the handshake runs as two one-unit kernels of ours ([`ORDERING_KERNELS`]) instead. If those
    /// cannot be loaded either, the device order is off: this product and the next take the host order. An
    /// error of earlier work that cubecl's sync hands back here is the caller's to report ([`Refusal::Device`]).
    fn flags(
        client: &burn_cubecl::cubecl::client::ComputeClient<CudaRuntime>,
        caller: std::thread::ThreadId,
        ctx: dsys::CUcontext,
        stream: dsys::CUstream,
    ) -> Result<Flags, Refusal> {
        let mut version = 0i32;
        // SAFETY: writes one int.
        unsafe { dsys::cuDriverGetVersion(&mut version) }
            .result()
            .map_err(|e| format!("driver version: {e:?}"))?;
        if version < 11070 {
            return Err(format!(
                "the CUDA driver ({}.{}) predates stream memory operations v2 (11.7)",
                version / 1000,
                version % 1000 / 10
            )
            .into());
        }
        let handle = client.create_from_slice(&[0u8; 8]);
        // The words come from cubecl's pool, which may hand back memory holding an old `1`; the zeros are
        // written in burn's stream order. Wait for them once, so no first wait is met by stale memory.
        block_on(client.sync()).map_err(|e| Refusal::Device(format!("sync: {e:?}")))?;
        let ptr = client
            .get_resource(handle.clone())
            .map_err(|e| format!("flags resource: {e:?}"))?
            .resource()
            .ptr;
        // Does the driver take stream memory operations on this memory? The two the handshake uses, made so
        // they order nothing: an equality wait on word 0 that is met at once (it holds 0) and a write of the 0
        // word 1 already holds.
        // SAFETY: the context is the primary one, `stream` is ours in it, `ptr` is live device memory.
        let probe = unsafe {
            drv::ctx::set_current(ctx).map_err(|e| format!("set context: {e:?}"))?;
            wait_word(None, stream, ptr, 0)
                .and_then(|()| set_word(None, stream, ptr + 4, 0))
                .and_then(|()| drv::stream::synchronize(stream).map_err(|e| format!("stream sync: {e:?}")))
        };
        let spin = match probe {
            Ok(()) => None,
            Err(e) => {
                let spin =
                    Spin::load().map_err(|k| format!("{e} ({}); ordering kernels: {k}", pool_note(ptr)))?;
                eprintln!(
                    "mmreason: cuBLAS's stream orders with kernels of ours: the driver refused stream memory \
                     operations on cubecl's memory ({e}; {})",
                    pool_note(ptr)
                );
                Some(spin)
            }
        };
        Ok(Flags {
            handle,
            ptr,
            last: 0,
            thread: caller,
            spin,
        })
    }

    /// Whether `ptr` comes from a stream-ordered memory pool (for the message when stream memory operations
    /// are refused on it: that is what run 7 suggests, and what the next run's message confirms or not).
    fn pool_note(ptr: dsys::CUdeviceptr) -> String {
        let mut pool: dsys::CUmemoryPool = std::ptr::null_mut();
        // SAFETY: writes one pool handle.
        let r = unsafe {
            dsys::cuPointerGetAttribute(
                (&mut pool as *mut dsys::CUmemoryPool).cast(),
                dsys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE,
                ptr,
            )
        };
        match r.result() {
            Ok(()) if pool.is_null() => "the words are not pool memory".into(),
            Ok(()) => "the words are pool memory (cuMemAllocAsync)".into(),
            Err(e) => format!("pool attribute: {e:?}"),
        }
    }

    // SAFETY: the raw handles are only used under the mutex below, with the context made current first.
    unsafe impl Send for Cublas {}

    /// Why a product did not go through cuBLAS.
    enum Refusal {
        /// cuBLAS cannot take it, or is not there: burn's matmul does (said once).
        Unused(String),
        /// cubecl's flush or sync handed back an error of earlier work on burn's stream. What that work wrote
        /// is wrong, so the error is not cuBLAS's to hide behind a fallback: the caller panics with it, as cubecl
        /// does when a result is read after such an error.
        Device(String),
    }

    impl From<String> for Refusal {
        fn from(e: String) -> Self {
            Refusal::Unused(e)
        }
    }

    static STATE: OnceLock<Result<Mutex<Cublas>, String>> = OnceLock::new();

    /// Products queued per order (indexed as [`Order::ALL`]).
    static USED: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

    /// [`super::cublas_orders`] on CUDA.
    pub fn orders_used() -> std::collections::BTreeMap<String, u64> {
        Order::ALL
            .iter()
            .zip(&USED)
            .map(|(o, n)| (o.name().to_string(), n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    fn count(order: Order) {
        if let Some(i) = Order::ALL.iter().position(|o| *o == order) {
            USED[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn warn_once(msg: &str) {
        static WARNED: OnceLock<()> = OnceLock::new();
        WARNED.get_or_init(|| eprintln!("mmreason: cuBLAS not used, burn's matmul instead: {msg}"));
    }

    fn warn_order_once(msg: &str) {
        static WARNED: OnceLock<()> = OnceLock::new();
        WARNED.get_or_init(|| {
            eprintln!("mmreason: cuBLAS ordered on the host (two host waits per product): {msg}")
        });
    }

    fn init(ordinal: usize) -> Result<Mutex<Cublas>, String> {
        // SAFETY: plain driver/cuBLAS calls; the primary context is the one cubecl-cuda uses, so device
        // pointers of burn tensors are valid in it.
        unsafe {
            if !cb::is_culib_present() {
                return Err(
                    "libcublas was not found on the library path (add CUDA's lib64 or the \
                            nvidia-cublas wheel's lib directory to LD_LIBRARY_PATH)"
                        .into(),
                );
            }
            let dev = drv::device::get(ordinal as i32).map_err(|e| format!("device {ordinal}: {e:?}"))?;
            let ctx = drv::primary_ctx::retain(dev).map_err(|e| format!("primary context: {e:?}"))?;
            drv::ctx::set_current(ctx).map_err(|e| format!("set context: {e:?}"))?;
            let stream = drv::stream::create(drv::stream::StreamKind::NonBlocking)
                .map_err(|e| format!("stream: {e:?}"))?;
            let handle =
                cudarc::cublas::result::create_handle().map_err(|e| format!("cublasCreate: {e:?}"))?;
            cudarc::cublas::result::set_stream(handle, stream as cb::cudaStream_t)
                .map_err(|e| format!("cublasSetStream: {e:?}"))?;
            // After the stream: cublasSetStream puts the handle back on cuBLAS's default workspace pool.
            let major = drv::device::get_attribute(
                dev,
                dsys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
            )
            .map_err(|e| format!("compute capability: {e:?}"))?;
            let bytes = workspace_bytes(major);
            let mut workspace = None;
            if bytes > 0 {
                // Lives as long as the handle, i.e. the process (the state is a static). Without it cuBLAS
                // keeps its own default pool: slower perhaps, still right.
                match drv::malloc_sync(bytes) {
                    Ok(ws) => {
                        if let Err(e) = cb::cublasSetWorkspace_v2(handle, ws as *mut c_void, bytes).result() {
                            let _ = drv::free_sync(ws);
                            eprintln!(
                                "mmreason: cuBLAS keeps its default workspace: cublasSetWorkspace: {e:?}"
                            );
                        } else {
                            workspace = Some((ws, bytes));
                        }
                    }
                    Err(e) => eprintln!(
                        "mmreason: cuBLAS keeps its default workspace: allocating {bytes} bytes: {e:?}"
                    ),
                }
            }
            Ok(Mutex::new(Cublas {
                ordinal,
                ctx,
                stream,
                handle,
                bound: stream,
                workspace,
                flags: None,
            }))
        }
    }

    /// The workspace handed to cuBLAS: `MMREASON_CUBLAS_WORKSPACE_MIB` (0 = cuBLAS's own default pool), else
    /// what NVIDIA recommends and PyTorch sets on its handles — 32 MiB from Hopper (compute capability 9) on,
    /// 4 MiB before. Without enough workspace cuBLAS leaves out the kernels that need one (split-K reductions
    /// among them, which the skinny decode products at batch 8–32 are made for).
    fn workspace_bytes(major: i32) -> usize {
        const MIB: usize = 1 << 20;
        let default = if major >= 9 { 32 * MIB } else { 4 * MIB };
        match std::env::var("MMREASON_CUBLAS_WORKSPACE_MIB") {
            Err(_) => default,
            Ok(v) => match v.trim().parse::<usize>() {
                Ok(mib) => mib.saturating_mul(MIB),
                Err(_) => {
                    eprintln!(
                        "mmreason: MMREASON_CUBLAS_WORKSPACE_MIB={v} is not a number of MiB; {} MiB instead",
                        default / MIB
                    );
                    default
                }
            },
        }
    }

    fn min_work() -> usize {
        static MIN: OnceLock<usize> = OnceLock::new();
        *MIN.get_or_init(|| {
            std::env::var("MMREASON_CUBLAS_MIN_WORK")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        })
    }

    fn data_type(d: DType) -> Option<cb::cudaDataType> {
        Some(match d {
            DType::F32 => cb::cudaDataType::CUDA_R_32F,
            DType::F16 => cb::cudaDataType::CUDA_R_16F,
            DType::BF16 => cb::cudaDataType::CUDA_R_16BF,
            _ => return None,
        })
    }

    /// A row-major stack of matrices as cuBLAS sees it: `batch` matrices of `rows × cols`, rows `ld` elements
    /// apart, matrices `stride` elements apart.
    #[derive(Debug, Clone, Copy)]
    struct Layout {
        batch: usize,
        rows: usize,
        cols: usize,
        ld: usize,
        stride: usize,
    }

    fn layout(t: &Cube) -> Option<Layout> {
        let (shape, strides) = (t.meta.shape(), t.meta.strides());
        let r = shape.num_dims();
        if !(2..=3).contains(&r) {
            return None;
        }
        let (rows, cols) = (shape[r - 2], shape[r - 1]);
        if cols > 1 && strides[r - 1] != 1 {
            return None;
        }
        let ld = if rows > 1 { strides[r - 2] } else { cols.max(1) };
        if ld < cols.max(1) {
            return None;
        }
        let (batch, stride) = if r == 3 {
            (shape[0], strides[0])
        } else {
            (1, rows * ld)
        };
        // Matrices of one batch entry must not overlap the next (stride 0 would broadcast; not needed here).
        if batch > 1 && stride < (rows.max(1) - 1) * ld + cols {
            return None;
        }
        Some(Layout {
            batch,
            rows,
            cols,
            ld,
            stride,
        })
    }

    fn prepared(t: Cube) -> Option<(Cube, Layout)> {
        if let Some(l) = layout(&t) {
            return Some((t, l));
        }
        let t = burn_cubecl::kernel::into_contiguous(t);
        let l = layout(&t)?;
        Some((t, l))
    }

    /// `a · bᵀ` (`b_transposed`) or `a · b`, rank 2 or 3, through cuBLAS when `B` is burn-cuda, both share a
    /// supported float dtype and cuBLAS loads; `None` otherwise (the caller falls back to burn).
    pub fn product<B: Backend, const D: usize>(
        a: &Tensor<B, D>,
        b: &Tensor<B, D>,
        b_transposed: bool,
    ) -> Option<Tensor<B, D>> {
        if TypeId::of::<B>() != TypeId::of::<crate::backend::CudaBackend>() {
            return None;
        }
        let (a, la) = prepared(primitive_of::<B, CudaRuntime, D>(a.clone())?)?;
        let (b, lb) = prepared(primitive_of::<B, CudaRuntime, D>(b.clone())?)?;
        // Products too small to repay two host synchronisations stay with burn (`MMREASON_CUBLAS_MIN_WORK`,
        // batch·m·n·k; 0 = every product goes to cuBLAS).
        let work = la.batch * la.rows * la.cols * if b_transposed { lb.rows } else { lb.cols };
        if work < min_work() {
            return None;
        }
        let caller = std::thread::current().id();
        let result = if host_thread() == HostThread::Device {
            let client = a.client.clone();
            // cubecl catches a panic of the task and returns it as an error, and its thread lives on: burn's
            // matmul takes the product — and every later one if the panic poisoned the cuBLAS state's lock.
            client
                .exclusive(|| gemm(&a, la, &b, lb, b_transposed, caller))
                .unwrap_or_else(|e| Err(Refusal::Unused(format!("cubecl's device thread: {e:?}"))))
        } else {
            gemm(&a, la, &b, lb, b_transposed, caller)
        };
        match result {
            Ok(y) => tensor_of::<B, CudaRuntime, D>(y),
            Err(Refusal::Unused(e)) => {
                warn_once(&e);
                None
            }
            // Outside cubecl's device thread, which would catch the panic.
            Err(Refusal::Device(e)) => crate::fused::cube::earlier_work_failed(&e),
        }
    }

    /// Which host thread makes the cuBLAS call and its waits (`MMREASON_CUBLAS_THREAD=device|caller`, read
    /// once; device by default).
    ///
    /// cubecl 0.10 runs every operation of a device on one thread of its own, fed in batches of 32 tasks;
    /// when it has had nothing to do for a while (a few hundred microseconds of spinning and yielding) it
    /// sleeps in steps of 150 µs. A wait for cuBLAS's stream on the caller's thread — the whole product, in
    /// the host order — leaves it idle that long for any product of more than a few hundred microseconds, and
    /// the next operation then waits for it to wake. On this project's 2-core workstation (burn-wgpu, the same
    /// cubecl channel; the `host_probe` example) a round trip right after the caller's own work cost 5–35 µs
    /// when that work took up to 200 µs and 135–200 µs once it lasted 0.5–3 ms. Made on cubecl's own thread
    /// (`ComputeClient::exclusive`, as cubecl's profiler runs its work), the wait keeps that thread busy: the
    /// hand-over there and back plus the round trip then cost 14–57 µs, however long the wait. The call's
    /// cubecl operations (the sync, the resources, the flag kernels) run inline there, so a product makes one
    /// blocking round trip instead of four. The cost: in the host and wait orders cubecl's thread is blocked
    /// for the product, so another thread's work on the same device waits for it (the models drive a device
    /// from one thread). `caller` keeps the call on the calling thread, as before, and in the host order only:
    /// there a flag kernel whose launch panics (cubecl's thread swallows queued tasks' panics) would leave
    /// cuBLAS's stream waiting for ever in the wait and device orders. On the device thread the launches run
    /// inline, so such a panic ends the call before anything waits; a launch failure cubecl keeps in the stream
    /// comes back from a flush after each flag kernel's first launch (where it is compiled: `LaunchCheck`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum HostThread {
        Device,
        Caller,
    }

    pub fn host_thread() -> HostThread {
        static SEL: OnceLock<HostThread> = OnceLock::new();
        *SEL.get_or_init(|| match std::env::var("MMREASON_CUBLAS_THREAD").as_deref() {
            Ok("caller") => HostThread::Caller,
            _ => HostThread::Device,
        })
    }

    /// `caller`: the thread that asked for the product (the device order is kept to one such thread, whose
    /// cubecl stream it orders; the call itself may run on cubecl's device thread).
    fn gemm(
        a: &Cube,
        la: Layout,
        b: &Cube,
        lb: Layout,
        b_transposed: bool,
        caller: std::thread::ThreadId,
    ) -> Result<Cube, Refusal> {
        if a.dtype != b.dtype {
            return Err(format!("mixed dtypes {:?} · {:?}", a.dtype, b.dtype).into());
        }
        let dt = data_type(a.dtype).ok_or_else(|| format!("dtype {:?}", a.dtype))?;
        let (m, k) = (la.rows, la.cols);
        let (n, kb) = if b_transposed {
            (lb.rows, lb.cols)
        } else {
            (lb.cols, lb.rows)
        };
        let rank = a.meta.shape().num_dims();
        if kb != k || rank != b.meta.shape().num_dims() || (rank == 3 && la.batch != lb.batch) {
            return Err(format!("shapes {:?} · {:?}", a.meta.shape(), b.meta.shape()).into());
        }
        let batch = la.batch;
        let ordinal = a.device.index;
        let mut st = crate::backend::device_state(&STATE, "cuBLAS", ordinal, init, |s| s.ordinal)?;
        let client = a.client.clone();
        let out_shape: Vec<usize> = if rank == 3 { vec![batch, m, n] } else { vec![m, n] };
        let y = empty_device_contiguous_dtype(client.clone(), a.device.clone(), out_shape.into(), a.dtype);
        if batch == 0 || m == 0 || n == 0 {
            return Ok(y);
        }
        // Every fallible step that does not touch a stream comes first: once the device order has queued a
        // wait, the call must finish its handshake whatever happens (a wait left behind would never be met).
        let int = |v: usize| i32::try_from(v).map_err(|_| format!("dimension {v} exceeds i32"));
        let long = |v: usize| i64::try_from(v).map_err(|_| format!("stride {v} exceeds i64"));
        let (n_, m_, k_, batch_) = (int(n)?, int(m)?, int(k)?, int(batch)?);
        let (ldb, lda) = (int(lb.ld)?, int(la.ld)?);
        let (stride_b, stride_a, stride_y) = (
            long(if rank == 3 { lb.stride } else { 0 })?,
            long(if rank == 3 { la.stride } else { 0 })?,
            long(m * n)?,
        );
        let get = |t: &Cube| {
            client
                .get_resource(t.handle.clone())
                .map_err(|e| format!("resource: {e:?}"))
        };
        // What an earlier resolution on this thread left is not this call's.
        let _ = mmreason_stream_hook::take();
        let (ra, rb, ry) = (get(a)?, get(b)?, get(&y)?);
        // The stream the three were resolved for (the calling thread's: `exclusive` carries its stream id),
        // where cubecl-cuda is patched to say and the resolution ran on this thread.
        let resolved = mmreason_stream_hook::take().map(|s| s as dsys::CUstream);
        let (alpha, beta) = (1.0f32, 0.0f32);
        // Device and wait orders: the call's number, its words' address. Host order: wait for burn's queue here.
        // On the caller's thread the device and wait orders could hang (see [`host_thread`]): the host order.
        let (order, why) = Order::kept(host_thread(), Order::selected(), resolved.is_some());
        if let Some(why) = why {
            warn_order_once(why);
        }
        // Burn's stream, when cuBLAS queues on it.
        let on_burn = resolved.filter(|_| order == Order::Stream);
        let device_order = if matches!(order, Order::Device | Order::Wait) {
            if st.flags.is_none() {
                st.flags = match flags(&client, caller, st.ctx, st.stream) {
                    Ok(f) => Some(Ok(f)),
                    Err(Refusal::Unused(e)) => Some(Err(e)),
                    Err(device) => return Err(device),
                };
            }
            match st.flags.as_mut() {
                Some(Ok(f)) if f.thread == caller => {
                    // Never 0, the words' initial value.
                    f.last = f.last.checked_add(1).unwrap_or(1);
                    Some((f.handle.clone(), f.ptr, f.last, f.spin))
                }
                Some(Ok(_)) => {
                    warn_order_once("only the first thread that multiplies orders on the device");
                    None
                }
                Some(Err(e)) => {
                    warn_order_once(e);
                    None
                }
                None => None,
            }
        } else {
            None
        };
        match &device_order {
            Some((words, _, n, _)) => {
                // Its first launch (where it is compiled) is checked apart from earlier work's errors.
                let check = LaunchCheck::of("cuBLAS ordering: set kernel".into());
                let first = check.first();
                if let Err(e) = check.before(&client) {
                    return Err(Refusal::Device(st.order_on_host(format!("flush: {e}"))));
                }
                crate::fused::cube::set_flag(&client, words, 2, 0, *n);
                // cubecl queues launches for its device thread until something flushes them (on that thread
                // itself, as by default, they run at once and this flush costs no round trip). The flag kernel
                // must reach CUDA before cuBLAS's stream waits for it: the host waits for that stream in the
                // wait order, and may inside cuBLAS (a lazily loaded module can synchronise the context).
                // Either way the flag kernel may not have run: nothing is queued on our stream yet, so order on
                // the host from here on.
                if first {
                    if let Err(e) = check.confirm(&client) {
                        return Err(st.order_on_host(format!("launching the set kernel: {e}")).into());
                    }
                } else if let Err(e) = client.flush() {
                    return Err(Refusal::Device(st.order_on_host(format!("flush: {e:?}"))));
                }
            }
            // The stream order: the product follows what burn queued on its stream, which cubecl has done by
            // now (its launches run at once on its own thread, where this call is).
            None if on_burn.is_some() => {}
            None => block_on(client.sync()).map_err(|e| Refusal::Device(format!("sync: {e:?}")))?,
        }
        // Row-major y = a·op(b) is column-major yᵀ = op(b)ᵀ·aᵀ: cuBLAS's A is our b (transposed back when
        // we want bᵀ: T; when we want b itself its row-major storage is already the column-major bᵀ: N), its B
        // is our a read as column-major aᵀ (N), C is yᵀ.
        let op_b = if b_transposed {
            cb::cublasOperation_t::CUBLAS_OP_T
        } else {
            cb::cublasOperation_t::CUBLAS_OP_N
        };
        // SAFETY: pointers come from live resources whose layouts were checked above; burn's queue has run
        // (host order) or our stream waits for it on the device (device and wait orders), and our stream is
        // synchronised (host and wait orders) or burn's stream waits for it (device order) before anything burn
        // queues next can touch the memory; in the stream order the product is in burn's stream itself.
        unsafe {
            drv::ctx::set_current(st.ctx).map_err(|e| format!("set context: {e:?}"))?;
            let target = on_burn.unwrap_or(st.stream);
            st.bind(target)?;
            if let Some((_, ptr, n, spin)) = device_order
                && let Err(e) = wait_word(spin, st.stream, ptr, n)
            {
                // Nothing was queued on our stream: the host order takes over from the next call.
                return Err(st.order_on_host(e).into());
            }
            // One matrix: the plain call, as PyTorch's `mm`/`F.linear` makes it (cuBLAS's heuristics are keyed by
            // the call as well as the shape).
            let (pa, pb, py) = (
                ra.resource().ptr as *const c_void,
                rb.resource().ptr as *const c_void,
                ry.resource().ptr as *mut c_void,
            );
            let (alpha_p, beta_p) = (
                (&alpha as *const f32).cast::<c_void>(),
                (&beta as *const f32).cast::<c_void>(),
            );
            let compute = cb::cublasComputeType_t::CUBLAS_COMPUTE_32F;
            let algo = cb::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT;
            let product = if batch == 1 {
                cb::cublasGemmEx(
                    st.handle,
                    op_b,
                    cb::cublasOperation_t::CUBLAS_OP_N,
                    n_,
                    m_,
                    k_,
                    alpha_p,
                    pb,
                    dt,
                    ldb,
                    pa,
                    dt,
                    lda,
                    beta_p,
                    py,
                    dt,
                    n_,
                    compute,
                    algo,
                )
                .result()
                .map_err(|e| format!("cublasGemmEx: {e:?}"))
            } else {
                cb::cublasGemmStridedBatchedEx(
                    st.handle,
                    op_b,
                    cb::cublasOperation_t::CUBLAS_OP_N,
                    n_,
                    m_,
                    k_,
                    alpha_p,
                    pb,
                    dt,
                    ldb,
                    stride_b,
                    pa,
                    dt,
                    lda,
                    stride_a,
                    beta_p,
                    py,
                    dt,
                    n_,
                    stride_y,
                    batch_,
                    compute,
                    algo,
                )
                .result()
                .map_err(|e| format!("cublasGemmStridedBatchedEx: {e:?}"))
            };
            match &device_order {
                Some(_) if order == Order::Wait => {
                    // Whether or not the product was queued, the stream's wait is met once burn's stream runs
                    // the flag kernel (flushed above); the host waits for both, as in the host order.
                    let synced = drv::stream::synchronize(st.stream);
                    product?;
                    synced.map_err(|e| format!("stream sync: {e:?}"))?;
                }
                Some((words, ptr, n, spin)) => {
                    // The handshake ends whether or not the product was queued, after the product's writes.
                    if let Err(e) = set_word(*spin, st.stream, ptr + 4, *n) {
                        // Burn cannot be told. Wait for what our stream holds before the operands and output
                        // go back to burn's memory pool (its wait is met: the flag kernel was flushed before
                        // it was queued; whatever the product computes is discarded); order on the host from
                        // now on.
                        let _ = drv::stream::synchronize(st.stream);
                        return Err(st.order_on_host(e).into());
                    }
                    // If the wait kernel cannot be queued, or cubecl fails to launch it (a failure it keeps in
                    // the stream rather than returns: checked at its first launch, where it is compiled),
                    // burn's stream would not wait for the product: wait for it here instead, before the
                    // operands and output go back to burn's pool.
                    let check = LaunchCheck::of("cuBLAS ordering: wait kernel".into());
                    if let Err(e) = check.before(&client) {
                        let _ = drv::stream::synchronize(st.stream);
                        return Err(Refusal::Device(st.order_on_host(format!("flush: {e}"))));
                    }
                    let queued = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        crate::fused::cube::wait_flag(&client, words, 2, 1, *n)
                    }))
                    .map_err(|_| "queuing the wait kernel panicked".to_string())
                    .and_then(|()| {
                        check
                            .confirm(&client)
                            .map_err(|e| format!("launching the wait kernel: {e}"))
                    });
                    if let Err(e) = queued {
                        let _ = drv::stream::synchronize(st.stream);
                        return Err(st.order_on_host(e).into());
                    }
                    product?;
                }
                None if on_burn.is_some() => product?,
                None => {
                    product?;
                    drv::stream::synchronize(st.stream).map_err(|e| format!("stream sync: {e:?}"))?;
                }
            }
        }
        drop((ra, rb, ry));
        count(match (&on_burn, &device_order) {
            (Some(_), _) => Order::Stream,
            (None, Some(_)) => order,
            (None, None) => Order::Host,
        });
        Ok(y)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn each_order_is_kept_only_where_it_can_run() {
            use HostThread::{Caller, Device};
            use Order::{Device as OnDevice, Host, Stream, Wait};
            // Every selected order runs on the device thread, given burn's stream where it needs it.
            for order in [Host, Stream, OnDevice, Wait] {
                assert_eq!(Order::kept(Device, order, true), (order, None));
            }
            // Without burn's stream the stream order falls back to the host order, on either thread, and
            // says so; the others do not need it.
            for thread in [Device, Caller] {
                let (order, why) = Order::kept(thread, Stream, false);
                assert_eq!(order, Host);
                assert!(why.is_some_and(|w| w.contains("patch")), "{why:?}");
            }
            assert_eq!(Order::kept(Device, OnDevice, false), (OnDevice, None));
            // On the caller's thread the handshakes could hang: the host order, said; the stream order has
            // no handshake and stays.
            for order in [OnDevice, Wait] {
                let (kept, why) = Order::kept(Caller, order, true);
                assert_eq!(kept, Host);
                assert!(why.is_some_and(|w| w.contains("caller")), "{why:?}");
            }
            assert_eq!(Order::kept(Caller, Stream, true), (Stream, None));
            assert_eq!(Order::kept(Caller, Host, false), (Host, None));
        }

        #[test]
        fn products_are_counted_under_the_order_they_took() {
            let before = orders_used();
            count(Order::Stream);
            count(Order::Stream);
            count(Order::Host);
            let after = orders_used();
            let grew =
                |name: &str| after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0);
            // At least: tests beside this one may multiply on a CUDA device where there is one.
            assert!(grew("stream") >= 2 && grew("host") >= 1, "{before:?} → {after:?}");
            assert_eq!(Order::ALL.map(Order::name), ["host", "stream", "device", "wait"]);
        }
    }
}
