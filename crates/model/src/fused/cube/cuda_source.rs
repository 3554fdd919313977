//! The CUDA C++ that cubecl's CUDA compiler writes for every kernel of [`super`], produced on a machine without
//! a GPU.
//!
//! Why: a lent GPU comes rarely and for 15 minutes, and on it each kernel is compiled (NVRTC) only when first
//! launched. A kernel that expands fine for WGSL (CI runs them all on lavapipe) can still emit C++ that NVRTC
//! rejects — a unary minus on a vector did once — and the device time is then spent on a failure that the next
//! lent device (sessions later) is needed to fix. These tests expand each kernel with each comptime choice the
//! launch sites can make (dtype f32/f16/bf16, every vector width, every flag, the comptime sizes used), run
//! cubecl-cuda's own compiler over the result with the options it sets for an sm_90 device, and check the C++
//! names the kernel. With `MMREASON_CUDA_SOURCES=DIR` they also write each source to `DIR/NAME.cu`, for
//! `benches/gpu/nvrtc_check.py` to compile with NVRTC for sm_90a where libnvrtc is installed (`build.sh` does,
//! before packing the binaries).
//!
//! The kernels' IR is built with a burn-wgpu client standing in for the CUDA device: expansion reads only the
//! runtime's matrix-core layout (unused by these kernels) and the device properties (read by none of them).

use burn::backend::wgpu::{WgpuDevice, WgpuRuntime};
use cubecl::{Compiler, cuda::CudaCompiler};

use super::*;

type Options = <CudaCompiler as Compiler>::CompilationOptions;

/// The options cubecl-cuda 0.10 sets for a device of compute capability 9.0 with CUDA ≥ 12.8 (its runtime's
/// `create_server`): what NVRTC sees on an H100.
fn h100_options() -> Options {
    // `Options` names its fields' types through cubecl-cpp, which is not a dependency of ours: the warp size is
    // the default's (32), the features are set one by one.
    let mut options = Options::default();
    assert_eq!(options.warp_size, 32);
    let features = &mut options.supports_features;
    features.fast_math = true;
    features.grid_constants = true;
    features.fast_tanh = true;
    features.clusters = true;
    features.elect_sync = true;
    options
}

/// One expanded kernel: the file stem to write it under and its IR.
struct Expanded {
    name: String,
    definition: KernelDefinition,
}

/// Collects the expansions of [`all`]: `name` is made unique by the comptime choices that produced it.
struct Kernels {
    client: ComputeClient<WgpuRuntime>,
    list: Vec<Expanded>,
}

impl Kernels {
    fn settings(dim: CubeDim) -> KernelSettings {
        KernelSettings::default().cube_dim(dim)
    }

    fn push(&mut self, name: String, kernel: impl CubeKernel) {
        self.list.push(Expanded {
            name,
            definition: kernel.define(),
        });
    }
}

fn arr() -> ArrayCompilationArg {
    ArrayCompilationArg { inplace: None }
}

