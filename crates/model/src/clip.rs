//! The CLIP vision transformer as transformers' `CLIPVisionModel` computes it: patch "convolution"
//! (stride = kernel, so a matmul over flattened patches), class token, learned position embeddings,
//! `pre_layrnorm`, pre-norm encoder layers (attention with biases; `quick_gelu` or exact GELU MLP), and the
//! hidden state after every layer (LLaVA takes the second to last).

use burn::tensor::{Tensor, activation, backend::Backend};
use mmreason_checkpoint::ClipVisionConfig;

use crate::error::{ModelError, Result};
use crate::fused::{self, Act};
use crate::llama::{Init, Linear, Loader, TensorSource};
use crate::load::WeightDtype;
use crate::timeline::{mark, product_flop};

/// LayerNorm with biased variance, as torch.
#[derive(Debug, Clone)]
pub struct LayerNorm<B: Backend> {
    weight: Tensor<B, 1>,
    bias: Tensor<B, 1>,
    eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        crate::fused::layer_norm(x, &self.weight, &self.bias, self.eps)
    }

    /// The residual sum `x + (y + product_bias)` and this norm of it, `(sum, normed)` — one kernel on the GPU.
    fn add_forward(
        &self,
        y: Tensor<B, 3>,
        product_bias: Option<&Tensor<B, 1>>,
        x: Tensor<B, 3>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        fused::bias_add_layer_norm(y, product_bias, x, [&self.weight, &self.bias], self.eps)
    }
}

#[derive(Debug, Clone)]
struct EncoderLayer<B: Backend> {
    ln1: LayerNorm<B>,
    /// q, k and v projections stacked into one product (`[3·hidden, hidden]`, biases likewise).
    qkv: Linear<B>,
    out: Linear<B>,
    ln2: LayerNorm<B>,
    fc1: Linear<B>,
    fc2: Linear<B>,
}

/// The vision tower.
#[derive(Debug, Clone)]
pub struct ClipVision<B: Backend> {
    pub cfg: ClipVisionConfig,
    /// [hidden, 3·P·P]: the patch convolution as a linear layer over flattened patches.
    patch: Tensor<B, 2>,
    class: Tensor<B, 1>,
    /// [1 + G², hidden]
    positions: Tensor<B, 2>,
    pre_ln: LayerNorm<B>,
    layers: Vec<EncoderLayer<B>>,
    post_ln: LayerNorm<B>,
}

fn layer_norm<B: Backend>(ld: &Loader<'_, B>, prefix: &str, n: usize, eps: f64) -> Result<LayerNorm<B>> {
    Ok(LayerNorm {
        weight: ld.t1(&format!("{prefix}.weight"), n)?,
        bias: ld.t1(&format!("{prefix}.bias"), n)?,
        eps,
    })
}

impl<B: Backend> ClipVision<B> {
    /// Loads tensors named `{prefix}embeddings.…`, `{prefix}encoder.layers.{i}.…` (prefix `vision_model.` in a
    /// CLIP checkpoint, `vision_tower.vision_model.` in llava-hf's layout).
    pub fn load(
        cfg: &ClipVisionConfig,
        src: &dyn TensorSource,
        prefix: &str,
        dtype: WeightDtype,
        device: &B::Device,
    ) -> Result<Self> {
        Self::build(cfg, Init::Checkpoint(src), prefix, dtype, device)
    }

    /// A tower of `cfg`'s shapes with random weights (throughput benchmarks).
    pub fn random(cfg: &ClipVisionConfig, dtype: WeightDtype, device: &B::Device) -> Result<Self> {
        Self::build(cfg, Init::Random, "vision_model.", dtype, device)
    }

