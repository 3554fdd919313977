//! The fused GPU kernels (`fused::cube`: RMSNorm (also after a residual sum), LayerNorm, quick_gelu, SiLU·mul,
//! heads + RoPE, softmax, decode attention, skinny products) against burn's op-by-op composition of the same
//! formulas on the CPU, on shapes that are awkward for them: rows wider than a cube, widths that are not
//! multiples of it, more rows than one grid dimension holds, heads taken from the middle of a stacked
//! projection, fully masked rows, a view at an offset in a larger buffer. The model-level parity tests
//! (`backend_parity`) check them against transformers as well; this test names the kernel that breaks.
#![cfg(any(feature = "wgpu", feature = "cuda"))]

use burn::tensor::{DType, Tensor, TensorData, activation, backend::Backend};
use mmreason_model::{attention, fused, rope};

/// Deterministic values in [-2, 2) (a small LCG; no RNG state shared between backends).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

fn tensor<B: Backend, const D: usize>(v: Vec<f32>, shape: [usize; D], device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(v, shape), (device, DType::F32))
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32 values")
}

/// Largest |a − b| relative to max(1, |b|); a NaN on one side only counts as infinitely far (`f32::max`
/// would drop it), NaN on both and equal infinities as equal.
fn max_rel(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    got.iter()
        .zip(want)
        .map(|(a, b)| match (a.is_nan(), b.is_nan()) {
            (true, true) => 0.0,
            (false, false) if a == b => 0.0,
            (false, false) => {
                // ∞ against a finite value or −∞ gives NaN here: as far as can be.
                let e = (a - b).abs() / b.abs().max(1.0);
                if e.is_nan() { f32::INFINITY } else { e }
            }
            _ => f32::INFINITY,
        })
        .fold(0.0, f32::max)
}

type Cpu = burn::backend::Flex;

/// Keys or values `x` (`t` positions of `d` per sequence and head) as a cache holds them: each (sequence, head)'s
/// positions followed by unused storage up to `cap` positions, NaN so that reading it shows.
fn in_storage(x: &[f32], t: usize, cap: usize, d: usize) -> Vec<f32> {
    x.chunks(t * d)
        .flat_map(|c| {
            c.iter()
                .copied()
                .chain(std::iter::repeat_n(f32::NAN, (cap - t) * d))
        })
        .collect()
}

fn check(what: &str, got: Vec<f32>, want: Vec<f32>) {
    check_within(what, got, want, 1e-5);
}

fn check_within(what: &str, got: Vec<f32>, want: Vec<f32>, tol: f32) {
    let e = max_rel(&got, &want);
    assert!(e < tol, "{what}: max relative difference {e:e} (want < {tol:e})");
}