/// Expands every kernel with element type `F` (vector sizes `vectors`) into `k`.
fn expand_float<F: Float>(k: &mut Kernels, dtype: &str, vectors: &[usize]) {
    let c = k.client.clone();
    let row = || Kernels::settings(CubeDim::new_1d(BLOCK));
    let grid = || Kernels::settings(CubeDim::new_2d(32, 8));
    for &n in vectors {
        for residual in [false, true] {
            let tag = format!("{dtype}_v{n}_res{}", residual as u8);
            // The norms' three layouts (`NormLayout`): a cube per row, and 8 rows of 32 lanes per cube reduced
            // in shared memory or by planes.
            for (layout, plane) in [("", false), ("_rows", false), ("_plane", true)] {
                let dim = || match layout {
                    "" => row(),
                    _ => grid(),
                };
                let kernel = layer_norm_kernel::LayerNormKernel::<F, WgpuRuntime>::new(
                    dim(),
                    c.clone(),
                    arr(),
                    arr(),
                    arr(),
                    arr(),
                    arr(),
                    arr(),
                    arr(),
                    (),
                    (),
                    (),
                    n,
                    residual,
                    plane,
                );
                k.push(format!("layer_norm_{tag}{layout}"), kernel);
                let kernel = rms_norm_kernel::RmsNormKernel::<F, WgpuRuntime>::new(
                    dim(),
                    c.clone(),
                    arr(),
                    arr(),
                    arr(),
                    arr(),
                    arr(),
                    (),
                    (),
                    (),
                    n,
                    residual,
                    plane,
                );
                k.push(format!("rms_norm_{tag}{layout}"), kernel);
            }
            // `MMREASON_NORM=regs`: the row in registers, 4 vectors per lane (CLIP's 1,024 bf16 values over a
            // plane of 32) and 8 (the most it takes), and 4 in the shared-memory layout.
            for (plane, per) in [(true, 4), (true, 8), (false, 4)] {
                let kernel = layer_norm_regs_kernel::LayerNormRegsKernel::<F, WgpuRuntime>::new(
                    grid(),
                    c.clone(),
                    arr(),
                    arr(),
                    arr(),
                    arr(),
                    arr(),
                    arr(),
                    arr(),
                    (),
                    (),
                    (),
                    n,
                    residual,
                    plane,
                    per,
                );
                k.push(format!("layer_norm_{tag}_regs{per}_plane{}", plane as u8), kernel);
                let kernel = rms_norm_regs_kernel::RmsNormRegsKernel::<F, WgpuRuntime>::new(
                    grid(),
                    c.clone(),
                    arr(),
                    arr(),
                    arr(),
                    arr(),
                    arr(),
                    (),
                    (),
                    (),
                    n,
                    residual,
                    plane,
                    per,
                );
                k.push(format!("rms_norm_{tag}_regs{per}_plane{}", plane as u8), kernel);
            }
            for gelu in [false, true] {
                let kernel = bias_act_kernel::BiasActKernel::<F, WgpuRuntime>::new(
                    row(),
                    c.clone(),
                    arr(),
                    arr(),
                    arr(),
                    arr(),
                    (),
                    (),
                    n,
                    gelu,
                    residual,
                );
                k.push(format!("bias_act_{tag}_gelu{}", gelu as u8), kernel);
            }
        }
        let tag = format!("{dtype}_v{n}");
        let kernel =
            silu_mul_kernel::SiluMulKernel::<F, WgpuRuntime>::new(row(), c.clone(), arr(), arr(), (), (), n);
        k.push(format!("silu_mul_{tag}"), kernel);
        let kernel = qkv_bias_heads_kernel::QkvBiasHeadsKernel::<F, WgpuRuntime>::new(
            row(),
            c.clone(),
            arr(),
            arr(),
            arr(),
            arr(),
            arr(),
            (),
            (),
            (),
            n,
        );
        k.push(format!("qkv_bias_heads_{tag}"), kernel);
        let kernel = qkv_heads_kernel::QkvHeadsKernel::<F, WgpuRuntime>::new(
            row(),
            c.clone(),
            arr(),
            arr(),
            arr(),
            arr(),
            arr(),
            arr(),
            (),
            (),
            (),
            (),
            (),
            (),
            (),
            n,
        );
        k.push(format!("qkv_heads_{tag}"), kernel);
        let kernel = decode_attention_ilp_kernel::DecodeAttentionIlpKernel::<F, WgpuRuntime>::new(
            row(),
            c.clone(),
            arr(),
            arr(),
            arr(),
            arr(),
            arr(),
            (),
            (),
            (),
            (),
            (),
            (),
            (),
            n,
        );
        k.push(format!("decode_attention_ilp_{tag}"), kernel);
        let kernel = skinny_nt_kernel::SkinnyNtKernel::<F, WgpuRuntime>::new(
            grid(),
            c.clone(),
            arr(),
            arr(),
            arr(),
            (),
            (),
            (),
            n,
        );
        k.push(format!("skinny_nt_{tag}"), kernel);
        // What benches/gpu/run.sh times (MMREASON_GEMV=plane:UNROLL:COLUMNS): a plane of 32 per column, so
        // 16 columns make 512-unit cubes, for which ptxas allows at most 128 registers per unit.
        for (unroll, columns) in [(4, 8), (8, 8), (2, 16)] {
            let kernel = skinny_plane_kernel::SkinnyPlaneKernel::<F, WgpuRuntime>::new(
                Kernels::settings(CubeDim::new_2d(32, columns)),
                c.clone(),
                arr(),
                arr(),
                arr(),
                (),
                (),
                (),
                n,
                unroll,
            );
            k.push(format!("skinny_plane_{tag}_u{unroll}_c{columns}"), kernel);
        }
        // run.sh's MMREASON_GEMV_MULTI=ROWS:COLUMNS choices, and the largest tiles the launch site takes (8 × 8,
        // 16 × 4; 32 × 2 only through `skinny_linear_with`).
        for (mb, cb) in [(8, 4), (16, 2), (4, 4), (8, 8), (16, 4), (32, 2)] {
            let kernel = skinny_multi_kernel::SkinnyMultiKernel::<F, WgpuRuntime>::new(
                Kernels::settings(CubeDim::new_2d(MULTI_LANES, MULTI_PLANES)),
                c.clone(),
                arr(),
                arr(),
                arr(),
                (),
                (),
                (),
                n,
                mb,
                cb,
            );
            k.push(format!("skinny_multi_{tag}_{mb}x{cb}"), kernel);
        }
    }
    let kernel = quick_gelu_kernel::QuickGeluKernel::<F, WgpuRuntime>::new(row(), c.clone(), arr(), arr());
    k.push(format!("quick_gelu_{dtype}"), kernel);
    let kernel = heads_kernel::HeadsKernel::<F, WgpuRuntime>::new(
        row(),
        c.clone(),
        arr(),
        arr(),
        arr(),
        arr(),
        (),
        (),
        (),
        (),
        (),
        (),
    );
    k.push(format!("heads_{dtype}"), kernel);
    for masked in [false, true] {
        let kernel = masked_softmax_kernel::MaskedSoftmaxKernel::<F, WgpuRuntime>::new(
            grid(),
            c.clone(),
            arr(),
            arr(),
            arr(),
            (),
            (),
            (),
            (),
            (),
            masked,
        );
        k.push(format!("masked_softmax_{dtype}_mask{}", masked as u8), kernel);
        // 1 (t ≤ 32), 16 (t = 512), 19 (CLIP's 577 positions), 32 (the largest the launch site takes).
        for per in [1, 16, 19, 32] {
            let kernel = softmax_regs_kernel::SoftmaxRegsKernel::<F, WgpuRuntime>::new(
                grid(),
                c.clone(),
                arr(),
                arr(),
                arr(),
                (),
                (),
                (),
                (),
                (),
                masked,
                per,
            );
            k.push(
                format!("softmax_regs_{dtype}_mask{}_per{per}", masked as u8),
                kernel,
            );
        }
    }
    let kernel = argmax_kernel::ArgmaxKernel::<F, WgpuRuntime>::new(row(), c.clone(), arr(), arr(), (), ());
    k.push(format!("argmax_{dtype}"), kernel);
    let kernel = decode_attention_kernel::DecodeAttentionKernel::<F, WgpuRuntime>::new(
        row(),
        c.clone(),
        arr(),
        arr(),
        arr(),
        arr(),
        arr(),
        (),
        (),
        (),
        (),
        (),
        (),
        (),
    );
    k.push(format!("decode_attention_{dtype}"), kernel);
    let kernel = decode_split_combine_kernel::DecodeSplitCombineKernel::<F, WgpuRuntime>::new(
        row(),
        c.clone(),
        arr(),
        arr(),
        arr(),
        (),
        (),
        (),
        (),
    );
    k.push(format!("decode_split_combine_{dtype}"), kernel);
    let widest = vectors.iter().copied().max().unwrap_or(1);
    // The split decode attention (`MMREASON_DECODE_ATTN=split`) at the 7B decoders' heads of 128 (Llama's
    // one query head per kv head, Mistral's four; one split written directly, or several), and CLIP-sized
    // heads of 64; at the widest vector, which the launch takes at these sizes.
    for (d, group, direct) in [
        (128, 1, true),
        (128, 1, false),
        (128, 4, true),
        (128, 4, false),
        (64, 1, false),
    ] {
        let kernel = decode_attention_split_kernel::DecodeAttentionSplitKernel::<F, WgpuRuntime>::new(
            row(),
            c.clone(),
            arr(),
            arr(),
            arr(),
            arr(),
            arr(),
            arr(),
            arr(),
            (),
            (),
            (),
            (),
            (),
            (),
            (),
            widest,
            d,
            group,
            direct,
        );
        k.push(
            format!(
                "decode_attention_split_{dtype}_v{widest}_d{d}_g{group}_direct{}",
                direct as u8
            ),
            kernel,
        );
    }
}

