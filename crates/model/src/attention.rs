//! Causal self-attention with grouped-query heads, as transformers' eager attention computes it: scores and
//! softmax in f32, probabilities back in the activations' dtype. Both products go through [`crate::gemm`]
//! (cuBLAS on CUDA).

use burn::tensor::{Tensor, backend::Backend};

use crate::{fused, gemm};

/// The additive attention mask `[b, 1, s, t]` of one forward, made on first use.
///
/// Why lazy: a prefill whose mask is only the causal triangle, on the mma kernel (burn-cuda's default in
/// bf16/f16), never reads it, and making it is b·s·t values on the host and their upload before the first
/// layer can start: at b8×512 (2.1 M values, 8 MB) 4–7 ms on the workstation, all of it with the GPU idle
/// (a forward at that shape is ≈ 109 ms on the H200).
pub struct AttentionMask<'a, B: Backend> {
    keys: usize,
    make: Box<dyn Fn() -> Tensor<B, 4> + 'a>,
    made: std::cell::OnceCell<Tensor<B, 4>>,
}

impl<'a, B: Backend> AttentionMask<'a, B> {
    /// A mask over `keys` positions that `make` builds when first asked for.
    pub fn lazy(keys: usize, make: impl Fn() -> Tensor<B, 4> + 'a) -> Self {
        Self {
            keys,
            make: Box::new(make),
            made: std::cell::OnceCell::new(),
        }
    }

    /// The number of key positions `t` (without making the mask).
    pub fn keys(&self) -> usize {
        self.keys
    }

    /// The mask, made now if it was not yet.
    pub fn tensor(&self) -> &Tensor<B, 4> {
        self.made.get_or_init(|| (self.make)())
    }

    /// Whether the mask has been made (tests: a plain causal prefill on the mma kernel never makes it).
    pub fn is_made(&self) -> bool {
        self.made.get().is_some()
    }
}

impl<B: Backend> From<Tensor<B, 4>> for AttentionMask<'static, B> {
    fn from(mask: Tensor<B, 4>) -> Self {
        let made = std::cell::OnceCell::new();
        let keys = mask.dims()[3];
        let _ = made.set(mask);
        Self {
            keys,
            make: Box::new(|| unreachable!("a mask made up front is never made again")),
            made,
        }
    }
}

/// transformers' additive mask `[b, 1, s, past + s]` as values: 0 where query `past + i` may attend key `k`
/// (a real key, `k` at or before the query, and fewer than `window` positions back), `f32::MIN` elsewhere.
/// Each query's row is three runs (masked before the window, the row's keys as they are, masked after the
/// query), filled as slices rather than value by value: ≈ 1 ms instead of 4–7 for 2.1 M values on the
/// workstation.
pub fn additive_mask(keys: &[Vec<bool>], past: usize, s: usize, window: Option<usize>) -> Vec<f32> {
    let t = past + s;
    let mut m = vec![f32::MIN; keys.len() * s * t];
    if s == 0 {
        return m;
    }
    for (row, out) in keys.iter().zip(m.chunks_mut(s * t)) {
        let real: Vec<f32> = (0..t)
            .map(|k| {
                if row.get(k).copied().unwrap_or(false) {
                    0.0
                } else {
                    f32::MIN
                }
            })
            .collect();
        for (i, line) in out.chunks_mut(t).enumerate() {
            let q = past + i;
            let first = window.map_or(0, |w| (q + 1).saturating_sub(w));
            if first <= q {
                line[first..=q].copy_from_slice(&real[first..=q]);
            }
        }
    }
    m
}

/// `softmax(q·kᵀ/√d + mask)·v` for `q` `[b, nh, s, d]`, `k`/`v` `[b, nkv, t, d]` (`nh` a multiple of `nkv`) and an
/// additive f32 `mask` broadcast from `[b, 1, s, t]` (made only where a path reads it); returns `[b, nh, s, d]`. Keys and values may hold more
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
    mask: &AttentionMask<'_, B>,
    plain_causal: bool,
) -> Tensor<B, 4> {
    let [b, nh, s, d] = q.dims();
    let nkv = k.dims()[1];
    let t = mask.keys();
    // One query token (a decode step): one kernel on the GPU backends, reading the cache's storage in place.
    if s == 1
        && let Some(y) = fused::decode_attention(&q, &k, &v, mask.tensor(), 1.0 / (d as f64).sqrt())
    {
        return y;
    }
    // One kernel of ours (keys and values read in place, grouped heads without repeating them): the mma kernel
    // by default on burn-cuda in bf16/f16, our cubecl kernel where `MMREASON_ATTENTION=own` asks; the causal
    // triangle from positions when that is all the mask holds, else the mask.
    if fused::own_attention_wanted(false) || fused::mma_attention_wanted() {
        let causal = plain_causal && s == t;
        let m = (!causal).then(|| mask.tensor());
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
    let probs = fused::softmax_f32(scores, Some(mask.tensor()), 1.0 / (d as f64).sqrt());
    gemm::bmm_nn(probs.reshape([g, rep * s, t]), v.reshape([g, t, d])).reshape([b, nh, s, d])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// transformers' mask, value by value (what `additive_mask` replaced).
    fn reference(keys: &[Vec<bool>], past: usize, s: usize, window: Option<usize>) -> Vec<f32> {
        let mut m = Vec::new();
        for row in keys {
            for qi in 0..s {
                let q = past + qi;
                for (k, &real) in row.iter().enumerate().take(past + s) {
                    let ok = real && k <= q && window.is_none_or(|w| q - k < w);
                    m.push(if ok { 0.0 } else { f32::MIN });
                }
            }
        }
        m
    }

    #[test]
    fn additive_mask_is_transformers_mask() {
        let mut seed = 7u64;
        let mut bit = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            !(seed >> 33).is_multiple_of(5)
        };
        for (b, past, s) in [
            (1, 0, 1),
            (2, 0, 7),
            (3, 5, 1),
            (2, 4, 6),
            (1, 0, 0),
            (2, 3, 0),
            (2, 9, 3),
        ] {
            let keys: Vec<Vec<bool>> = (0..b).map(|_| (0..past + s).map(|_| bit()).collect()).collect();
            for window in [None, Some(1), Some(2), Some(3), Some(5), Some(100)] {
                assert_eq!(
                    additive_mask(&keys, past, s, window),
                    reference(&keys, past, s, window),
                    "b {b} past {past} s {s} window {window:?}"
                );
            }
        }
    }

    #[test]
    fn a_lazy_mask_is_made_once_and_only_when_read() {
        let made = std::cell::Cell::new(0);
        let mask = AttentionMask::<crate::CpuBackend>::lazy(3, || {
            made.set(made.get() + 1);
            Tensor::zeros([1, 1, 2, 3], &Default::default())
        });
        assert_eq!((mask.keys(), mask.is_made(), made.get()), (3, false, 0));
        assert_eq!(mask.tensor().dims(), [1, 1, 2, 3]);
        assert_eq!(mask.tensor().dims(), [1, 1, 2, 3]);
        assert_eq!((mask.is_made(), made.get()), (true, 1));
        let ready = AttentionMask::from(Tensor::<crate::CpuBackend, 4>::zeros(
            [1, 1, 1, 5],
            &Default::default(),
        ));
        assert_eq!((ready.keys(), ready.is_made()), (5, true));
    }
}
