//! mergekit's generalized task arithmetic (`generalized_task_arithmetic.py`): task vectors δₘ = xₘ − base,
//! optional sparsification (TIES magnitude, DARE random, Breadcrumbs outliers, DELLA), weights, optional sign
//! consensus (TIES "sum": the majority sign of Σ wₘδₘ, ≥ 0 counts as +; entries whose sign differs — zeros
//! included — drop out of both sum and divisor), optional normalisation by the kept weight, λ, all in f32.

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
        let delta: Vec<f32> = x.iter().zip(base).map(|(a, b)| a - b).collect();
        let delta = match sparsification {
            None => delta,
            Some(Sparsification::Magnitude) => match global.as_deref_mut() {
                // TIES with a global scope: the model-wide threshold decides (paper's top-k% of the whole
                // task vector), rescaled as configured.
                Some(th) => {
                    let (t, seen) = &mut th[m];
                    let keys: Vec<u32> = delta.iter().map(|&d| crate::select::key(d as f64)).collect();
                    let mask = t.mask(&keys, seen);
                    delta
                        .iter()
                        .zip(mask)
                        .map(|(&d, k)| if k { d } else { 0.0 })
                        .collect()
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
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let weighted: Vec<f32> = deltas.iter().zip(&weights).map(|(d, w)| d[i] * w).collect();
        let (mixed, divisor) = if consensus {
            let sign_weight: f32 = weighted.iter().sum();
            let majority = if sign_weight >= 0.0 { 1.0f32 } else { -1.0 };
            let mut mixed = 0.0f32;
            let mut divisor = 0.0f32;
            for (wd, w) in weighted.iter().zip(&weights) {
                let sign = if *wd > 0.0 {
                    1.0
                } else if *wd < 0.0 {
                    -1.0
                } else {
                    0.0
                };
                let keep = if sign == majority { 1.0f32 } else { 0.0 };
                mixed += wd * keep;
                divisor += w * keep;
            }
            (mixed, if divisor == 0.0 { 1.0 } else { divisor })
        } else {
            let mixed: f32 = weighted.iter().sum();
            let divisor: f32 = weights.iter().sum();
            (mixed, if divisor.abs() < 1e-8 { 1.0 } else { divisor })
        };
        let mut mixed = if g.normalize { mixed / divisor } else { mixed };
        if g.lambda != 1.0 {
            mixed *= g.lambda as f32;
        }
        out.push(base[i] + mixed);
    }
    Ok(out)
}