fn kernels<B: Backend>(device: &B::Device, planes: bool) {
    let cpu = Default::default();

    // RMSNorm: rows of 300 (> one 256-unit cube, not a multiple of it).
    let (x, w) = (values(3 * 5 * 300, 1), values(300, 2));
    let got = fused::rms_norm(
        tensor::<B, 3>(x.clone(), [3, 5, 300], device),
        &tensor(w.clone(), [300], device),
        1e-5,
    );
    let xc = tensor::<Cpu, 3>(x.clone(), [3, 5, 300], &cpu);
    let var = xc.clone().powi_scalar(2).mean_dim(2);
    let want = xc * (var + 1e-5).sqrt().recip() * tensor::<Cpu, 1>(w.clone(), [300], &cpu).unsqueeze::<3>();
    check("rms_norm", host(got), host(want));

    // Residual sum + RMSNorm: the sum, and the norm of the sum.
    let a = values(3 * 5 * 300, 14);
    let (sum, normed) = fused::add_rms_norm(
        tensor::<B, 3>(x.clone(), [3, 5, 300], device),
        tensor::<B, 3>(a.clone(), [3, 5, 300], device),
        &tensor(w.clone(), [300], device),
        1e-5,
    );
    let sc = tensor::<Cpu, 3>(x.clone(), [3, 5, 300], &cpu) + tensor::<Cpu, 3>(a, [3, 5, 300], &cpu);
    let var = sc.clone().powi_scalar(2).mean_dim(2);
    let want =
        sc.clone() * (var + 1e-5).sqrt().recip() * tensor::<Cpu, 1>(w.clone(), [300], &cpu).unsqueeze::<3>();
    check("add_rms_norm sum", host(sum), host(sc));
    check("add_rms_norm norm", host(normed), host(want));

    // The same rows as a view one value into a larger buffer: where the backend hands the kernel the view
    // itself, it must not read it in vectors (misaligned); burn-wgpu hands it an aligned copy.
    let shifted: Vec<f32> = std::iter::once(9.0).chain(x.iter().copied()).collect();
    let view = tensor::<B, 1>(shifted, [1 + 3 * 5 * 300], device)
        .narrow(0, 1, 3 * 5 * 300)
        .reshape([3, 5, 300]);
    let got = fused::rms_norm(view, &tensor(w.clone(), [300], device), 1e-5);
    let xc = tensor::<Cpu, 3>(x.clone(), [3, 5, 300], &cpu);
    let var = xc.clone().powi_scalar(2).mean_dim(2);
    let want = xc * (var + 1e-5).sqrt().recip() * tensor::<Cpu, 1>(w.clone(), [300], &cpu).unsqueeze::<3>();
    check("rms_norm of a view at an offset", host(got), host(want));

    // Greedy decoding's argmax: rows of 32 001 (a vocabulary: many values per unit, not a multiple of the
    // cube), the maximum repeated (the first wins), NaN (wins over numbers; the first NaN), every value −∞, a
    // row of one value; in f32 and a half precision (bf16 on CUDA, f16 where burn-wgpu has no bf16). Against
    // torch's rule on the host (`fused::first_max`, unit-tested beside it).
    let n = 32_001;
    let mut rows: Vec<Vec<f32>> = (0..5).map(|r| values(n, 40 + r)).collect();
    rows[1][7] = 3.0;
    rows[1][31_999] = 3.0;
    rows[1][20_000] = 3.0;
    rows[2][300] = f32::NAN;
    rows[2][12] = f32::NAN;
    rows[2][5] = 5.0;
    rows[3] = vec![f32::NEG_INFINITY; n];
    rows[4][n - 1] = 2.5;
    let half = if planes { DType::BF16 } else { DType::F16 };
    for dtype in [DType::F32, half] {
        let x = tensor::<B, 2>(rows.concat(), [5, n], device).cast(dtype);
        // Against the values as rounded to the dtype (a half precision makes new ties).
        let want: Vec<u32> = host(x.clone()).chunks(n).map(fused::first_max).collect();
        assert_eq!(
            &want[1..],
            [7, 12, 0, (n - 1) as u32],
            "the {dtype:?} reference itself"
        );
        assert_eq!(fused::argmax_rows(x), want, "argmax_rows in {dtype:?}");
    }
    let one = tensor::<B, 2>(vec![-1.5], [1, 1], device);
    assert_eq!(fused::argmax_rows(one), [0], "argmax_rows of one value");

    // LayerNorm (CLIP): the same rows, with a bias.
    let bias = values(300, 7);
    let got = fused::layer_norm(
        tensor::<B, 3>(x.clone(), [3, 5, 300], device),
        &tensor(w.clone(), [300], device),
        &tensor(bias.clone(), [300], device),
        1e-5,
    );
    let xc = tensor::<Cpu, 3>(x.clone(), [3, 5, 300], &cpu);
    let centered = xc.clone() - xc.mean_dim(2);
    let var = centered.clone().powi_scalar(2).mean_dim(2);
    let want =
        centered * (var + 1e-5).sqrt().recip() * tensor::<Cpu, 1>(w.clone(), [300], &cpu).unsqueeze::<3>()
            + tensor::<Cpu, 1>(bias.clone(), [300], &cpu).unsqueeze::<3>();
    check("layer_norm", host(got), host(want));

    // CLIP's residual sum after a product and the LayerNorm after it: `x + (y + product bias)`, then the norm.
    let (y, pb) = (values(3 * 5 * 300, 17), values(300, 18));
    let (sum, normed) = fused::bias_add_layer_norm(
        tensor::<B, 3>(y.clone(), [3, 5, 300], device),
        Some(&tensor(pb.clone(), [300], device)),
        tensor::<B, 3>(x.clone(), [3, 5, 300], device),
        [
            &tensor(w.clone(), [300], device),
            &tensor(bias.clone(), [300], device),
        ],
        1e-5,
    );
    let want_sum = tensor::<Cpu, 3>(x.clone(), [3, 5, 300], &cpu)
        + (tensor::<Cpu, 3>(y, [3, 5, 300], &cpu) + tensor::<Cpu, 1>(pb, [300], &cpu).unsqueeze::<3>());
    let want = fused::layer_norm(
        want_sum.clone(),
        &tensor(w.clone(), [300], &cpu),
        &tensor(bias.clone(), [300], &cpu),
        1e-5,
    );
    check("bias_add_layer_norm sum", host(sum), host(want_sum));
    check("bias_add_layer_norm normed", host(normed), host(want));

    // The norms over many rows (prefill, the vision tower: from 1,024 rows several rows share a cube, one plane
    // each where the device has plane operations, else a segment of shared memory each): 1,203 rows, not a
    // multiple of the rows per cube, so the last cube has rows past the end. Then rows too long for one plane to
    // hold in registers (`MMREASON_NORM=regs`: more lanes per row, a few vectors each, reduced in the row's
    // segment of shared memory): in f32, 2,100 values take 256 lanes of 3 vectors, the last lanes' past the
    // row's end; 1,100 values take 128 lanes, two rows per cube (Mistral's layout), and 9 rows leave the last
    // cube a row past the end.
    let long = |h, seed| (values(h, seed), values(h, seed + 1));
    for ([b, s, h], seed, (w, bias)) in [
        ([3, 401, 300], 21, (w.clone(), bias.clone())),
        ([2, 9, 2100], 31, long(2100, 34)),
        ([1, 9, 1100], 31, long(1100, 34)),
    ] {
        let rows = format!("{} rows of {h}", b * s);
        let (x, a, pb) = (
            values(b * s * h, seed),
            values(b * s * h, seed + 1),
            values(h, seed + 2),
        );
        let dev = |v: &[f32]| tensor::<B, 3>(v.to_vec(), [b, s, h], device);
        let cpu3 = |v: &[f32]| tensor::<Cpu, 3>(v.to_vec(), [b, s, h], &cpu);
        let (wd, bd) = (
            tensor::<B, 1>(w.clone(), [h], device),
            tensor::<B, 1>(bias.clone(), [h], device),
        );
        let (wc, bc) = (tensor::<Cpu, 1>(w, [h], &cpu), tensor::<Cpu, 1>(bias, [h], &cpu));
        let rms = |v: Tensor<Cpu, 3>| {
            let var = v.clone().powi_scalar(2).mean_dim(2);
            v * (var + 1e-5).sqrt().recip() * wc.clone().unsqueeze::<3>()
        };
        check(
            &format!("rms_norm over {rows}"),
            host(fused::rms_norm(dev(&x), &wd, 1e-5)),
            host(rms(cpu3(&x))),
        );
        let (sum, normed) = fused::add_rms_norm(dev(&x), dev(&a), &wd, 1e-5);
        let sc = cpu3(&x) + cpu3(&a);
        check(
            &format!("add_rms_norm sum over {rows}"),
            host(sum),
            host(sc.clone()),
        );
        check(
            &format!("add_rms_norm norm over {rows}"),
            host(normed),
            host(rms(sc)),
        );
        let ln = |v: Tensor<Cpu, 3>| {
            let centered = v.clone() - v.mean_dim(2);
            let var = centered.clone().powi_scalar(2).mean_dim(2);
            centered * (var + 1e-5).sqrt().recip() * wc.clone().unsqueeze::<3>() + bc.clone().unsqueeze::<3>()
        };
        check(
            &format!("layer_norm over {rows}"),
            host(fused::layer_norm(dev(&x), &wd, &bd, 1e-5)),
            host(ln(cpu3(&x))),
        );
        let (sum, normed) = fused::bias_add_layer_norm(
            dev(&a),
            Some(&tensor(pb.clone(), [h], device)),
            dev(&x),
            [&wd, &bd],
            1e-5,
        );
        let want_sum = cpu3(&x) + (cpu3(&a) + tensor::<Cpu, 1>(pb, [h], &cpu).unsqueeze::<3>());
        check(
            &format!("bias_add_layer_norm sum over {rows}"),
            host(sum),
            host(want_sum.clone()),
        );
        check(
            &format!("bias_add_layer_norm normed over {rows}"),
            host(normed),
            host(ln(want_sum)),
        );
    }

    // quick_gelu (CLIP).
    let got = fused::quick_gelu(tensor::<B, 3>(x.clone(), [3, 5, 300], device));
    let xc = tensor::<Cpu, 3>(x.clone(), [3, 5, 300], &cpu);
    check(
        "quick_gelu",
        host(got),
        host(xc.clone() * activation::sigmoid(xc * 1.702)),
    );

    // Bias, activation and residual after a product (CLIP): every combination the model uses, on rows of 300.
    let (y, r) = (values(3 * 5 * 300, 13), values(3 * 5 * 300, 14));
    for (act, residual) in [
        (fused::Act::Identity, true),
        (fused::Act::QuickGelu, false),
        (fused::Act::Identity, false),
        (fused::Act::QuickGelu, true),
    ] {
        let got = fused::bias_act(
            tensor::<B, 3>(y.clone(), [3, 5, 300], device),
            Some(&tensor(w.clone(), [300], device)),
            act,
            residual.then(|| tensor::<B, 3>(r.clone(), [3, 5, 300], device)),
        );
        let t = tensor::<Cpu, 3>(y.clone(), [3, 5, 300], &cpu)
            + tensor::<Cpu, 1>(w.clone(), [300], &cpu).unsqueeze::<3>();
        let t = match act {
            fused::Act::Identity => t,
            fused::Act::QuickGelu => t.clone() * activation::sigmoid(t * 1.702),
        };
        let want = match residual {
            true => tensor::<Cpu, 3>(r.clone(), [3, 5, 300], &cpu) + t,
            false => t,
        };
        check(
            &format!("bias_act {act:?} residual {residual}"),
            host(got),
            host(want),
        );
    }

    // SiLU·mul on [gate | up] rows of 2·77.
    let gu = values(2 * 3 * 154, 3);
    let got = fused::silu_mul(tensor::<B, 3>(gu.clone(), [2, 3, 154], device), 77);
    let g = tensor::<Cpu, 3>(gu, [2, 3, 154], &cpu);
    let want = activation::silu(g.clone().narrow(2, 0, 77)) * g.narrow(2, 77, 77);
    check("silu_mul", host(got), host(want));
    // A width the kernel reads in vectors (96: 4 or 8 values per load).
    let gu = values(2 * 3 * 192, 17);
    let got = fused::silu_mul(tensor::<B, 3>(gu.clone(), [2, 3, 192], device), 96);
    let g = tensor::<Cpu, 3>(gu, [2, 3, 192], &cpu);
    let want = activation::silu(g.clone().narrow(2, 0, 96)) * g.narrow(2, 96, 96);
    check("silu_mul in vectors", host(got), host(want));

    // Heads 4..6 (of q 4, k 2, v 2; d = 8) with RoPE, and heads 6..8 without.
    let (b, s, d) = (2, 5, 8);
    let qkv = values(b * s * 8 * d, 4);
    let angles: Vec<f32> = (0..b * s * d)
        .map(|k| ((k / d) % s) as f32 * 0.3 + (k % (d / 2)) as f32 * 0.1)
        .collect();
    let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
    let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
    let (qg, cg, sg) = (
        tensor::<B, 3>(qkv.clone(), [b, s, 8 * d], device),
        tensor::<B, 4>(cos.clone(), [b, 1, s, d], device),
        tensor::<B, 4>(sin.clone(), [b, 1, s, d], device),
    );
    let (qc, cc, sc) = (
        tensor::<Cpu, 3>(qkv, [b, s, 8 * d], &cpu),
        tensor::<Cpu, 4>(cos, [b, 1, s, d], &cpu),
        tensor::<Cpu, 4>(sin, [b, 1, s, d], &cpu),
    );
    let split = |first: usize, n: usize| {
        qc.clone()
            .narrow(2, first * d, n * d)
            .reshape([b, s, n, d])
            .swap_dims(1, 2)
    };
    let got = fused::heads(&qg, 4, 2, d, Some((&cg, &sg)));
    check(
        "heads + rope",
        host(got),
        host(rope::apply(split(4, 2), &cc, &sc)),
    );
    let got = fused::heads(&qg, 6, 2, d, None);
    check("heads", host(got), host(split(6, 2)));
    let (q, k, v) = fused::qkv_heads(&qg, 4, 2, d, &cg, &sg);
    check("qkv_heads q", host(q), host(rope::apply(split(0, 4), &cc, &sc)));
    check("qkv_heads k", host(k), host(rope::apply(split(4, 2), &cc, &sc)));
    check("qkv_heads v", host(v), host(split(6, 2)));

    // CLIP's q/k/v split with the projection's bias (3 heads each of d = 8 out of a [b, s, 3·3·8] projection).
    let (qkv3, bias3) = (values(b * s * 72, 15), values(72, 16));
    let (q, k, v) = fused::qkv_bias_heads(
        &tensor::<B, 3>(qkv3.clone(), [b, s, 72], device),
        3,
        d,
        Some(&tensor::<B, 1>(bias3.clone(), [72], device)),
    );
    let biased =
        tensor::<Cpu, 3>(qkv3, [b, s, 72], &cpu) + tensor::<Cpu, 1>(bias3, [72], &cpu).unsqueeze::<3>();
    let part = |first: usize| {
        biased
            .clone()
            .narrow(2, first * d, 3 * d)
            .reshape([b, s, 3, d])
            .swap_dims(1, 2)
    };
    check("qkv_bias_heads q", host(q), host(part(0)));
    check("qkv_bias_heads k", host(k), host(part(3)));
    check("qkv_bias_heads v", host(v), host(part(6)));

    // The same heads with keys and values written into a KV cache's storage (2 kv heads, room for 9 positions,
    // `s` new ones at position 3): those positions hold the heads, every other position keeps its value.
    let (cap, at) = (9, 3);
    let old = values(b * 2 * cap * d, 12);
    let store = || tensor::<B, 4>(old.clone(), [b, 2, cap, d], device);
    let placed = |new: Tensor<Cpu, 4>| {
        tensor::<Cpu, 4>(old.clone(), [b, 2, cap, d], &cpu).slice_assign([0..b, 0..2, at..at + s, 0..d], new)
    };
    let (q, ks, vs) = fused::qkv_heads_into(&qg, [4, 2, d], &cg, &sg, (store(), store()), at)
        .unwrap_or_else(|_| panic!("the heads kernel did not write into the stores"));
    check(
        "qkv_heads_into q",
        host(q),
        host(rope::apply(split(0, 4), &cc, &sc)),
    );
    check(
        "qkv_heads_into k",
        host(ks),
        host(placed(rope::apply(split(4, 2), &cc, &sc))),
    );
    check("qkv_heads_into v", host(vs), host(placed(split(6, 2))));
    // A store another tensor shares is handed back untouched (writing it would change that tensor too), and
    // so are stores without room.
    let (shared, other) = (store(), store());
    let keep = shared.clone();
    let back = fused::qkv_heads_into(&qg, [4, 2, d], &cg, &sg, (shared, other), at);
    let Err((ks, _)) = back else {
        panic!("a shared store must be refused");
    };
    check("refused store", host(ks), old.clone());
    check("the sharer", host(keep), old.clone());
    assert!(
        fused::qkv_heads_into(&qg, [4, 2, d], &cg, &sg, (store(), store()), cap - s + 1).is_err(),
        "stores without room must be refused"
    );

    // Masked softmax: rows of 300 with a causal-and-padding mask (one row fully masked), and 40 002 rows of 3
    // (more rows than the kernel's grid holds along x).
    for (b, h, s, t, seed) in [(2, 3, 4, 300, 5), (1, 2, 20_001, 3, 6)] {
        let scores = values(b * h * s * t, seed);
        let mask: Vec<f32> = (0..b * s * t)
            .map(|k| {
                let (row, col) = ((k / t) % s, k % t);
                if col > row + t - s.min(t) || (row == 0 && k / (s * t) == 0) {
                    f32::MIN
                } else {
                    0.0
                }
            })
            .collect();
        let got = fused::softmax_f32(
            tensor::<B, 4>(scores.clone(), [b, h, s, t], device),
            Some(&tensor::<B, 4>(mask.clone(), [b, 1, s, t], device)),
            0.125,
        );
        // The three-pass kernel (`MMREASON_SOFTMAX=passes`; the default keeps rows in registers), on the
        // same rows.
        let regs = fused::softmax_f32_with(
            &tensor::<B, 4>(scores.clone(), [b, h, s, t], device),
            Some(&tensor::<B, 4>(mask.clone(), [b, 1, s, t], device)),
            0.125,
            fused::SoftmaxKernel::Passes,
        )
        .expect("the three-pass softmax takes any row");
        let want = activation::softmax(
            tensor::<Cpu, 4>(scores, [b, h, s, t], &cpu) * 0.125 + tensor::<Cpu, 4>(mask, [b, 1, s, t], &cpu),
            3,
        );
        check(
            &format!("masked softmax [{b}, {h}, {s}, {t}]"),
            host(got),
            host(want.clone()),
        );
        check(
            &format!("masked softmax in three passes [{b}, {h}, {s}, {t}]"),
            host(regs),
            host(want),
        );
    }
    // Without a mask (CLIP), scale 1, each kernel; and rows longer than the register kernel holds (1100: the
    // three-pass kernel either way).
    for t in [577, 1100] {
        let scores = values(2 * t * 5, 8);
        let want = activation::softmax(tensor::<Cpu, 4>(scores.clone(), [1, 2, 5, t], &cpu), 3);
        let got = fused::softmax_f32(tensor::<B, 4>(scores.clone(), [1, 2, 5, t], device), None, 1.0);
        check(&format!("softmax of {t}"), host(got), host(want.clone()));
        for kernel in [fused::SoftmaxKernel::Registers, fused::SoftmaxKernel::Passes] {
            let one = fused::softmax_f32_with(
                &tensor::<B, 4>(scores.clone(), [1, 2, 5, t], device),
                None,
                1.0,
                kernel,
            )
            .expect("the softmax kernels take any row");
            check(
                &format!("softmax ({kernel:?}) of {t}"),
                host(one),
                host(want.clone()),
            );
        }
    }

    // Skinny products (decode at small batch): 1 to 3 rows, k not a multiple of what a cube reads at once (and
    // once odd: one value per load), n not a multiple of 8. Sums of up to 1000 terms in another order: 1e-4.
    let skinny = |kernel: fused::SkinnyKernel, m: usize, k: usize, n: usize, seed: u64| {
        let (x, w) = (values(m * k, seed), values(n * k, seed + 100));
        let direct = fused::skinny_linear_with(
            &tensor::<B, 2>(x.clone(), [m, k], device),
            &tensor::<B, 2>(w.clone(), [n, k], device),
            kernel,
        );
        let got = match direct {
            Some(got) => got,
            None if !planes && matches!(kernel, fused::SkinnyKernel::Plane { .. }) => return,
            None => panic!("the skinny kernel {kernel:?} did not take m = {m}"),
        };
        let want = tensor::<Cpu, 2>(x, [m, k], &cpu).matmul(tensor::<Cpu, 2>(w, [n, k], &cpu).transpose());
        check_within(
            &format!("skinny linear {kernel:?} m={m} k={k} n={n}"),
            host(got),
            host(want),
            1e-4,
        );
    };
    // Each kernel variant (`MMREASON_GEMV`): the shared-memory reduction, and the plane-per-column kernel with
    // one, four and eight loads in flight and 3, 8 and 32 columns per cube (past `n`, and n not a multiple).
    // The plane kernel needs plane operations: `planes` says whether this device must run it (CUDA) or may
    // decline (burn-wgpu without subgroups).
    let kernels = [
        fused::SkinnyKernel::Shared,
        fused::SkinnyKernel::Plane {
            unroll: 4,
            columns: 8,
        },
        fused::SkinnyKernel::Plane {
            unroll: 1,
            columns: 3,
        },
        fused::SkinnyKernel::Plane {
            unroll: 8,
            columns: 32,
        },
    ];
    for kernel in kernels {
        for (m, k, n, seed) in [(1, 300, 37, 11), (3, 1000, 10, 12), (2, 301, 9, 13)] {
            skinny(kernel, m, k, n, seed);
        }
    }
    // The multi-row kernel (decode at batch 8–32, `MMREASON_GEMV_MULTI`): rows not a multiple of its block of
    // rows (and fewer than one block), columns past the cube's groups, k odd (one value per load) and long.
    let multi = [
        fused::SkinnyKernel::Multi { rows: 8, columns: 4 },
        fused::SkinnyKernel::Multi { rows: 4, columns: 2 },
        fused::SkinnyKernel::Multi { rows: 16, columns: 1 },
    ];
    for kernel in multi {
        for (m, k, n, seed) in [
            (32, 256, 37, 21),
            (5, 1000, 70, 22),
            (13, 301, 9, 23),
            (3, 64, 5, 24),
        ] {
            skinny(kernel, m, k, n, seed);
        }
    }
    // More sums per cube than its shared memory holds: refused (the caller keeps cuBLAS), not launched.
    let (x, w) = (values(8 * 64, 25), values(9 * 64, 26));
    assert!(
        fused::skinny_linear_with(
            &tensor::<B, 2>(x, [8, 64], device),
            &tensor::<B, 2>(w, [9, 64], device),
            fused::SkinnyKernel::Multi { rows: 16, columns: 8 },
        )
        .is_none(),
        "a multi-row block of 16 × 8 per group must be refused"
    );

    // A contiguous view at an offset in a larger buffer (the generation head reads the last position of the
    // hidden states this way): the kernels must start at the view, not at the buffer.
    let (k, n) = (64, 5);
    let (full, w) = (values(3 * k, 15), values(n * k, 16));
    let got = fused::skinny_linear(
        &tensor::<B, 3>(full.clone(), [1, 3, k], device)
            .narrow(1, 2, 1)
            .reshape([1, k]),
        &tensor::<B, 2>(w.clone(), [n, k], device),
    )
    .expect("the skinny kernel takes one row");
    let want = tensor::<Cpu, 2>(full[2 * k..].to_vec(), [1, k], &cpu)
        .matmul(tensor::<Cpu, 2>(w, [n, k], &cpu).transpose());
    check_within("skinny linear on an offset view", host(got), host(want), 1e-4);

    // Decode attention: one query token over 300 cached keys (more than one cube-wide chunk) and over 5, with
    // grouped-query heads (4 query heads on 2 kv heads) and masked keys; and over 37 keys held in storage for
    // 64 (a pre-allocated cache) whose unused positions are NaN, so reading one shows. Against the
    // composition on the CPU over the cached positions alone.
    // Last, a 7B model's head size (128: two lanes per output value in the ILP kernel, 16-byte key vectors),
    // and Mistral's 4 query heads per kv head over 600 keys (three splits of the split kernel, joined; 300 is
    // two, 5 and 37 one, written directly); one query head per kv head (Llama-2) and eight (the split kernel's
    // most). Sequence 1 is left-padded over its first 5/12 keys, so that over 600 keys its first split sees
    // only masked keys. The split kernel also runs with one split (600 keys: three rounds in one cube, each
    // rescaling the last) and with four.
    for (t, cap, seed, d, nh) in [
        (5, 5, 10, 8, 4),
        (37, 64, 11, 8, 4),
        (300, 300, 9, 8, 4),
        (300, 300, 14, 8, 2),
        (40, 40, 15, 8, 16),
        (300, 320, 12, 128, 4),
        (600, 640, 13, 128, 8),
    ] {
        let (b, nkv) = (2, 2);
        let q = values(b * nh * d, seed);
        let (k, v) = (
            values(b * nkv * t * d, seed + 100),
            values(b * nkv * t * d, seed + 200),
        );
        let stored = |x: &[f32]| in_storage(x, t, cap, d);
        let mask: Vec<f32> = (0..b * t)
            .map(|i| {
                let (seq, key) = (i / t, i % t);
                if i % 7 == 3 || (seq == 1 && key < t * 5 / 12) {
                    f32::MIN
                } else {
                    0.0
                }
            })
            .collect();
        let gpu = |shape: [usize; 4], v: &[f32]| tensor::<B, 4>(v.to_vec(), shape, device);
        let want_direct = attention::grouped_query_attention(
            tensor::<Cpu, 4>(q.clone(), [b, nh, 1, d], &cpu),
            tensor::<Cpu, 4>(k.clone(), [b, nkv, t, d], &cpu),
            tensor::<Cpu, 4>(v.clone(), [b, nkv, t, d], &cpu),
            &tensor::<Cpu, 4>(mask.clone(), [b, 1, 1, t], &cpu).into(),
            false,
        );
        // Each kernel (`MMREASON_DECODE_ATTN`) directly; the model's path (the default kernel) below.
        for kernel in [
            fused::DecodeKernel::Chunked,
            fused::DecodeKernel::Ilp,
            fused::DecodeKernel::SPLIT,
            fused::DecodeKernel::Split { splits: Some(1) },
            fused::DecodeKernel::Split { splits: Some(4) },
        ] {
            let direct = fused::decode_attention_with(
                &gpu([b, nh, 1, d], &q),
                &gpu([b, nkv, cap, d], &stored(&k)),
                &gpu([b, nkv, cap, d], &stored(&v)),
                &gpu([b, 1, 1, t], &mask),
                1.0 / (d as f64).sqrt(),
                kernel,
            );
            let direct =
                direct.unwrap_or_else(|| panic!("the decode kernel {kernel:?} did not take t = {t}"));
            check(
                &format!("decode attention {kernel:?} t={t} in storage for {cap}"),
                host(direct),
                host(want_direct.clone()),
            );
        }
        let got = attention::grouped_query_attention(
            gpu([b, nh, 1, d], &q),
            gpu([b, nkv, cap, d], &stored(&k)),
            gpu([b, nkv, cap, d], &stored(&v)),
            &gpu([b, 1, 1, t], &mask).into(),
            false,
        );
        let want = attention::grouped_query_attention(
            tensor::<Cpu, 4>(q, [b, nh, 1, d], &cpu),
            tensor::<Cpu, 4>(k, [b, nkv, t, d], &cpu),
            tensor::<Cpu, 4>(v, [b, nkv, t, d], &cpu),
            &tensor::<Cpu, 4>(mask, [b, 1, 1, t], &cpu).into(),
            false,
        );
        check(
            &format!("decode attention t={t} in storage for {cap}"),
            host(got),
            host(want),
        );
    }

    // In f16 (what the 7B decoders run in): 16-byte vectors are 8 values, so the split kernel's `probs · V`
    // pass has 16 lanes of one vector each at heads of 128. Against the composition on the CPU in f32 from the
    // same f16-rounded inputs.
    let (b, nh, nkv, d, t, cap) = (2, 8, 2, 128, 600, 640);
    let half = |x: Vec<f32>| host(tensor::<Cpu, 1>(x.clone(), [x.len()], &cpu).cast(DType::F16));
    let q = half(values(b * nh * d, 16));
    let (k, v) = (
        half(values(b * nkv * t * d, 17)),
        half(values(b * nkv * t * d, 18)),
    );
    let mask: Vec<f32> = (0..b * t)
        .map(|i| if i % 5 == 1 { f32::MIN } else { 0.0 })
        .collect();
    let gpu16 = |shape: [usize; 4], x: &[f32]| tensor::<B, 4>(x.to_vec(), shape, device).cast(DType::F16);
    let want = attention::grouped_query_attention(
        tensor::<Cpu, 4>(q.clone(), [b, nh, 1, d], &cpu),
        tensor::<Cpu, 4>(k.clone(), [b, nkv, t, d], &cpu),
        tensor::<Cpu, 4>(v.clone(), [b, nkv, t, d], &cpu),
        &tensor::<Cpu, 4>(mask.clone(), [b, 1, 1, t], &cpu).into(),
        false,
    );
    for kernel in [fused::DecodeKernel::Ilp, fused::DecodeKernel::SPLIT] {
        let got = fused::decode_attention_with(
            &gpu16([b, nh, 1, d], &q),
            &gpu16([b, nkv, cap, d], &in_storage(&k, t, cap, d)),
            &gpu16([b, nkv, cap, d], &in_storage(&v, t, cap, d)),
            &tensor::<B, 4>(mask.clone(), [b, 1, 1, t], device),
            1.0 / (d as f64).sqrt(),
            kernel,
        )
        .unwrap_or_else(|| panic!("the decode kernel {kernel:?} did not take f16"));
        assert_eq!(got.dtype(), DType::F16, "decode attention {kernel:?} in f16");
        check_within(
            &format!("decode attention {kernel:?} in f16"),
            host(got),
            host(want.clone()),
            4e-3,
        );
    }
}

