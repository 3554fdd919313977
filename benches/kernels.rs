//! The decoder's kernels one by one, on any compiled backend: the GEMM of a linear layer (mmreason's
//! `linear_nt` — cuBLAS on CUDA — against burn's matmul on the same operands), causal grouped-query attention
//! for prefill and for one decode step over a cache, a decode step's KV-cache write, RMSNorm, RoPE and SiLU·mul (the fused versions next to
//! the op-by-op chains they replace).
//!
//!     cargo bench --bench kernels                                            # CPU, scaled-down shapes
//!     MMREASON_BENCH_BACKEND=cuda cargo bench --features cuda --bench kernels  # Mistral-7B shapes, bf16
//!
//! `MMREASON_BENCH_BACKEND` = cpu | wgpu | cuda, `MMREASON_BENCH_DTYPE` = f32 | bf16 | f16 (default: f32 on the
//! CPU, bf16 on a GPU). GPU shapes are Mistral-7B's (hidden 4096, 32 query / 8 key-value heads of 128, MLP
//! 14336; prefill 8×512, decode over 512 cached positions); CPU shapes are an eighth of the width so a run takes
//! minutes. GEMM and attention report FLOP/s ("elements" = floating-point operations), the memory-bound kernels
//! bytes moved per second. Every iteration ends with the backend's `sync`, so GPU time is counted in full.

use burn::tensor::{DType, Distribution, Tensor, TensorData, activation, backend::Backend};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mmreason::model::attention::grouped_query_attention;
use mmreason::model::fused::{heads, silu_mul, softmax_f32};
use mmreason::model::gemm::{bmm_nn, bmm_nt, linear_nt};
use mmreason::model::llama::RmsNorm;
use mmreason::model::load::WeightDtype;
use mmreason::model::{BackendKind, KvCache, rope};

/// Model and batch sizes of one run.
struct Shapes {
    batch: usize,
    seq: usize,
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    intermediate: usize,
    cached: usize,
}

impl Shapes {
    fn for_backend(kind: BackendKind) -> Self {
        let full = Shapes {
            batch: 8,
            seq: 512,
            hidden: 4096,
            heads: 32,
            kv_heads: 8,
            head_dim: 128,
            intermediate: 14336,
            cached: 512,
        };
        match kind {
            BackendKind::Cpu => Shapes {
                batch: 2,
                seq: 128,
                hidden: full.hidden / 8,
                heads: full.heads / 8,
                kv_heads: full.kv_heads / 8,
                head_dim: full.head_dim,
                intermediate: full.intermediate / 8,
                cached: 128,
            },
            _ => full,
        }
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn random<B: Backend, const D: usize>(
    shape: [usize; D],
    std: f64,
    dtype: DType,
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::<B, D>::random(shape, Distribution::Normal(0.0, std), device).cast(dtype)
}

/// Causal additive mask `[b, 1, s, past + s]` in f32, as the decoder builds it.
fn causal_mask<B: Backend>(b: usize, s: usize, past: usize, device: &B::Device) -> Tensor<B, 4> {
    let t = past + s;
    let m: Vec<f32> = (0..b * s * t)
        .map(|i| {
            let (q, k) = ((i / t) % s + past, i % t);
            if k <= q { 0.0 } else { f32::MIN }
        })
        .collect();
    Tensor::from_data(TensorData::new(m, [b, 1, s, t]), device)
}

/// Times `run` as `label` unless it declines on this device (`None`: a kernel variant the device cannot take);
/// returns whether it ran.
fn bench_taken<T>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    label: String,
    id: &str,
    run: impl Fn() -> Option<T>,
    sync: &dyn Fn(),
) -> bool {
    if run().is_none() {
        return false;
    }
    g.bench_function(BenchmarkId::new(label, id), |b| {
        b.iter(|| {
            std::hint::black_box(run());
            sync();
        })
    });
    true
}

/// One bench per cubek flash kernel that runs here (`kind` in the name); the kinds that decline (no tensor
/// cores, f32) are skipped.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn flash_benches<B: Backend>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    id: &str,
    (q, k, v): (&Tensor<B, 4>, &Tensor<B, 4>, &Tensor<B, 4>),
    causal: bool,
    sync: &dyn Fn(),
) {
    use mmreason::model::fused::{FlashKind, flash_attention_of};
    for kind in [
        FlashKind::Accelerated(2),
        FlashKind::Accelerated(4),
        FlashKind::Accelerated(8),
        FlashKind::Unit,
    ] {
        let label = match kind {
            FlashKind::Accelerated(p) => format!("{name}/cmma{p}"),
            FlashKind::Unit => format!("{name}/unit"),
        };
        bench_taken(g, label, id, || flash_attention_of(q, k, v, causal, kind), sync);
    }
}

