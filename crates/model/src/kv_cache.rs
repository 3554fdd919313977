//! Keys and values of past tokens for incremental decoding, kept outside the weights (one cache per
//! sequence batch), with the padding mask and positions needed to continue a left-padded batch.

use burn::tensor::{Tensor, backend::Backend};

/// Per-layer keys/values [B, kv_heads, T, D] plus the mask of the T cached tokens.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    pub(crate) layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    /// mask[b][t]: whether cached token t of row b is a real token (false = left padding).
    pub(crate) mask: Vec<Vec<bool>>,
}

impl<B: Backend> KvCache<B> {
    pub fn new(layers: usize) -> Self {
        Self {
            layers: vec![None; layers],
            mask: Vec::new(),
        }
    }

    /// Number of cached positions (padding included).
    pub fn len(&self) -> usize {
        self.mask.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Real tokens cached per row — the next position id of each row.
    pub fn next_positions(&self) -> Vec<i64> {
        self.mask
            .iter()
            .map(|r| r.iter().filter(|m| **m).count() as i64)
            .collect()
    }

    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let kv = match self.layers[layer].take() {
            None => (k, v),
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
        };
        self.layers[layer] = Some(kv.clone());
        kv
    }
}