/// Our prefill attention kernel (`MMREASON_ATTENTION=own`, `fused::prefill_attention_with`) against the
/// composition on the CPU (`attention::grouped_query_attention` with the equivalent mask): grouped heads (4 query
/// heads on 2), 37 queries (not a multiple of a tile's rows) over 37 keys without a mask (CLIP), with the causal
/// triangle from positions (no mask read, blocks past a tile skipped), and with left padding (fully masked
/// rows: uniform weights, as the composition gives them); 8 queries continuing a cache of 45 positions held
/// in storage for 64 whose unused positions are NaN; and heads of 40 and 17 (not whole tensor-core fragments);
/// in several layouts. In f32 (the plain products: checks every index the tensor-core path uses) and in the
/// half-precision `halves` (tensor cores where the device has them). With `heads_of_128`, also the 7B decoders'
/// head size in the default layout and one other (more shared memory than lavapipe has).
///
/// With `mma`, the same cases through the mma kernel instead (`fused::mma_attention_of`, burn-cuda only), in
/// the half-precision dtypes and at the head sizes it is built for (64 and 128); it must take every one.
fn tile_attention<B: Backend>(device: &B::Device, halves: &[DType], heads_of_128: bool, mma: bool) {
    let cpu = Default::default();
    let (b, nh, nkv) = (2, 4, 2);
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Hide {
        Nothing,
        Causal,
        Padding,
    }
    // (queries, keys read, keys stored, how the keys are hidden, head size, layout: planes per cube and keys
    // per block, or the default). Each layout fits lavapipe's 32 KiB of shared memory at its head size.
    let cases = [
        (37, 37, 37, Hide::Nothing, 64, None),
        (37, 37, 37, Hide::Causal, 64, Some((1, 16))),
        (37, 37, 37, Hide::Padding, 64, Some((1, 32))),
        (8, 45, 64, Hide::Causal, 64, None),
        (8, 45, 64, Hide::Padding, 64, Some((2, 16))),
        // Heads that are not whole fragments (the tiles pad them with zeros); an odd one is read a value at a
        // time rather than in vectors. Blocks of three fragments of keys; four planes.
        (37, 37, 37, Hide::Padding, 40, Some((1, 48))),
        (37, 37, 37, Hide::Causal, 17, Some((4, 16))),
    ];
    // On CUDA also heads of 128, and at heads of 64 keys of several 64-wide blocks (the mma kernel's second
    // stage of tiles, `MMREASON_MMA_STAGES=2`, is in play from the third block on; with 32 rows per warp,
    // `MMREASON_MMA_ROWS=32`, 130 queries make a whole 128-row cube and one with a single warp's rows in it).
    let wide = [
        (37, 37, 37, Hide::Causal, 128, None),
        (37, 37, 37, Hide::Padding, 128, None),
        (70, 70, 70, Hide::Nothing, 128, Some((4, 64))),
        (130, 200, 210, Hide::Nothing, 64, None),
        (130, 200, 200, Hide::Padding, 64, None),
        (130, 130, 130, Hide::Causal, 64, None),
        (130, 200, 200, Hide::Padding, 128, None),
    ];
    let cases: Vec<_> = cases
        .into_iter()
        .chain(wide.into_iter().filter(|_| heads_of_128))
        .collect();
    let dtypes = [(DType::F32, 1e-4), (DType::F16, 1e-2), (DType::BF16, 3e-2)]
        .into_iter()
        .filter(|(dtype, _)| (*dtype == DType::F32 && !mma) || halves.contains(dtype));
    for (dtype, tol) in dtypes {
        for (i, &(s, t, cap, hide, d, layout)) in cases.iter().enumerate() {
            if mma && !matches!(d, 64 | 128) {
                continue;
            }
            let seed = 60 + 3 * i as u64;
            let layout = layout.map(|(planes, block)| fused::TileLayout { planes, block });
            // Values as the dtype holds them, so the reference starts from the same numbers.
            let round = |v: Vec<f32>| -> Vec<f32> {
                v.into_iter()
                    .map(|x| match dtype {
                        DType::F16 => half::f16::from_f32(x).to_f32(),
                        DType::BF16 => half::bf16::from_f32(x).to_f32(),
                        _ => x,
                    })
                    .collect()
            };
            let q = round(values(b * nh * s * d, seed));
            let (k, v) = (
                round(values(b * nkv * t * d, seed + 1)),
                round(values(b * nkv * t * d, seed + 2)),
            );
            let stored = |x: &[f32]| in_storage(x, t, cap, d);
            // Query i sits at position i + t − s; sequence 1 has 5 positions of left padding.
            let mask: Vec<f32> = (0..b * s * t)
                .map(|at| {
                    let (bi, i, j) = (at / (s * t), at / t % s, at % t);
                    let hidden = match hide {
                        Hide::Nothing => false,
                        Hide::Causal => j > i + t - s,
                        Hide::Padding => j > i + t - s || (bi == 1 && j < 5),
                    };
                    if hidden { f32::MIN } else { 0.0 }
                })
                .collect();
            let want = attention::grouped_query_attention(
                tensor::<Cpu, 4>(q.clone(), [b, nh, s, d], &cpu),
                tensor::<Cpu, 4>(k.clone(), [b, nkv, t, d], &cpu),
                tensor::<Cpu, 4>(v.clone(), [b, nkv, t, d], &cpu),
                &tensor::<Cpu, 4>(mask.clone(), [b, 1, s, t], &cpu).into(),
                false,
            );
            let gpu = |x: Vec<f32>, shape: [usize; 4]| tensor::<B, 4>(x, shape, device).cast(dtype);
            let mask_gpu = tensor::<B, 4>(mask, [b, 1, s, t], device);
            let (qg, kg, vg) = (
                gpu(q, [b, nh, s, d]),
                gpu(stored(&k), [b, nkv, cap, d]),
                gpu(stored(&v), [b, nkv, cap, d]),
            );
            let m = (hide == Hide::Padding).then_some(&mask_gpu);
            let scale = 1.0 / (d as f64).sqrt();
            let got = if mma {
                fused::mma_attention_of(&qg, &kg, &vg, m, t, hide == Hide::Causal, scale)
            } else {
                fused::prefill_attention_with(&qg, &kg, &vg, m, t, hide == Hide::Causal, scale, layout)
            }
            .unwrap_or_else(|| panic!("the prefill attention kernel did not take {dtype:?} s={s} t={t}"));
            check_within(
                &format!(
                    "prefill attention{} {dtype:?} s={s} t={t} in storage for {cap}, {hide:?}, d={d}, {layout:?}",
                    if mma { " (mma)" } else { "" }
                ),
                host(got.cast(DType::F32)),
                host(want),
                tol,
            );
        }
    }
}