/// [`prefill::tile_attention_kernel`] with element type `F` (`size` bytes) at the head sizes of CLIP (64) and
/// the 7B decoders (128), in the layout the launch site picks with an H100's 227 KiB of shared memory,
/// without a mask, with the causal triangle and with a mask, each with tensor cores or not as `cores` lists.
fn expand_tile_attention<F: Float>(k: &mut Kernels, dtype: &str, size: usize, cores: &[bool]) {
    // 128-bit vectors (what `vector_for` takes at these head sizes) and single values (a view at an odd offset).
    let widest = 16 / size;
    for (d, vector) in [(64, widest), (128, widest), (128, 1)] {
        let layout = prefill::tile_layout(d, size, 227 * 1024).expect("a layout fits 227 KiB");
        for (masked, causal) in [(false, false), (false, true), (true, false)] {
            for &tensor_cores in cores {
                let kernel = prefill::tile_attention_kernel::TileAttentionKernel::<F, WgpuRuntime>::new(
                    Kernels::settings(CubeDim::new_1d(32 * layout.planes as u32)),
                    k.client.clone(),
                    arr(),
                    arr(),
                    arr(),
                    arr(),
                    arr(),
                    (),
                    (),
                    (),
                    (),
                    (),
                    (),
                    (),
                    (),
                    vector,
                    d,
                    layout.planes,
                    layout.block,
                    masked,
                    causal,
                    tensor_cores,
                    size == 2,
                );
                k.push(
                    format!(
                        "tile_attention_{dtype}_v{vector}_d{d}_p{}_b{}_mask{}_causal{}_tc{}",
                        layout.planes, layout.block, masked as u8, causal as u8, tensor_cores as u8
                    ),
                    kernel,
                );
            }
        }
    }
}

