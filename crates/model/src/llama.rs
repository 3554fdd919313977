//! The Llama / Mistral decoder (Vicuna, Mistral-Instruct, and LLaVA's language model), as transformers'
//! `LlamaForCausalLM` / `MistralForCausalLM` compute it with eager attention: RMSNorm in f32, rotary
//! embeddings, grouped-query attention with an additive mask (causal, left padding, Mistral's sliding window),
//! SwiGLU MLP, untied or tied head.

use burn::tensor::{Distribution, Int, Tensor, TensorData, backend::Backend};
use mmreason_checkpoint::{DecoderConfig, TensorView};

use crate::error::{ModelError, Result};
use crate::kv_cache::KvCache;
use crate::load::{WeightDtype, load_float};
use crate::rope::Rope;
use crate::timeline::{mark, product_flop};
use crate::{fused, gemm};

/// A linear layer, its weight as the checkpoint stores it (`[out, in]`): the product `x · wᵀ` goes through
/// [`gemm::linear_nt`] (cuBLAS on CUDA, burn's matmul elsewhere).
#[derive(Debug, Clone)]
pub struct Linear<B: Backend> {
    w: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
}

impl<B: Backend> Linear<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let y = self.product(x);
        match &self.bias {
            Some(bias) => y + bias.clone().unsqueeze::<3>(),
            None => y,
        }
    }

    /// `x · wᵀ` without the bias, for callers that add it inside a fused kernel (`fused::bias_act`).
    pub fn product(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, s, i] = x.dims();
        let o = self.w.dims()[0];
        gemm::linear_nt(x.reshape([b * s, i]), &self.w).reshape([b, s, o])
    }

    pub fn bias(&self) -> Option<&Tensor<B, 1>> {
        self.bias.as_ref()
    }
}

/// Where a model's tensors come from: a name → view lookup (lets a VLM serve its language model under the
/// base LLM's names).
pub trait TensorSource {
    fn tensor(&self, name: &str) -> Result<TensorView<'_>>;
}

impl TensorSource for mmreason_checkpoint::Weights {
    fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        Ok(self.get(name)?)
    }
}

/// Where weights come from: a checkpoint, or random values (benchmarks of shapes nobody has weights for).
pub(crate) enum Init<'a> {
    Checkpoint(&'a dyn TensorSource),
    /// N(0, 0.02) for matrices, 1 for norm weights, drawn on the device.
    Random,
}

pub(crate) struct Loader<'a, B: Backend> {
    pub init: Init<'a>,
    pub dtype: WeightDtype,
    pub device: &'a B::Device,
}

impl<B: Backend> Loader<'_, B> {
    pub fn t1(&self, name: &str, n: usize) -> Result<Tensor<B, 1>> {
        match &self.init {
            Init::Checkpoint(src) => load_float(&src.tensor(name)?, [n], self.dtype, self.device),
            Init::Random => Ok(Tensor::ones([n], (self.device, self.dtype.burn()))),
        }
    }

    pub fn t2(&self, name: &str, shape: [usize; 2]) -> Result<Tensor<B, 2>> {
        match &self.init {
            Init::Checkpoint(src) => load_float(&src.tensor(name)?, shape, self.dtype, self.device),
            // Drawn in f32 and cast: not every backend draws half-precision values directly.
            Init::Random => Ok(
                Tensor::<B, 2>::random(shape, Distribution::Normal(0.0, 0.02), self.device)
                    .cast(self.dtype.burn()),
            ),
        }
    }

    pub fn linear(&self, prefix: &str, input: usize, output: usize, bias: bool) -> Result<Linear<B>> {
        let w = self.t2(&format!("{prefix}.weight"), [output, input])?;
        let bias = if bias {
            Some(self.t1(&format!("{prefix}.bias"), output)?)
        } else {
            None
        };
        Ok(Linear { w, bias })
    }
}