/// cubek's flash attention (`MMREASON_ATTENTION=flash…`) against the composition on the CPU, in f16, with
/// 37 positions (not a multiple of any tile) and the CLIP head size, without and with the causal mask.
/// Returns the kinds that ran: a kind the device cannot run (no tensor cores on lavapipe) declines, and the
/// callers say which must run.
fn flash<B: Backend>(device: &B::Device, shapes: &[(usize, usize)]) -> Vec<String> {
    let mut ran = Vec::new();
    for &(s, d) in shapes {
        for way in flash_at::<B>(device, s, d) {
            if !ran.contains(&way) {
                ran.push(way);
            }
        }
    }
    // The f32 path keeps the composition (cubek stages tiles in f16).
    let q32 = tensor::<B, 4>(values(2 * 37 * 64, 44), [1, 2, 37, 64], device);
    assert!(fused::flash_attention_of(&q32, &q32, &q32, false, fused::FlashKind::Unit).is_none());
    ran
}

/// [`flash`] at `s` positions of heads of `d`: each kernel directly, and on operands padded to stages of 64
/// positions (the path shapes a kernel does not take go through: with the masking head column when not
/// causal). Returns the ways that ran ("Unit causal=false", "padded Accelerated(4) causal=true", …).
fn flash_at<B: Backend>(device: &B::Device, s: usize, d: usize) -> Vec<String> {
    let cpu = Default::default();
    let (b, h) = (2, 3);
    let n = b * h * s * d;
    // Scaled so the softmax is neither flat nor one-hot; rounded to f16 before the reference sees them.
    let f16 = |v: Vec<f32>| -> Vec<f32> {
        v.into_iter()
            .map(|x| half::f16::from_f32(0.5 * x).to_f32())
            .collect()
    };
    let (q, k, v) = (f16(values(n, 41)), f16(values(n, 42)), f16(values(n, 43)));
    let gpu = |v: &Vec<f32>| tensor::<B, 4>(v.clone(), [b, h, s, d], device).cast(DType::F16);
    let mut ran = Vec::new();
    for causal in [false, true] {
        let (qc, kc, vc) = (
            tensor::<Cpu, 4>(q.clone(), [b, h, s, d], &cpu),
            tensor::<Cpu, 4>(k.clone(), [b, h, s, d], &cpu),
            tensor::<Cpu, 4>(v.clone(), [b, h, s, d], &cpu),
        );
        let mut scores = qc.matmul(kc.swap_dims(2, 3)) / (d as f64).sqrt();
        if causal {
            let m: Vec<f32> = (0..s * s)
                .map(|i| if i % s > i / s { f32::NEG_INFINITY } else { 0.0 })
                .collect();
            scores = scores + tensor::<Cpu, 4>(m, [1, 1, s, s], &cpu);
        }
        let want = host(activation::softmax(scores, 3).matmul(vc));
        let kinds = [
            fused::FlashKind::Accelerated(4),
            fused::FlashKind::Accelerated(2),
            fused::FlashKind::Unit,
        ];
        for kind in kinds {
            let (q, k, v) = (gpu(&q), gpu(&k), gpu(&v));
            // Padded only where it pads (each shape is another kernel to compile, slow on lavapipe).
            let padded = (!s.is_multiple_of(64))
                .then(|| fused::flash_attention_padded_of(&q, &k, &v, causal, kind, 64))
                .flatten();
            let ways = [
                (
                    format!("{kind:?}"),
                    fused::flash_attention_of(&q, &k, &v, causal, kind),
                ),
                (format!("padded {kind:?}"), padded),
            ];
            for (way, got) in ways {
                let Some(got) = got else { continue };
                check_within(
                    &format!("flash attention {way} s={s} d={d} causal={causal}"),
                    host(got),
                    want.clone(),
                    1e-2,
                );
                let way = format!("{way} causal={causal}");
                if !ran.contains(&way) {
                    ran.push(way);
                }
            }
        }
    }
    ran
}

