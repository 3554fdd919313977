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
}

/// Measured rates (best of `repeats`).
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub config: String,
    pub params: u64,
    pub backend: String,
    pub batch: usize,
    pub prompt_len: usize,
    pub gen_len: usize,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
}

pub fn run_throughput(opts: &ThroughputOptions) -> Result<Throughput> {
    crate::on_backend!(opts.backend, throughput_on(opts))
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

fn throughput_on<B: Backend>(opts: &ThroughputOptions, device: &B::Device) -> Result<Throughput> {
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
    let v = decoder.cfg.vocab_size as u32;
    let prompt: Vec<Vec<u32>> = (0..opts.batch)
        .map(|b| {
            (0..opts.prompt_len)
                .map(|i| ((b * 7919 + i * 104_729) as u32 % (v - 3)) + 3)
                .collect()
        })
        .collect();
    let sync = |t: burn::tensor::Tensor<B, 3>| -> Result<u32> {
        // Reading one value back forces the device to finish (the only host sync per step).
        let s = t.dims()[1];
        let last = t.narrow(1, s - 1, 1).argmax(2).into_data();
        Ok(last.iter::<i64>().next().unwrap_or(0) as u32)
    };
    let (mut best_prefill, mut best_decode) = (0.0f64, 0.0f64);
    for _ in 0..opts.repeats.max(1) {
        let mut cache = KvCache::new(decoder.num_layers());
        let t0 = Instant::now();
        let logits = decoder.forward(&Batch::unpadded(prompt.clone())?, &mut cache)?;
        let mut next = sync(logits)?;
        let prefill = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        for _ in 0..opts.gen_len {
            let step = Batch {
                ids: vec![vec![next % v]; opts.batch],
                mask: vec![vec![true]; opts.batch],
            };
            next = sync(decoder.forward(&step, &mut cache)?)?;
        }
        let decode = t1.elapsed().as_secs_f64();
        best_prefill = best_prefill.max((opts.batch * opts.prompt_len) as f64 / prefill);
        if opts.gen_len > 0 {
            best_decode = best_decode.max((opts.batch * opts.gen_len) as f64 / decode);
        }
    }
    Ok(Throughput {
        config: opts.config.clone(),
        params: params(&decoder.cfg),
        backend: opts.backend.name().into(),
        batch: opts.batch,
        prompt_len: opts.prompt_len,
        gen_len: opts.gen_len,
        prefill_tok_s: best_prefill,
        decode_tok_s: best_decode,
    })
}