/// Our prefill attention kernel (`fused::prefill_attention_with`, tensor cores where the device has them) on
/// `q`, `k`, `v` (`[b, h, s, d]`, `k`/`v` with their own, possibly fewer, heads), without a mask; skipped where
/// it declines.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn own_bench<B: Backend>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    label: &str,
    id: &str,
    (q, k, v): (&Tensor<B, 4>, &Tensor<B, 4>, &Tensor<B, 4>),
    causal: bool,
    sync: &dyn Fn(),
) {
    use mmreason::model::fused::{TileLayout, prefill_attention_with};
    let [_, _, s, d] = q.dims();
    let scale = 1.0 / (d as f64).sqrt();
    // The default layout, then others to compare it with (planes per cube : keys per block; one the device
    // lacks the shared memory for runs the default again, and is labelled so).
    for layout in [None, Some((2, 32)), Some((4, 64)), Some((2, 64)), Some((8, 32))] {
        let layout = layout.map(|(planes, block)| TileLayout { planes, block });
        let run = || prefill_attention_with(q, k, v, None, s, causal, scale, layout);
        let label = match layout {
            None => label.to_string(),
            Some(l) => format!("{label}_p{}b{}", l.planes, l.block),
        };
        if !bench_taken(g, label, id, run, sync) {
            return;
        }
    }
}

/// The mma attention kernel (`fused::mma_attention_of`, `MMREASON_ATTENTION=mma`: burn-cuda in bf16/f16, heads
/// of 64 or 128) on the same operands as [`own_bench`], without a mask; skipped where it declines.
fn mma_bench<B: Backend>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    label: &str,
    id: &str,
    (q, k, v): (&Tensor<B, 4>, &Tensor<B, 4>, &Tensor<B, 4>),
    causal: bool,
    sync: &dyn Fn(),
) {
    let [_, _, s, d] = q.dims();
    let scale = 1.0 / (d as f64).sqrt();
    let run = || mmreason::model::fused::mma_attention_of(q, k, v, None, s, causal, scale);
    bench_taken(g, label.to_string(), id, run, sync);
}