impl<B: Backend> Loader<'_, B> {
    /// Several linear layers with the same input stacked along the output dimension (`(prefix, out)` each).
    pub fn stacked_linear(&self, parts: &[(&str, usize)], input: usize, bias: bool) -> Result<Linear<B>> {
        let mut ws = Vec::with_capacity(parts.len());
        let mut bs = Vec::with_capacity(parts.len());
        for &(prefix, out) in parts {
            let l = self.linear(prefix, input, out, bias)?;
            ws.push(l.w);
            bs.extend(l.bias);
        }
        Ok(Linear {
            w: Tensor::cat(ws, 0),
            bias: if bias { Some(Tensor::cat(bs, 0)) } else { None },
        })
    }
}

/// RMSNorm: x · rsqrt(mean(x²) + ε) · w, the statistics in f32 (transformers' `LlamaRMSNorm`).
#[derive(Debug, Clone)]
pub struct RmsNorm<B: Backend> {
    weight: Tensor<B, 1>,
    eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// A norm with this weight `[hidden]` and ε.
    pub fn new(weight: Tensor<B, 1>, eps: f64) -> Self {
        Self { weight, eps }
    }

    /// `(x + a, forward(x + a))`: a residual sum and its norm, in one kernel on the GPU backends.
    pub fn add_forward(&self, x: Tensor<B, 3>, a: Tensor<B, 3>) -> (Tensor<B, 3>, Tensor<B, 3>) {
        fused::add_rms_norm(x, a, &self.weight, self.eps)
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        // Statistics in f32, the normalised value back in the input dtype before the weight, as
        // `LlamaRMSNorm` (a no-op cast for f32 models).
        fused::rms_norm(x, &self.weight, self.eps)
    }
}

#[derive(Debug, Clone)]
struct Layer<B: Backend> {
    input_norm: RmsNorm<B>,
    /// q_proj, k_proj and v_proj stacked into one `[(nh + 2·nkv)·d, hidden]` weight: one GEMM instead of three.
    qkv: Linear<B>,
    o: Linear<B>,
    post_norm: RmsNorm<B>,
    /// gate_proj and up_proj stacked (`[2·intermediate, hidden]`).
    gate_up: Linear<B>,
    down: Linear<B>,
}

/// A Llama-architecture decoder with its head.
#[derive(Debug, Clone)]
pub struct Decoder<B: Backend> {
    pub cfg: DecoderConfig,
    embed: Tensor<B, 2>,
    layers: Vec<Layer<B>>,
    norm: RmsNorm<B>,
    /// [vocab, hidden]
    head: Tensor<B, 2>,
    rope: Rope,
    device: B::Device,
}

/// One forward call's input: equal-length rows, left-padded, with their mask (true = real token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub ids: Vec<Vec<u32>>,
    pub mask: Vec<Vec<bool>>,
}

impl Batch {
    /// Left-pads token sequences to a common length with `pad_id`.
    pub fn left_padded(seqs: &[Vec<u32>], pad_id: u32) -> Self {
        let s = seqs.iter().map(Vec::len).max().unwrap_or(0);
        let ids = seqs
            .iter()
            .map(|x| {
                std::iter::repeat_n(pad_id, s - x.len())
                    .chain(x.iter().copied())
                    .collect()
            })
            .collect();
        let mask = seqs
            .iter()
            .map(|x| (0..s).map(|i| i >= s - x.len()).collect())
            .collect();
        Self { ids, mask }
    }

    /// Rows with no padding.
    pub fn unpadded(seqs: Vec<Vec<u32>>) -> Result<Self> {
        let s = seqs.first().map_or(0, Vec::len);
        if seqs.iter().any(|r| r.len() != s) {
            return Err(ModelError::Input(
                "rows of an unpadded batch must have equal length".into(),
            ));
        }
        let mask = seqs.iter().map(|r| vec![true; r.len()]).collect();
        Ok(Self { ids: seqs, mask })
    }
}

impl<B: Backend> Decoder<B> {
    /// Loads a decoder whose tensors are named `{prefix}embed_tokens.weight`, `{prefix}layers.{i}.…`,
    /// `{prefix}norm.weight` and `head` (`lm_head.weight`; the embedding when `tie_word_embeddings`).
    pub fn load(
        cfg: &DecoderConfig,
        src: &dyn TensorSource,
        prefix: &str,
        head: &str,
        dtype: WeightDtype,
        device: &B::Device,
    ) -> Result<Self> {
        Self::build(cfg, Init::Checkpoint(src), prefix, head, dtype, device)
    }

