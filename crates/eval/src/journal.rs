//! The resume journal: every finished request is appended (one JSON line, flushed to disk per chunk) to
//! `journal.jsonl` in the output directory. A run killed at any point — SIGKILL included — leaves at worst a
//! partial last line, which reopening drops; the requests it lists are not asked again.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result, io};

/// A model's answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Answer {
    Loglikelihood { logprob: f64, is_greedy: bool },
    Generation { text: String },
}

#[derive(Serialize, Deserialize)]
struct Entry {
    key: String,
    #[serde(flatten)]
    answer: Answer,
}

pub struct Journal {
    path: PathBuf,
    file: File,
    done: HashMap<String, Answer>,
}

impl Journal {
    /// Opens (or creates) the journal, keeping every complete line and cutting a partial last one.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(path)(e)),
        };
        let mut done = HashMap::new();
        let mut good_len = 0usize;
        let lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
        for (i, line) in lines.iter().enumerate() {
            let complete = line.ends_with(b"\n");
            match serde_json::from_slice::<Entry>(line) {
                Ok(e) if complete => {
                    done.insert(e.key, e.answer);
                    good_len += line.len();
                }
                // The last line of a killed run: cut it.
                _ if i + 1 == lines.len() => break,
                Ok(_) => unreachable!("only the last line can lack its newline"),
                Err(e) => {
                    return Err(EvalError::BadFile {
                        path: path.into(),
                        message: format!("line {}: {e} (the journal was edited or damaged)", i + 1),
                    });
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io(path))?;
        if good_len < bytes.len() {
            file.set_len(good_len as u64).map_err(io(path))?;
        }
        Ok(Self {
            path: path.into(),
            file,
            done,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Answer> {
        self.done.get(key)
    }

    pub fn len(&self) -> usize {
        self.done.len()
    }

    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }

    /// Appends finished requests and flushes them to disk. Values are kept as they read back, so a resumed
    /// run and an uninterrupted one compute results from identical numbers.
    ///
    /// A log-likelihood that is not finite (NaN from an overflow in the model's dtype, say) is refused before
    /// anything of the chunk is written: JSON has no NaN, so the line would not read back, and no metric of
    /// lm-eval's means anything with one.
    pub fn append(&mut self, entries: Vec<(String, Answer)>) -> Result<()> {
        if let Some((key, logprob)) = entries.iter().find_map(|(k, a)| match a {
            Answer::Loglikelihood { logprob, .. } if !logprob.is_finite() => Some((k, logprob)),
            _ => None,
        }) {
            return Err(EvalError::Input(format!(
                "request `{key}`: the model's log-likelihood is {logprob}, not a finite number (an overflow in \
                 its dtype? f32 weights avoid it); nothing of this chunk was written to {}",
                self.path.display()
            )));
        }
        let mut buf = Vec::new();
        for (key, answer) in entries {
            let line = serde_json::to_string(&Entry { key, answer }).expect("journal entries serialise");
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            let back: Entry = serde_json::from_str(&line).expect("a line just written parses");
            self.done.insert(back.key, back.answer);
        }
        self.file.write_all(&buf).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_likelihood_that_is_not_finite_is_an_error_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&p).unwrap();
        for bad in [f64::NAN, f64::NEG_INFINITY] {
            let e = j
                .append(vec![
                    (
                        "a#0".into(),
                        Answer::Loglikelihood {
                            logprob: -1.0,
                            is_greedy: false,
                        },
                    ),
                    (
                        "a#1".into(),
                        Answer::Loglikelihood {
                            logprob: bad,
                            is_greedy: false,
                        },
                    ),
                ])
                .unwrap_err();
            assert!(e.to_string().contains("a#1"), "{e}");
        }
        assert!(j.is_empty());
        drop(j);
        assert!(Journal::open(&p).unwrap().is_empty());
        assert_eq!(std::fs::read(&p).unwrap(), b"");
    }

    #[test]
    fn a_partial_last_line_is_cut_and_a_damaged_middle_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&p).unwrap();
        j.append(vec![
            (
                "a#0".into(),
                Answer::Loglikelihood {
                    logprob: -1.25,
                    is_greedy: true,
                },
            ),
            ("b#0".into(), Answer::Generation { text: "42\n".into() }),
        ])
        .unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"key\":\"c#0\",\"logpr").unwrap();
        drop(f);
        let j = Journal::open(&p).unwrap();
        assert_eq!(j.len(), 2);
        assert_eq!(j.get("b#0"), Some(&Answer::Generation { text: "42\n".into() }));
        assert!(std::fs::read_to_string(&p).unwrap().ends_with("}\n"));
        std::fs::write(
            &p,
            "{\"key\":\"a\",\"text\":\"x\"}\nnot json\n{\"key\":\"b\",\"text\":\"y\"}\n",
        )
        .unwrap();
        let e = Journal::open(&p).err().unwrap().to_string();
        assert!(e.contains("line 2"), "{e}");
    }
}
