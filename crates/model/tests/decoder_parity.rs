//! Logits parity with transformers (tests/fixtures/reference, made by scripts/make_fixtures.py) on the CPU
//! backend in f32: max |Δ| ≤ 1e-4 · max(1, max |ref|) over real (non-padding) positions.

#![cfg(feature = "cpu")]

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use mmreason_checkpoint::{ModelDir, Weights};
use mmreason_model::{Batch, CpuBackend, Decoder, KvCache, WeightDtype};

type B = CpuBackend;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn load(name: &str) -> Decoder<B> {
    let dir = ModelDir::open(fixtures().join("models").join(name)).unwrap();
    let cfg = dir.config.text().unwrap().clone();
    Decoder::load(
        &cfg,
        &dir.weights,
        "model.",
        "lm_head.weight",
        WeightDtype::F32,
        &Default::default(),
    )
    .unwrap()
}

struct Ref(Weights);

impl Ref {
    fn open(name: &str) -> Self {
        let p = fixtures().join("reference").join(format!("{name}.safetensors"));
        Ref(Weights::open_files(fixtures(), &[p]).unwrap())
    }
    fn ids(&self, name: &str) -> Vec<Vec<u32>> {
        let t = self.0.get(name).unwrap();
        let s = *t.shape().last().unwrap();
        t.to_i64()
            .unwrap()
            .chunks(s)
            .map(|r| r.iter().map(|&x| x as u32).collect())
            .collect()
    }
    fn f32(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let t = self.0.get(name).unwrap();
        (t.to_f32().unwrap(), t.shape().to_vec())
    }
}

