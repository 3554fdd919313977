//! CLIP, LLaVA-1.5 and LLaVA-NeXT against transformers (tests/fixtures/reference) on the CPU backend in f32:
//! max |Δ| ≤ 1e-4 · max(1, max |ref|).

#![cfg(feature = "cpu")]

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use mmreason_checkpoint::{ModelConfig, ModelDir, Weights};
use mmreason_model::{ClipVision, CpuBackend, KvCache, Llava, Pixels, WeightDtype};

type B = CpuBackend;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn reference(name: &str) -> Weights {
    Weights::open_files(
        fixtures(),
        &[fixtures().join("reference").join(format!("{name}.safetensors"))],
    )
    .unwrap()
}

fn tensor<const D: usize>(w: &Weights, name: &str) -> Tensor<B, D> {
    let t = w.get(name).unwrap();
    let shape: [usize; D] = t.shape().try_into().unwrap();
    Tensor::from_data(TensorData::new(t.to_f32().unwrap(), shape), &Default::default())
}

fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1.0f32, |m, x| m.max(x.abs()));
    got.iter()
        .zip(want)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

fn ids(w: &Weights, name: &str) -> Vec<Vec<u32>> {
    let t = w.get(name).unwrap();
    let s = t.shape()[1];
    t.to_i64()
        .unwrap()
        .chunks(s)
        .map(|r| r.iter().map(|&x| x as u32).collect())
        .collect()
}

#[test]
fn clip_hidden_states_of_every_layer() {
    let dir = ModelDir::open(fixtures().join("models/clip-vision")).unwrap();
    let ModelConfig::ClipVision(cfg) = &dir.config else {
        panic!()
    };
    let clip = ClipVision::<B>::load(
        cfg,
        &dir.weights,
        "vision_model.",
        WeightDtype::F32,
        &Default::default(),
    )
    .unwrap();
    let r = reference("clip-vision");
    let states = clip.hidden_states(tensor::<4>(&r, "pixel_values")).unwrap();
    let want = r.get("hidden_states").unwrap();
    assert_eq!(want.shape()[0], states.len());
    let got: Vec<f32> = states
        .iter()
        .flat_map(|s| s.clone().into_data().to_vec::<f32>().unwrap())
        .collect();
    let e = rel_err(&got, &want.to_f32().unwrap());
    eprintln!("clip hidden states rel err {e:e}");
    assert!(e <= 1e-4, "{e:e}");
    let pooled = clip
        .pooled(states.last().unwrap().clone())
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let e = rel_err(&pooled, &r.get("pooler_output").unwrap().to_f32().unwrap());
    assert!(e <= 1e-4, "pooler {e:e}");
    // Wrong image size is an error, not a panic.
    let bad = Tensor::<B, 4>::zeros([1, 3, 28, 28], &Default::default());
    assert!(clip.hidden_states(bad).unwrap_err().to_string().contains("56"));
}

fn check_llava(name: &str, pixels: impl Fn(&Weights) -> Pixels<B>) {
    let dir = ModelDir::open(fixtures().join("models").join(name)).unwrap();
    let m = Llava::<B>::load(&dir, WeightDtype::F32, &Default::default()).unwrap();
    let r = reference(name);
    let ids = ids(&r, "input_ids");
    let mask = vec![vec![true; ids[0].len()]; 1];
    let h = m
        .forward_hidden(
            &ids,
            &mask,
            Some(pixels(&r)),
            &mut KvCache::new(m.decoder.num_layers()),
        )
        .unwrap();
    let got = h.clone().into_data().to_vec::<f32>().unwrap();
    let e = rel_err(&got, &r.get("last_hidden_state").unwrap().to_f32().unwrap());
    eprintln!("{name}: last hidden state rel err {e:e}");
    assert!(e <= 1e-4, "{name}: hidden {e:e}");
    let logits = m.decoder.logits(h).into_data().to_vec::<f32>().unwrap();
    let v = m.cfg.text.vocab_size;
    let e = rel_err(
        &logits[logits.len() - v..],
        &r.get("logits_last").unwrap().to_f32().unwrap(),
    );
    assert!(e <= 1e-4, "{name}: last logits {e:e}");
    // One image token too many or too few is an error naming both counts.
    let mut short = ids.clone();
    let p = short[0]
        .iter()
        .position(|&t| t == m.cfg.image_token_index)
        .unwrap();
    short[0].remove(p);
    let mask = vec![vec![true; short[0].len()]; 1];
    let e = m
        .forward_hidden(
            &short,
            &mask,
            Some(pixels(&r)),
            &mut KvCache::new(m.decoder.num_layers()),
        )
        .unwrap_err();
    assert!(e.to_string().contains("image tokens"), "{e}");
    let e = m
        .forward_hidden(
            &ids,
            &[vec![true; ids[0].len()]],
            None,
            &mut KvCache::new(m.decoder.num_layers()),
        )
        .unwrap_err();
    assert!(e.to_string().contains("no pixel_values"), "{e}");
}

