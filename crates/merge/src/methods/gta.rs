//! mergekit's generalized task arithmetic (`generalized_task_arithmetic.py`): task vectors δₘ = xₘ − base,
//! optional sparsification (TIES magnitude, DARE random, Breadcrumbs outliers, DELLA), weights, optional sign
//! consensus (TIES "sum": the majority sign of Σ wₘδₘ, ≥ 0 counts as +; entries whose sign differs — zeros
//! included — drop out of both sum and divisor), optional normalisation by the kept weight, λ, all in f32.

use rayon::prelude::*;

use super::{GlobalParams, GlobalThresholds, Method, Sparsification, TensorInputs};
use crate::sparsify;

pub fn merge(
    method: Method,
    inp: &TensorInputs<'_>,
    base: &[f32],
    g: &GlobalParams,
    mut global: GlobalThresholds<'_>,
    rng: &mut crate::mt19937::Mt19937,
) -> Result<Vec<f32>, String> {
    let (consensus, sparsification, _, _) = method.gta().expect("called for GTA methods only");
    let n = base.len();
    let mut deltas: Vec<Vec<f32>> = Vec::with_capacity(inp.models.len());
    for (m, (x, p)) in inp.models.iter().enumerate() {
        let delta: Vec<f32> = x.par_iter().zip(base.par_iter()).map(|(a, b)| a - b).collect();
        let delta = match sparsification {
            None => delta,
            Some(Sparsification::Magnitude) => match global.as_deref_mut() {
                // TIES with a global scope: the model-wide threshold decides (paper's top-k% of the whole
                // task vector), rescaled as configured.
                Some(th) => {
                    let (t, seen) = &mut th[m];
                    let keys: Vec<u32> = delta.iter().map(|&d| crate::select::key(d as f64)).collect();
                    let mask = t.mask(&keys, seen);
                    let mut kept: Vec<f32> = delta
                        .iter()
                        .zip(mask)
                        .map(|(&d, k)| if k { d } else { 0.0 })
                        .collect();
                    sparsify::rescale_kept(&delta, &mut kept, p.density, g.rescale);
                    kept
                }
                None => sparsify::magnitude(&delta, p.density, g.rescale)?,
            },
            Some(Sparsification::Random) => sparsify::bernoulli(&delta, p.density, g.rescale, rng),
            Some(Sparsification::MagnitudeOutliers) => {
                sparsify::magnitude_outliers(&delta, p.density, p.gamma, g.rescale)
            }
            Some(Sparsification::DellaMagprune) => {
                sparsify::della(&delta, inp.shape, p.density, p.epsilon, g.rescale, rng)?
            }
        };
        deltas.push(delta);
    }
    let weights: Vec<f32> = inp.models.iter().map(|(_, p)| p.weight as f32).collect();
    let wsum: f32 = weights.iter().sum();
    let lambda = g.lambda as f32;
    // Element-wise and independent: split across threads in chunks; per element the model axis is summed
    // left to right in f32, as torch's sum(dim=0) does for a handful of models.
    let mut out = vec![0.0f32; n];
    out.par_chunks_mut(1 << 14).enumerate().for_each(|(c, chunk)| {
        let start = c << 14;
        for (k, o) in chunk.iter_mut().enumerate() {
            let i = start + k;
            let (mixed, divisor) = if consensus {
                let mut sign_weight = 0.0f32;
                for (d, w) in deltas.iter().zip(&weights) {
                    sign_weight += d[i] * w;
                }
                let majority = if sign_weight >= 0.0 { 1.0f32 } else { -1.0 };
                let (mut mixed, mut divisor) = (0.0f32, 0.0f32);
                for (d, w) in deltas.iter().zip(&weights) {
                    let wd = d[i] * w;
                    let sign = if wd > 0.0 {
                        1.0
                    } else if wd < 0.0 {
                        -1.0
                    } else {
                        0.0
                    };
                    if sign == majority {
                        mixed += wd;
                        divisor += w;
                    }
                }
                (mixed, if divisor == 0.0 { 1.0 } else { divisor })
            } else {
                let mut mixed = 0.0f32;
                for (d, w) in deltas.iter().zip(&weights) {
                    mixed += d[i] * w;
                }
                (mixed, if wsum.abs() < 1e-8 { 1.0 } else { wsum })
            };
            let mut mixed = if g.normalize { mixed / divisor } else { mixed };
            if lambda != 1.0 {
                mixed *= lambda;
            }
            *o = base[i] + mixed;
        }
    });
    Ok(out)
}
