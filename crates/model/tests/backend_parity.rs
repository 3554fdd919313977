//! Every model path (decoder with left padding, sliding window and KV-cache decoding, CLIP tower, LLaVA-1.5,
//! LLaVA-NeXT) on every compiled backend and weight dtype, against the transformers f32 references in
//! tests/fixtures/reference.
//!
//! Bounds: f32 within 1e-3 relative L2 (the GPU issue's target) with the same argmax at ≥ 99 % of positions.
//! bf16/f16: the issue's 1e-2 relative L2 and 99 % argmax agreement are targets for trained 7B weights; the tiny
//! random fixtures have flat logits that half precision moves further — transformers itself lands 1.7e-2 from
//! its f32 logits in bf16, with 89 % argmax agreement (tests/fixtures/reference/half_precision.json, made by
//! scripts/make_half_reference.py). Half-precision cases are therefore bounded by the reference implementation's
//! own error on the same case: relative L2 ≤ max(1e-2, 2 × transformers'), argmax agreement ≥ min(0.99,
//! transformers') − 0.1. Each case prints one JSON line of figures (`PARITY {...}`), which the GPU script keeps.
//!
//! CUDA cases are `#[ignore]`d (CI has no NVIDIA GPU): `benches/gpu/run.sh` runs them with `--include-ignored`.
//! Set `MMREASON_FIXTURES` to run a test binary away from its source tree.

use std::path::PathBuf;

use burn::tensor::{Tensor, TensorData, backend::Backend};
use mmreason_checkpoint::{ModelConfig, ModelDir, Weights};
use mmreason_model::gemm::GemmImpl;
use mmreason_model::{Batch, ClipVision, KvCache, Llava, Pixels, WeightDtype, load_decoder};

fn fixtures() -> PathBuf {
    std::env::var_os("MMREASON_FIXTURES").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures"),
        PathBuf::from,
    )
}

fn reference(name: &str) -> Weights {
    Weights::open_files(
        fixtures(),
        &[fixtures().join("reference").join(format!("{name}.safetensors"))],
    )
    .unwrap()
}

fn ids(w: &Weights, name: &str) -> Vec<Vec<u32>> {
    let t = w.get(name).unwrap();
    let s = *t.shape().last().unwrap();
    t.to_i64()
        .unwrap()
        .chunks(s)
        .map(|r| r.iter().map(|&x| x as u32).collect())
        .collect()
}

fn tensor<B: Backend, const D: usize>(w: &Weights, name: &str, device: &B::Device) -> Tensor<B, D> {
    let t = w.get(name).unwrap();
    let shape: [usize; D] = t.shape().try_into().unwrap();
    Tensor::from_data(TensorData::new(t.to_f32().unwrap(), shape), device)
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// How far a backend's output is from the reference, over the rows (`width` values each) that `keep` selects.
struct Stats {
    max_rel: f64,
    rel_l2: f64,
    argmax_agree: f64,
    rows: usize,
}

fn stats(got: &[f32], want: &[f32], width: usize, keep: impl Fn(usize) -> bool) -> Stats {
    assert_eq!(got.len(), want.len());
    let (mut worst, mut scale, mut num, mut den, mut agree, mut rows) =
        (0f64, 1f64, 0f64, 0f64, 0usize, 0usize);
    for (r, (g, w)) in got.chunks(width).zip(want.chunks(width)).enumerate() {
        if !keep(r) {
            continue;
        }
        rows += 1;
        for (&a, &b) in g.iter().zip(w) {
            let (a, b) = (f64::from(a), f64::from(b));
            worst = worst.max((a - b).abs());
            scale = scale.max(b.abs());
            num += (a - b) * (a - b);
            den += b * b;
        }
        let arg = |v: &[f32]| {
            v.iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |m, (i, &x)| if x > m.1 { (i, x) } else { m },
                )
                .0
        };
        agree += usize::from(arg(g) == arg(w));
    }
    Stats {
        max_rel: worst / scale,
        rel_l2: (num / den.max(f64::MIN_POSITIVE)).sqrt(),
        argmax_agree: agree as f64 / rows.max(1) as f64,
        rows,
    }
}

#[derive(Clone, Copy)]
struct Case {
    backend: &'static str,
    dtype: WeightDtype,
    /// Whether argmax agreement is checked (logits, not hidden states).
    argmax: bool,
    /// The GEMM path that ran (set from the backend; reported in the PARITY lines).
    gemm: GemmImpl,
}