#[cfg(feature = "wgpu")]
#[test]
fn flash_attention_on_wgpu_matches_the_composition() {
    // 37 positions (whole tiles of neither kernel) and 192 (whole stages of the tensor-core kernel's 2 and 4
    // planes, which refuse other lengths) at CLIP's head size. (Mistral's head of 128 is left to CUDA: lavapipe
    // takes many minutes over the unit kernel at that size.)
    let ran = flash::<burn::backend::Wgpu>(&Default::default(), &[(37, 64), (192, 64)]);
    eprintln!("flash attention kernels that ran on wgpu: {ran:?}");
    // The unit kernel needs planes (subgroups) only, which lavapipe and every GPU have: at least it checks,
    // directly and padded.
    for way in ["Unit", "padded Unit"] {
        for causal in [false, true] {
            let way = format!("{way} causal={causal}");
            assert!(ran.contains(&way), "{way} did not run on wgpu: {ran:?}");
        }
    }
}

#[cfg(feature = "wgpu")]
#[test]
fn prefill_attention_on_wgpu_matches_the_composition() {
    // burn-wgpu has no bf16 (WGSL has none).
    tile_attention::<mmreason_model::backend::WgpuBackend>(&Default::default(), &[DType::F16], false, false);
}

#[cfg(feature = "wgpu")]
#[test]
fn fused_kernels_on_wgpu_match_the_composition() {
    kernels::<mmreason_model::backend::WgpuBackend>(&Default::default(), false);
}

