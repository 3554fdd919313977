//! The study's training-free repair: the task vector between a VLM's language model and its base LLM,
//! sparsified to its top-K entries by magnitude, added back with weight α.
//!
//! Summaries of the paper write T = θ_vlm − θ_llm, T̂ = TopK(T), M = α·T̂ + θ_vlm. Added to the VLM, that
//! pushes it further *away* from the LLM; the form that moves the VLM back toward the LLM is
//! M = θ_vlm + α·TopK(θ_llm − θ_vlm). Both are offered ([`Direction`]); the default is `TowardLlm`, the one
//! that recovers the LLM's reasoning (α = 1, K = 100 % gives the LLM's weights exactly). Ranking is by |T|, so
//! the same entries are kept in both directions; only the sign of the update differs.
//!
//! Arithmetic is in f64 on values decoded from the checkpoint (F16/BF16/F32 differences are exact there), so
//! α = 0 returns the VLM bit for bit and α = 1, K = 100 % returns the LLM bit for bit.

use serde::Serialize;

use crate::select::{self, Threshold};

/// Which way the task vector points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// M = θ_vlm + α·TopK(θ_llm − θ_vlm): moves the VLM toward its base LLM.
    TowardLlm,
    /// M = θ_vlm + α·TopK(θ_vlm − θ_llm): the paper summaries' literal formula (extrapolates away).
    AwayFromLlm,
}

/// Where top-K is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// K per tensor (mergekit's convention for density).
    PerTensor,
    /// K over all merged tensors together (the paper's global sparsification); two streaming passes find the
    /// threshold.
    Global,
}

/// How much of the task vector to keep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TopK {
    /// Fraction of entries kept, k = ⌊density · n⌋.
    Density(f64),
    /// Number of entries kept (per tensor or in total, by scope).
    Count(u64),
}

/// Parameters of the sparse task-vector merge.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SparseTaskVector {
    pub alpha: f64,
    pub topk: TopK,
    pub scope: Scope,
    pub direction: Direction,
}

impl SparseTaskVector {
    /// Refuses parameters that would give a silently wrong merge: a density outside [0, 1] (`10` meant as
    /// 10 % would keep everything, a negative one nothing) or a weight that is not finite (every merged value
    /// NaN or infinite).
    pub fn validate(&self) -> crate::Result<()> {
        validate(self.alpha, self.topk)
    }

    /// The task vector entry for one pair of values.
    #[inline]
    pub fn delta(&self, vlm: f32, llm: f32) -> f64 {
        match self.direction {
            Direction::TowardLlm => llm as f64 - vlm as f64,
            Direction::AwayFromLlm => vlm as f64 - llm as f64,
        }
    }

    /// Ranking keys of one tensor's task vector.
    pub fn keys(&self, vlm: &[f32], llm: &[f32]) -> Vec<u32> {
        use rayon::prelude::*;
        vlm.par_iter()
            .zip(llm.par_iter())
            .map(|(&v, &l)| select::key(self.delta(v, l)))
            .collect()
    }

    /// Merges one tensor given its keep threshold; returns the merged values and how many entries were kept.
    /// `equal_seen` carries tie counts across tensors for a global scope.
    pub fn apply(
        &self,
        vlm: &[f32],
        llm: &[f32],
        threshold: &Threshold,
        equal_seen: &mut u64,
    ) -> (Vec<f32>, u64) {
        let keys = self.keys(vlm, llm);
        let mask = threshold.mask(&keys, equal_seen);
        let mut kept = 0u64;
        let out = vlm
            .iter()
            .zip(llm)
            .zip(&mask)
            .map(|((&v, &l), &keep)| {
                if keep && self.alpha != 0.0 {
                    kept += 1;
                    (v as f64 + self.alpha * self.delta(v, l)) as f32
                } else {
                    kept += keep as u64;
                    v
                }
            })
            .collect();
        (out, kept)
    }

    /// Per-tensor merge: threshold from this tensor alone.
    pub fn merge_tensor(&self, vlm: &[f32], llm: &[f32]) -> (Vec<f32>, u64) {
        let k = select::k_of(self.topk, vlm.len() as u64);
        let t = select::threshold_for(&self.keys(vlm, llm), k);
        self.apply(vlm, llm, &t, &mut 0)
    }
}

/// [`SparseTaskVector::validate`] for a weight and a top-K (the study checks its whole grid with it up front).
pub fn validate(alpha: f64, topk: TopK) -> crate::Result<()> {
    if !alpha.is_finite() {
        return Err(crate::MergeError::Param(format!(
            "α = {alpha} is not a finite number"
        )));
    }
    if let TopK::Density(d) = topk
        && !(0.0..=1.0).contains(&d)
    {
        return Err(crate::MergeError::Param(format!(
            "density = {d} is not a fraction in [0, 1] (the share of task-vector entries kept: 0.1 keeps 10 %)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stv(alpha: f64, density: f64, direction: Direction) -> SparseTaskVector {
        SparseTaskVector {
            alpha,
            topk: TopK::Density(density),
            scope: Scope::PerTensor,
            direction,
        }
    }

    #[test]
    fn endpoints_are_exact() {
        let vlm = [0.1f32, -0.0, 3.5, -2.25, 1e-8];
        let llm = [0.3f32, 1.0, 3.5, 7.0, -1e-8];
        assert_eq!(
            stv(0.0, 1.0, Direction::TowardLlm).merge_tensor(&vlm, &llm).0,
            vlm
        );
        assert_eq!(
            stv(1.0, 1.0, Direction::TowardLlm).merge_tensor(&vlm, &llm).0,
            llm
        );
        // -0.0 stays -0.0 at alpha 0 (bit-exact, not just equal).
        let out = stv(0.0, 1.0, Direction::AwayFromLlm).merge_tensor(&vlm, &llm).0;
        assert!(out[1].is_sign_negative());
    }

    #[test]
    fn keeps_the_largest_differences_in_either_direction() {
        let vlm = [0.0f32, 0.0, 0.0, 0.0];
        let llm = [1.0f32, -4.0, 2.0, 0.5];
        let (toward, kept) = stv(0.5, 0.5, Direction::TowardLlm).merge_tensor(&vlm, &llm);
        assert_eq!((toward, kept), (vec![0.0, -2.0, 1.0, 0.0], 2));
        let (away, _) = stv(0.5, 0.5, Direction::AwayFromLlm).merge_tensor(&vlm, &llm);
        assert_eq!(away, vec![0.0, 2.0, -1.0, 0.0]);
    }
}