/// transformers' own half-precision error on a case: (relative L2, argmax agreement).
fn reference_half_error(dtype: WeightDtype, what: &str) -> (f64, f64) {
    let key = match dtype {
        WeightDtype::BF16 => "bf16",
        WeightDtype::F16 => "f16",
        WeightDtype::F32 => unreachable!("f32 has fixed bounds"),
    };
    let case = what.replace(" KV-cache decode", " left-padded batch");
    let text = std::fs::read_to_string(fixtures().join("reference/half_precision.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let c = &v[key][&case];
    (
        c["rel_l2"]
            .as_f64()
            .unwrap_or_else(|| panic!("half_precision.json has no {key}/{case}")),
        c["argmax_agree"].as_f64().unwrap(),
    )
}

impl Case {
    fn check(&self, what: &str, s: &Stats) {
        eprintln!(
            "PARITY {{\"backend\":\"{}\",\"dtype\":\"{:?}\",\"gemm\":\"{}\",\"what\":\"{what}\",\"max_rel\":{:e},\"rel_l2\":{:e},\"argmax_agree\":{},\"rows\":{}}}",
            self.backend,
            self.dtype,
            self.gemm.name(),
            s.max_rel,
            s.rel_l2,
            s.argmax_agree,
            s.rows
        );
        let (bound, min_agree) = match self.dtype {
            WeightDtype::F32 => (1e-3, 0.99),
            half => {
                let (l2, agree) = reference_half_error(half, what);
                (f64::max(1e-2, 2.0 * l2), agree.min(0.99) - 0.1)
            }
        };
        assert!(
            s.rel_l2 <= bound,
            "{} {:?} {what}: relative L2 {:e} > {bound:e}",
            self.backend,
            self.dtype,
            s.rel_l2
        );
        if self.argmax {
            assert!(
                s.argmax_agree >= min_agree,
                "{} {:?} {what}: argmax agrees at {:.3} of {} positions",
                self.backend,
                self.dtype,
                s.argmax_agree,
                s.rows
            );
        }
    }
}

/// The logits `[B, S, V]` of `batch` through the KV cache: a `prefill`-token forward, then one token per step,
/// reassembled; storage reserved up front as generation does, so every step writes into it in place.
fn decoded_in_steps<B: Backend>(m: &mmreason_model::Decoder<B>, batch: &Batch, prefill: usize) -> Vec<f32> {
    let (b, s) = (batch.ids.len(), batch.ids[0].len());
    let v = m.cfg.vocab_size;
    let mut cache = KvCache::with_capacity(m.num_layers(), s);
    let take = |from: usize, to: usize| Batch {
        ids: batch.ids.iter().map(|r| r[from..to].to_vec()).collect(),
        mask: batch.mask.iter().map(|r| r[from..to].to_vec()).collect(),
    };
    let mut inc = vec![0f32; b * s * v];
    let first = values(m.forward(&take(0, prefill), &mut cache).unwrap());
    for row in 0..b {
        inc[row * s * v..(row * s + prefill) * v]
            .copy_from_slice(&first[row * prefill * v..(row + 1) * prefill * v]);
    }
    for t in prefill..s {
        let step = values(m.forward(&take(t, t + 1), &mut cache).unwrap());
        for row in 0..b {
            inc[(row * s + t) * v..(row * s + t + 1) * v].copy_from_slice(&step[row * v..(row + 1) * v]);
        }
    }
    inc
}

fn decoder<B: Backend>(case: Case, device: &B::Device) {
    let case = Case {
        gemm: GemmImpl::active::<B>(),
        ..case
    };
    for name in ["llama", "mistral"] {
        let dir = ModelDir::open(fixtures().join("models").join(name)).unwrap();
        let m = load_decoder::<B>(&dir, case.dtype, device).unwrap();
        let r = reference(name);
        let v = m.cfg.vocab_size;
        let ids = ids(&r, "input_ids");
        let mask: Vec<Vec<bool>> = self::ids(&r, "attention_mask")
            .iter()
            .map(|row| row.iter().map(|&x| x == 1).collect())
            .collect();
        let flat: Vec<bool> = mask.iter().flatten().copied().collect();
        let batch = Batch {
            ids: ids.clone(),
            mask: mask.clone(),
        };
        let full = values(m.forward(&batch, &mut KvCache::new(m.num_layers())).unwrap());
        let want = r.get("logits").unwrap().to_f32().unwrap();
        case.check(
            &format!("{name} left-padded batch"),
            &stats(&full, &want, v, |p| flat[p]),
        );
        // KV-cache decoding: a 4-token prefill, then one token per step.
        let inc = decoded_in_steps(&m, &batch, 4);
        case.check(
            &format!("{name} KV-cache decode"),
            &stats(&inc, &want, v, |p| flat[p]),
        );
    }
    // Mistral past its sliding window.
    let dir = ModelDir::open(fixtures().join("models/mistral")).unwrap();
    let m = load_decoder::<B>(&dir, case.dtype, device).unwrap();
    let r = reference("mistral");
    let long = Batch::unpadded(ids(&r, "long_input_ids")).unwrap();
    let got = values(m.forward(&long, &mut KvCache::new(m.num_layers())).unwrap());
    let want = r.get("long_logits").unwrap().to_f32().unwrap();
    case.check(
        "mistral past the sliding window",
        &stats(&got, &want, m.cfg.vocab_size, |_| true),
    );
}

fn vision<B: Backend>(case: Case, device: &B::Device) {
    let case = Case {
        gemm: GemmImpl::active::<B>(),
        ..case
    };
    let dir = ModelDir::open(fixtures().join("models/clip-vision")).unwrap();
    let ModelConfig::ClipVision(cfg) = &dir.config else {
        panic!("clip-vision fixture is a CLIP vision config")
    };
    let clip = ClipVision::<B>::load(cfg, &dir.weights, "vision_model.", case.dtype, device).unwrap();
    let r = reference("clip-vision");
    let px = tensor::<B, 4>(&r, "pixel_values", device);
    let states = clip.hidden_states(px).unwrap();
    let got: Vec<f32> = states.iter().flat_map(|s| values(s.clone())).collect();
    let want = r.get("hidden_states").unwrap().to_f32().unwrap();
    // Hidden states are not logits: no argmax.
    let no_argmax = Case {
        argmax: false,
        ..case
    };
    no_argmax.check(
        "clip hidden states",
        &stats(&got, &want, cfg.hidden_size, |_| true),
    );
    for name in ["llava-1.5", "llava-next"] {
        let dir = ModelDir::open(fixtures().join("models").join(name)).unwrap();
        let m = Llava::<B>::load(&dir, case.dtype, device).unwrap();
        let r = reference(name);
        let pixels = if name == "llava-next" {
            let sizes = r
                .get("image_sizes")
                .unwrap()
                .to_i64()
                .unwrap()
                .chunks(2)
                .map(|c| (c[0] as usize, c[1] as usize))
                .collect();
            Pixels::Tiles(tensor::<B, 5>(&r, "pixel_values", device), sizes)
        } else {
            Pixels::Square(tensor::<B, 4>(&r, "pixel_values", device))
        };
        let ids = ids(&r, "input_ids");
        let mask = vec![vec![true; ids[0].len()]];
        let h = m
            .forward_hidden(
                &ids,
                &mask,
                Some(pixels),
                &mut KvCache::new(m.decoder.num_layers()),
            )
            .unwrap();
        let hs = values(h.clone());
        let want = r.get("last_hidden_state").unwrap().to_f32().unwrap();
        no_argmax.check(
            &format!("{name} last hidden state"),
            &stats(&hs, &want, m.cfg.text.hidden_size, |_| true),
        );
        let s = h.dims()[1];
        let last = values(m.decoder.logits(h.narrow(1, s - 1, 1)));
        let want = r.get("logits_last").unwrap().to_f32().unwrap();
        // One position: the bound, not an agreement rate, is the check (argmax over one row is all or nothing).
        no_argmax.check(
            &format!("{name} last logits"),
            &stats(&last, &want, want.len(), |_| true),
        );
    }
}

/// A seeded source of values uniform on (−√3·σ, √3·σ) around a centre (standard deviation σ): `draw(n, σ,
/// centre)`. No distribution crate needed; the same seed gives the same values on every machine.
#[cfg(feature = "cpu")]
fn draws(seed: u64) -> impl FnMut(usize, f32, f32) -> Vec<f32> {
    let mut state = seed;
    move |n, sigma, around| {
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let u = (state >> 40) as f32 / (1u64 << 24) as f32;
                around + (2.0 * u - 1.0) * 3f32.sqrt() * sigma
            })
            .collect()
    }
}