fn values(t: Tensor<B, 3>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

/// Max |a − b| over rows/positions where `keep`, relative to max(1, max |b|).
fn rel_err(a: &[f32], b: &[f32], vocab: usize, keep: impl Fn(usize) -> bool) -> f32 {
    assert_eq!(a.len(), b.len());
    let mut worst = 0.0f32;
    let mut scale = 1.0f32;
    for (pos, (ra, rb)) in a.chunks(vocab).zip(b.chunks(vocab)).enumerate() {
        if !keep(pos) {
            continue;
        }
        for (x, y) in ra.iter().zip(rb) {
            worst = worst.max((x - y).abs());
            scale = scale.max(y.abs());
        }
    }
    worst / scale
}

fn check_model(name: &str) {
    let m = load(name);
    let r = Ref::open(name);
    let v = m.cfg.vocab_size;
    // Left-padded batch.
    let ids = r.ids("input_ids");
    let mask_i = r.ids("attention_mask");
    let mask: Vec<Vec<bool>> = mask_i
        .iter()
        .map(|row| row.iter().map(|&x| x == 1).collect())
        .collect();
    let s = ids[0].len();
    let got = values(
        m.forward(
            &Batch {
                ids: ids.clone(),
                mask: mask.clone(),
            },
            &mut KvCache::new(m.num_layers()),
        )
        .unwrap(),
    );
    let (want, _) = r.f32("logits");
    let flat_mask: Vec<bool> = mask.iter().flatten().copied().collect();
    let e = rel_err(&got, &want, v, |p| flat_mask[p]);
    eprintln!("{name}: padded batch rel err {e:e} over {} logits", got.len());
    assert!(e <= 1e-4, "{name}: padded batch rel err {e:e}");
    // Each row alone equals the reference for that row alone.
    for i in 0..ids.len() {
        let single = r.ids(&format!("single_{i}_input_ids"));
        let got = values(
            m.forward(
                &Batch::unpadded(single).unwrap(),
                &mut KvCache::new(m.num_layers()),
            )
            .unwrap(),
        );
        let (want, _) = r.f32(&format!("single_{i}_logits"));
        let e = rel_err(&got, &want, v, |_| true);
        assert!(e <= 1e-4, "{name}: row {i} alone rel err {e:e}");
        // Batched equals unbatched (within float reassociation).
        let batched: Vec<f32> = {
            let all = values(
                m.forward(
                    &Batch {
                        ids: ids.clone(),
                        mask: mask.clone(),
                    },
                    &mut KvCache::new(m.num_layers()),
                )
                .unwrap(),
            );
            let pad = s - got.len() / v;
            all[(i * s + pad) * v..(i + 1) * s * v].to_vec()
        };
        let e = rel_err(&batched, &got, v, |_| true);
        assert!(e <= 1e-5, "{name}: row {i} batched vs alone {e:e}");
    }
}

#[test]
fn llama_logits_match_transformers() {
    check_model("llama");
}

#[test]
fn mistral_logits_match_transformers_including_past_the_sliding_window() {
    check_model("mistral");
    let m = load("mistral");
    let r = Ref::open("mistral");
    let ids = r.ids("long_input_ids");
    assert!(ids[0].len() > m.cfg.sliding_window.unwrap());
    let got = values(
        m.forward(&Batch::unpadded(ids).unwrap(), &mut KvCache::new(m.num_layers()))
            .unwrap(),
    );
    let (want, _) = r.f32("long_logits");
    let e = rel_err(&got, &want, m.cfg.vocab_size, |_| true);
    eprintln!("mistral long: rel err {e:e}");
    assert!(e <= 1e-4, "long sequence rel err {e:e}");
}

#[test]
fn incremental_decoding_equals_the_full_forward() {
    for name in ["llama", "mistral"] {
        let m = load(name);
        let r = Ref::open(name);
        let ids = r.ids("input_ids");
        let mask: Vec<Vec<bool>> = r
            .ids("attention_mask")
            .iter()
            .map(|row| row.iter().map(|&x| x == 1).collect())
            .collect();
        let s = ids[0].len();
        let full = values(
            m.forward(
                &Batch {
                    ids: ids.clone(),
                    mask: mask.clone(),
                },
                &mut KvCache::new(m.num_layers()),
            )
            .unwrap(),
        );
        let v = m.cfg.vocab_size;
        // A cache that grows by doubling, one reserved for exactly the sequence, one reserved for more.
        for reserve in [0, s, s + 5] {
            let mut cache = KvCache::with_capacity(m.num_layers(), reserve);
            let split = 4;
            let prefix = Batch {
                ids: ids.iter().map(|r| r[..split].to_vec()).collect(),
                mask: mask.iter().map(|r| r[..split].to_vec()).collect(),
            };
            let mut steps = vec![values(m.forward(&prefix, &mut cache).unwrap())];
            for t in split..s {
                let step = Batch {
                    ids: ids.iter().map(|r| vec![r[t]]).collect(),
                    mask: mask.iter().map(|r| vec![r[t]]).collect(),
                };
                steps.push(values(m.forward(&step, &mut cache).unwrap()));
            }
            // Reassemble [B, S, V] from the steps and compare on real positions.
            let b = ids.len();
            let mut inc = vec![0.0f32; b * s * v];
            for row in 0..b {
                for p in 0..s {
                    let (chunk, len, off) = if p < split {
                        (&steps[0], split, p)
                    } else {
                        (&steps[p - split + 1], 1, 0)
                    };
                    inc[(row * s + p) * v..(row * s + p + 1) * v]
                        .copy_from_slice(&chunk[(row * len + off) * v..(row * len + off + 1) * v]);
                }
            }
            let flat_mask: Vec<bool> = mask.iter().flatten().copied().collect();
            let e = rel_err(&inc, &full, v, |p| flat_mask[p]);
            eprintln!("{name}: KV-cache decode (reserve {reserve}) vs full forward {e:e}");
            assert!(
                e <= 1e-5,
                "{name}: KV-cache decode (reserve {reserve}) vs full forward {e:e}"
            );
        }
    }
}

#[test]
fn a_vlms_language_model_runs_text_only_through_the_same_decoder() {
    let dir = ModelDir::open(fixtures().join("models/llava-1.5")).unwrap();
    let m = mmreason_model::load_decoder::<B>(&dir, WeightDtype::F32, &Default::default()).unwrap();
    assert_eq!(m.cfg.vocab_size, 32064);
    let r = Ref::open("llava-1.5");
    let ids = r.ids("text_input_ids");
    let got = values(
        m.forward(&Batch::unpadded(ids).unwrap(), &mut KvCache::new(m.num_layers()))
            .unwrap(),
    );
    let (want, _) = r.f32("text_logits_last");
    let last = &got[got.len() - 32064..];
    let e = rel_err(last, &want, 32064, |_| true);
    assert!(e <= 1e-4, "llava-1.5 text-only last logits rel err {e:e}");
}

#[test]
fn logits_file_interface_round_trips() {
    use mmreason_checkpoint::{Dtype, write_safetensors_file};
    let r = Ref::open("llama");
    let tmp = tempfile::tempdir().unwrap();
    let ids = r.0.get("input_ids").unwrap();
    let mask = r.0.get("attention_mask").unwrap();
    let inputs = tmp.path().join("in.safetensors");
    write_safetensors_file(
        &inputs,
        &[
            ("input_ids", Dtype::I64, ids.shape(), ids.bytes()),
            ("attention_mask", Dtype::I64, mask.shape(), mask.bytes()),
        ],
    )
    .unwrap();
    let out = tmp.path().join("out.safetensors");
    let rep = mmreason_model::run_logits(&mmreason_model::LogitsOptions {
        model: fixtures().join("models/llama"),
        inputs,
        out: out.clone(),
        backend: mmreason_model::BackendKind::Cpu,
        dtype: WeightDtype::F32,
    })
    .unwrap();
    assert_eq!(rep.shape, [3, 9, 512]);
    let got = Weights::open_files(tmp.path(), &[out]).unwrap();
    let logits = got.get("logits").unwrap();
    assert_eq!(
        (logits.dtype(), logits.shape()),
        (Dtype::F32, &[3usize, 9, 512][..])
    );
    let (want, _) = r.f32("logits");
    let flat_mask: Vec<bool> = r
        .ids("attention_mask")
        .iter()
        .flatten()
        .map(|&x| x == 1)
        .collect();
    let e = rel_err(&logits.to_f32().unwrap(), &want, 512, |p| flat_mask[p]);
    assert!(e <= 1e-4, "{e:e}");
    // Bad input: an id outside the vocabulary is an error naming the row, not a panic.
    let bad = tmp.path().join("bad.safetensors");
    let ids: Vec<u8> = [1i64, 999].iter().flat_map(|x| x.to_le_bytes()).collect();
    write_safetensors_file(&bad, &[("input_ids", Dtype::I64, &[1, 2], &ids)]).unwrap();
    let e = mmreason_model::run_logits(&mmreason_model::LogitsOptions {
        model: fixtures().join("models/llama"),
        inputs: bad,
        out: tmp.path().join("o2.safetensors"),
        backend: mmreason_model::BackendKind::Cpu,
        dtype: WeightDtype::F32,
    })
    .unwrap_err();
    assert!(
        e.to_string().contains("999") && e.to_string().contains("row 0"),
        "{e}"
    );
    assert!(!tmp.path().join("o2.safetensors").exists());
}

#[test]
fn missing_or_misshapen_tensors_name_the_checkpoint_key() {
    use mmreason_checkpoint::{CheckpointWriter, WriterOptions};
    let src = ModelDir::open(fixtures().join("models/llama")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for (case, victim) in [
        ("missing", "model.layers.1.mlp.up_proj.weight"),
        ("misshapen", "model.layers.0.mlp.gate_proj.weight"),
    ] {
        let dir = tmp.path().join(case);
        let mut w = CheckpointWriter::create(&dir, WriterOptions::default()).unwrap();
        for t in src.weights.tensors() {
            if t.name() == victim {
                if case == "missing" {
                    continue;
                }
                let v = t.to_f32().unwrap();
                w.add_f32(t.name(), t.dtype(), &[t.shape()[1], t.shape()[0]], &v)
                    .unwrap();
                continue;
            }
            w.add(t.name(), t.dtype(), t.shape(), t.bytes().to_vec()).unwrap();
        }
        w.copy_file(&src.root.join("config.json"), "config.json").unwrap();
        w.finish().unwrap();
        let dir = ModelDir::open(&dir).unwrap();
        let e = mmreason_model::load_decoder::<B>(&dir, WeightDtype::F32, &Default::default())
            .err()
            .unwrap();
        assert!(e.to_string().contains(victim), "{case}: {e}");
    }
}

#[test]
fn half_precision_weights_run_with_f32_softmax_and_norm_statistics() {
    let dir = ModelDir::open(fixtures().join("models/mistral")).unwrap();
    let cfg = dir.config.text().unwrap().clone();
    let r = Ref::open("mistral");
    let ids = r.ids("long_input_ids");
    let (want, _) = r.f32("long_logits");
    for (dtype, tol) in [(WeightDtype::BF16, 3e-2), (WeightDtype::F16, 5e-3)] {
        let m: Decoder<B> = Decoder::load(
            &cfg,
            &dir.weights,
            "model.",
            "lm_head.weight",
            dtype,
            &Default::default(),
        )
        .unwrap();
        let got = m
            .forward(
                &Batch::unpadded(ids.clone()).unwrap(),
                &mut KvCache::new(m.num_layers()),
            )
            .unwrap();
        let got: Vec<f32> = got.into_data().convert::<f32>().to_vec().unwrap();
        let num: f32 = got.iter().zip(&want).map(|(a, b)| (a - b) * (a - b)).sum();
        let den: f32 = want.iter().map(|b| b * b).sum();
        let rel = (num / den).sqrt();
        assert!(
            rel.is_finite() && rel <= tol,
            "{dtype:?}: relative L2 error {rel}"
        );
    }
}
