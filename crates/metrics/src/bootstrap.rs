//! Standard errors lm-eval estimates by bootstrap (`bootstrap_stderr`, for metrics without a closed form:
//! median, F1, Matthews correlation, …), reproduced draw for draw: chunks of ≤ 1000 replicates, chunk i drawn
//! with `random.Random(i).choices(xs, k=len(xs))`, then the sample standard deviation of all replicates. The
//! statistics themselves follow lm-eval's definitions (`median` is the upper median, F1 and MCC are sklearn's
//! binary scores with positive label 1 and 0 when undefined).

use crate::aggregate::sample_stddev;
use crate::error::{MetricsError, Result};
use crate::python_random::PyRandom;

/// lm-eval's `bootstrap_stderr(f, xs, iters)`.
pub fn bootstrap_stderr<T: Clone>(f: impl Fn(&[T]) -> f64, xs: &[T], iters: usize) -> Result<f64> {
    if xs.is_empty() || iters == 0 {
        return Err(MetricsError::Empty {
            what: "bootstrap".into(),
        });
    }
    let chunk = iters.min(1000);
    let mut reps = Vec::with_capacity(iters / chunk * chunk);
    let mut sample = Vec::with_capacity(xs.len());
    for i in 0..iters / chunk {
        let mut rnd = PyRandom::new(i as u64);
        for _ in 0..chunk {
            sample.clear();
            sample.extend(
                rnd.choices_indices(xs.len(), xs.len())
                    .into_iter()
                    .map(|j| xs[j].clone()),
            );
            reps.push(f(&sample));
        }
    }
    sample_stddev(&reps)
}

/// lm-eval's `median`: `sorted(arr)[len(arr) // 2]`.
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn confusion(pairs: &[(u8, u8)]) -> (f64, f64, f64, f64) {
    let (mut tp, mut fp, mut fn_, mut tn) = (0f64, 0f64, 0f64, 0f64);
    for &(g, p) in pairs {
        match (g != 0, p != 0) {
            (true, true) => tp += 1.0,
            (false, true) => fp += 1.0,
            (true, false) => fn_ += 1.0,
            (false, false) => tn += 1.0,
        }
    }
    (tp, fp, fn_, tn)
}

/// Binary F1 of (gold, prediction) pairs, positive label 1 (sklearn's `f1_score`; 0 when undefined).
pub fn f1(pairs: &[(u8, u8)]) -> f64 {
    let (tp, fp, fn_, _) = confusion(pairs);
    let d = 2.0 * tp + fp + fn_;
    if d == 0.0 { 0.0 } else { 2.0 * tp / d }
}

/// Matthews correlation of (gold, prediction) pairs (sklearn's `matthews_corrcoef`; 0 when undefined).
pub fn matthews(pairs: &[(u8, u8)]) -> f64 {
    let (tp, fp, fn_, tn) = confusion(pairs);
    let d = ((tp + fp) * (tp + fn_) * (tn + fp) * (tn + fn_)).sqrt();
    if d == 0.0 { 0.0 } else { (tp * tn - fp * fn_) / d }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_random_floats_and_choices() {
        // random.Random(0).random() and .choices(range(10), k=5) in CPython.
        let mut r = PyRandom::new(0);
        assert_eq!(r.random(), 0.8444218515250481);
        let mut r = PyRandom::new(0);
        assert_eq!(r.choices_indices(10, 5), vec![8, 7, 4, 2, 5]);
    }
}