/// A safetensors file of f32 tensors (name, shape, centre), each drawn with σ = 0.1 around its centre.
#[cfg(feature = "cpu")]
fn write_random(
    path: &std::path::Path,
    tensors: &[(String, Vec<usize>, f32)],
    draw: &mut impl FnMut(usize, f32, f32) -> Vec<f32>,
) {
    use mmreason_checkpoint::{Dtype, writer::write_safetensors_file};
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, shape, around)| {
            draw(shape.iter().product(), 0.1, *around)
                .iter()
                .flat_map(|f| f.to_le_bytes())
                .collect()
        })
        .collect();
    let entries: Vec<(&str, Dtype, &[usize], &[u8])> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| (name.as_str(), Dtype::F32, shape.as_slice(), b.as_slice()))
        .collect();
    write_safetensors_file(path, &entries).unwrap();
}

/// The PARITY line of a case against our own CPU path, and its check against `bound`.
#[cfg(feature = "cpu")]
fn check_against_cpu<B: Backend>(backend: &str, dtype: WeightDtype, what: &str, s: &Stats, bound: f64) {
    eprintln!(
        "PARITY {{\"backend\":\"{backend}\",\"dtype\":\"{dtype:?}\",\"gemm\":\"{}\",\"what\":\"{what}\",\"max_rel\":{:e},\"rel_l2\":{:e},\"rows\":{}}}",
        GemmImpl::active::<B>().name(),
        s.max_rel,
        s.rel_l2,
        s.rows
    );
    assert!(
        s.rel_l2 <= bound,
        "{backend} {dtype:?} {what}: relative L2 {:e} > {bound:e}",
        s.rel_l2
    );
}