#[cfg(feature = "cuda")]
#[test]
#[ignore = "needs an NVIDIA GPU (benches/gpu/run.sh)"]
fn fused_kernels_on_cuda_match_the_composition() {
    mmreason_model::backend::check_cuda().expect("CUDA is available");
    kernels::<mmreason_model::backend::CudaBackend>(&Default::default(), true);
    tile_attention::<mmreason_model::backend::CudaBackend>(
        &Default::default(),
        &[DType::F16, DType::BF16],
        true,
        false,
    );
}

/// Uploads through `backend::dense` come out with compact strides on burn-cuda, where an upload of several
/// dimensions gets pitched rows: a decode step's mask `[1, 1, 1, 129]` in f32 (516-byte rows). A pitched mask
/// made each layer's decode attention copy it, every step (run 10's profiles: 32 `CopyKernel` launches per token).
/// Also in the run of `fused_kernels_on_cuda` (the name filter of `run.sh`'s kernel steps).
#[cfg(feature = "cuda")]
#[test]
#[ignore = "needs an NVIDIA GPU (benches/gpu/run.sh)"]
fn fused_kernels_on_cuda_get_dense_uploads() {
    type C = mmreason_model::backend::CudaBackend;
    mmreason_model::backend::check_cuda().expect("CUDA is available");
    let device = Default::default();
    let strides = |t: Tensor<C, 4>| -> Vec<usize> {
        t.into_primitive()
            .tensor()
            .meta
            .strides()
            .iter()
            .copied()
            .collect()
    };
    let values: Vec<f32> = (0..129).map(|i| i as f32 * 0.25).collect();
    let plain = Tensor::<C, 4>::from_data(TensorData::new(values.clone(), [1, 1, 1, 129]), &device);
    let dense = mmreason_model::backend::dense::<C, 4>(values.clone(), [1, 1, 1, 129], &device, DType::F32);
    // What a plain upload gets (pitched or not: cubecl's choice), for the log.
    eprintln!(
        "[1, 1, 1, 129] f32: a plain upload's strides {:?}",
        strides(plain)
    );
    assert_eq!(strides(dense.clone()), [129, 129, 129, 1]);
    assert_eq!(dense.into_data().to_vec::<f32>().expect("f32 values"), values);
    // The RoPE tables of rows that share their positions, one row's repeated on the device: compact as well
    // (burn repeats a dimension of one as a view of stride 0, which every layer's heads kernel would copy).
    let cfg = mmreason_checkpoint::DecoderConfig::mistral_7b_instruct_v0_2();
    let rope = mmreason_model::rope::Rope::new(&cfg).expect("Mistral's rope");
    let row: Vec<i64> = (0..129).collect();
    let (cos, sin) = rope.tables::<C>(&[row.clone(), row.clone(), row], &device, DType::BF16);
    let d = cfg.head_dim;
    assert_eq!(strides(cos), [129 * d, 129 * d, d, 1]);
    assert_eq!(strides(sin), [129 * d, 129 * d, d, 1]);
}

