//! Keys and values of past tokens for incremental decoding, kept outside the weights (one cache per
//! sequence batch), with the padding mask and positions needed to continue a left-padded batch.
//!
//! Each layer's keys and values live in storage with room for more positions than are cached, and a decode
//! step writes its token into that storage in place (`slice_assign` on a tensor nobody else holds is in place
//! on the GPU backends). Concatenating instead copied the whole cache at every step — at batch 32 that is a
//! gigabyte of traffic per token on a 7B model — and allocated a new tensor per layer. Storage grows by
//! doubling, so a cache made with [`KvCache::new`] copies each position a bounded number of times; a caller
//! that knows how many positions it will cache (prompt plus new tokens) reserves them with
//! [`KvCache::with_capacity`] and never grows.

use burn::tensor::{Tensor, backend::Backend};

/// One layer's keys and values `[B, kv_heads, capacity, D]`, of which positions `..len` are cached.
#[derive(Debug, Clone)]
pub(crate) struct LayerKv<B: Backend> {
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    len: usize,
}

/// Per-layer keys/values plus the mask of the cached tokens.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<LayerKv<B>>>,
    /// mask[b][t]: whether cached token t of row b is a real token (false = left padding).
    pub(crate) mask: Vec<Vec<bool>>,
    /// Positions to reserve when storage is first allocated.
    capacity: usize,
}

impl<B: Backend> KvCache<B> {
    /// A cache that grows as tokens come (a single forward pass keeps the keys as computed, no copy).
    pub fn new(layers: usize) -> Self {
        Self::with_capacity(layers, 0)
    }

    /// A cache with storage for `positions` cached positions per sequence (padding included) allocated up
    /// front, so decoding up to that length writes each token in place.
    pub fn with_capacity(layers: usize, positions: usize) -> Self {
        Self {
            layers: vec![None; layers],
            mask: Vec::new(),
            capacity: positions,
        }
    }

