//! Task-vector sparsification as mergekit's `sparsify.py` defines it, plus the papers' exact rescaling where
//! mergekit deviates. All functions take one task vector (`delta`, f32, row-major with `shape`) and return
//! the sparsified copy.

use crate::mt19937::Mt19937;

/// How kept entries are rescaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rescale {
    None,
    /// mergekit: scale the kept entries so the L1 norm equals the original's (`rescaled_masked_tensor`, l1;
    /// skipped when either norm is below 1e-7).
    L1,
    /// DARE paper: divide kept entries by their keep probability (1/density; 1/p_i for DELLA).
    InverseProbability,
}

/// mergekit's `rescaled_masked_tensor` with the L1 norm.
fn l1_rescale(original: &[f32], masked: &mut [f32]) {
    let before: f64 = original.iter().map(|x| x.abs() as f64).sum();
    let after: f64 = masked.iter().map(|x| x.abs() as f64).sum();
    let (before, after) = (before as f32, after as f32);
    if before < 1e-7 || after < 1e-7 {
        return;
    }
    let scale = before / after;
    masked.iter_mut().for_each(|x| *x *= scale);
}

/// Indices of `delta` sorted by |x| as f32, descending; ties in index order.
fn order_desc(delta: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..delta.len()).collect();
    idx.sort_by(|&a, &b| delta[b].abs().total_cmp(&delta[a].abs()).then(a.cmp(&b)));
    idx
}

/// `magnitude`: keep the k = ⌊density·n⌋ largest |x|. mergekit asserts k > 0; so do we, as an error.
pub fn magnitude(delta: &[f32], density: f64, rescale: Rescale) -> Result<Vec<f32>, String> {
    if density >= 1.0 {
        return Ok(delta.to_vec());
    }
    let k = (density * delta.len() as f64) as usize;
    if k == 0 {
        return Err(format!(
            "density {density} keeps no entry of a {}-element tensor",
            delta.len()
        ));
    }
    // Exactly k kept: a selection (not a full sort) finds the threshold; ties at it go in index order.
    let keys: Vec<u32> = delta.iter().map(|x| x.abs().to_bits()).collect();
    let mask = crate::select::threshold_for(&keys, k as u64).mask(&keys, &mut 0);
    let mut out: Vec<f32> = delta
        .iter()
        .zip(mask)
        .map(|(&d, m)| if m { d } else { 0.0 })
        .collect();
    rescale_kept(delta, &mut out, density, rescale);
    Ok(out)
}

/// Rescales the entries of `delta` that a top-K by magnitude kept (`kept`, the rest zero) as `rescale` says.
pub(crate) fn rescale_kept(delta: &[f32], kept: &mut [f32], density: f64, rescale: Rescale) {
    match rescale {
        Rescale::L1 => l1_rescale(delta, kept),
        Rescale::InverseProbability => {
            let s = (1.0 / density) as f32;
            kept.iter_mut().for_each(|x| *x *= s);
        }
        Rescale::None => {}
    }
}

/// `magnitude_outliers` (Model Breadcrumbs): drop the γ·n largest and then the smallest entries so that
/// ⌊density·n⌋ remain. mergekit slices `indices[n_bot:-n_top]`, which is empty when ⌊γ·n⌋ = 0 and so zeroes
/// the whole task vector; here the slice ends at n − n_top, which keeps the intended entries.
pub fn magnitude_outliers(delta: &[f32], density: f64, gamma: f64, rescale: Rescale) -> Vec<f32> {
    if density >= 1.0 {
        return delta.to_vec();
    }
    let n = delta.len();
    let target = (density * n as f64) as i64;
    let mut n_top = (gamma * n as f64) as i64;
    let mut n_bot = n as i64 - target - n_top;
    if n_bot < 0 {
        n_top += n_bot;
        n_bot = 0;
    }
    let mut asc = order_desc(delta);
    asc.reverse();
    let mut out = vec![0.0f32; n];
    for &i in &asc[n_bot as usize..n - n_top as usize] {
        out[i] = delta[i];
    }
    if rescale == Rescale::L1 {
        l1_rescale(delta, &mut out);
    }
    out
}

/// `bernoulli` (DARE): keep each entry with probability `density`. One generator word per element, compared
/// as torch's CPU `bernoulli` does, so a seeded run reproduces `mergekit-yaml --random-seed`.
pub fn bernoulli(delta: &[f32], density: f64, rescale: Rescale, rng: &mut Mt19937) -> Vec<f32> {
    if density >= 1.0 {
        return delta.to_vec();
    }
    let inv = (1.0 / density) as f32;
    let p = density as f32;
    let mut out: Vec<f32> = delta
        .iter()
        .map(|&x| {
            let keep = rng.next_unit_f32() < p;
            match (keep, rescale) {
                (false, _) => 0.0,
                (true, Rescale::InverseProbability) => x * inv,
                (true, _) => x,
            }
        })
        .collect();
    if rescale == Rescale::L1 {
        l1_rescale(delta, &mut out);
    }
    out
}

