//! Causal self-attention with grouped-query heads, as transformers' eager attention computes it: scores and
//! softmax in f32, probabilities back in the activations' dtype. Both products go through [`crate::gemm`]
//! (cuBLAS on CUDA).

use burn::tensor::{Tensor, backend::Backend};

use crate::{fused, gemm};

/// `softmax(q·kᵀ/√d + mask)·v` for `q` `[b, nh, s, d]`, `k`/`v` `[b, nkv, t, d]` (`nh` a multiple of `nkv`) and an
/// additive f32 `mask` broadcast from `[b, 1, s, t]`; returns `[b, nh, s, d]`. Keys and values may hold more
/// than `t` positions (a pre-allocated cache): only the first `t`, the mask's length, are read.
///
/// Query heads sharing a key/value head are consecutive (head h reads kv head h / rep), so stacking them as the
/// rows of one matrix per (sequence, kv head) is grouped-query attention without repeating keys and values.
///
/// `plain_causal` says the mask is only the causal triangle (a prompt without padding, an empty cache, the
/// sliding window past its end): then a flash attention kernel may take it when `MMREASON_ATTENTION` asks
/// ([`fused::flash_attention`]; it repeats grouped key/value heads, as it does not group them itself).
pub fn grouped_query_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: &Tensor<B, 4>,
    plain_causal: bool,
) -> Tensor<B, 4> {
    let [b, nh, s, d] = q.dims();
    let nkv = k.dims()[1];
    let t = mask.dims()[3];
    // One query token (a decode step): one kernel on the GPU backends, reading the cache's storage in place.
    if let Some(y) = fused::decode_attention(&q, &k, &v, mask, 1.0 / (d as f64).sqrt()) {
        return y;
    }
    // One kernel of ours (keys and values read in place, grouped heads without repeating them): the mma kernel
    // by default on burn-cuda in bf16/f16, our cubecl kernel where `MMREASON_ATTENTION=own` asks; the causal
    // triangle from positions when that is all the mask holds, else the mask.
    if fused::own_attention_wanted(false) || fused::mma_attention_wanted() {
        let causal = plain_causal && s == t;
        let m = (!causal).then_some(mask);
        if let Some(y) = fused::prefill_attention(&q, &k, &v, m, t, causal, 1.0 / (d as f64).sqrt(), false) {
            return y;
        }
    }
    let (k, v) = if k.dims()[2] > t {
        (k.narrow(2, 0, t), v.narrow(2, 0, t))
    } else {
        (k, v)
    };
    let (rep, g) = (nh / nkv, b * nkv);
    if plain_causal && s == t && fused::flash_wanted(q.dtype(), d, true) {
        let repeat = |z: &Tensor<B, 4>| {
            if rep == 1 {
                z.clone()
            } else {
                z.clone()
                    .unsqueeze_dim::<5>(2)
                    .expand([b, nkv, rep, t, d])
                    .reshape([b, nh, t, d])
            }
        };
        if let Some(y) = fused::flash_attention(&q, &repeat(&k), &repeat(&v), true) {
            return y;
        }
    }
    let scores = gemm::bmm_nt(q.reshape([g, rep * s, d]), k.reshape([g, t, d])).reshape([b, nh, s, t]);
    let probs = fused::softmax_f32(scores, Some(mask), 1.0 / (d as f64).sqrt());
    gemm::bmm_nn(probs.reshape([g, rep * s, t]), v.reshape([g, t, d])).reshape([b, nh, s, d])
}