/// Every hidden state, one after another.
#[cfg(feature = "cpu")]
fn all_hidden<B: Backend>(states: Vec<Tensor<B, 3>>) -> Vec<f32> {
    states.into_iter().flat_map(values).collect()
}

/// CLIP's tower at heads of 64 — the head size the CUDA mma attention takes (the fixture's heads of 8 it
/// declines) — in half precision on `B` against the same tower in f32 on the CPU: 4 heads (so that the views
/// of `MMREASON_QKV_VIEWS=1` start 512 bytes apart and are read in place), random weights (σ 0.1, norm weights
/// near one) written to a safetensors file and loaded by both, two 56-pixel images (17 positions, not a whole
/// tile).
/// No transformers reference (no fixture of this size is committed): the CPU tower is the one the fixture
/// tests hold to transformers. Bound on the relative L2 over every layer's hidden states: about twice the CPU
/// backend's own error in the dtype (1.7e-2 in bf16, 2.0e-3 in f16): 4e-2 and 5e-3.
#[cfg(feature = "cpu")]
fn vision_at_heads_of_64<B: Backend>(backend: &'static str, dtypes: &[WeightDtype], device: &B::Device) {
    use mmreason_checkpoint::config::ClipVisionConfig;
    let cfg = ClipVisionConfig {
        hidden_size: 256,
        intermediate_size: 512,
        projection_dim: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_channels: 3,
        image_size: 56,
        patch_size: 14,
        hidden_act: "quick_gelu".into(),
        layer_norm_eps: 1e-5,
    };
    let (h, i, p) = (cfg.hidden_size, cfg.intermediate_size, cfg.patch_size);
    let v = "vision_model.";
    let mut tensors: Vec<(String, Vec<usize>, f32)> = vec![
        (format!("{v}embeddings.class_embedding"), vec![h], 0.0),
        (
            format!("{v}embeddings.patch_embedding.weight"),
            vec![h, 3, p, p],
            0.0,
        ),
        (
            format!("{v}embeddings.position_embedding.weight"),
            vec![17, h],
            0.0,
        ),
    ];
    for norm in ["pre_layrnorm", "post_layernorm"] {
        tensors.push((format!("{v}{norm}.weight"), vec![h], 1.0));
        tensors.push((format!("{v}{norm}.bias"), vec![h], 0.0));
    }
    for l in 0..cfg.num_hidden_layers {
        let lp = format!("{v}encoder.layers.{l}");
        for norm in ["layer_norm1", "layer_norm2"] {
            tensors.push((format!("{lp}.{norm}.weight"), vec![h], 1.0));
            tensors.push((format!("{lp}.{norm}.bias"), vec![h], 0.0));
        }
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            tensors.push((format!("{lp}.self_attn.{proj}.weight"), vec![h, h], 0.0));
            tensors.push((format!("{lp}.self_attn.{proj}.bias"), vec![h], 0.0));
        }
        tensors.push((format!("{lp}.mlp.fc1.weight"), vec![i, h], 0.0));
        tensors.push((format!("{lp}.mlp.fc1.bias"), vec![i], 0.0));
        tensors.push((format!("{lp}.mlp.fc2.weight"), vec![h, i], 0.0));
        tensors.push((format!("{lp}.mlp.fc2.bias"), vec![h], 0.0));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let mut draw = draws(0x9e37_79b9_7f4a_7c15);
    write_random(&path, &tensors, &mut draw);
    let pixels = draw(2 * 3 * 56 * 56, 1.0, 0.0);
    let weights = Weights::open_files(dir.path(), std::slice::from_ref(&path)).unwrap();
    let cpu = Default::default();
    let reference =
        ClipVision::<mmreason_model::CpuBackend>::load(&cfg, &weights, v, WeightDtype::F32, &cpu).unwrap();
    let px = Tensor::from_data(TensorData::new(pixels.clone(), [2, 3, 56, 56]), &cpu);
    let want = all_hidden(reference.hidden_states(px).unwrap());
    for &dtype in dtypes {
        let clip = ClipVision::<B>::load(&cfg, &weights, v, dtype, device).unwrap();
        let px = Tensor::from_data(TensorData::new(pixels.clone(), [2, 3, 56, 56]), device);
        let got = all_hidden(clip.hidden_states(px).unwrap());
        let bound = match dtype {
            WeightDtype::BF16 => 4e-2,
            _ => 5e-3,
        };
        check_against_cpu::<B>(
            backend,
            dtype,
            "clip hidden states, heads of 64",
            &stats(&got, &want, h, |_| true),
            bound,
        );
    }
}