/// `della_magprune` (DELLA): per row (a 1-D tensor is one row), keep entries with probability rising linearly
/// with their magnitude rank from density − ε to density + ε.
pub fn della(
    delta: &[f32],
    shape: &[usize],
    density: f64,
    epsilon: f64,
    rescale: Rescale,
    rng: &mut Mt19937,
) -> Result<Vec<f32>, String> {
    if density >= 1.0 {
        return Ok(delta.to_vec());
    }
    if density <= 0.0 {
        return Ok(vec![0.0; delta.len()]);
    }
    if density + epsilon >= 1.0 || density - epsilon <= 0.0 {
        return Err(format!(
            "epsilon {epsilon} must keep density ± epsilon inside (0, 1) (density {density})"
        ));
    }
    let row = if shape.len() < 2 {
        delta.len()
    } else {
        *shape.last().expect("rank ≥ 2")
    };
    let mut out = vec![0.0f32; delta.len()];
    for (r, chunk) in delta.chunks(row.max(1)).enumerate() {
        let n = chunk.len();
        let mut asc: Vec<usize> = (0..n).collect();
        asc.sort_by(|&a, &b| chunk[a].abs().total_cmp(&chunk[b].abs()).then(a.cmp(&b)));
        let mut rank = vec![0usize; n];
        asc.iter().enumerate().for_each(|(pos, &i)| rank[i] = pos);
        // torch: ((ranks - 1) / (n - 1)) in f32, then (d - e) + rank_norm * 2 * e with f32 scalars.
        for i in 0..n {
            let norm = if n > 1 {
                (rank[i] as f32 / (n - 1) as f32).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let p = (density - epsilon) as f32 + (norm * 2.0) * epsilon as f32;
            if rng.next_unit_f32() < p {
                let x = chunk[i];
                out[r * row + i] = if rescale == Rescale::InverseProbability {
                    x / p
                } else {
                    x
                };
            }
        }
    }
    if rescale == Rescale::L1 {
        l1_rescale(delta, &mut out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magnitude_keeps_the_largest_and_rescales() {
        let d = [0.1f32, -3.0, 0.5, 2.0];
        assert_eq!(
            magnitude(&d, 0.5, Rescale::None).unwrap(),
            vec![0.0, -3.0, 0.0, 2.0]
        );
        let l1 = magnitude(&d, 0.5, Rescale::L1).unwrap();
        let s = 5.6f32 / 5.0;
        assert_eq!(l1, vec![0.0, -3.0 * s, 0.0, 2.0 * s]);
        assert!(magnitude(&d, 0.2, Rescale::None).is_err());
    }

    #[test]
    fn breadcrumbs_without_mergekits_empty_slice() {
        // gamma * n < 1: mergekit's indices[n_bot:-0] would be empty and zero everything.
        let d: Vec<f32> = (1..=10).map(|x| x as f32).collect();
        let out = magnitude_outliers(&d, 0.3, 0.05, Rescale::None);
        assert_eq!(out.iter().filter(|x| **x != 0.0).count(), 3);
        assert_eq!(&out[7..], &[8.0, 9.0, 10.0]);
        // gamma * n = 2: the two largest go, then the smallest, leaving 3.
        let out = magnitude_outliers(&d, 0.3, 0.2, Rescale::None);
        assert_eq!(&out[5..], &[6.0, 7.0, 8.0, 0.0, 0.0]);
    }

    #[test]
    fn dare_keeps_about_density_and_preserves_norm_in_expectation() {
        let d: Vec<f32> = (0..200_000)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let mut rng = Mt19937::new(7);
        let out = bernoulli(&d, 0.3, Rescale::InverseProbability, &mut rng);
        let kept = out.iter().filter(|x| **x != 0.0).count() as f64 / d.len() as f64;
        assert!((kept - 0.3).abs() < 0.005, "kept {kept}");
        let sum = |v: &[f32]| v.iter().map(|x| *x as f64).sum::<f64>();
        let l1 = |v: &[f32]| v.iter().map(|x| x.abs() as f64).sum::<f64>();
        assert!((l1(&out) / l1(&d) - 1.0).abs() < 0.02);
        assert!((sum(&out) - sum(&d)).abs() / l1(&d) < 0.02);
        let out = bernoulli(&d, 0.3, Rescale::L1, &mut Mt19937::new(7));
        assert!((l1(&out) / l1(&d) - 1.0).abs() < 1e-4);
    }

    #[test]
    fn della_probabilities_follow_rank() {
        let d: Vec<f32> = (1..=100).map(|i| i as f32).collect::<Vec<_>>().repeat(2000);
        let out = della(&d, &[2000, 100], 0.5, 0.4, Rescale::None, &mut Mt19937::new(1)).unwrap();
        let rate = |col: usize| (0..2000).filter(|r| out[r * 100 + col] != 0.0).count() as f64 / 2000.0;
        assert!((rate(0) - 0.1).abs() < 0.03, "{}", rate(0));
        assert!((rate(99) - 0.9).abs() < 0.03, "{}", rate(99));
        assert!(della(&d, &[2000, 100], 0.5, 0.5, Rescale::None, &mut Mt19937::new(1)).is_err());
    }
}