    fn build(
        cfg: &ClipVisionConfig,
        init: Init<'_>,
        prefix: &str,
        dtype: WeightDtype,
        device: &B::Device,
    ) -> Result<Self> {
        if !matches!(cfg.hidden_act.as_str(), "quick_gelu" | "gelu") {
            return Err(ModelError::Unsupported(format!(
                "CLIP hidden_act `{}` (quick_gelu, gelu)",
                cfg.hidden_act
            )));
        }
        let ld = Loader::<B> { init, dtype, device };
        let (h, c, p, eps) = (
            cfg.hidden_size,
            cfg.num_channels,
            cfg.patch_size,
            cfg.layer_norm_eps,
        );
        let g = cfg.patches_per_side();
        let patch_name = format!("{prefix}embeddings.patch_embedding.weight");
        let patch: Tensor<B, 2> = match &ld.init {
            Init::Checkpoint(src) => {
                crate::load::load_float::<B, 4>(&src.tensor(&patch_name)?, [h, c, p, p], dtype, device)?
                    .reshape([h, c * p * p])
            }
            Init::Random => ld.t2(&patch_name, [h, c * p * p])?,
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let lp = format!("{prefix}encoder.layers.{l}");
            layers.push(EncoderLayer {
                ln1: layer_norm(&ld, &format!("{lp}.layer_norm1"), h, eps)?,
                qkv: ld.stacked_linear(
                    &[
                        (&format!("{lp}.self_attn.q_proj"), h),
                        (&format!("{lp}.self_attn.k_proj"), h),
                        (&format!("{lp}.self_attn.v_proj"), h),
                    ],
                    h,
                    true,
                )?,
                out: ld.linear(&format!("{lp}.self_attn.out_proj"), h, h, true)?,
                ln2: layer_norm(&ld, &format!("{lp}.layer_norm2"), h, eps)?,
                fc1: ld.linear(&format!("{lp}.mlp.fc1"), h, cfg.intermediate_size, true)?,
                fc2: ld.linear(&format!("{lp}.mlp.fc2"), cfg.intermediate_size, h, true)?,
            });
        }
        Ok(Self {
            cfg: cfg.clone(),
            patch,
            class: ld.t1(&format!("{prefix}embeddings.class_embedding"), h)?,
            positions: ld.t2(
                &format!("{prefix}embeddings.position_embedding.weight"),
                [1 + g * g, h],
            )?,
            pre_ln: layer_norm(&ld, &format!("{prefix}pre_layrnorm"), h, eps)?,
            layers,
            post_ln: layer_norm(&ld, &format!("{prefix}post_layernorm"), h, eps)?,
        })
    }

