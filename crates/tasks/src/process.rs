//! Named document preprocessing, where lm-eval's YAML says `process_docs: !function utils.process_docs`: our YAML
//! names the Rust function instead (`process_docs: hellaswag`). Each keeps the document's own fields and adds
//! what lm-eval's `dataset.map` adds.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Value, json};

use crate::data::Doc;
use crate::error::{Result, TasksError};

/// Applies the task's `process_docs` function (if any) to every document.
pub fn process_docs(task: &str, name: Option<&str>, docs: Vec<Doc>) -> Result<Vec<Doc>> {
    let Some(name) = name else { return Ok(docs) };
    let f: fn(&Doc) -> std::result::Result<Doc, String> = match name {
        "hellaswag" => hellaswag,
        "winogrande" => winogrande,
        "race" => race,
        other => {
            return Err(TasksError::Template {
                task: task.into(),
                doc_id: 0,
                what: "process_docs".into(),
                message: format!("unknown function `{other}` (known: hellaswag, winogrande, race)"),
            });
        }
    };
    docs.iter()
        .enumerate()
        .map(|(i, d)| {
            f(d).map_err(|message| TasksError::Template {
                task: task.into(),
                doc_id: i,
                what: format!("process_docs {name}"),
                message,
            })
        })
        .collect()
}

/// A document's string field, or the message naming it.
fn str_field<'a>(doc: &'a Doc, k: &str) -> std::result::Result<&'a str, String> {
    doc.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("field `{k}` is missing or not a string"))
}

/// Python's `str.capitalize`: first character upper case, the rest lower case.
fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c.flat_map(char::to_lowercase)).collect(),
        None => String::new(),
    }
}

/// lm-eval's hellaswag `preprocess`: strip, " [title]" → ". ", drop `[...]` (WikiHow artefacts), "  " → " ".
fn hellaswag_text(text: &str) -> String {
    static BRACKETS: OnceLock<Regex> = OnceLock::new();
    let re = BRACKETS.get_or_init(|| Regex::new(r"\[.*?\]").expect("static regex"));
    let t = text.trim().replace(" [title]", ". ");
    re.replace_all(&t, "").replace("  ", " ")
}

/// lm-eval's hellaswag `process_docs`: `query`, `choices`, `gold` from activity_label, ctx_a, ctx_b, endings, label.
fn hellaswag(doc: &Doc) -> std::result::Result<Doc, String> {
    let s = |k: &str| str_field(doc, k);
    let ctx = format!("{} {}", s("ctx_a")?, capitalize(s("ctx_b")?));
    let endings = doc
        .get("endings")
        .and_then(Value::as_array)
        .ok_or("field `endings` is missing or not a list")?;
    let choices: Vec<String> = endings
        .iter()
        .map(|e| e.as_str().map(hellaswag_text).ok_or("an ending is not a string"))
        .collect::<std::result::Result<_, _>>()?;
    let label = match doc.get("label") {
        Some(Value::String(l)) => l.trim().parse::<i64>().map_err(|e| format!("label `{l}`: {e}"))?,
        Some(Value::Number(n)) => n.as_i64().ok_or("label is not an integer")?,
        _ => return Err("field `label` is missing".into()),
    };
    let mut out = doc.clone();
    out.insert(
        "query".into(),
        json!(hellaswag_text(&format!("{}: {ctx}", s("activity_label")?))),
    );
    out.insert("choices".into(), json!(choices));
    out.insert("gold".into(), json!(label));
    Ok(out)
}