    /// A decoder of `cfg`'s shapes with random weights (throughput benchmarks).
    pub fn random(cfg: &DecoderConfig, dtype: WeightDtype, device: &B::Device) -> Result<Self> {
        Self::build(cfg, Init::Random, "model.", "lm_head.weight", dtype, device)
    }

    fn build(
        cfg: &DecoderConfig,
        init: Init<'_>,
        prefix: &str,
        head: &str,
        dtype: WeightDtype,
        device: &B::Device,
    ) -> Result<Self> {
        if cfg.hidden_act != "silu" {
            return Err(ModelError::Unsupported(format!(
                "hidden_act `{}` (supported: silu)",
                cfg.hidden_act
            )));
        }
        let tied_without_head = match &init {
            Init::Checkpoint(src) => cfg.tie_word_embeddings && src.tensor(head).is_err(),
            Init::Random => cfg.tie_word_embeddings,
        };
        let ld = Loader::<B> { init, dtype, device };
        let (h, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let (nh, nkv, d) = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim);
        let norm = |name: &str| -> Result<RmsNorm<B>> {
            Ok(RmsNorm {
                weight: ld.t1(name, h)?,
                eps: cfg.rms_norm_eps,
            })
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("{prefix}layers.{l}");
            let ab = cfg.attention_bias;
            layers.push(Layer {
                input_norm: norm(&format!("{p}.input_layernorm.weight"))?,
                qkv: ld.stacked_linear(
                    &[
                        (&format!("{p}.self_attn.q_proj"), nh * d),
                        (&format!("{p}.self_attn.k_proj"), nkv * d),
                        (&format!("{p}.self_attn.v_proj"), nkv * d),
                    ],
                    h,
                    ab,
                )?,
                o: ld.linear(&format!("{p}.self_attn.o_proj"), nh * d, h, ab)?,
                post_norm: norm(&format!("{p}.post_attention_layernorm.weight"))?,
                gate_up: ld.stacked_linear(
                    &[
                        (&format!("{p}.mlp.gate_proj"), i),
                        (&format!("{p}.mlp.up_proj"), i),
                    ],
                    h,
                    cfg.mlp_bias,
                )?,
                down: ld.linear(&format!("{p}.mlp.down_proj"), i, h, cfg.mlp_bias)?,
            });
        }
        let embed = ld.t2(&format!("{prefix}embed_tokens.weight"), [v, h])?;
        let head_w = if tied_without_head {
            embed.clone()
        } else {
            ld.t2(head, [v, h])?
        };
        Ok(Self {
            cfg: cfg.clone(),
            embed,
            layers,
            norm: norm(&format!("{prefix}norm.weight"))?,
            head: head_w,
            rope: Rope::new(cfg)?,
            device: device.clone(),
        })
    }

