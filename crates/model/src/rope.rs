//! Rotary position embeddings exactly as transformers' Llama/Mistral: inv_freq = 1 / θ^(2i/d) in f32,
//! angles = position · inv_freq in f32, cos/sin of the angles duplicated over both halves of the head, applied
//! with `rotate_half` (x₁, x₂) → (−x₂, x₁). `rope_scaling` "linear" divides inv_freq by the factor.

use burn::tensor::{Tensor, backend::Backend};
use mmreason_checkpoint::DecoderConfig;

use crate::error::{ModelError, Result};

/// The frequencies of one model.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
    head_dim: usize,
}

impl Rope {
    pub fn new(cfg: &DecoderConfig) -> Result<Self> {
        let d = cfg.head_dim;
        let mut inv_freq: Vec<f32> = (0..d / 2)
            .map(|i| 1.0 / (cfg.rope_theta as f32).powf((2 * i) as f32 / d as f32))
            .collect();
        match &cfg.rope_scaling {
            None => {}
            Some(s) if s.rope_type == "linear" => inv_freq.iter_mut().for_each(|f| *f /= s.factor as f32),
            Some(s) if s.rope_type == "default" => {}
            Some(s) => {
                return Err(ModelError::Unsupported(format!(
                    "rope_scaling type `{}` (supported: linear, default)",
                    s.rope_type
                )));
            }
        }
        Ok(Self {
            inv_freq,
            head_dim: d,
        })
    }

    /// cos and sin tables for `positions` ([B][S]) as [B, 1, S, head_dim] tensors.
    pub fn tables<B: Backend>(
        &self,
        positions: &[Vec<i64>],
        device: &B::Device,
        dtype: burn::tensor::DType,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let b = positions.len();
        let s = positions.first().map_or(0, Vec::len);
        let d = self.head_dim;
        // A prompt batch whose rows share their positions (no padding: the benchmarks' prefill, a batch of equal
        // prompts) needs one row's tables, repeated on the device. Built whole on the host they were b·s·d values
        // twice, converted and uploaded before the first layer could start: 1.5–5 ms at b8×512 and b32×256 on the
        // workstation. Repeated flat: burn repeats a dimension of one as a view of stride 0, which every layer's
        // heads kernel would copy; a flat repeat is one compact copy. A decode step's tables are small; they stay
        // one upload (`dense`, see below).
        if b > 1 && s > 1 && positions.iter().all(|r| r == &positions[0]) {
            let (cos, sin) = self.tables::<B>(&positions[..1], device, dtype);
            let repeated = |t: Tensor<B, 4>| t.reshape([s * d]).repeat_dim(0, b).reshape([b, 1, s, d]);
            return (repeated(cos), repeated(sin));
        }
        // One row of angles per distinct position (a batch repeats them: 8 prompts of 512 tokens have 512),
        // each computed as before; the rows are then copied into place.
        let mut distinct: Vec<i64> = positions.iter().flatten().copied().collect();
        distinct.sort_unstable();
        distinct.dedup();
        let rows: Vec<(Vec<f32>, Vec<f32>)> = distinct
            .iter()
            .map(|&p| {
                let angles: Vec<f32> = self.inv_freq.iter().map(|f| p as f32 * f).collect();
                (
                    angles.iter().map(|a| a.cos()).collect(),
                    angles.iter().map(|a| a.sin()).collect(),
                )
            })
            .collect();
        let mut cos = Vec::with_capacity(b * s * d);
        let mut sin = Vec::with_capacity(b * s * d);
        for row in positions {
            for p in row {
                let (c, sn) = &rows[distinct.binary_search(p).expect("every position was collected")];
                for _ in 0..2 {
                    cos.extend_from_slice(c);
                    sin.extend_from_slice(sn);
                }
            }
        }
        let shape = [b, 1, s, d];
        // Uploaded dense (`backend::dense`): heads of 80 or 96 in 16 bits would get pitched rows on burn-cuda, and
        // the heads kernel of every layer would copy them.
        (
            crate::backend::dense(cos, shape, device, dtype),
            crate::backend::dense(sin, shape, device, dtype),
        )
    }
}

/// x·cos + rotate_half(x)·sin for x of shape [B, heads, S, D].
pub fn apply<B: Backend>(x: Tensor<B, 4>, cos: &Tensor<B, 4>, sin: &Tensor<B, 4>) -> Tensor<B, 4> {
    let d = x.dims()[3];
    let x1 = x.clone().narrow(3, 0, d / 2);
    let x2 = x.clone().narrow(3, d / 2, d / 2);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone() + rotated * sin.clone()
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;
    use burn::tensor::DType;

    fn values(t: Tensor<crate::CpuBackend, 4>) -> Vec<f32> {
        t.cast(DType::F32)
            .into_data()
            .to_vec::<f32>()
            .expect("f32 values")
    }

    /// Rows that share their positions take one row's tables repeated: the same values, row for row, as the
    /// tables built for each row.
    #[test]
    fn shared_positions_give_each_rows_own_tables() {
        let mut cfg = DecoderConfig::mistral_7b_instruct_v0_2();
        cfg.head_dim = 8;
        let rope = Rope::new(&cfg).expect("default rope");
        let device = Default::default();
        let row: Vec<i64> = vec![0, 1, 2, 3, 4, 9000];
        for dtype in [DType::F32, DType::BF16] {
            let (cos, sin) =
                rope.tables::<crate::CpuBackend>(&[row.clone(), row.clone(), row.clone()], &device, dtype);
            assert_eq!(cos.dims(), [3, 1, 6, 8]);
            assert_eq!(cos.dtype(), dtype);
            let (c1, s1) = rope.tables::<crate::CpuBackend>(std::slice::from_ref(&row), &device, dtype);
            let (c1, s1) = (values(c1), values(s1));
            assert_eq!(values(cos), [c1.clone(), c1.clone(), c1].concat());
            assert_eq!(values(sin), [s1.clone(), s1.clone(), s1].concat());
        }
        // Rows that differ are built row by row: a left-padded row's positions start later.
        let (cos, _) =
            rope.tables::<crate::CpuBackend>(&[row.clone(), vec![1, 1, 0, 1, 2, 3]], &device, DType::F32);
        let (pad, _) = rope.tables::<crate::CpuBackend>(&[vec![1, 1, 0, 1, 2, 3]], &device, DType::F32);
        assert_eq!(values(cos)[6 * 8..], values(pad)[..]);
    }
}
