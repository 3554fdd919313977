//! Multiple-choice scores from per-choice log-likelihoods, as lm-eval's `process_results`: `acc` (argmax of
//! the log-likelihoods), `acc_norm` (divided by each choice's length in characters), `acc_bytes` (in UTF-8
//! bytes); ties go to the first choice (numpy's argmax).

use serde::Serialize;

use crate::error::{MetricsError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChoiceScores {
    pub acc: f64,
    pub acc_norm: f64,
    pub acc_bytes: f64,
}

fn argmax(v: impl Iterator<Item = f64>) -> usize {
    let mut best: Option<(usize, f64)> = None;
    for (i, x) in v.enumerate() {
        if best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best.map_or(0, |(i, _)| i)
}

/// Scores one document. `choices` are the answer texts without the target delimiter (lm-eval measures those).
pub fn multiple_choice(lls: &[f64], choices: &[String], gold: usize) -> Result<ChoiceScores> {
    if lls.len() != choices.len() {
        return Err(MetricsError::Unpaired {
            what: "log-likelihoods and choices".into(),
            left: lls.len(),
            right: choices.len(),
        });
    }
    if lls.is_empty() {
        return Err(MetricsError::Empty {
            what: "choices".into(),
        });
    }
    if gold >= choices.len() {
        return Err(MetricsError::Invalid(format!(
            "answer index {gold} is out of range for {} choices",
            choices.len()
        )));
    }
    let hit = |i: usize| (i == gold) as u8 as f64;
    let pred = argmax(lls.iter().copied());
    let norm = argmax(lls.iter().zip(choices).map(|(l, c)| l / c.chars().count() as f64));
    let bytes = argmax(lls.iter().zip(choices).map(|(l, c)| l / c.len() as f64));
    Ok(ChoiceScores {
        acc: hit(pred),
        acc_norm: hit(norm),
        acc_bytes: hit(bytes),
    })
}