/// lm-eval's winogrande functions as fields: `wg_contexts` (the sentence up to the blank, filled with each
/// option — the *contexts* of this multiple-input task), `wg_target` (the rest after the blank, the one
/// continuation) and `wg_gold` (answer "1"/"2" → 0/1).
fn winogrande(doc: &Doc) -> std::result::Result<Doc, String> {
    let s = |k: &str| str_field(doc, k);
    let sentence = s("sentence")?;
    let idx = sentence.find('_').ok_or("the sentence has no `_` blank")?;
    let gold = match s("answer")? {
        "1" => 0,
        "2" => 1,
        other => return Err(format!("answer `{other}` is not \"1\" or \"2\"")),
    };
    let mut out = doc.clone();
    out.insert(
        "wg_contexts".into(),
        json!([
            format!("{}{}", &sentence[..idx], s("option1")?),
            format!("{}{}", &sentence[..idx], s("option2")?)
        ]),
    );
    out.insert("wg_target".into(), json!(sentence[idx + 1..].trim()));
    out.insert("wg_gold".into(), json!(gold));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_capitalize_and_wikihow_artefacts() {
        assert_eq!(capitalize("the LADY"), "The lady");
        assert_eq!(capitalize(""), "");
        assert_eq!(
            hellaswag_text(" How to cook [title] Rice [step] Boil  it. "),
            "How to cook. Rice Boil it."
        );
        let e = process_docs("t", Some("nope"), vec![]).unwrap_err().to_string();
        assert!(e.contains("unknown function `nope`"), "{e}");
        let bad: Doc =
            serde_json::from_str(r#"{"ctx_a":"a","ctx_b":"b","activity_label":"x","label":"1"}"#).unwrap();
        let e = process_docs("hellaswag", Some("hellaswag"), vec![bad])
            .unwrap_err()
            .to_string();
        assert!(e.contains("endings"), "{e}");
    }
}

/// A value of a Python literal (what `ast.literal_eval` accepts for RACE's `problems`: lists, dicts, strings,
/// integers, True/False/None).
#[derive(Debug, Clone, PartialEq)]
enum PyLit {
    Str(String),
    Int(i64),
    Bool(bool),
    None,
    List(Vec<PyLit>),
    Dict(Vec<(PyLit, PyLit)>),
}

struct PyParser<'a> {
    s: &'a [char],
    i: usize,
}

impl PyParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_whitespace() {
            self.i += 1;
        }
    }

    fn err<T>(&self, m: &str) -> std::result::Result<T, String> {
        Err(format!("Python literal, character {}: {m}", self.i))
    }

    fn value(&mut self) -> std::result::Result<PyLit, String> {
        self.ws();
        match self.s.get(self.i) {
            Some('[') | Some('(') => {
                let close = if self.s[self.i] == '[' { ']' } else { ')' };
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.ws();
                    if self.s.get(self.i) == Some(&close) {
                        self.i += 1;
                        return Ok(PyLit::List(items));
                    }
                    items.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(',') => self.i += 1,
                        Some(c) if *c == close => {}
                        _ => return self.err("expected `,` or the closing bracket"),
                    }
                }
            }
            Some('{') => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.ws();
                    if self.s.get(self.i) == Some(&'}') {
                        self.i += 1;
                        return Ok(PyLit::Dict(items));
                    }
                    let k = self.value()?;
                    self.ws();
                    if self.s.get(self.i) != Some(&':') {
                        return self.err("expected `:`");
                    }
                    self.i += 1;
                    let v = self.value()?;
                    items.push((k, v));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(',') => self.i += 1,
                        Some('}') => {}
                        _ => return self.err("expected `,` or `}`"),
                    }
                }
            }
            Some('\'') | Some('"') => {
                // Adjacent literals concatenate, as in Python.
                let mut out = String::new();
                while let Some(&q) = self.s.get(self.i).filter(|c| **c == '\'' || **c == '"') {
                    out.push_str(&self.string(q)?);
                    self.ws();
                }
                Ok(PyLit::Str(out))
            }
            Some(c) if c.is_ascii_digit() || *c == '-' => {
                let start = self.i;
                self.i += 1;
                while self.s.get(self.i).is_some_and(char::is_ascii_digit) {
                    self.i += 1;
                }
                let t: String = self.s[start..self.i].iter().collect();
                t.parse().map(PyLit::Int).or_else(|_| self.err("bad integer"))
            }
            _ => {
                for (word, v) in [
                    ("True", PyLit::Bool(true)),
                    ("False", PyLit::Bool(false)),
                    ("None", PyLit::None),
                ] {
                    let w: Vec<char> = word.chars().collect();
                    if self.s[self.i..].starts_with(&w) {
                        self.i += w.len();
                        return Ok(v);
                    }
                }
                self.err("unexpected character")
            }
        }
    }

    fn string(&mut self, q: char) -> std::result::Result<String, String> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return self.err("unterminated string");
            };
            self.i += 1;
            if c == q {
                return Ok(out);
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let Some(&e) = self.s.get(self.i) else {
                return self.err("unterminated escape");
            };
            self.i += 1;
            let hex = |p: &mut Self, n: usize| -> std::result::Result<char, String> {
                let h: String =
                    p.s.get(p.i..p.i + n)
                        .map(|x| x.iter().collect())
                        .unwrap_or_default();
                p.i += n;
                u32::from_str_radix(&h, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .map_or_else(|| p.err("bad hex escape"), Ok)
            };
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '\\' | '\'' | '"' => out.push(e),
                '\n' => {}
                'x' => out.push(hex(self, 2)?),
                'u' => out.push(hex(self, 4)?),
                'U' => out.push(hex(self, 8)?),
                other => {
                    // Python keeps unknown escapes as written.
                    out.push('\\');
                    out.push(other);
                }
            }
        }
    }
}

