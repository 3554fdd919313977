//! The `throughput` example's work: prefill and decode tokens/s of a decoder, on real or random weights.

use std::path::Path;
use std::time::Instant;

use burn::tensor::backend::Backend;
use mmreason_checkpoint::{DecoderConfig, ModelConfig};
use serde::Serialize;

use crate::backend::BackendKind;
use crate::error::{ModelError, Result};
use crate::kv_cache::KvCache;
use crate::llama::{Batch, Decoder};
use crate::load::WeightDtype;
use crate::logits::load_decoder;

/// Named shapes for `--config`: the study's models and a small CPU reference.
pub fn preset(name: &str) -> Option<DecoderConfig> {
    Some(match name {
        "llama-2-7b" | "vicuna-7b" => DecoderConfig::vicuna_7b_v1_5(),
        "mistral-7b" => DecoderConfig::mistral_7b_instruct_v0_2(),
        // ~35 M parameters (24.6 M of them embedding + head): the CPU comparison point.
        "llama-30m" => DecoderConfig {
            hidden_size: 384,
            intermediate_size: 1024,
            num_hidden_layers: 6,
            num_attention_heads: 6,
            num_key_value_heads: 6,
            head_dim: 64,
            ..DecoderConfig::vicuna_7b_v1_5()
        },
        _ => return None,
    })
}

#[derive(Debug, Clone)]
pub struct ThroughputOptions {
    /// A model directory or a preset name.
    pub config: String,
    pub random_weights: bool,
    pub batch: usize,
    pub prompt_len: usize,
    pub gen_len: usize,
    pub backend: BackendKind,
    pub dtype: WeightDtype,
    pub repeats: usize,
    /// Several (batch, prompt_len, gen_len) runs on one loaded model (GPU benchmarks: one load, one
    /// compilation); empty = the single run above.
    pub runs: Vec<[usize; 3]>,
}

impl ThroughputOptions {
    fn runs(&self) -> Vec<[usize; 3]> {
        if self.runs.is_empty() {
            vec![[self.batch, self.prompt_len, self.gen_len]]
        } else {
            self.runs.clone()
        }
    }
}

/// Measured rates (best of `repeats`). A CLIP tower reports `images_s` and no token rates.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub config: String,
    pub params: u64,
    pub backend: String,
    pub dtype: String,
    pub gemm: String,
    pub batch: usize,
    pub prompt_len: usize,
    pub gen_len: usize,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images_s: Option<f64>,
    /// Share of the best prefill's wall time spent inside `forward` on the host (issuing work; with host-ordered
    /// cuBLAS also its synchronisations) rather than waiting for the result afterwards. Near 1: the host, not
    /// the device, sets the pace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefill_host_share: Option<f64>,
    /// The same for the best decode run, over all its steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode_host_share: Option<f64>,
    /// The cuBLAS order the products asked for ([`crate::gemm::cublas_order`]); left out off CUDA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cublas_order: Option<&'static str>,
    /// cuBLAS products per order this process has made up to this row ([`crate::gemm::cublas_orders`]): shows
    /// whether a row in the stream order (the default) or `MMREASON_CUBLAS_ORDER=device|wait` fell back to the
    /// host order. Left out
    /// off CUDA.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub cublas_orders: std::collections::BTreeMap<String, u64>,
    /// Where `MMREASON_TIMELINE=1` asks (burn-cuda): the device time of one more forward (a CLIP batch, or the
    /// prefill), step by step ([`crate::timeline`]), recorded after the timed runs; left out otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<crate::timeline::Timeline>,
    /// The best timed forward's wall time in milliseconds, beside `timeline` (the same work unmarked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline_wall_ms: Option<f64>,
}

/// One more run of `work` recorded step by step where `MMREASON_TIMELINE=1` asks on burn-cuda
/// ([`crate::timeline`]); `None` otherwise (and no run). A recording that fails says why on stderr: the timed
/// figures stand without it.
fn recorded<B: Backend>(work: impl FnOnce() -> Result<()>) -> Result<Option<crate::timeline::Timeline>> {
    if !crate::timeline::wanted::<B>() {
        return Ok(None);
    }
    crate::timeline::start();
    let done = work();
    let timeline = crate::timeline::finish();
    done?;
    Ok(timeline.unwrap_or_else(|e| {
        eprintln!("mmreason: no timeline: {e}");
        None
    }))
}