fn bench_on<B: Backend>(c: &mut Criterion, kind: BackendKind, dtype: WeightDtype, device: &B::Device) {
    let sh = Shapes::for_backend(kind);
    let dt = dtype.burn();
    let bytes = |elems: usize| (elems * dt.size()) as u64;
    let sync = || B::sync(device).expect("backend sync");
    let tag = format!("{}-{}", kind.name(), dtype.name());
    let tokens = sh.batch * sh.seq;

    let mut g = c.benchmark_group(format!("gemm/{tag}"));
    g.sample_size(10);
    let w = random::<B, 2>([sh.intermediate, sh.hidden], 0.02, dt, device);
    // decode1: one row, where `linear_nt` takes the skinny kernel on GPUs (memory-bound: the weight is
    // 2·hidden·intermediate bytes in bf16); on CUDA cuBLAS on the same operands is measured beside it.
    for (name, m) in [
        ("prefill", tokens),
        ("decode", sh.batch),
        ("decode32", 32),
        ("decode1", 1),
    ] {
        let x = random::<B, 2>([m, sh.hidden], 1.0, dt, device);
        g.throughput(Throughput::Elements((2 * m * sh.hidden * sh.intermediate) as u64));
        let id = format!("{m}x{}x{}", sh.hidden, sh.intermediate);
        g.bench_function(BenchmarkId::new(format!("{name}/linear_nt"), &id), |b| {
            b.iter(|| {
                std::hint::black_box(linear_nt(x.clone(), &w));
                sync();
            })
        });
        #[cfg(feature = "cuda")]
        if mmreason::model::gemm::cuda::product(&x, &w, true).is_some() {
            g.bench_function(BenchmarkId::new(format!("{name}/cublas"), &id), |b| {
                b.iter(|| {
                    std::hint::black_box(mmreason::model::gemm::cuda::product(&x, &w, true));
                    sync();
                })
            });
        }
        // The few-row kernel's variants (`MMREASON_GEMV`) on the one-row product, the multi-row kernel's
        // (`MMREASON_GEMV_MULTI`) on the batch-8 and batch-32 decode products; a variant that declines here
        // (the plane kernel without plane operations) is skipped.
        #[cfg(any(feature = "cuda", feature = "wgpu"))]
        if m <= 32 {
            use mmreason::model::fused::{SkinnyKernel, skinny_linear_with};
            let variants: Vec<SkinnyKernel> = if m == 1 {
                let planes = [(1, 8), (2, 8), (4, 8), (8, 8), (4, 4), (4, 16)]
                    .into_iter()
                    .map(|(unroll, columns)| SkinnyKernel::Plane { unroll, columns });
                std::iter::once(SkinnyKernel::Shared).chain(planes).collect()
            } else {
                [(8, 4), (16, 2), (4, 4), (8, 2), (16, 4)]
                    .into_iter()
                    .map(|(rows, columns)| SkinnyKernel::Multi { rows, columns })
                    .collect()
            };
            for kernel in variants {
                let label = match kernel {
                    SkinnyKernel::Multi { rows, columns } => {
                        format!("{name}/skinny_multi_r{rows}_c{columns}")
                    }
                    SkinnyKernel::Shared => format!("{name}/skinny_shared"),
                    SkinnyKernel::Plane { unroll, columns } => {
                        format!("{name}/skinny_plane_u{unroll}_c{columns}")
                    }
                };
                bench_taken(&mut g, label, &id, || skinny_linear_with(&x, &w, kernel), &sync);
            }
        }
        // Our CUDA C++ few-row product (`MMREASON_GEMV=cuda:UNROLL`), for the rows it takes.
        if m <= 4 {
            for unroll in [4, 8, 16] {
                let run = || mmreason::model::fused::cuda_gemv_of(&x, &w, unroll);
                if !bench_taken(&mut g, format!("{name}/cuda_gemv_u{unroll}"), &id, run, &sync) {
                    break;
                }
            }
        }
        g.bench_function(BenchmarkId::new(format!("{name}/burn_matmul"), &id), |b| {
            b.iter(|| {
                std::hint::black_box(x.clone().matmul(w.clone().transpose()));
                sync();
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group(format!("attention/{tag}"));
    g.sample_size(10);
    let (nh, nkv, d) = (sh.heads, sh.kv_heads, sh.head_dim);
    for (name, s, past) in [("prefill", sh.seq, 0), ("decode", 1, sh.cached)] {
        let t = past + s;
        let q = random::<B, 4>([sh.batch, nh, s, d], 1.0, dt, device);
        let k = random::<B, 4>([sh.batch, nkv, t, d], 1.0, dt, device);
        let v = random::<B, 4>([sh.batch, nkv, t, d], 1.0, dt, device);
        let mask = causal_mask::<B>(sh.batch, s, past, device);
        g.throughput(Throughput::Elements((4 * sh.batch * nh * s * t * d) as u64));
        let id = format!("b{}h{nh}kv{nkv}s{s}t{t}d{d}", sh.batch);
        g.bench_function(BenchmarkId::new(name, &id), |b| {
            b.iter(|| {
                std::hint::black_box(grouped_query_attention(
                    q.clone(),
                    k.clone(),
                    v.clone(),
                    &mask.clone().into(),
                    false,
                ));
                sync();
            })
        });
        // The decode kernels (`MMREASON_DECODE_ATTN`) one by one on the same step.
        #[cfg(any(feature = "cuda", feature = "wgpu"))]
        if s == 1 {
            use mmreason::model::fused::{DecodeKernel, decode_attention_with};
            let scale = 1.0 / (d as f64).sqrt();
            for kernel in [DecodeKernel::Chunked, DecodeKernel::Ilp, DecodeKernel::SPLIT] {
                if decode_attention_with(&q, &k, &v, &mask, scale, kernel).is_none() {
                    continue;
                }
                g.bench_function(BenchmarkId::new(format!("decode_{}", kernel.label()), &id), |b| {
                    b.iter(|| {
                        std::hint::black_box(decode_attention_with(&q, &k, &v, &mask, scale, kernel));
                        sync();
                    })
                });
            }
        }
        // Our prefill kernel (`MMREASON_ATTENTION=own`) on the same prefill: grouped heads read in place, the
        // causal triangle from positions (no mask read).
        #[cfg(any(feature = "cuda", feature = "wgpu"))]
        if past == 0 {
            own_bench::<B>(&mut g, &format!("{name}_own"), &id, (&q, &k, &v), true, &sync);
        }
        if past == 0 {
            mma_bench::<B>(&mut g, &format!("{name}_mma"), &id, (&q, &k, &v), true, &sync);
        }
        // cubek's flash kernels (`MMREASON_ATTENTION`) on the same prefill, grouped heads repeated beforehand
        // (the model repeats them per layer: one copy of k and v).
        #[cfg(any(feature = "cuda", feature = "wgpu"))]
        if past == 0 {
            let rep = |z: &Tensor<B, 4>| {
                z.clone()
                    .unsqueeze_dim::<5>(2)
                    .expand([sh.batch, nkv, nh / nkv, t, d])
                    .reshape([sh.batch, nh, t, d])
            };
            let (k, v) = (rep(&k), rep(&v));
            flash_benches::<B>(&mut g, &format!("{name}_flash"), &id, (&q, &k, &v), true, &sync);
        }
    }
    // The CLIP tower's attention (ViT-L/14-336 at batch 32: 16 heads of 64 over 577 positions, no mask):
    // two products around the softmax kernel, as `clip.rs` composes it, against the flash kernels.
    if !matches!(kind, BackendKind::Cpu) {
        let (n, h, t, d) = (32, 16, 577, 64);
        let q = random::<B, 4>([n, h, t, d], 1.0, dt, device);
        let k = random::<B, 4>([n, h, t, d], 1.0, dt, device);
        let v = random::<B, 4>([n, h, t, d], 1.0, dt, device);
        g.throughput(Throughput::Elements((4 * n * h * t * t * d) as u64));
        let id = format!("b{n}h{h}s{t}d{d}");
        let flat = |z: &Tensor<B, 4>| z.clone().reshape([n * h, t, d]);
        g.bench_function(BenchmarkId::new("clip", &id), |b| {
            b.iter(|| {
                let scores = bmm_nt(flat(&q), flat(&k)).reshape([1, n * h, t, t]);
                let probs = softmax_f32(scores, None, 1.0 / (d as f64).sqrt()).reshape([n * h, t, t]);
                std::hint::black_box(bmm_nn(probs, flat(&v)));
                sync();
            })
        });
        // The softmax alone, each kernel (`MMREASON_SOFTMAX`), on the CLIP scores.
        #[cfg(any(feature = "cuda", feature = "wgpu"))]
        {
            use mmreason::model::fused::{SoftmaxKernel, softmax_f32_with};
            let scores = bmm_nt(flat(&q), flat(&k)).reshape([1, n * h, t, t]);
            let scale = 1.0 / (d as f64).sqrt();
            g.throughput(Throughput::Bytes((2 * n * h * t * t * dt.size()) as u64));
            for kernel in [SoftmaxKernel::Passes, SoftmaxKernel::Registers] {
                let name = format!("clip_softmax_{kernel:?}").to_lowercase();
                g.bench_function(BenchmarkId::new(name, &id), |b| {
                    b.iter(|| {
                        std::hint::black_box(softmax_f32_with(&scores, None, scale, kernel));
                        sync();
                    })
                });
            }
            g.throughput(Throughput::Elements((4 * n * h * t * t * d) as u64));
        }
        #[cfg(any(feature = "cuda", feature = "wgpu"))]
        own_bench::<B>(&mut g, "clip_own", &id, (&q, &k, &v), false, &sync);
        mma_bench::<B>(&mut g, "clip_mma", &id, (&q, &k, &v), false, &sync);
        #[cfg(any(feature = "cuda", feature = "wgpu"))]
        flash_benches::<B>(&mut g, "clip_flash", &id, (&q, &k, &v), false, &sync);
    }
    g.finish();

    // One decode step's write into one layer's KV cache of `cached` positions: concatenation (a new tensor,
    // the whole cache copied) against the cache's in-place write into reserved storage.
    let mut g = c.benchmark_group(format!("kv_cache/{tag}"));
    g.sample_size(20);
    let past = random::<B, 4>([sh.batch, nkv, sh.cached, d], 1.0, dt, device);
    let token = random::<B, 4>([sh.batch, nkv, 1, d], 1.0, dt, device);
    let id = format!("b{}kv{nkv}t{}d{d}", sh.batch, sh.cached);
    g.bench_function(BenchmarkId::new("append_concat", &id), |b| {
        b.iter_batched(
            || (past.clone(), past.clone()),
            |(pk, pv)| {
                let kv = (
                    Tensor::cat(vec![pk, token.clone()], 2),
                    Tensor::cat(vec![pv, token.clone()], 2),
                );
                sync();
                kv
            },
            criterion::BatchSize::PerIteration,
        )
    });
    g.bench_function(BenchmarkId::new("append_in_place", &id), |b| {
        b.iter_batched(
            || {
                let mut cache = KvCache::<B>::with_capacity(1, sh.cached + 1);
                cache.append(0, past.clone(), past.clone());
                sync();
                cache
            },
            |mut cache| {
                let kv = cache.append(0, token.clone(), token.clone());
                sync();
                (cache, kv)
            },
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut g = c.benchmark_group(format!("elementwise/{tag}"));
    g.sample_size(10);
    let x = random::<B, 3>([sh.batch, sh.seq, sh.hidden], 1.0, dt, device);
    let norm = RmsNorm::new(random::<B, 1>([sh.hidden], 1.0, dt, device), 1e-5);
    let w = random::<B, 1>([sh.hidden], 1.0, dt, device);
    g.throughput(Throughput::Bytes(2 * bytes(tokens * sh.hidden)));
    let id = format!("{tokens}x{}", sh.hidden);
    g.bench_function(BenchmarkId::new("rms_norm", &id), |b| {
        b.iter(|| {
            std::hint::black_box(norm.forward(x.clone()));
            sync();
        })
    });
    // The same chain op by op (what `fused` replaces where it can), measured as the peer.
    g.bench_function(BenchmarkId::new("rms_norm_ops", &id), |b| {
        b.iter(|| {
            let xf = x.clone().cast(DType::F32);
            let var = xf.clone().powi_scalar(2).mean_dim(2);
            let y = (xf * (var + 1e-5).sqrt().recip()).cast(dt) * w.clone().unsqueeze::<3>();
            std::hint::black_box(y);
            sync();
        })
    });
    // Query heads split out of the stacked q/k/v projection with RoPE applied: fused, and as split + rope::apply.
    let qkv = random::<B, 3>([sh.batch, sh.seq, (nh + 2 * nkv) * d], 1.0, dt, device);
    let cos = random::<B, 4>([sh.batch, 1, sh.seq, d], 1.0, dt, device);
    let sin = random::<B, 4>([sh.batch, 1, sh.seq, d], 1.0, dt, device);
    g.throughput(Throughput::Bytes(2 * bytes(tokens * nh * d)));
    let id = format!("b{}h{nh}s{}d{d}", sh.batch, sh.seq);
    g.bench_function(BenchmarkId::new("heads_rope", &id), |b| {
        b.iter(|| {
            std::hint::black_box(heads(&qkv, 0, nh, d, Some((&cos, &sin))));
            sync();
        })
    });
    g.bench_function(BenchmarkId::new("heads_rope_ops", &id), |b| {
        b.iter(|| {
            let q = qkv
                .clone()
                .narrow(2, 0, nh * d)
                .reshape([sh.batch, sh.seq, nh, d])
                .swap_dims(1, 2);
            std::hint::black_box(rope::apply(q, &cos, &sin));
            sync();
        })
    });
    let gate_up = random::<B, 3>([sh.batch, sh.seq, 2 * sh.intermediate], 1.0, dt, device);
    let i = sh.intermediate;
    g.throughput(Throughput::Bytes(3 * bytes(tokens * i)));
    let id = format!("{tokens}x{i}");
    g.bench_function(BenchmarkId::new("silu_mul", &id), |b| {
        b.iter(|| {
            std::hint::black_box(silu_mul(gate_up.clone(), i));
            sync();
        })
    });
    g.bench_function(BenchmarkId::new("silu_mul_ops", &id), |b| {
        b.iter(|| {
            std::hint::black_box(
                activation::silu(gate_up.clone().narrow(2, 0, i)) * gate_up.clone().narrow(2, i, i),
            );
            sync();
        })
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    let kind: BackendKind = env_or("MMREASON_BENCH_BACKEND", "cpu")
        .parse()
        .unwrap_or_else(|e| panic!("MMREASON_BENCH_BACKEND: {e}"));
    let default_dtype = if kind == BackendKind::Cpu { "f32" } else { "bf16" };
    let dtype: WeightDtype = env_or("MMREASON_BENCH_DTYPE", default_dtype)
        .parse()
        .unwrap_or_else(|e| panic!("MMREASON_BENCH_DTYPE: {e}"));
    let r: Result<(), mmreason::model::ModelError> =
        mmreason::model::on_backend!(kind, run_with(c, kind, dtype));
    r.unwrap_or_else(|e| panic!("{e}"));
}

fn run_with<B: Backend>(
    c: &mut Criterion,
    kind: BackendKind,
    dtype: WeightDtype,
    device: &B::Device,
) -> Result<(), mmreason::model::ModelError> {
    bench_on::<B>(c, kind, dtype, device);
    Ok(())
}

criterion_group!(benches, bench);
criterion_main!(benches);
