//! `exact_match` as lm-eval computes it (HF evaluate's definition, copied into `lm_eval/api/metrics.py`):
//! remove every `regexes_to_ignore` match from prediction and reference, then optionally lowercase, strip ASCII
//! punctuation (`string.punctuation`) and digits, then compare whole strings.

use regex::Regex;

use crate::error::{MetricsError, Result};

/// Options of `exact_match` (lm-eval's `metric_list` kwargs).
#[derive(Debug, Clone, Default)]
pub struct ExactMatch {
    regexes: Vec<Regex>,
    pub ignore_case: bool,
    pub ignore_punctuation: bool,
    pub ignore_numbers: bool,
}

const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

impl ExactMatch {
    pub fn new(regexes_to_ignore: &[&str], ignore_case: bool, ignore_punctuation: bool) -> Result<Self> {
        let regexes = regexes_to_ignore
            .iter()
            .map(|p| {
                Regex::new(p).map_err(|e| MetricsError::Regex {
                    pattern: p.to_string(),
                    message: e.to_string(),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            regexes,
            ignore_case,
            ignore_punctuation,
            ignore_numbers: false,
        })
    }

    fn normalise(&self, s: &str) -> String {
        let mut s = s.to_string();
        for r in &self.regexes {
            s = r.replace_all(&s, "").into_owned();
        }
        if self.ignore_case {
            s = s.to_lowercase();
        }
        if self.ignore_punctuation {
            s.retain(|c| !PUNCTUATION.contains(c));
        }
        if self.ignore_numbers {
            s.retain(|c| !c.is_ascii_digit());
        }
        s
    }

    /// 1.0 if the normalised prediction equals the normalised reference, else 0.0 (one document).
    pub fn score(&self, prediction: &str, reference: &str) -> f64 {
        (self.normalise(prediction) == self.normalise(reference)) as u8 as f64
    }
}

/// Convenience: one document with lm-eval's defaults (no normalisation).
pub fn exact_match(prediction: &str, reference: &str) -> f64 {
    ExactMatch::default().score(prediction, reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm8k_normalisation() {
        // gsm8k's metric_list: ignore_case, ignore_punctuation: false, regexes_to_ignore [",", "\\$", "(?s).*#### ", "\\.$"].
        let em = ExactMatch::new(&[",", "\\$", "(?s).*#### ", "\\.$"], true, false).unwrap();
        assert_eq!(em.score("$1,234.", "1234"), 1.0);
        assert_eq!(em.score("so the answer\n#### 18", "Janet...\n#### 18"), 1.0);
        assert_eq!(em.score("[invalid]", "18"), 0.0);
        let p = ExactMatch::new(&[], true, true).unwrap();
        assert_eq!(p.score("Yes!", "yes"), 1.0);
        assert_eq!(exact_match("Yes", "yes"), 0.0);
        assert!(ExactMatch::new(&["(unclosed"], false, false).is_err());
    }
}