/// The CLIP tower preset (`--config clip-vit-l-336`): LLaVA's vision encoder.
pub const CLIP_PRESET: &str = "clip-vit-l-336";

/// One [`Throughput`] per run of `opts`.
pub fn run_throughput(opts: &ThroughputOptions) -> Result<Vec<Throughput>> {
    if opts.config == CLIP_PRESET {
        return crate::on_backend!(opts.backend, clip_throughput_on(opts));
    }
    crate::on_backend!(opts.backend, throughput_on(opts))
}

/// Images/s of the CLIP ViT-L/14-336 tower (all layers, as LLaVA runs it up to the penultimate one).
fn clip_throughput_on<B: Backend>(opts: &ThroughputOptions, device: &B::Device) -> Result<Vec<Throughput>> {
    if !opts.random_weights {
        return Err(ModelError::Input(format!(
            "preset `{CLIP_PRESET}` has no weights: pass --random-weights"
        )));
    }
    let cfg = mmreason_checkpoint::ClipVisionConfig::vit_l_14_336();
    let clip = crate::clip::ClipVision::<B>::random(&cfg, opts.dtype, device)?;
    let s = cfg.image_size;
    let (h, i, l) = (
        cfg.hidden_size as u64,
        cfg.intermediate_size as u64,
        cfg.num_hidden_layers as u64,
    );
    let p = cfg.patch_size as u64;
    let params = l * (4 * h * h + 2 * h * i + 9 * h) + 3 * p * p * h + ((s as u64 / p).pow(2) + 3) * h;
    let mut out = Vec::new();
    for [batch, _, _] in opts.runs() {
        let pixels = burn::tensor::Tensor::<B, 4>::random(
            [batch, cfg.num_channels, s, s],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            device,
        );
        let mut best = 0.0f64;
        // One untimed run: kernel compilation and autotuning are not throughput.
        for r in 0..=opts.repeats.max(1) {
            let t0 = Instant::now();
            let states = clip.hidden_states(pixels.clone())?;
            let last = states
                .last()
                .cloned()
                .ok_or_else(|| ModelError::Input("no layers".into()))?;
            let _ = last.narrow(1, 0, 1).sum().into_data();
            if r > 0 {
                best = best.max(batch as f64 / t0.elapsed().as_secs_f64());
            }
        }
        let timeline = recorded::<B>(|| {
            let states = clip.hidden_states(pixels.clone())?;
            if let Some(last) = states.last() {
                let _ = last.clone().narrow(1, 0, 1).sum().into_data();
            }
            Ok(())
        })?;
        out.push(Throughput {
            config: opts.config.clone(),
            params,
            backend: opts.backend.name().into(),
            dtype: opts.dtype.name().into(),
            gemm: crate::gemm::GemmImpl::active::<B>().name(),
            batch,
            prompt_len: 0,
            gen_len: 0,
            prefill_tok_s: 0.0,
            decode_tok_s: 0.0,
            images_s: Some(best),
            prefill_host_share: None,
            decode_host_share: None,
            cublas_order: crate::gemm::cublas_order(),
            cublas_orders: crate::gemm::cublas_orders(),
            timeline_wall_ms: timeline.as_ref().map(|_| 1e3 * batch as f64 / best),
            timeline,
        });
    }
    Ok(out)
}

fn params(cfg: &DecoderConfig) -> u64 {
    let (h, i, v, l) = (
        cfg.hidden_size as u64,
        cfg.intermediate_size as u64,
        cfg.vocab_size as u64,
        cfg.num_hidden_layers as u64,
    );
    let (nh, nkv, d) = (
        cfg.num_attention_heads as u64,
        cfg.num_key_value_heads as u64,
        cfg.head_dim as u64,
    );
    let layer = h * nh * d * 2 + h * nkv * d * 2 + 3 * h * i + 2 * h;
    l * layer + v * h * if cfg.tie_word_embeddings { 1 } else { 2 } + h
}