    pub fn device(&self) -> &B::Device {
        &self.device
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Token embeddings [B, S, H] (LLaVA splices image features into these).
    pub fn embed(&self, ids: &[Vec<u32>]) -> Tensor<B, 3> {
        let b = ids.len();
        let s = ids.first().map_or(0, Vec::len);
        let flat: Vec<i64> = ids.iter().flatten().map(|&t| t as i64).collect();
        let idx = Tensor::<B, 2, Int>::from_data(TensorData::new(flat, [b, s]), &self.device);
        burn::tensor::module::embedding(self.embed.clone(), idx)
    }

    /// Logits [B, S, V] for a batch, continuing `cache` (pass a fresh cache for a full forward).
    pub fn forward(&self, batch: &Batch, cache: &mut KvCache<B>) -> Result<Tensor<B, 3>> {
        Ok(self.logits(self.hidden(batch, cache)?))
    }

    /// Final hidden states [B, S, H] for a batch (callers that need logits of a few positions only apply
    /// [`Decoder::logits`] to those).
    pub fn hidden(&self, batch: &Batch, cache: &mut KvCache<B>) -> Result<Tensor<B, 3>> {
        self.check(batch)?;
        self.forward_embeds(self.embed(&batch.ids), &batch.mask, cache)
    }

    /// Final hidden states [B, S, H] (after the last norm) from input embeddings.
    pub fn forward_embeds(
        &self,
        mut x: Tensor<B, 3>,
        mask: &[Vec<bool>],
        cache: &mut KvCache<B>,
    ) -> Result<Tensor<B, 3>> {
        let [b, s, _] = x.dims();
        if mask.len() != b || mask.iter().any(|r| r.len() != s) {
            return Err(ModelError::Input(format!(
                "mask must be [{b}][{s}] like the input"
            )));
        }
        if !cache.is_empty() && cache.mask.len() != b {
            return Err(ModelError::Input(
                "cache batch size differs from the input's".into(),
            ));
        }
        let past = cache.len();
        if past + s > self.cfg.max_position_embeddings.max(1) * 64 {
            return Err(ModelError::Input(format!(
                "{} positions is far beyond max_position_embeddings {}",
                past + s,
                self.cfg.max_position_embeddings
            )));
        }
        // Position ids from the mask, as transformers' generate(): real tokens count up from 0 per row.
        let start = if past == 0 {
            vec![0; b]
        } else {
            cache.next_positions()
        };
        let positions: Vec<Vec<i64>> = mask
            .iter()
            .zip(&start)
            .map(|(row, &p0)| {
                let mut p = p0;
                row.iter()
                    .map(|&m| {
                        let here = if m { p } else { 1 };
                        if m {
                            p += 1;
                        }
                        here
                    })
                    .collect()
            })
            .collect();
        let (cos, sin) = self
            .rope
            .tables::<B>(&positions, &self.device, self.embed.dtype());
        // Key mask over cached + new positions.
        let keys: Vec<Vec<bool>> = (0..b)
            .map(|r| {
                cache
                    .mask
                    .get(r)
                    .map_or(&[][..], Vec::as_slice)
                    .iter()
                    .chain(&mask[r])
                    .copied()
                    .collect()
            })
            .collect();
        let attn_mask =
            crate::attention::AttentionMask::lazy(past + s, || self.attention_mask(&keys, past, s));
        // Only the causal triangle: no cache, no padding, the window (if any) past the prompt's end.
        let plain_causal = past == 0
            && mask.iter().all(|r| r.iter().all(|&m| m))
            && self.cfg.sliding_window.is_none_or(|w| s <= w);
        // Each residual sum is fused with the norm that follows it (the next layer's input norm, the final
        // norm after the last layer): `h` is always the normed input of what comes next.
        // `mark`: where `MMREASON_TIMELINE=1` records a forward, the end of each step (`crate::timeline`).
        let norm_before = |l: usize| self.layers.get(l).map_or(&self.norm, |n| &n.input_norm);
        mark(&x, "start", 0.0);
        let mut h = norm_before(0).forward(x.clone());
        mark(&h, "rms norm", 0.0);
        let (hidden, inter) = (self.cfg.hidden_size, self.cfg.intermediate_size);
        for (l, layer) in self.layers.iter().enumerate() {
            let a = self.attention(layer, h, &cos, &sin, (&attn_mask, plain_causal), cache, l);
            let (sum, normed) = layer.post_norm.add_forward(x, a);
            mark(&normed, "add + rms norm", 0.0);
            let gu = layer.gate_up.forward(normed);
            mark(&gu, "gate/up product", product_flop(&gu, hidden));
            let act = fused::silu_mul(gu, inter);
            mark(&act, "silu·mul", 0.0);
            let m = layer.down.forward(act);
            mark(&m, "down product", product_flop(&m, inter));
            (x, h) = norm_before(l + 1).add_forward(sum, m);
            mark(&h, "add + rms norm", 0.0);
        }
        drop(attn_mask);
        cache.mask = keys;
        Ok(h)
    }

    /// Hidden states → logits.
    pub fn logits(&self, h: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, s, hd] = h.dims();
        let v = self.head.dims()[0];
        let logits = gemm::linear_nt(h.reshape([b * s, hd]), &self.head).reshape([b, s, v]);
        mark(&logits, "lm head product", product_flop(&logits, hd));
        logits
    }