    /// Number of cached positions (padding included).
    pub fn len(&self) -> usize {
        self.mask.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Positions layer `layer` can hold before its storage grows (0 before its first tokens).
    pub fn capacity(&self, layer: usize) -> usize {
        self.layers
            .get(layer)
            .and_then(Option::as_ref)
            .map_or(0, |c| c.k.dims()[2])
    }

    /// Real tokens cached per row — the next position id of each row.
    pub fn next_positions(&self) -> Vec<i64> {
        self.mask
            .iter()
            .map(|r| r.iter().filter(|m| **m).count() as i64)
            .collect()
    }

    /// Appends `k`/`v` (`[B, kv_heads, S, D]`) to layer `layer` and returns its keys and values: tensors whose
    /// first `len` positions (dimension 2) are the cached ones, `len` being the third value. Positions at
    /// `len` and beyond are unused storage, which attention must not read (it takes the length from the
    /// mask, see [`crate::attention::grouped_query_attention`]).
    pub fn append(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>, usize) {
        let [b, h, s, d] = k.dims();
        let entry = match self.layers[layer].take() {
            // First tokens: kept as computed, unless the caller reserved room for more.
            None if self.capacity <= s => LayerKv { k, v, len: s },
            None => {
                let (sk, sv) = (self.storage(&k, self.capacity), self.storage(&v, self.capacity));
                let range = [0..b, 0..h, 0..s, 0..d];
                let entry = LayerKv {
                    k: sk.slice_assign(range.clone(), k.clone()),
                    v: sv.slice_assign(range, v.clone()),
                    len: s,
                };
                // The new tokens are the whole cache: hand back the tensors as computed (contiguous, no
                // unused tail), the storage keeps its own copy.
                self.layers[layer] = Some(entry);
                return (k, v, s);
            }
            Some(c) => {
                let len = c.len + s;
                let cap = c.k.dims()[2];
                let (pk, pv) = if len > cap {
                    // Grow by doubling: the cached prefix is copied into the larger storage once.
                    let new_cap = len.max(2 * cap);
                    let keep = [0..b, 0..h, 0..c.len, 0..d];
                    (
                        self.storage(&k, new_cap)
                            .slice_assign(keep.clone(), c.k.slice(keep.clone())),
                        self.storage(&v, new_cap)
                            .slice_assign(keep.clone(), c.v.slice(keep)),
                    )
                } else {
                    (c.k, c.v)
                };
                let range = [0..b, 0..h, c.len..len, 0..d];
                LayerKv {
                    k: pk.slice_assign(range.clone(), k),
                    v: pv.slice_assign(range, v),
                    len,
                }
            }
        };
        let out = (entry.k.clone(), entry.v.clone(), entry.len);
        self.layers[layer] = Some(entry);
        out
    }

    /// Layer `layer`'s storage, taken out of the cache, when it has room for `s` more positions: (keys,
    /// values, the first free position). Whoever takes it writes the new positions and hands it back with
    /// [`KvCache::put`]; `None` (no storage yet, or full) means [`KvCache::append`] instead.
    pub(crate) fn take_room(
        &mut self,
        layer: usize,
        s: usize,
    ) -> Option<(Tensor<B, 4>, Tensor<B, 4>, usize)> {
        let c = self.layers.get(layer)?.as_ref()?;
        if c.len + s > c.k.dims()[2] {
            return None;
        }
        let c = self.layers[layer].take()?;
        Some((c.k, c.v, c.len))
    }

    /// Hands storage back to layer `layer` with its first `len` positions cached; returns it as
    /// [`KvCache::append`] does.
    pub(crate) fn put(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        len: usize,
    ) -> (Tensor<B, 4>, Tensor<B, 4>, usize) {
        self.layers[layer] = Some(LayerKv {
            k: k.clone(),
            v: v.clone(),
            len,
        });
        (k, v, len)
    }

    /// Zeroed storage for `positions` positions shaped and typed like `like` (`[B, kv_heads, ·, D]`), contiguous:
    /// made flat and reshaped, because the GPU backends pad the rows of a 4-d allocation whose rows are not a
    /// power-of-two size (a head of 80 or 96 values in bf16), and the kernels that read and write the cache in
    /// place want it dense.
    fn storage(&self, like: &Tensor<B, 4>, positions: usize) -> Tensor<B, 4> {
        let [b, h, _, d] = like.dims();
        Tensor::<B, 1>::zeros([b * h * positions * d], (&like.device(), like.dtype()))
            .reshape([b, h, positions, d])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuBackend;
    use burn::tensor::TensorData;

    type B = CpuBackend;

    fn tokens(start: usize, s: usize) -> Tensor<B, 4> {
        // [1, 2, s, 3] with values that name their position: 100·head + 10·position + column.
        let mut v = Vec::new();
        for h in 0..2 {
            for p in start..start + s {
                for c in 0..3 {
                    v.push((100 * h + 10 * p + c) as f32);
                }
            }
        }
        Tensor::from_data(TensorData::new(v, [1, 2, s, 3]), &Default::default())
    }

    fn cached(cache: &mut KvCache<B>, start: usize, s: usize) -> (Vec<f32>, usize) {
        let (k, v, len) = cache.append(0, tokens(start, s), tokens(start, s) * 2.0);
        let kv = k.narrow(2, 0, len);
        let vv = v.narrow(2, 0, len);
        assert_eq!(
            kv.clone().mul_scalar(2.0).into_data(),
            vv.into_data(),
            "values follow keys"
        );
        (kv.into_data().to_vec::<f32>().unwrap(), len)
    }

    #[test]
    fn growing_and_reserved_caches_hold_the_same_tokens() {
        let want = |n: usize| tokens(0, n).into_data().to_vec::<f32>().unwrap();
        for reserve in [0, 4, 7, 40] {
            let mut cache = KvCache::<B>::with_capacity(1, reserve);
            let (k, len) = cached(&mut cache, 0, 4);
            assert_eq!((k, len), (want(4), 4), "reserve {reserve}");
            let mut n = 4;
            for step in [1, 1, 3, 1, 1, 1] {
                let (k, len) = cached(&mut cache, n, step);
                n += step;
                assert_eq!((k, len), (want(n), n), "reserve {reserve}, after {n}");
                assert!(cache.capacity(0) >= n);
            }
            if reserve >= n {
                assert_eq!(cache.capacity(0), reserve, "a reserved cache never grows");
            }
        }
    }

    #[test]
    fn a_single_pass_keeps_the_keys_as_computed() {
        let mut cache = KvCache::<B>::new(2);
        let (k, _, len) = cache.append(1, tokens(0, 5), tokens(0, 5));
        assert_eq!(
            (k.dims(), len, cache.capacity(1), cache.capacity(0)),
            ([1, 2, 5, 3], 5, 5, 0)
        );
    }
}