#[test]
fn llava_1_5_with_an_image() {
    check_llava("llava-1.5", |r| Pixels::Square(tensor::<4>(r, "pixel_values")));
}

#[test]
fn llava_next_with_anyres_tiles() {
    check_llava("llava-next", |r| {
        let sizes: Vec<(usize, usize)> = r
            .get("image_sizes")
            .unwrap()
            .to_i64()
            .unwrap()
            .chunks(2)
            .map(|c| (c[0] as usize, c[1] as usize))
            .collect();
        Pixels::Tiles(tensor::<5>(r, "pixel_values"), sizes)
    });
}

#[test]
fn logits_file_interface_takes_pixel_values_and_image_sizes() {
    use mmreason_checkpoint::{Dtype, write_safetensors_file};
    let tmp = tempfile::tempdir().unwrap();
    let run = |model: &str, inputs: &Path| {
        let out = tmp.path().join(format!("{model}.out.safetensors"));
        mmreason_model::run_logits(&mmreason_model::LogitsOptions {
            model: fixtures().join("models").join(model),
            inputs: inputs.to_path_buf(),
            out: out.clone(),
            backend: mmreason_model::BackendKind::Cpu,
            dtype: WeightDtype::F32,
        })
        .unwrap();
        Weights::open_files(tmp.path(), &[out]).unwrap()
    };
    // LLaVA-NeXT: input_ids + tiled pixel_values + image_sizes → logits.
    let r = reference("llava-next");
    let inp = tmp.path().join("next.in.safetensors");
    let (ids, px, sz) = (
        r.get("input_ids").unwrap(),
        r.get("pixel_values").unwrap(),
        r.get("image_sizes").unwrap(),
    );
    write_safetensors_file(
        &inp,
        &[
            ("input_ids", Dtype::I64, ids.shape(), ids.bytes()),
            ("pixel_values", Dtype::F32, px.shape(), px.bytes()),
            ("image_sizes", Dtype::I64, sz.shape(), sz.bytes()),
        ],
    )
    .unwrap();
    let out = run("llava-next", &inp);
    let logits = out.get("logits").unwrap().to_f32().unwrap();
    let e = rel_err(
        &logits[logits.len() - 32064..],
        &r.get("logits_last").unwrap().to_f32().unwrap(),
    );
    assert!(e <= 1e-4, "{e:e}");
    // CLIP: pixel_values → hidden_states [L+1, N, T, H].
    let r = reference("clip-vision");
    let inp = tmp.path().join("clip.in.safetensors");
    let px = r.get("pixel_values").unwrap();
    write_safetensors_file(&inp, &[("pixel_values", Dtype::F32, px.shape(), px.bytes())]).unwrap();
    let out = run("clip-vision", &inp);
    let hs = out.get("hidden_states").unwrap();
    assert_eq!(hs.shape(), r.get("hidden_states").unwrap().shape());
    let e = rel_err(
        &hs.to_f32().unwrap(),
        &r.get("hidden_states").unwrap().to_f32().unwrap(),
    );
    assert!(e <= 1e-4, "{e:e}");
}

#[test]
fn describe_runs_end_to_end_on_both_llava_kinds() {
    for (model, tokens) in [("llava-1.5", 16), ("llava-next", 70)] {
        let d = mmreason_model::run_describe(&mmreason_model::DescribeOptions {
            model: fixtures().join("models").join(model),
            image: fixtures().join("images/rocket.jpg"),
            prompt: "What is shown?".into(),
            max_new_tokens: 4,
            backend: mmreason_model::BackendKind::Cpu,
            dtype: WeightDtype::F32,
        })
        .unwrap();
        // 640×427 → 16 features for LLaVA-1.5; 4×4 base + unpadded 2×3-tile grid + newlines for NeXT.
        assert_eq!(d.image_tokens, tokens, "{model}");
        assert!(d.prompt.contains("<image>\nWhat is shown?"));
    }
    let e = mmreason_model::run_describe(&mmreason_model::DescribeOptions {
        model: fixtures().join("models/llava-1.5"),
        image: fixtures().join("images/rocket.jpg"),
        prompt: " ".into(),
        max_new_tokens: 4,
        backend: mmreason_model::BackendKind::Cpu,
        dtype: WeightDtype::F32,
    })
    .unwrap_err();
    assert!(e.to_string().contains("empty prompt"), "{e}");
}
