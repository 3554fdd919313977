//! Aggregation as lm-eval does it: the mean with the closed-form standard error (sample standard deviation,
//! n − 1, over √n), and size-weighted group scores with the pooled standard error
//! (`aggregate_subtask_metrics`, `pooled_sample_stderr`).

use crate::error::{MetricsError, Result};

/// Arithmetic mean (lm-eval `mean`).
pub fn mean(xs: &[f64]) -> Result<f64> {
    if xs.is_empty() {
        return Err(MetricsError::Empty { what: "mean".into() });
    }
    Ok(xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Sample standard deviation with n − 1 (lm-eval `sample_stddev`); 0 for a single value would divide by zero in
/// lm-eval, so fewer than two values is an error here.
pub fn sample_stddev(xs: &[f64]) -> Result<f64> {
    if xs.len() < 2 {
        return Err(MetricsError::Invalid(format!(
            "a sample standard deviation needs 2 values, got {}",
            xs.len()
        )));
    }
    let mu = mean(xs)?;
    Ok((xs.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt())
}

/// Standard error of the mean (lm-eval `mean_stderr`): sample_stddev / √n.
pub fn mean_stderr(xs: &[f64]) -> Result<f64> {
    Ok(sample_stddev(xs)? / (xs.len() as f64).sqrt())
}

/// Size-weighted group score (lm-eval `aggregate_subtask_metrics(weight_by_size=True)`), e.g. MMLU over its 57
/// subjects.
pub fn group_mean(scores: &[f64], sizes: &[usize]) -> Result<f64> {
    if scores.len() != sizes.len() {
        return Err(MetricsError::Unpaired {
            what: "group scores and sizes".into(),
            left: scores.len(),
            right: sizes.len(),
        });
    }
    let total: usize = sizes.iter().sum();
    if total == 0 {
        return Err(MetricsError::Empty { what: "group".into() });
    }
    Ok(scores.iter().zip(sizes).map(|(s, &n)| s * n as f64).sum::<f64>() / total as f64)
}

/// Pooled standard error of a size-weighted group (lm-eval `pooled_sample_stderr`):
/// √( Σ (nᵢ − 1)·seᵢ²·nᵢ / (Σ nᵢ − k) / Σ nᵢ ).
pub fn pooled_stderr(stderrs: &[f64], sizes: &[usize]) -> Result<f64> {
    if stderrs.len() != sizes.len() {
        return Err(MetricsError::Unpaired {
            what: "group stderrs and sizes".into(),
            left: stderrs.len(),
            right: sizes.len(),
        });
    }
    let total: usize = sizes.iter().sum();
    if total <= sizes.len() {
        return Err(MetricsError::Invalid(
            "pooled stderr needs more documents than subtasks".into(),
        ));
    }
    let num: f64 = sizes
        .iter()
        .zip(stderrs)
        .map(|(&n, se)| (n as f64 - 1.0) * se * se * n as f64)
        .sum();
    Ok((num / (total - sizes.len()) as f64 / total as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_form_stderr() {
        let xs = [1.0, 0.0, 1.0, 1.0];
        assert_eq!(mean(&xs).unwrap(), 0.75);
        // sample sd = sqrt(0.75/3) = 0.5; / sqrt(4) = 0.25
        assert!((mean_stderr(&xs).unwrap() - 0.25).abs() < 1e-12);
        assert!(mean(&[]).is_err() && sample_stddev(&[1.0]).is_err());
    }

    #[test]
    fn pooled_stderr_and_group_mean() {
        // lm-eval's pooled_sample_stderr by hand: sizes 10, 20; stderrs 0.1, 0.2 →
        // √((9·0.01·10 + 19·0.04·20) / (30 − 2) / 30) = √(16.1 / 28 / 30).
        let want = (16.1f64 / 28.0 / 30.0).sqrt();
        assert!((pooled_stderr(&[0.1, 0.2], &[10, 20]).unwrap() - want).abs() < 1e-12);
        assert_eq!(group_mean(&[0.5, 1.0], &[2, 6]).unwrap(), 0.875);
        assert!(pooled_stderr(&[0.1], &[1]).is_err() && group_mean(&[0.1], &[1, 2]).is_err());
    }
}
