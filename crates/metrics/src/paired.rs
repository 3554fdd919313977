//! Paired comparison of two models on the same documents — what lm-eval lacks: the score difference with a
//! paired-bootstrap confidence interval, McNemar's exact test for binary scores, and Holm's step-down
//! correction across tasks.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use crate::error::{MetricsError, Result};

/// Difference of means (b − a) and its percentile paired-bootstrap interval: documents are resampled with
/// replacement and both models scored on the same resample.
pub fn paired_bootstrap(
    a: &[f64],
    b: &[f64],
    iters: usize,
    confidence: f64,
    seed: u64,
) -> Result<(f64, f64, f64)> {
    if a.len() != b.len() {
        return Err(MetricsError::Unpaired {
            what: "paired bootstrap".into(),
            left: a.len(),
            right: b.len(),
        });
    }
    if a.is_empty() || iters == 0 {
        return Err(MetricsError::Empty {
            what: "paired bootstrap".into(),
        });
    }
    let n = a.len();
    let d: Vec<f64> = b.iter().zip(a).map(|(y, x)| y - x).collect();
    let point = d.iter().sum::<f64>() / n as f64;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut stats: Vec<f64> = (0..iters)
        .map(|_| (0..n).map(|_| d[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    stats.sort_by(f64::total_cmp);
    let alpha = (1.0 - confidence) / 2.0;
    let at = |q: f64| stats[((q * iters as f64) as usize).min(iters - 1)];
    Ok((point, at(alpha), at(1.0 - alpha)))
}

/// McNemar's exact test (two-sided binomial test on the discordant pairs): `b` documents only model A got
/// right, `c` only model B. p = min(1, 2·P(X ≤ min(b, c))), X ~ Binomial(b + c, ½); computed in log space.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    let ln2 = std::f64::consts::LN_2;
    let mut log_term = -(n as f64) * ln2; // ln C(n, 0) / 2^n
    let mut log_sum = log_term;
    for i in 1..=k {
        log_term += ((n - i + 1) as f64).ln() - (i as f64).ln();
        let (hi, lo) = if log_sum > log_term {
            (log_sum, log_term)
        } else {
            (log_term, log_sum)
        };
        log_sum = hi + (lo - hi).exp().ln_1p();
    }
    (2.0 * log_sum.exp()).min(1.0)
}

/// Holm's step-down adjusted p-values, in input order: sort ascending, pᵢ·(m − i), running maximum, cap at 1.
pub fn holm(pvalues: &[f64]) -> Vec<f64> {
    let m = pvalues.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| pvalues[i].total_cmp(&pvalues[j]));
    let mut adjusted = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * pvalues[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// One task's row of a comparison table.
#[derive(Debug, Clone, Serialize)]
pub struct PairedComparison {
    pub task: String,
    pub metric: String,
    pub n: usize,
    pub score_a: f64,
    pub score_b: f64,
    pub diff: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// McNemar's exact p for 0/1 scores; `None` for continuous metrics.
    pub mcnemar_p: Option<f64>,
    /// Holm-adjusted p across the table's tasks (filled by [`PairedComparison::table`]).
    pub holm_p: Option<f64>,
}

impl PairedComparison {
    /// Compares per-document scores of models A and B on one task.
    pub fn new(task: &str, metric: &str, a: &[f64], b: &[f64], iters: usize, seed: u64) -> Result<Self> {
        let (diff, lo, hi) = paired_bootstrap(a, b, iters, 0.95, seed)?;
        let n = a.len();
        let binary = a.iter().chain(b).all(|&x| x == 0.0 || x == 1.0);
        let mcnemar_p = binary.then(|| {
            let only_a = a.iter().zip(b).filter(|(x, y)| **x == 1.0 && **y == 0.0).count() as u64;
            let only_b = a.iter().zip(b).filter(|(x, y)| **x == 0.0 && **y == 1.0).count() as u64;
            mcnemar_exact(only_a, only_b)
        });
        Ok(Self {
            task: task.into(),
            metric: metric.into(),
            n,
            score_a: a.iter().sum::<f64>() / n as f64,
            score_b: b.iter().sum::<f64>() / n as f64,
            diff,
            ci_low: lo,
            ci_high: hi,
            mcnemar_p,
            holm_p: None,
        })
    }

    /// Applies Holm's correction across rows (over the McNemar p-values present).
    pub fn correct(rows: &mut [PairedComparison]) {
        let idx: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].mcnemar_p.is_some()).collect();
        let p: Vec<f64> = idx
            .iter()
            .map(|&i| rows[i].mcnemar_p.expect("filtered"))
            .collect();
        for (&i, adj) in idx.iter().zip(holm(&p)) {
            rows[i].holm_p = Some(adj);
        }
    }

    /// A Markdown table (significance at 5 % after Holm).
    pub fn markdown(rows: &[PairedComparison], name_a: &str, name_b: &str) -> String {
        let mut s = format!(
            "| task | metric | n | {name_a} | {name_b} | Δ (B − A) | 95 % CI | McNemar p | Holm p | significant |\n\
             |---|---|---|---|---|---|---|---|---|---|\n"
        );
        for r in rows {
            let p = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.3e}"));
            s += &format!(
                "| {} | {} | {} | {:.4} | {:.4} | {:+.4} | [{:+.4}, {:+.4}] | {} | {} | {} |\n",
                r.task,
                r.metric,
                r.n,
                r.score_a,
                r.score_b,
                r.diff,
                r.ci_low,
                r.ci_high,
                p(r.mcnemar_p),
                p(r.holm_p),
                if r.holm_p.is_some_and(|h| h < 0.05) {
                    "yes"
                } else {
                    "no"
                }
            );
        }
        s
    }

    pub fn csv(rows: &[PairedComparison]) -> String {
        let mut s = String::from("task,metric,n,score_a,score_b,diff,ci_low,ci_high,mcnemar_p,holm_p\n");
        for r in rows {
            let p = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v}"));
            s += &format!(
                "{},{},{},{},{},{},{},{},{},{}\n",
                r.task,
                r.metric,
                r.n,
                r.score_a,
                r.score_b,
                r.diff,
                r.ci_low,
                r.ci_high,
                p(r.mcnemar_p),
                p(r.holm_p)
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcnemar_known_values() {
        // b = 1, c = 6: 2·(C(7,0) + C(7,1))/2^7 = 2·8/128 = 0.125.
        assert!((mcnemar_exact(1, 6) - 0.125).abs() < 1e-12);
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // b = 0, c = 10: 2/1024.
        assert!((mcnemar_exact(0, 10) - 2.0 / 1024.0).abs() < 1e-15);
        // Large n stays exact in log space: b = 4000, c = 4400; scipy.stats.binomtest(4000, 8400).pvalue.
        let p = mcnemar_exact(4000, 4400);
        assert!((p / 1.335_397_821_357_053_8e-5 - 1.0).abs() < 1e-9, "{p}");
    }

    #[test]
    fn holm_textbook_example() {
        // Holm (1979)-style example: p = 0.01, 0.04, 0.03, 0.005 → adjusted 0.03, 0.06, 0.06, 0.02.
        let adj = holm(&[0.01, 0.04, 0.03, 0.005]);
        let want = [0.03, 0.06, 0.06, 0.02];
        for (a, w) in adj.iter().zip(want) {
            assert!((a - w).abs() < 1e-12, "{adj:?}");
        }
    }

    #[test]
    fn bootstrap_interval_contains_the_analytic_one_on_a_large_sample() {
        // 4000 paired 0/1 scores; analytic 95 % CI of the mean difference = d̄ ± 1.96·sd(d)/√n.
        let n = 4000;
        let a: Vec<f64> = (0..n).map(|i| ((i * 7919) % 10 < 6) as u8 as f64).collect();
        let b: Vec<f64> = (0..n).map(|i| ((i * 104_729) % 10 < 7) as u8 as f64).collect();
        let (d, lo, hi) = paired_bootstrap(&a, &b, 2000, 0.95, 7).unwrap();
        let diffs: Vec<f64> = b.iter().zip(&a).map(|(y, x)| y - x).collect();
        let se = crate::aggregate::mean_stderr(&diffs).unwrap();
        let (alo, ahi) = (d - 1.96 * se, d + 1.96 * se);
        assert!(
            (lo - alo).abs() < 0.3 * se && (hi - ahi).abs() < 0.3 * se,
            "bootstrap [{lo}, {hi}] vs analytic [{alo}, {ahi}]"
        );
        let row = PairedComparison::new("t", "acc", &a, &b, 200, 1).unwrap();
        assert!(row.mcnemar_p.unwrap() < 1e-6);
        let mut rows = vec![row];
        PairedComparison::correct(&mut rows);
        assert!(PairedComparison::markdown(&rows, "LLM", "VLM").contains("| yes |"));
        assert!(paired_bootstrap(&a, &b[..10], 10, 0.95, 1).is_err());
    }
}