/// A Mistral-shaped decoder at heads of 128 with grouped keys (2 query heads per key head) — what the CUDA mma
/// attention takes (the fixtures' heads of 8 it declines), and the decode kernel at a real head size — in half precision on
/// `B` against the same decoder in f32 on the CPU: random weights in a model directory, two rows of 70 tokens
/// (past one 64-query tile) with row 1 left-padded by 5 (an additive mask), the same rows unpadded (the causal
/// triangle from positions), and KV-cache decoding after a 60-token prefill (the decode kernel, 10 steps).
/// Logits of real tokens compared, no argmax (random weights). Bounds about twice the CPU backend's own error
/// in the dtype (relative L2 2.8e-2 in bf16, 3.3e-3 in f16 — random weights' flat logits: transformers' own bf16
/// error on the Llama fixture is 1.7e-2): 6e-2 and 7e-3.
#[cfg(feature = "cpu")]
fn decoder_at_heads_of_128<B: Backend>(backend: &'static str, dtypes: &[WeightDtype], device: &B::Device) {
    let (h, heads, kv, d, inter, vocab, layers) = (256, 2, 1, 128, 512, 96, 2);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"{{"architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_act": "silu",
            "hidden_size": {h}, "intermediate_size": {inter}, "num_attention_heads": {heads},
            "num_key_value_heads": {kv}, "head_dim": {d}, "num_hidden_layers": {layers}, "vocab_size": {vocab},
            "max_position_embeddings": 256, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
            "sliding_window": null, "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2}}"#
    );
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, f32)> = vec![
        ("model.embed_tokens.weight".into(), vec![vocab, h], 0.0),
        ("model.norm.weight".into(), vec![h], 1.0),
        ("lm_head.weight".into(), vec![vocab, h], 0.0),
    ];
    for l in 0..layers {
        let lp = format!("model.layers.{l}");
        tensors.push((format!("{lp}.input_layernorm.weight"), vec![h], 1.0));
        tensors.push((format!("{lp}.post_attention_layernorm.weight"), vec![h], 1.0));
        tensors.push((format!("{lp}.self_attn.q_proj.weight"), vec![heads * d, h], 0.0));
        tensors.push((format!("{lp}.self_attn.k_proj.weight"), vec![kv * d, h], 0.0));
        tensors.push((format!("{lp}.self_attn.v_proj.weight"), vec![kv * d, h], 0.0));
        tensors.push((format!("{lp}.self_attn.o_proj.weight"), vec![h, heads * d], 0.0));
        tensors.push((format!("{lp}.mlp.gate_proj.weight"), vec![inter, h], 0.0));
        tensors.push((format!("{lp}.mlp.up_proj.weight"), vec![inter, h], 0.0));
        tensors.push((format!("{lp}.mlp.down_proj.weight"), vec![h, inter], 0.0));
    }
    let mut draw = draws(0x2545_f491_4f6c_dd1d);
    write_random(&dir.path().join("model.safetensors"), &tensors, &mut draw);
    let model_dir = ModelDir::open(dir.path()).unwrap();
    let s = 70;
    let ids: Vec<Vec<u32>> = (0..2)
        .map(|_| {
            draw(s, 1.0, 0.0)
                .iter()
                .map(|x| ((x + 2.0) * 1000.0) as u32 % vocab as u32)
                .collect()
        })
        .collect();
    let padded = Batch {
        ids: ids.clone(),
        mask: vec![vec![true; s], (0..s).map(|i| i >= 5).collect()],
    };
    let plain = Batch {
        ids: ids.clone(),
        mask: vec![vec![true; s]; 2],
    };
    // Logits of each batch in one forward, and of the padded one with a 60-token prefill then one token per
    // step.
    fn runs<B: Backend>(m: &mmreason_model::Decoder<B>, padded: &Batch, plain: &Batch) -> [Vec<f32>; 3] {
        [
            values(m.forward(padded, &mut KvCache::new(m.num_layers())).unwrap()),
            values(m.forward(plain, &mut KvCache::new(m.num_layers())).unwrap()),
            decoded_in_steps(m, padded, 60),
        ]
    }
    let cpu = Default::default();
    let reference =
        mmreason_model::load_decoder::<mmreason_model::CpuBackend>(&model_dir, WeightDtype::F32, &cpu)
            .unwrap();
    let want = runs(&reference, &padded, &plain);
    let real: Vec<bool> = padded.mask.iter().flatten().copied().collect();
    for &dtype in dtypes {
        let m = load_decoder::<B>(&model_dir, dtype, device).unwrap();
        let got = runs(&m, &padded, &plain);
        let bound = match dtype {
            WeightDtype::BF16 => 6e-2,
            _ => 7e-3,
        };
        for (k, what) in ["left-padded batch", "unpadded batch", "KV-cache decode"]
            .iter()
            .enumerate()
        {
            let keep = |p: usize| k == 1 || real[p];
            let st = stats(&got[k], &want[k], vocab, keep);
            check_against_cpu::<B>(
                backend,
                dtype,
                &format!("decoder at heads of 128, {what}"),
                &st,
                bound,
            );
        }
    }
}