fn throughput_on<B: Backend>(opts: &ThroughputOptions, device: &B::Device) -> Result<Vec<Throughput>> {
    let decoder: Decoder<B> = match preset(&opts.config) {
        Some(cfg) => {
            if !opts.random_weights {
                return Err(ModelError::Input(format!(
                    "preset `{}` has no weights: pass --random-weights",
                    opts.config
                )));
            }
            Decoder::random(&cfg, opts.dtype, device)?
        }
        None => {
            let dir = Path::new(&opts.config);
            if opts.random_weights {
                let (cfg, _) = ModelConfig::from_file(dir.join("config.json"))?;
                let cfg = cfg
                    .text()
                    .cloned()
                    .ok_or_else(|| ModelError::Input(format!("{}: no language model", dir.display())))?;
                Decoder::random(&cfg, opts.dtype, device)?
            } else {
                load_decoder(&mmreason_checkpoint::ModelDir::open(dir)?, opts.dtype, device)?
            }
        }
    };
    let mut out = Vec::new();
    for [batch, prompt_len, gen_len] in opts.runs() {
        out.push(measure(&decoder, opts, batch, prompt_len, gen_len)?);
    }
    Ok(out)
}

fn measure<B: Backend>(
    decoder: &Decoder<B>,
    opts: &ThroughputOptions,
    batch: usize,
    prompt_len: usize,
    gen_len: usize,
) -> Result<Throughput> {
    let v = decoder.cfg.vocab_size as u32;
    let prompt: Vec<Vec<u32>> = (0..batch)
        .map(|b| {
            (0..prompt_len)
                .map(|i| ((b * 7919 + i * 104_729) as u32 % (v - 3)) + 3)
                .collect()
        })
        .collect();
    let sync = |t: burn::tensor::Tensor<B, 3>| -> Result<u32> {
        // Reading one value back forces the device to finish (the only host sync per step).
        let [b, s, v] = t.dims();
        let last = crate::fused::argmax_rows(t.narrow(1, s - 1, 1).reshape([b, v]));
        Ok(last.first().copied().unwrap_or(0))
    };
    let (mut best_prefill, mut best_decode) = (0.0f64, 0.0f64);
    let (mut prefill_share, mut decode_share) = (0.0f64, None);
    for _ in 0..opts.repeats.max(1) {
        let mut cache = KvCache::with_capacity(decoder.num_layers(), prompt_len + gen_len);
        let t0 = Instant::now();
        let logits = decoder.forward(&Batch::unpadded(prompt.clone())?, &mut cache)?;
        let issued = t0.elapsed().as_secs_f64();
        let mut next = sync(logits)?;
        let prefill = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let mut issuing = 0.0f64;
        for _ in 0..gen_len {
            let step = Batch {
                ids: vec![vec![next % v]; batch],
                mask: vec![vec![true]; batch],
            };
            let ts = Instant::now();
            let logits = decoder.forward(&step, &mut cache)?;
            issuing += ts.elapsed().as_secs_f64();
            next = sync(logits)?;
        }
        let decode = t1.elapsed().as_secs_f64();
        let rate = (batch * prompt_len) as f64 / prefill;
        if rate > best_prefill {
            (best_prefill, prefill_share) = (rate, issued / prefill);
        }
        if gen_len > 0 {
            let rate = (batch * gen_len) as f64 / decode;
            if rate > best_decode {
                (best_decode, decode_share) = (rate, Some(issuing / decode));
            }
        }
    }
    let timeline = recorded::<B>(|| {
        // The timed runs' cache, so that the work is the same.
        let mut cache = KvCache::with_capacity(decoder.num_layers(), prompt_len + gen_len);
        let logits = decoder.forward(&Batch::unpadded(prompt.clone())?, &mut cache)?;
        sync(logits).map(|_| ())
    })?;
    Ok(Throughput {
        config: opts.config.clone(),
        params: params(&decoder.cfg),
        backend: opts.backend.name().into(),
        dtype: opts.dtype.name().into(),
        gemm: crate::gemm::GemmImpl::active::<B>().name(),
        batch,
        prompt_len,
        gen_len,
        prefill_tok_s: best_prefill,
        decode_tok_s: best_decode,
        images_s: None,
        prefill_host_share: Some(prefill_share),
        decode_host_share: decode_share,
        cublas_order: crate::gemm::cublas_order(),
        cublas_orders: crate::gemm::cublas_orders(),
        timeline_wall_ms: timeline
            .as_ref()
            .map(|_| 1e3 * (batch * prompt_len) as f64 / best_prefill),
        timeline,
    })
}
