//! lm-evaluation-harness's answer filters (`lm_eval/filters`): `regex` (Python `re.findall` semantics with
//! `group_select` and a fallback), `take_first`, `lowercase`, `remove_whitespace`, `majority_vote`, composed
//! into named pipelines as in a task's `filter_list` (gsm8k's `strict-match` and `flexible-extract`).

use regex::Regex;
use serde_json::Value;

use crate::error::{Result, TasksError};

/// One filter step.
#[derive(Debug, Clone)]
pub enum Filter {
    Regex {
        re: Regex,
        group_select: i64,
        fallback: String,
    },
    TakeFirst,
    Lowercase,
    Whitespace,
    MajorityVote,
}

/// A named chain of filters.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub filters: Vec<Filter>,
}

fn bad(message: String) -> TasksError {
    TasksError::Template {
        task: String::new(),
        doc_id: 0,
        what: "filter_list".into(),
        message,
    }
}

impl Pipeline {
    /// From one `filter_list` entry: `{name, filter: [{function, ...}, ...]}`.
    pub fn from_config(v: &Value) -> Result<Self> {
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("none")
            .to_string();
        let steps = v
            .get("filter")
            .and_then(Value::as_array)
            .ok_or_else(|| bad(format!("`{name}` has no filter list")))?;
        let filters = steps
            .iter()
            .map(|f| {
                let function = f.get("function").and_then(Value::as_str).unwrap_or("");
                Ok(match function {
                    "regex" => {
                        let pattern = f
                            .get("regex_pattern")
                            .and_then(Value::as_str)
                            .unwrap_or("#### (\\-?[0-9\\.\\,]+)");
                        Filter::Regex {
                            re: Regex::new(pattern).map_err(|e| bad(format!("regex `{pattern}`: {e}")))?,
                            group_select: f.get("group_select").and_then(Value::as_i64).unwrap_or(0),
                            fallback: f
                                .get("fallback")
                                .and_then(Value::as_str)
                                .unwrap_or("[invalid]")
                                .to_string(),
                        }
                    }
                    "take_first" => Filter::TakeFirst,
                    "lowercase" => Filter::Lowercase,
                    "remove_whitespace" => Filter::Whitespace,
                    "majority_vote" => Filter::MajorityVote,
                    other => return Err(bad(format!("filter function `{other}` is not supported"))),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { name, filters })
    }

    /// Applies the chain to one document's responses (one per repeat); selection filters leave one.
    pub fn apply(&self, responses: &[String]) -> Vec<String> {
        let mut cur: Vec<String> = responses.to_vec();
        for f in &self.filters {
            cur = match f {
                Filter::Regex {
                    re,
                    group_select,
                    fallback,
                } => cur
                    .iter()
                    .map(|r| regex_extract(re, *group_select, fallback, r))
                    .collect(),
                Filter::TakeFirst => cur.into_iter().take(1).collect(),
                Filter::Lowercase => cur.iter().map(|r| r.to_lowercase()).collect(),
                Filter::Whitespace => cur.iter().map(|r| r.trim().to_string()).collect(),
                Filter::MajorityVote => majority(&cur).into_iter().collect(),
            };
        }
        cur
    }
}

/// Python's `re.findall(resp)[group_select]`: whole matches without groups, the group with one, the first
/// non-empty group of the tuple with several; stripped; the fallback when nothing matches.
pub fn regex_extract(re: &Regex, group_select: i64, fallback: &str, resp: &str) -> String {
    let groups = re.captures_len() - 1;
    let found: Vec<Vec<String>> = re
        .captures_iter(resp)
        .map(|c| {
            if groups == 0 {
                vec![c[0].to_string()]
            } else {
                (1..=groups)
                    .map(|g| c.get(g).map_or(String::new(), |m| m.as_str().to_string()))
                    .collect()
            }
        })
        .collect();
    if found.is_empty() {
        return fallback.to_string();
    }
    let n = found.len() as i64;
    let idx = if group_select < 0 {
        n + group_select
    } else {
        group_select
    };
    let Some(m) = usize::try_from(idx).ok().and_then(|i| found.get(i)) else {
        // Python raises IndexError here; an out-of-range selection is treated as no match.
        return fallback.to_string();
    };
    let value = if groups <= 1 {
        m[0].clone()
    } else {
        m.iter()
            .find(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| fallback.to_string())
    };
    value.trim().to_string()
}

/// `Counter(resps).most_common(1)`: the most frequent response, ties to the first seen.
fn majority(resps: &[String]) -> Option<String> {
    let mut counts: Vec<(&String, usize)> = Vec::new();
    for r in resps {
        match counts.iter_mut().find(|(s, _)| *s == r) {
            Some((_, c)) => *c += 1,
            None => counts.push((r, 1)),
        }
    }
    let best = counts.iter().map(|(_, c)| *c).max()?;
    counts
        .into_iter()
        .find(|(_, c)| *c == best)
        .map(|(s, _)| s.clone())
}