    fn check(&self, batch: &Batch) -> Result<()> {
        let v = self.cfg.vocab_size as u32;
        if batch.ids.is_empty() || batch.ids[0].is_empty() {
            return Err(ModelError::Input("empty input".into()));
        }
        if let Some((r, t)) = batch
            .ids
            .iter()
            .enumerate()
            .find_map(|(r, row)| row.iter().find(|&&t| t >= v).map(|&t| (r, t)))
        {
            return Err(ModelError::Input(format!(
                "token id {t} in row {r} is outside the vocabulary of {v}"
            )));
        }
        Ok(())
    }

    /// Additive mask [B, 1, S, past+S]: 0 where a query may attend, f32::MIN elsewhere (causal in sequence
    /// index, padded keys, and keys at or beyond `sliding_window` indices back) — transformers' masks.
    fn attention_mask(&self, keys: &[Vec<bool>], past: usize, s: usize) -> Tensor<B, 4> {
        let (b, t) = (keys.len(), past + s);
        let m = crate::attention::additive_mask(keys, past, s, self.cfg.sliding_window);
        // Kept in f32: scores and softmax are computed in f32 (as transformers' eager attention), so the mask
        // value stays finite whatever the weights' dtype.
        // Uploaded dense (`backend::dense`): every decode step's kernels read it, and burn-cuda would pitch its
        // rows.
        crate::backend::dense(m, [b, 1, s, t], &self.device, burn::tensor::DType::F32)
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        layer: &Layer<B>,
        x: Tensor<B, 3>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        (mask, plain_causal): (&crate::attention::AttentionMask<'_, B>, bool),
        cache: &mut KvCache<B>,
        l: usize,
    ) -> Tensor<B, 3> {
        let [b, s, _] = x.dims();
        let (nh, nkv, d) = (
            self.cfg.num_attention_heads,
            self.cfg.num_key_value_heads,
            self.cfg.head_dim,
        );
        let hidden = x.dims()[2];
        let qkv = layer.qkv.forward(x);
        mark(&qkv, "qkv product", product_flop(&qkv, hidden));
        // The cache hands back its storage; attention reads the first `mask.dims()[3]` positions of it. With
        // room in the storage (decode steps), the heads kernel writes the new keys and values there itself.
        let (q, k, v) = match cache.take_room(l, s) {
            Some((ks, vs, at)) => match fused::qkv_heads_into(&qkv, [nh, nkv, d], cos, sin, (ks, vs), at) {
                Ok((q, ks, vs)) => {
                    let (k, v, _) = cache.put(l, ks, vs, at + s);
                    (q, k, v)
                }
                Err((ks, vs)) => {
                    cache.put(l, ks, vs, at);
                    Self::heads_appended(&qkv, [nh, nkv, d], cos, sin, cache, l)
                }
            },
            None => Self::heads_appended(&qkv, [nh, nkv, d], cos, sin, cache, l),
        };
        mark(&q, "q/k/v heads + rope", 0.0);
        let out = crate::attention::grouped_query_attention(q, k, v, mask, plain_causal);
        // [b, nh, s, d] → [b, s, nh·d]; one query token needs no transpose (a copy kernel per layer per step).
        let out = if s == 1 {
            out.reshape([b, s, nh * d])
        } else {
            out.swap_dims(1, 2).reshape([b, s, nh * d])
        };
        mark(&out, "attention", 0.0);
        let o = layer.o.forward(out);
        mark(&o, "o product", product_flop(&o, nh * d));
        o
    }

    /// Queries, and the layer's cached keys/values after appending this step's (see `attention`).
    fn heads_appended(
        qkv: &Tensor<B, 3>,
        [nh, nkv, d]: [usize; 3],
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        cache: &mut KvCache<B>,
        l: usize,
    ) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        let (q, k, v) = fused::qkv_heads(qkv, nh, nkv, d, cos, sin);
        let (k, v, _) = cache.append(l, k, v);
        (q, k, v)
    }
}