/// The vision tower's attention read from its stacked projection in place, the query and value biases folded
/// into the mma kernel (`fused::qkv_attention_of`, `MMREASON_QKV_VIEWS=1`), against the projection plus its
/// bias split into heads and attended in f32 on the CPU — with and without a bias, at CLIP's head size and
/// lengths that are not whole tiles (37, 130 = a whole 128-row cube and two rows), one image and two. At 4 and
/// 8 heads of 64 each view starts at a multiple of 512 bytes, so the kernel reads them in place (burn copies a
/// slice that does not). Named apart from the mma kernel's own tests, so that the default steps of `run.sh`
/// do not wait on this opt-in path.
#[cfg(feature = "cuda")]
#[test]
#[ignore = "needs an NVIDIA GPU (benches/gpu/run.sh)"]
fn qkv_views_attention_on_cuda() {
    type C = mmreason_model::backend::CudaBackend;
    mmreason_model::backend::check_cuda().expect("CUDA is available");
    let (device, cpu) = (Default::default(), Default::default());
    for (dtype, tol) in [(DType::F16, 1e-2), (DType::BF16, 3e-2)] {
        for (i, &(b, s, nh, with_bias)) in [(2, 37, 4, true), (1, 130, 4, true), (2, 37, 8, false)]
            .iter()
            .enumerate()
        {
            let d = 64;
            let width = 3 * nh * d;
            let round = |v: Vec<f32>| -> Vec<f32> {
                v.into_iter()
                    .map(|x| match dtype {
                        DType::F16 => half::f16::from_f32(x).to_f32(),
                        _ => half::bf16::from_f32(x).to_f32(),
                    })
                    .collect()
            };
            let qkv = round(values(b * s * width, 90 + 2 * i as u64));
            let bias = round(values(width, 91 + 2 * i as u64));
            // The reference: projection + bias rounded to the dtype, as the composition adds them.
            let biased: Vec<f32> = if with_bias {
                round(
                    qkv.iter()
                        .enumerate()
                        .map(|(at, x)| x + bias[at % width])
                        .collect(),
                )
            } else {
                qkv.clone()
            };
            let x = tensor::<Cpu, 3>(biased, [b, s, width], &cpu);
            let head = |j: usize| {
                x.clone()
                    .narrow(2, j * nh * d, nh * d)
                    .reshape([b, s, nh, d])
                    .swap_dims(1, 2)
            };
            let scale = 1.0 / (d as f64).sqrt();
            let scores = head(0).matmul(head(1).swap_dims(2, 3)) * scale;
            let want = activation::softmax(scores, 3).matmul(head(2));
            let qkv_gpu = Tensor::<C, 3>::from_data(TensorData::new(qkv, [b, s, width]), &device).cast(dtype);
            let bias_gpu = Tensor::<C, 1>::from_data(TensorData::new(bias, [width]), &device).cast(dtype);
            let got = fused::qkv_attention_of(&qkv_gpu, nh, d, with_bias.then_some(&bias_gpu), scale)
                .unwrap_or_else(|| panic!("the mma kernel did not take the views ({dtype:?}, s={s})"));
            check_within(
                &format!("attention over qkv views {dtype:?} b={b} s={s} heads={nh} bias={with_bias}"),
                host(got.cast(DType::F32)),
                host(want),
                tol,
            );
        }
    }
}

#[cfg(feature = "cuda")]
#[test]
#[ignore = "needs an NVIDIA GPU (benches/gpu/run.sh)"]
fn mma_attention_on_cuda_matches_the_composition() {
    mmreason_model::backend::check_cuda().expect("CUDA is available");
    tile_attention::<mmreason_model::backend::CudaBackend>(
        &Default::default(),
        &[DType::F16, DType::BF16],
        true,
        true,
    );
}

#[cfg(feature = "cuda")]
#[test]
#[ignore = "needs an NVIDIA GPU (benches/gpu/run.sh)"]
fn flash_attention_on_cuda_matches_the_composition() {
    mmreason_model::backend::check_cuda().expect("CUDA is available");
    // As on wgpu, and 256 positions at Mistral's and Llama's head size (128).
    let ran = flash::<mmreason_model::backend::CudaBackend>(
        &Default::default(),
        &[(37, 64), (192, 64), (256, 128)],
    );
    // An H100 has tensor cores: the accelerated kernel must run there, not decline — directly (192, 256) and
    // on padded operands (37, as CLIP's 577 will).
    for way in ["Accelerated(4)", "padded Accelerated(4)", "Unit", "padded Unit"] {
        for causal in [false, true] {
            let way = format!("{way} causal={causal}");
            assert!(ran.contains(&way), "{way} did not run on CUDA: {ran:?}");
        }
    }
}