    /// All hidden states: index 0 is the embeddings after `pre_layrnorm`, index i the output of layer i —
    /// transformers' `output_hidden_states`. `pixel_values` is [N, C, S, S] with S = `image_size`.
    pub fn hidden_states(&self, pixel_values: Tensor<B, 4>) -> Result<Vec<Tensor<B, 3>>> {
        let [n, c, hgt, wid] = pixel_values.dims();
        let (p, s) = (self.cfg.patch_size, self.cfg.image_size);
        if c != self.cfg.num_channels || hgt != s || wid != s {
            return Err(ModelError::Input(format!(
                "pixel_values are [{n}, {c}, {hgt}, {wid}]; this CLIP needs [N, {}, {s}, {s}]",
                self.cfg.num_channels
            )));
        }
        let g = s / p;
        let h = self.cfg.hidden_size;
        let pixel_values = pixel_values.cast(self.patch.dtype());
        // [N, C, G, P, G, P] → [N, G, G, C, P, P] → [N·G², C·P·P]: each row one patch, flattened like the
        // convolution kernel.
        let patches = pixel_values
            .reshape([n, c, g, p, g, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([n * g * g, c * p * p]);
        let emb = crate::gemm::linear_nt(patches, &self.patch).reshape([n, g * g, h]);
        let class = self.class.clone().reshape([1, 1, h]).expand([n, 1, h]);
        let x = Tensor::cat(vec![class, emb], 1) + self.positions.clone().unsqueeze::<3>();
        let mut x = self.pre_ln.forward(x);
        // `mark`: where `MMREASON_TIMELINE=1` records a forward, the end of each step (`crate::timeline`); the
        // patch embedding and the first LayerNorm come before the clock starts.
        mark(&x, "start", 0.0);
        let mut states = vec![x.clone()];
        let inter = self.cfg.intermediate_size;
        let heads = self.cfg.num_attention_heads;
        let d = h / heads;
        let t = 1 + g * g;
        // Each residual sum is fused with the LayerNorm after it where there is one (`h_in`: the next layer's
        // normed input, computed by the previous layer; the first layer norms its own); each product's bias goes
        // into the pass after it.
        let mut h_in = None;
        // Where `MMREASON_ATTENTION=padded` asks: the composed attention's keys padded to whole 16-byte rows.
        let key_pad = fused::padded_keys_wanted()
            .then(|| KeyPad::new([n, heads, t, d], x.dtype(), &x.device()))
            .flatten();
        for (i, layer) in self.layers.iter().enumerate() {
            let y = h_in.take().unwrap_or_else(|| {
                let y = layer.ln1.forward(x.clone());
                mark(&y, "layer norm", 0.0);
                y
            });
            // One product for q, k and v. Where `MMREASON_QKV_VIEWS=1` asks, the mma kernel reads them from it
            // in place, the biases folded in; else the bias and the split into heads `[n, heads, t, d]` in one
            // kernel on the GPU, then one kernel of ours on the GPU backends (unless `MMREASON_ATTENTION` says
            // otherwise), or a cubek flash kernel where it asks for one; else transformers' eager attention:
            // scores · scale, softmax in f32, probabilities in the dtype.
            let qkv = layer.qkv.product(y);
            mark(&qkv, "qkv product", product_flop(&qkv, h));
            let scale = 1.0 / (d as f64).sqrt();
            let a = match fused::qkv_attention(&qkv, heads, d, layer.qkv.bias(), scale) {
                Some(a) => a,
                None => {
                    let (q, k, v) = fused::qkv_bias_heads(&qkv, heads, d, layer.qkv.bias());
                    mark(&q, "q/k/v bias + heads", 0.0);
                    match fused::prefill_attention(&q, &k, &v, None, t, false, scale, true)
                        .or_else(|| fused::flash_attention(&q, &k, &v, false))
                    {
                        Some(a) => a,
                        None => composed_attention(q, k, v, scale, key_pad.as_ref()),
                    }
                }
            };
            let a = a.swap_dims(1, 2).reshape([n, t, h]);
            mark(&a, "attention", 0.0);
            let a = layer.out.product(a);
            mark(&a, "o product", product_flop(&a, h));
            let (sum, normed) = layer.ln2.add_forward(a, layer.out.bias(), x);
            mark(&normed, "add + layer norm", 0.0);
            x = sum;
            let y = layer.fc1.product(normed);
            mark(&y, "fc1 product", product_flop(&y, h));
            let y = if self.cfg.hidden_act == "quick_gelu" {
                fused::bias_act(y, layer.fc1.bias(), Act::QuickGelu, None)
            } else {
                activation::gelu(fused::bias_act(y, layer.fc1.bias(), Act::Identity, None))
            };
            mark(&y, "bias + activation", 0.0);
            let m = layer.fc2.product(y);
            mark(&m, "fc2 product", product_flop(&m, inter));
            x = match self.layers.get(i + 1) {
                Some(next) => {
                    let (sum, normed) = next.ln1.add_forward(m, layer.fc2.bias(), x);
                    h_in = Some(normed);
                    sum
                }
                None => fused::bias_act(m, layer.fc2.bias(), Act::Identity, Some(x)),
            };
            mark(&x, "add + layer norm", 0.0);
            states.push(x.clone());
        }
        Ok(states)
    }

    /// `pooler_output`: the CLS token of the last layer after `post_layernorm`.
    pub fn pooled(&self, last: Tensor<B, 3>) -> Tensor<B, 2> {
        let [n, _, h] = last.dims();
        self.post_ln.forward(last.narrow(1, 0, 1)).reshape([n, h])
    }
}

/// Keys and values padded with zeros to `len` positions, a multiple of 8, and the f32 mask `[n, 1, t, len]` that
/// hides the padding from the softmax (0, then the lowest f32 past `t`: its weight is exactly 0). Made once per
/// forward: the padding and the mask are the same for every layer.
///
/// Why: CLIP ViT-L/14-336 attends over 577 positions. Rows of 577 bf16 values are 1,154 bytes, so the score
/// matrix's rows (the first product's output, the second's input) do not start on 16-byte boundaries, and
/// cuBLAS then takes kernels without aligned vector loads: run 8 timed the two products at ≈ 1.1 ms per layer
/// (b32, 16 heads of 64) for 44 GFLOP, a third of the rate of Mistral's aligned 512-position attention. Padded
/// to 584, every operand is aligned, at the cost of 7 more keys (1.2 %) and one mask read per layer.
#[derive(Debug, Clone)]
struct KeyPad<B: Backend> {
    len: usize,
    mask: Tensor<B, 4>,
    /// The `len − t` zero positions appended to each image's and head's keys and values, `[n, heads, len − t, d]`.
    zeros: Tensor<B, 4>,
}

impl<B: Backend> KeyPad<B> {
    /// For keys and values `[n, heads, t, d]` in `dtype`; `None` where `t` is already a multiple of 8.
    fn new([n, heads, t, d]: [usize; 4], dtype: burn::tensor::DType, device: &B::Device) -> Option<Self> {
        let len = t.next_multiple_of(8);
        if len == t || n == 0 {
            return None;
        }
        // Built here and uploaded dense (`backend::dense`): a mask allocated on burn-cuda with rows of `len`
        // values gets pitched rows, and the softmax kernel of each layer would copy it.
        let values = (0..n * t * len)
            .map(|at| if at % len < t { 0.0 } else { f32::MIN })
            .collect();
        let mask = crate::backend::dense(values, [n, 1, t, len], device, burn::tensor::DType::F32);
        let zeros = Tensor::zeros([n, heads, len - t, d], (device, dtype));
        Some(Self { len, mask, zeros })
    }
}

/// transformers' eager attention for `q`, `k`, `v` `[n, heads, t, d]`: scores · scale, softmax in f32,
/// probabilities in the dtype, each product batched over images and heads — over keys padded to `pad.len`
/// positions where `pad` is given (the same result: the padding's weights are exactly 0).
fn composed_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    scale: f64,
    pad: Option<&KeyPad<B>>,
) -> Tensor<B, 4> {
    let [n, heads, t, d] = q.dims();
    let q = q.reshape([n * heads, t, d]);
    match pad {
        Some(KeyPad { len, mask, zeros }) => {
            let padded =
                |z: Tensor<B, 4>| Tensor::cat(vec![z, zeros.clone()], 2).reshape([n * heads, *len, d]);
            let scores = crate::gemm::bmm_nt(q, padded(k)).reshape([n, heads, t, *len]);
            let probs = fused::softmax_f32(scores, Some(mask), scale).reshape([n * heads, t, *len]);
            crate::gemm::bmm_nn(probs, padded(v)).reshape([n, heads, t, d])
        }
        None => {
            let flat = |z: Tensor<B, 4>| z.reshape([n * heads, t, d]);
            let scores = crate::gemm::bmm_nt(q, flat(k)).reshape([1, n * heads, t, t]);
            let probs = fused::softmax_f32(scores, None, scale).reshape([n * heads, t, t]);
            crate::gemm::bmm_nn(probs, flat(v)).reshape([n, heads, t, d])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance};

    type Cpu = crate::backend::CpuBackend;

    /// Keys padded to whole 16-byte rows give the attention over the keys themselves.
    #[test]
    fn padded_keys_give_the_same_attention() {
        let d = Default::default();
        let (n, heads, t, hd) = (2, 3, 13, 8);
        let r = |s| Tensor::<Cpu, 4>::random(s, Distribution::Normal(0.0, 1.0), &d);
        let (q, k, v) = (r([n, heads, t, hd]), r([n, heads, t, hd]), r([n, heads, t, hd]));
        let dtype = q.dtype();
        let pad = KeyPad::<Cpu>::new([n, heads, t, hd], dtype, &d).expect("13 is not a multiple of 8");
        assert_eq!(pad.len, 16);
        let scale = 1.0 / (hd as f64).sqrt();
        let want = composed_attention(q.clone(), k.clone(), v.clone(), scale, None);
        composed_attention(q, k, v, scale, Some(&pad))
            .into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Tolerance::relative(1e-5));
        assert!(KeyPad::<Cpu>::new([n, heads, 16, hd], dtype, &d).is_none());
    }
}