fn literal_eval(text: &str) -> std::result::Result<PyLit, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut p = PyParser { s: &chars, i: 0 };
    let v = p.value()?;
    p.ws();
    if p.i != chars.len() {
        return p.err("trailing characters");
    }
    Ok(v)
}

fn py_get<'a>(d: &'a PyLit, key: &str) -> std::result::Result<&'a PyLit, String> {
    match d {
        PyLit::Dict(items) => items
            .iter()
            .find(|(k, _)| *k == PyLit::Str(key.into()))
            .map(|(_, v)| v)
            .ok_or_else(|| format!("a problem has no `{key}`")),
        _ => Err("a problem is not a dict".into()),
    }
}

fn py_str<'a>(v: &'a PyLit, what: &str) -> std::result::Result<&'a str, String> {
    match v {
        PyLit::Str(s) => Ok(s),
        _ => Err(format!("{what} is not a string")),
    }
}

/// lm-eval's race functions as fields (EleutherAI/race: `article`, `problems` = a Python literal list of
/// {answer, options, question}): `race_text` (the article, the earlier problems answered — a `  _  .` blank is
/// filled in place — then the last question), `race_choices` (the last problem's four options), `race_gold`.
fn race(doc: &Doc) -> std::result::Result<Doc, String> {
    let article = str_field(doc, "article")?;
    let problems = str_field(doc, "problems")?;
    let PyLit::List(problems) = literal_eval(problems)? else {
        return Err("`problems` is not a list".into());
    };
    let answer = |p: &PyLit| -> std::result::Result<(usize, Vec<String>), String> {
        let letter = py_str(py_get(p, "answer")?, "answer")?;
        let idx = ["A", "B", "C", "D"]
            .iter()
            .position(|l| *l == letter)
            .ok_or(format!("answer `{letter}`"))?;
        let PyLit::List(opts) = py_get(p, "options")? else {
            return Err("options is not a list".into());
        };
        let opts: Vec<String> = opts
            .iter()
            .map(|o| py_str(o, "an option").map(str::to_string))
            .collect::<std::result::Result<_, _>>()?;
        if opts.len() < 4 {
            return Err(format!("{} options, need 4", opts.len()));
        }
        Ok((idx, opts))
    };
    let Some((last, earlier)) = problems.split_last() else {
        return Err("`problems` is empty".into());
    };
    let mut text = format!("Article: {article}\n\n");
    for p in earlier {
        let q = py_str(py_get(p, "question")?, "question")?;
        let (idx, opts) = answer(p)?;
        let chars: Vec<char> = q.chars().collect();
        if chars.len() >= 6 && chars[chars.len() - 6..].iter().collect::<String>() == "  _  ." {
            text += &format!(
                "{}{}\n",
                chars[..chars.len() - 5].iter().collect::<String>(),
                opts[idx]
            );
        } else {
            text += &format!("Question: {q}\nAnswer: {}\n", opts[idx]);
        }
    }
    text += py_str(py_get(last, "question")?, "question")?;
    let (gold, opts) = answer(last)?;
    let mut out = doc.clone();
    out.insert("race_text".into(), json!(text));
    out.insert("race_choices".into(), json!(opts[..4]));
    out.insert("race_gold".into(), json!(gold));
    Ok(out)
}

#[cfg(test)]
mod literal_tests {
    use super::*;

    #[test]
    fn python_literals_as_ast_literal_eval() {
        let v =
            literal_eval(r#"[{'a': "it's", 'b': ['x\'y', 'tab\there', '\u00e9\x41'], 'n': -3, 't': True}]"#)
                .unwrap();
        let PyLit::List(items) = v else { panic!() };
        assert_eq!(py_str(py_get(&items[0], "a").unwrap(), "a").unwrap(), "it's");
        let PyLit::List(b) = py_get(&items[0], "b").unwrap() else {
            panic!()
        };
        assert_eq!(b[1], PyLit::Str("tab\there".into()));
        assert_eq!(b[2], PyLit::Str("éA".into()));
        assert_eq!(py_get(&items[0], "n").unwrap(), &PyLit::Int(-3));
        assert!(literal_eval("[1, 2").unwrap_err().contains("character"));
    }
}