/// cubek's matmul strategies by name (`MMREASON_GEMM=cubek:NAME`) against the CPU's product, in `dtypes`, on
/// a linear layer's `x · wᵀ` (the weight a transposed view, read in place), a batched `a · bᵀ` and `a · b`,
/// at one row (decode), 4, 5 and 37 rows (not a multiple of any tile). Returns the names that ran on at
/// least one shape (a strategy the device cannot run declines, and the callers say which must run) and the
/// products that were wrong (the callers require none).
fn cubek_products<B: Backend>(
    device: &B::Device,
    names: &[&str],
    dtypes: &[(DType, f32)],
) -> (Vec<String>, Vec<String>) {
    use mmreason_model::gemm::cubek::{CubekGemm, product};
    let cpu = Default::default();
    let g = 3;
    let mut ran: Vec<String> = Vec::new();
    let mut wrong: Vec<String> = Vec::new();
    let mut check = |what: String, got: Option<Tensor<B, 2>>, want: &[f32], tol: f32, name: &str| {
        let Some(got) = got else { return };
        note(&mut wrong, &what, host(got.cast(DType::F32)), want.to_vec(), tol);
        if !ran.iter().any(|r| r == name) {
            ran.push(name.to_string());
        }
    };
    for &name in names {
        let kind = CubekGemm::parse(name).expect("a listed strategy");
        // k = 72 is an odd number of `double_unit`'s 8-wide stages on lavapipe (declined there) and a partial
        // stage of the single-stage kernels, 129 no whole number of any stage (masked by cubek), 128 an even
        // number of most; m = 1 is a vector-matrix product, n = 1 a matrix-vector one. (Each shape and dtype is
        // another kernel to compile: slow on lavapipe.)
        for (m, k, n) in [
            (37usize, 72usize, 40usize),
            (5, 128, 40),
            (1, 128, 40),
            (37, 129, 40),
            (4, 128, 1),
        ] {
            for &(dtype, tol) in dtypes {
                // Half-precision operands rounded before the reference sees them; sums of up to 129 products of
                // values in [-1, 1) stay well inside f16's range.
                let round = |v: Vec<f32>| -> Vec<f32> {
                    v.into_iter()
                        .map(|x| {
                            let x = 0.5 * x;
                            match dtype {
                                DType::F16 => half::f16::from_f32(x).to_f32(),
                                DType::BF16 => half::bf16::from_f32(x).to_f32(),
                                _ => x,
                            }
                        })
                        .collect()
                };
                let shape = format!("{m}×{k}×{n} {dtype:?}");
                let (x, w) = (round(values(m * k, 51)), round(values(n * k, 52)));
                let want = host(
                    tensor::<Cpu, 2>(x.clone(), [m, k], &cpu)
                        .matmul(tensor::<Cpu, 2>(w.clone(), [n, k], &cpu).transpose()),
                );
                let (xg, wg) = (
                    tensor::<B, 2>(x, [m, k], device).cast(dtype),
                    tensor::<B, 2>(w, [n, k], device).cast(dtype),
                );
                let got = product(&xg, &wg.transpose(), kind);
                check(format!("cubek {name} linear {shape}"), got, &want, tol, name);

                let (a, b) = (round(values(g * m * k, 53)), round(values(g * n * k, 54)));
                let (ac, bc) = (
                    tensor::<Cpu, 3>(a.clone(), [g, m, k], &cpu),
                    tensor::<Cpu, 3>(b.clone(), [g, n, k], &cpu),
                );
                let (ag, bg) = (
                    tensor::<B, 3>(a, [g, m, k], device).cast(dtype),
                    tensor::<B, 3>(b, [g, n, k], device).cast(dtype),
                );
                let flat = |t: Option<Tensor<B, 3>>| t.map(|t| t.reshape([g * m, n]));
                let want = host(ac.clone().matmul(bc.clone().swap_dims(1, 2)));
                let got = flat(product(&ag, &bg.clone().swap_dims(1, 2), kind));
                check(format!("cubek {name} a·bᵀ {shape}"), got, &want, tol, name);
                // a · b with b stored [g, k, n] (the attention output's p · v).
                let bkn = bg.swap_dims(1, 2).cast(DType::F32).into_data().convert::<f32>();
                let bkn = tensor::<B, 3>(bkn.to_vec().expect("f32"), [g, k, n], device).cast(dtype);
                let got = flat(product(&ag, &bkn, kind));
                check(format!("cubek {name} a·b {shape}"), got, &want, tol, name);
            }
        }
    }
    (ran, wrong)
}

/// Records `what` in `wrong` when `got` is further than `tol` from `want`.
fn note(wrong: &mut Vec<String>, what: &str, got: Vec<f32>, want: Vec<f32>, tol: f32) {
    let e = max_rel(&got, &want);
    if e >= tol {
        wrong.push(format!("{what}: {e:e}"));
    }
}

#[cfg(feature = "wgpu")]
#[test]
fn cubek_matmul_strategies_on_wgpu_match_the_cpu() {
    // The strategies without tensor cores (lavapipe has none; nor plane operations, which the vecmat kernels
    // need): the unit kernels must run, the matrix-vector ones where they can.
    let names = [
        "naive",
        "simple_unit",
        "double_unit",
        "simple_vecmat",
        "double_vecmat",
        "gemv_plane",
        "gemv_unit",
    ];
    let dtypes = [(DType::F32, 1e-4), (DType::F16, 2e-2)];
    let (ran, wrong) = cubek_products::<burn::backend::Wgpu>(&Default::default(), &names, &dtypes);
    eprintln!("cubek strategies that ran on wgpu: {ran:?}");
    assert!(wrong.is_empty(), "wrong products: {wrong:#?}");
    for name in ["naive", "simple_unit", "double_unit"] {
        assert!(
            ran.iter().any(|r| r == name),
            "{name} did not run on wgpu: {ran:?}"
        );
    }
}

#[cfg(feature = "cuda")]
#[test]
#[ignore = "needs an NVIDIA GPU (benches/gpu/run.sh)"]
fn cubek_matmul_strategies_on_cuda_match_the_cpu() {
    mmreason_model::backend::check_cuda().expect("CUDA is available");
    let names = mmreason_model::gemm::cubek::CubekGemm::NAMES;
    // bf16 only, the models' dtype on a GPU (each strategy, shape and dtype is another kernel to compile).
    let dtypes = [(DType::BF16, 3e-2)];
    let (ran, wrong) =
        cubek_products::<mmreason_model::backend::CudaBackend>(&Default::default(), names, &dtypes);
    eprintln!("cubek strategies that ran on CUDA: {ran:?}");
    assert!(wrong.is_empty(), "wrong products: {wrong:#?}");
    // An H100 has tensor cores and TMA: those kernels must run (on the shapes they take), not decline.
    for name in [
        "simple_unit",
        "double_unit",
        "simple_cmma",
        "simple_mma",
        "double_mma",
        "ordered_mma",
        "tma_mma",
        "specialized_tma_mma",
    ] {
        assert!(
            ran.iter().any(|r| r == name),
            "{name} did not run on CUDA: {ran:?}"
        );
    }
}

/// Our CUDA C++ few-row product (`fused::cuda_gemv_of`, `MMREASON_GEMV=cuda`) against the product on the CPU
/// from the same rounded values: 1–4 rows, column counts that are not whole cubes, depths that are not whole
/// stretches of loads, the 7B shapes of a decode step, and `x` as a view one row into a larger tensor.
#[cfg(feature = "cuda")]
#[test]
#[ignore = "needs an NVIDIA GPU (benches/gpu/run.sh)"]
fn cuda_gemv_on_cuda_matches_the_cpu() {
    type Cuda = mmreason_model::backend::CudaBackend;
    mmreason_model::backend::check_cuda().expect("CUDA is available");
    let (cpu, device) = (Default::default(), Default::default());
    let shapes = [
        (1, 37, 4104),
        (3, 16, 64),
        (4, 9, 2048),
        (1, 4096, 14336),
        (2, 6144, 4096),
    ];
    for (dtype, tol) in [(DType::F16, 2e-3), (DType::BF16, 1e-2)] {
        let round = |v: Vec<f32>| -> Vec<f32> {
            v.into_iter()
                .map(|x| match dtype {
                    DType::F16 => half::f16::from_f32(x).to_f32(),
                    _ => half::bf16::from_f32(x).to_f32(),
                })
                .collect()
        };
        for (i, &(m, n, k)) in shapes.iter().enumerate() {
            let x = round(values((m + 1) * k, 90 + i as u64));
            let w = round(
                values(n * k, 95 + i as u64)
                    .into_iter()
                    .map(|v| v * 0.05)
                    .collect(),
            );
            let want = tensor::<Cpu, 2>(x[k..].to_vec(), [m, k], &cpu)
                .matmul(tensor::<Cpu, 2>(w.clone(), [n, k], &cpu).transpose());
            let want = host(want);
            // x: rows 1..=m of a larger tensor (a view at an offset of one row).
            let xg = tensor::<Cuda, 2>(x, [m + 1, k], &device)
                .cast(dtype)
                .narrow(0, 1, m);
            let wg = tensor::<Cuda, 2>(w, [n, k], &device).cast(dtype);
            for unroll in [8, 3, 16] {
                let got = fused::cuda_gemv_of(&xg, &wg, unroll)
                    .unwrap_or_else(|| panic!("the CUDA product did not take {dtype:?} {m}×{n}×{k}"));
                // Relative to the largest output, as a dot product of 4,096+ terms in the dtype is.
                let scale = want.iter().fold(1.0f32, |a, v| a.max(v.abs()));
                let got: Vec<f32> = host(got.cast(DType::F32)).iter().map(|v| v / scale).collect();
                let want: Vec<f32> = want.iter().map(|v| v / scale).collect();
                check_within(
                    &format!("CUDA product {dtype:?} {m}×{n}×{k} unroll {unroll}"),
                    got,
                    want,
                    tol,
                );
            }
        }
    }
}