/// Every kernel of [`super`] expanded with each comptime choice its launch sites make on CUDA.
fn all() -> Vec<Expanded> {
    let mut k = Kernels {
        client: <WgpuRuntime as Runtime>::client(&WgpuDevice::default()),
        list: Vec::new(),
    };
    // cubecl-cuda loads 128 bits at once: 4 f32 or 8 f16/bf16 per vector. [`vector_for`] takes the widest that
    // divides the row and the operands' offsets, so narrower ones occur too — and they are other C++: cubecl-cpp
    // packs f16/bf16 pairs into `__half2`/`__nv_bfloat162`, so 2, 4 and 8 values are one, two and four of those.
    expand_float::<f32>(&mut k, "f32", &[1, 2, 4]);
    expand_float::<half::f16>(&mut k, "f16", &[1, 2, 4, 8]);
    expand_float::<half::bf16>(&mut k, "bf16", &[1, 2, 4, 8]);
    // f32 has no 16×16×16 tensor-core fragments: the plain products only.
    expand_tile_attention::<f32>(&mut k, "f32", 4, &[false]);
    expand_tile_attention::<half::f16>(&mut k, "f16", 2, &[false, true]);
    expand_tile_attention::<half::bf16>(&mut k, "bf16", 2, &[false, true]);
    for wait in [false, true] {
        let kernel = flag_kernel::FlagKernel::<WgpuRuntime>::new(
            Kernels::settings(CubeDim::new_1d(1)),
            k.client.clone(),
            arr(),
            (),
            (),
            wait,
        );
        k.push(format!("flag_wait{}", wait as u8), kernel);
    }
    k.list
}