#[cfg(feature = "cpu")]
mod cpu {
    use super::*;
    use mmreason_model::CpuBackend as B;

    const BF16: Case = Case {
        backend: "cpu",
        dtype: WeightDtype::BF16,
        argmax: true,
        gemm: GemmImpl::Burn,
    };

    #[test]
    fn decoder_in_bf16() {
        decoder::<B>(BF16, &Default::default());
    }

    #[test]
    fn vision_in_bf16() {
        vision::<B>(BF16, &Default::default());
    }

    #[test]
    fn decoder_at_heads_of_128_in_bf16_f16() {
        decoder_at_heads_of_128::<B>("cpu", &[WeightDtype::BF16, WeightDtype::F16], &Default::default());
    }

    #[test]
    fn vision_at_heads_of_64_in_bf16_f16() {
        vision_at_heads_of_64::<B>("cpu", &[WeightDtype::BF16, WeightDtype::F16], &Default::default());
    }
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use super::*;
    use mmreason_model::backend::WgpuBackend as B;

    const F32: Case = Case {
        backend: "wgpu",
        dtype: WeightDtype::F32,
        argmax: true,
        gemm: GemmImpl::Burn,
    };

    #[test]
    fn decoder_in_f32() {
        decoder::<B>(F32, &Default::default());
    }

    #[test]
    fn vision_in_f32() {
        vision::<B>(F32, &Default::default());
    }