#[test]
fn every_kernel_compiles_to_cuda_cpp() {
    let options = h100_options();
    let dir = std::env::var_os("MMREASON_CUDA_SOURCES").map(std::path::PathBuf::from);
    if let Some(dir) = &dir {
        std::fs::create_dir_all(dir).expect("creating MMREASON_CUDA_SOURCES");
    }
    let kernels = all();
    let count = kernels.len();
    let mut failed = Vec::new();
    for Expanded { name, definition } in kernels {
        let entry = definition.options.kernel_name.clone();
        let compiled = CudaCompiler::default().compile(
            definition,
            &options,
            ExecutionMode::Unchecked,
            AddressType::U32.unsigned_type(),
        );
        match compiled {
            Ok(source) => {
                let source = source.to_string();
                // The entry point is what cubecl-cuda looks the kernel up by after NVRTC compiled it
                // (`extern "C" __global__ void __launch_bounds__(256)NAME (`).
                if !source.contains("__global__") || !source.contains(&format!("{entry} (")) {
                    failed.push(format!("{name}: no entry point `{entry}` in the source"));
                }
                if let Some(dir) = &dir {
                    std::fs::write(dir.join(format!("{name}.cu")), source).expect("writing a source");
                }
            }
            Err(e) => failed.push(format!("{name}: {e}")),
        }
    }
    // The two kernels cuBLAS's stream runs in the device order where stream memory operations are refused
    // (gemm.rs): plain CUDA C++ of ours, compiled by NVRTC on the device, so only the check script compiles it.
    let ordering = crate::gemm::cuda::ORDERING_KERNELS;
    for entry in ["mmreason_wait_word", "mmreason_set_word"] {
        if !ordering.contains(&format!("__global__ void {entry}(")) {
            failed.push(format!("ordering kernels: no entry point `{entry}`"));
        }
    }
    if let Some(dir) = &dir {
        std::fs::write(dir.join("mmreason_ordering.cu"), ordering).expect("writing a source");
    }
    // The mma prefill attention (`fused::mma`, `MMREASON_ATTENTION=mma`): CUDA C++ of ours as well, one source
    // per dtype, head size and masking, written as NVRTC gets it on the device.
    // (Two stages of K/V tiles at heads of 64 only, `MMREASON_MMA_STAGES`; two m-tiles per warp,
    // `MMREASON_MMA_ROWS`, with key blocks of 32 at heads of 128.)
    // The lean block loop (`MMREASON_MMA_LEAN=1`) for the default layout and each knob's.
    for (bf16, warps, mtiles, stages, lean) in [
        (true, 4, 1, 1, false),
        (false, 4, 1, 1, false),
        (true, 8, 1, 1, false),
        (true, 4, 1, 2, false),
        (false, 4, 1, 2, false),
        (true, 4, 2, 1, false),
        (false, 4, 2, 1, false),
        (true, 4, 2, 2, false),
        (false, 4, 2, 2, false),
        (true, 8, 1, 2, false),
        (false, 8, 1, 2, false),
        (false, 8, 1, 1, false),
        (true, 4, 1, 1, true),
        (false, 4, 1, 1, true),
        (true, 8, 1, 1, true),
        (true, 4, 1, 2, true),
        (true, 4, 2, 1, true),
        (false, 4, 2, 1, true),
        (true, 4, 2, 2, true),
        (true, 8, 1, 2, true),
    ] {
        for d in crate::fused::mma::HEAD_DIMS {
            if stages == 2 && d != 64 {
                continue;
            }
            for masking in crate::fused::mma::Masking::ALL {
                let layout = crate::fused::mma::Layout {
                    lean,
                    ..crate::fused::mma::Layout::of(d, warps, mtiles, stages)
                };
                let source = crate::fused::mma::source_for(bf16, d, masking, layout, None, false);
                if !(source.contains("#define MMA_KERNEL extern \"C\" __global__")
                    && source.contains("MMA_KERNEL mmreason_mma_attention("))
                {
                    failed.push("mma attention: no entry point `mmreason_mma_attention`".into());
                }
                // (The kernel's own source defines LEAN 0 where the includer has not.)
                if !source.contains(&format!("#define QV_BIAS 0\n#define LEAN {}\n", u8::from(lean))) {
                    failed.push(format!("mma attention: LEAN is not {lean} in {}", layout.name()));
                }
                if let Some(dir) = &dir {
                    let name = format!(
                        "mmreason_mma_attention_{}_{d}_{masking:?}_{}.cu",
                        u8::from(bf16),
                        layout.name()
                    );
                    std::fs::write(dir.join(name), source).expect("writing a source");
                }
            }
        }
    }
    // The vision tower's attention over views of its projection, the query and value biases folded in
    // (`MMREASON_QKV_VIEWS=1`): unmasked, per dtype, at heads of 64 with one and two m-tiles per warp (bf16 also
    // with the lean block loop).
    for (bf16, lean) in [(true, false), (false, false), (true, true)] {
        for mtiles in [1, 2] {
            let layout = crate::fused::mma::Layout {
                lean,
                ..crate::fused::mma::Layout::of(64, 4, mtiles, 1)
            };
            let source =
                crate::fused::mma::source_for(bf16, 64, crate::fused::mma::Masking::None, layout, None, true);
            if !source.contains("#define QV_BIAS 1") {
                failed.push("mma attention: no QV_BIAS in the biased variant".into());
            }
            if let Some(dir) = &dir {
                let name = format!(
                    "mmreason_mma_attention_{}_64_None_{}_qv.cu",
                    u8::from(bf16),
                    layout.name()
                );
                std::fs::write(dir.join(name), source).expect("writing a source");
            }
        }
    }
    // The few-row product (`fused::gemv`, `MMREASON_GEMV=cuda`): per dtype, the default 8 loads in flight and 3.
    for bf16 in [true, false] {
        for unroll in [8, 3] {
            let source = crate::fused::gemv::source(bf16, unroll);
            if !source.contains("GEMV_KERNEL mmreason_gemv(") {
                failed.push("few-row product: no entry point `mmreason_gemv`".into());
            }
            if let Some(dir) = &dir {
                let name = format!("mmreason_gemv_{}_{unroll}.cu", u8::from(bf16));
                std::fs::write(dir.join(name), source).expect("writing a source");
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} kernels failed:\n{}",
        failed.len(),
        count,
        failed.join("\n")
    );
    // Per dtype and vector: 28 norm/bias variants (the norms in three layouts and three register variants) and
    // 14 others (11 vectors in all); per dtype: 14, and 6 of the
    // split decode attention; 2 flag kernels; the prefill attention: 3 head sizes and vectors × 3 masks, once in
    // f32 and twice (with and without tensor cores) in f16 and bf16.
    assert_eq!(count, 11 * 42 + 3 * (14 + 6) + 2 + 9 * 5);
}