    /// f16 on wgpu: the path the flash attention kernel takes (it refuses f32). Not run by default (each
    /// kernel compiles again for f16 on lavapipe); `MMREASON_ATTENTION=flash-unit cargo test … --ignored`
    /// checks cubek's kernel inside the decoder's prefill and the CLIP tower.
    #[test]
    #[ignore = "f16 on a CPU Vulkan driver: slow; for the flash attention path (MMREASON_ATTENTION)"]
    fn decoder_and_vision_in_f16() {
        let f16 = Case {
            dtype: WeightDtype::F16,
            ..F32
        };
        decoder::<B>(f16, &Default::default());
        vision::<B>(f16, &Default::default());
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;
    use mmreason_model::backend::CudaBackend as B;

    const fn case(dtype: WeightDtype) -> Case {
        Case {
            backend: "cuda",
            dtype,
            argmax: true,
            gemm: GemmImpl::Burn,
        }
    }

    /// The heads-of-64/128 cases are there to run the mma attention inside the models: where it declines (no
    /// NVRTC, a refused variant), they would pass on the composed attention and say nothing.
    fn mma_runs_here(d: usize) {
        let device = Default::default();
        let x = Tensor::<B, 4>::zeros([1, 2, 16, d], &device).cast(burn::tensor::DType::BF16);
        assert!(
            mmreason_model::fused::mma_attention_of(&x, &x, &x, None, 16, true, 0.125).is_some(),
            "the mma attention declined heads of {d} in bf16 here"
        );
    }

    #[test]
    #[ignore = "needs an NVIDIA GPU (benches/gpu/run.sh)"]
    fn decoder_in_f32_bf16_f16() {
        mmreason_model::backend::check_cuda().expect("CUDA is available");
        decoder::<B>(case(WeightDtype::F32), &Default::default());
        decoder::<B>(case(WeightDtype::BF16), &Default::default());
        decoder::<B>(case(WeightDtype::F16), &Default::default());
    }

    #[test]
    #[ignore = "needs an NVIDIA GPU (benches/gpu/run.sh)"]
    fn vision_in_f32_bf16_f16() {
        mmreason_model::backend::check_cuda().expect("CUDA is available");
        vision::<B>(case(WeightDtype::F32), &Default::default());
        vision::<B>(case(WeightDtype::BF16), &Default::default());
        vision::<B>(case(WeightDtype::F16), &Default::default());
    }

    /// Where the mma attention (masked and causal) and the decode kernels run inside the decoder.
    #[cfg(feature = "cpu")]
    #[test]
    #[ignore = "needs an NVIDIA GPU (benches/gpu/run.sh)"]
    fn decoder_at_heads_of_128_in_bf16_f16() {
        mmreason_model::backend::check_cuda().expect("CUDA is available");
        mma_runs_here(128);
        decoder_at_heads_of_128::<B>(
            "cuda",
            &[WeightDtype::BF16, WeightDtype::F16],
            &Default::default(),
        );
    }

    /// Where the mma attention runs inside the tower (and, with `MMREASON_QKV_VIEWS=1`, reads q, k and v from
    /// the projection in place).
    #[cfg(feature = "cpu")]
    #[test]
    #[ignore = "needs an NVIDIA GPU (benches/gpu/run.sh)"]
    fn vision_at_heads_of_64_in_bf16_f16() {
        mmreason_model::backend::check_cuda().expect("CUDA is available");
        mma_runs_here(64);
        if mmreason_model::fused::qkv_views_wanted() {
            // The views of a [1, 17, 3·4·64] projection start 512 bytes apart: read in place.
            let device = Default::default();
            let qkv = Tensor::<B, 3>::zeros([1, 17, 3 * 4 * 64], &device).cast(burn::tensor::DType::BF16);
            let bias = Tensor::<B, 1>::zeros([3 * 4 * 64], &device).cast(burn::tensor::DType::BF16);
            assert!(
                mmreason_model::fused::qkv_attention_of(&qkv, 4, 64, Some(&bias), 0.125).is_some(),
                "MMREASON_QKV_VIEWS=1, but the mma kernel declined the views"
            );
        }
        vision_at_heads_of_64::<B>(
            "cuda",
            &[WeightDtype::BF16, WeightDtype::F16],
            &Default::default(),
        );
    }

    /// A prefill whose mask is only the causal triangle, on the mma kernel, never makes its mask (b·s·t values
    /// on the host, then an upload, before the first layer: `attention::AttentionMask`).
    #[test]
    #[ignore = "needs an NVIDIA GPU (benches/gpu/run.sh)"]
    fn plain_causal_prefill_never_makes_its_mask() {
        mmreason_model::backend::check_cuda().expect("CUDA is available");
        mma_runs_here(128);
        let device = Default::default();
        let x = Tensor::<B, 4>::ones([1, 2, 16, 128], &device).cast(burn::tensor::DType::BF16);
        let mask = mmreason_model::attention::AttentionMask::<B>::lazy(16, || {
            panic!("a plain causal prefill on the mma kernel made its mask")
        });
        let y = mmreason_model::attention::grouped_query_attention(x.clone(), x.clone(), x, &mask, true);
        assert_eq!(y.dims(), [1, 2, 16, 128]);
        assert!(!mask.is_made());
    }

    /// `MMREASON_TIMELINE`'s recording (`mmreason_model::timeline`): one interval per marked step of the
    /// forward, every one timed, and the marked forward's numbers those of an unmarked one.
    #[test]
    #[ignore = "needs an NVIDIA GPU (benches/gpu/run.sh)"]
    fn timeline_times_every_step_of_a_forward() {
        use mmreason_model::timeline;
        mmreason_model::backend::check_cuda().expect("CUDA is available");
        let device = Default::default();
        let check = |t: &timeline::Timeline, want: &[(&str, u64)]| {
            let got: Vec<(&str, u64)> = t.steps.iter().map(|s| (s.name.as_str(), s.count)).collect();
            assert_eq!(got, want, "{t:?}");
            assert_eq!(t.intervals as u64, want.iter().map(|w| w.1).sum::<u64>());
            assert!(t.steps.iter().all(|s| s.ms.is_finite() && s.ms >= 0.0), "{t:?}");
            assert!(t.total_ms > 0.0, "{t:?}");
            let products = t.steps.iter().filter(|s| s.name.ends_with("product"));
            assert!(
                products.clone().count() > 0 && products.clone().all(|s| s.flop > 0.0),
                "{t:?}"
            );
            println!("{}", t.markdown(None));
        };

        let dir = ModelDir::open(fixtures().join("models/mistral")).unwrap();
        let m = load_decoder::<B>(&dir, WeightDtype::BF16, &device).unwrap();
        let batch = Batch::unpadded(ids(&reference("mistral"), "input_ids")).unwrap();
        // A warm-up forward first (kernel choices settled), then the same forward unmarked and marked: a mark
        // queued out of order with the work would show as a different result.
        let _ = values(m.forward(&batch, &mut KvCache::new(m.num_layers())).unwrap());
        let plain = values(m.forward(&batch, &mut KvCache::new(m.num_layers())).unwrap());
        timeline::start();
        let marked = values(m.forward(&batch, &mut KvCache::new(m.num_layers())).unwrap());
        let t = timeline::finish().unwrap().expect("marks recorded on CUDA");
        let same = stats(&marked, &plain, m.cfg.vocab_size, |_| true);
        assert!(
            same.rel_l2 <= 1e-3,
            "the marks changed the logits: relative L2 {}",
            same.rel_l2
        );
        let l = m.num_layers() as u64;
        check(
            &t,
            &[
                ("rms norm", 1),
                ("qkv product", l),
                ("q/k/v heads + rope", l),
                ("attention", l),
                ("o product", l),
                ("add + rms norm", 2 * l),
                ("gate/up product", l),
                ("silu·mul", l),
                ("down product", l),
                ("lm head product", 1),
            ],
        );
        // Not recording: nothing kept.
        let _ = m.forward(&batch, &mut KvCache::new(m.num_layers())).unwrap();
        assert_eq!(timeline::finish(), Ok(None));

        let dir = ModelDir::open(fixtures().join("models/clip-vision")).unwrap();
        let ModelConfig::ClipVision(cfg) = &dir.config else {
            panic!("clip-vision fixture is a CLIP vision config")
        };
        let clip =
            ClipVision::<B>::load(cfg, &dir.weights, "vision_model.", WeightDtype::BF16, &device).unwrap();
        let px = tensor::<B, 4>(&reference("clip-vision"), "pixel_values", &device);
        let _ = clip.hidden_states(px.clone()).unwrap();
        let plain: Vec<f32> = clip
            .hidden_states(px.clone())
            .unwrap()
            .into_iter()
            .flat_map(values)
            .collect();
        timeline::start();
        let states = clip.hidden_states(px).unwrap();
        let marked: Vec<f32> = states.into_iter().flat_map(values).collect();
        let t = timeline::finish().unwrap().expect("marks recorded on CUDA");
        let same = stats(&marked, &plain, cfg.hidden_size, |_| true);
        assert!(
            same.rel_l2 <= 1e-3,
            "the marks changed the hidden states: relative L2 {}",
            same.rel_l2
        );
        let l = cfg.num_hidden_layers as u64;
        // The bias and head split runs on its own: without `MMREASON_QKV_VIEWS=1` the mma kernel does not read
        // the projection in place, and the fixture's heads of 8 are a size it declines anyway.
        check(
            &t,
            &[
                ("layer norm", 1),
                ("qkv product", l),
                ("q/k/v bias + heads", l),
                ("attention", l),
                ("o product", l),
                ("add + layer norm", 2 * l),
                ("fc1 product", l),
                ("bias + activation", l),
                ("fc2 product", l),
            ],
        );
    }
}
