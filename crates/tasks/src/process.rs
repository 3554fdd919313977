//! Named document preprocessing, where lm-eval's YAML says `process_docs: !function utils.process_docs`: our YAML
//! names the Rust function instead (`process_docs: hellaswag`). Each keeps the document's own fields and adds
//! what lm-eval's `dataset.map` adds.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Value, json};

use crate::data::Doc;
use crate::error::{Result, TasksError};

/// The `process_docs` functions mmreason knows.
pub const PROCESS_DOCS: &[&str] = &["hellaswag", "winogrande", "race", "bigbench", "minerva_math"];

/// The `process_results` functions mmreason knows (lm-eval's Python scorers, by task family).
pub const PROCESS_RESULTS: &[&str] = &["minerva_math"];

fn unknown(task: &str, what: &str, name: &str, known: &[&str]) -> TasksError {
    TasksError::Template {
        task: task.into(),
        doc_id: 0,
        what: what.into(),
        message: format!("unknown function `{name}` (known: {})", known.join(", ")),
    }
}

/// Applies the task's `process_docs` function (if any) to every document.
pub fn process_docs(task: &str, name: Option<&str>, docs: Vec<Doc>) -> Result<Vec<Doc>> {
    let Some(name) = name else { return Ok(docs) };
    if name == "bigbench" {
        return bigbench(task, docs);
    }
    let f: fn(&Doc) -> std::result::Result<Doc, String> = match name {
        "hellaswag" => hellaswag,
        "winogrande" => winogrande,
        "race" => race,
        "minerva_math" => minerva_math,
        other => return Err(unknown(task, "process_docs", other, PROCESS_DOCS)),
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

/// Checks that a task's `process_results` names a known function (before any model runs).
pub fn check_process_results(task: &str, name: Option<&str>) -> Result<()> {
    match name {
        Some(n) if !PROCESS_RESULTS.contains(&n) => Err(unknown(task, "process_results", n, PROCESS_RESULTS)),
        _ => Ok(()),
    }
}

/// A generation's per-document metrics by the task's `process_results` function (lm-eval's Python scorer):
/// `minerva_math` gives `exact_match` (the model's "Final Answer" against the document's normalised `answer`;
/// lm-eval's second metric, `math_verify`, needs the math-verify library and is not computed).
pub fn process_results(
    task: &str,
    name: &str,
    doc: &Doc,
    doc_id: usize,
    generation: &str,
) -> Result<Vec<(&'static str, f64)>> {
    match name {
        "minerva_math" => {
            let gold = str_field(doc, "answer").map_err(|message| TasksError::Template {
                task: task.into(),
                doc_id,
                what: "process_results minerva_math".into(),
                message,
            })?;
            Ok(vec![(
                "exact_match",
                mmreason_metrics::math::minerva_exact_match(generation, gold),
            )])
        }
        other => Err(unknown(task, "process_results", other, PROCESS_RESULTS)),
    }
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

/// lm-eval's minerva_math `process_docs`: adds the normalised final `answer` (the last `\boxed{…}` of the
/// solution) to the document.
fn minerva_math(doc: &Doc) -> std::result::Result<Doc, String> {
    let answer = mmreason_metrics::math::gold_answer(str_field(doc, "solution")?)
        .ok_or("the solution has no complete `\\boxed{…}` answer")?;
    str_field(doc, "problem")?;
    let mut out = doc.clone();
    out.insert("answer".into(), json!(answer));
    Ok(out)
}

/// BIG-bench JSON task examples (`input`, `target_scores`, `target`, as in a task's `task.json`) in the Hugging
/// Face `bigbench` layout lm-eval reads (hails/bigbench `<task>_zero_shot`, split `default`), made as BIG-bench's
/// own conversion makes it: exact duplicates dropped (BIG-bench's `JsonTask` does, keeping the first), `inputs`
/// = "Q: <input>\nA:" (the default example prefixes, stripped), `targets` = the target(s) stripped,
/// `multiple_choice_targets`/`multiple_choice_scores` = the `target_scores` keys and values in file order, `idx`
/// = the position. Documents already in that layout pass through. As lm-eval's `filter_multiple_choice`,
/// examples without choices are left out; every document left out is counted in a warning.
fn bigbench(task: &str, docs: Vec<Doc>) -> Result<Vec<Doc>> {
    use mmreason_metrics::vision::py_strip;
    let err = |doc_id: usize, message: String| TasksError::Template {
        task: task.into(),
        doc_id,
        what: "process_docs bigbench".into(),
        message,
    };
    let mut seen = std::collections::HashSet::new();
    let (mut duplicates, mut no_choices) = (Vec::new(), Vec::new());
    let mut out = Vec::with_capacity(docs.len());
    for (row, doc) in docs.into_iter().enumerate() {
        if doc.contains_key("inputs") && doc.contains_key("multiple_choice_targets") {
            if doc["multiple_choice_targets"]
                .as_array()
                .is_some_and(Vec::is_empty)
            {
                no_choices.push(row);
            } else {
                out.push(doc);
            }
            continue;
        }
        if !seen.insert(serde_json::to_string(&doc).expect("documents serialise")) {
            duplicates.push(row);
            continue;
        }
        let input = str_field(&doc, "input").map_err(|m| err(row, m))?;
        let targets: Vec<String> = match doc.get("target") {
            Some(Value::String(t)) => vec![py_strip(t).to_string()],
            Some(Value::Array(ts)) => ts
                .iter()
                .map(|t| t.as_str().map(|t| py_strip(t).to_string()))
                .collect::<Option<_>>()
                .ok_or_else(|| err(row, "field `target` holds a non-string".into()))?,
            None => Vec::new(),
            Some(other) => return Err(err(row, format!("field `target` is {other}, not text"))),
        };
        let (mut choices, mut scores) = (Vec::new(), Vec::new());
        match doc.get("target_scores") {
            Some(Value::Object(ts)) => {
                for (k, v) in ts {
                    let score = v
                        .as_i64()
                        .ok_or_else(|| err(row, format!("target_scores[`{k}`] = {v} is not an integer")))?;
                    choices.push(py_strip(k).to_string());
                    scores.push(score);
                }
            }
            None => {}
            Some(other) => {
                return Err(err(
                    row,
                    format!("field `target_scores` is {other}, not an object"),
                ));
            }
        }
        if targets.is_empty() && choices.is_empty() {
            return Err(err(row, "neither `target` nor `target_scores` is present".into()));
        }
        if choices.is_empty() {
            no_choices.push(row);
            continue;
        }
        let mut d = Doc::new();
        d.insert("idx".into(), json!(out.len()));
        d.insert("inputs".into(), json!(py_strip(&format!("\nQ: {input}\nA: "))));
        d.insert("targets".into(), json!(targets));
        d.insert("multiple_choice_targets".into(), json!(choices));
        d.insert("multiple_choice_scores".into(), json!(scores));
        out.push(d);
    }
    if !duplicates.is_empty() || !no_choices.is_empty() {
        tracing::warn!(
            task,
            duplicates = duplicates.len(),
            without_choices = no_choices.len(),
            "BIG-bench rows left out as BIG-bench and lm-eval leave them out (rows {:?} are duplicates, rows {:?} have no choices)",
            duplicates,
            no_choices
        );
    }
    if out.is_empty() {
        return Err(err(0, "no document has multiple-choice targets".into()));
    }
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

    fn doc(json: &str) -> Doc {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn bigbench_examples_become_the_hugging_face_layout() {
        let ex = r#"{"input":"Is it so? ","target_scores":{"Yes":1,"No":0},"target":" Yes. Because. "}"#;
        let other = r#"{"input":"Or not?","target_scores":{"Yes":0,"No":1},"target":"No."}"#;
        let docs = vec![doc(ex), doc(other), doc(ex)];
        let out = process_docs("t", Some("bigbench"), docs).unwrap();
        // The exact duplicate (row 2) is dropped, as BIG-bench's JsonTask drops it.
        assert_eq!(out.len(), 2);
        assert_eq!(
            serde_json::to_string(&out[0]).unwrap(),
            r#"{"idx":0,"inputs":"Q: Is it so? \nA:","targets":["Yes. Because."],"multiple_choice_targets":["Yes","No"],"multiple_choice_scores":[1,0]}"#
        );
        assert_eq!(out[1]["idx"], 1);
        // Rows already in the layout pass through; ones without choices are left out (lm-eval's filter).
        let hf = process_docs("t", Some("bigbench"), out.clone()).unwrap();
        assert_eq!(hf, out);
        let mut empty = out[0].clone();
        empty.insert("multiple_choice_targets".into(), json!([]));
        assert_eq!(
            process_docs("t", Some("bigbench"), vec![empty, out[1].clone()])
                .unwrap()
                .len(),
            1
        );
        for (bad, what) in [
            (r#"{"target":"x"}"#, "`input`"),
            (r#"{"input":"q","target_scores":{"Yes":"1"}}"#, "not an integer"),
            (r#"{"input":"q"}"#, "neither"),
            (
                r#"{"input":"q","target":"only free text"}"#,
                "no document has multiple-choice targets",
            ),
        ] {
            let e = process_docs("strategyqa", Some("bigbench"), vec![doc(bad)])
                .unwrap_err()
                .to_string();
            assert!(e.contains(what) && e.contains("strategyqa"), "{e}");
        }
    }

    #[test]
    fn minerva_math_needs_a_boxed_answer_and_process_results_a_known_name() {
        let ok = doc(r#"{"problem":"p","solution":"so $\\boxed{\\frac12}$"}"#);
        let out = process_docs("m", Some("minerva_math"), vec![ok.clone()]).unwrap();
        assert_eq!(out[0]["answer"], "\\frac{1}{2}");
        let e = process_docs(
            "m",
            Some("minerva_math"),
            vec![ok, doc(r#"{"problem":"p","solution":"none"}"#)],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("document 1") && e.contains("boxed"), "{e}");
        let r = process_results(
            "m",
            "minerva_math",
            &out[0],
            0,
            "Final Answer: The final answer is 0.5. I hope it is correct.",
        );
        assert_eq!(r.unwrap(), vec![("exact_match", 1.0)]);
        let e = check_process_results("m", Some("nope")).unwrap_err().to_string();
        assert!(
            e.contains("unknown function `nope`") && e.contains("minerva_math"),
            "{e}"
        );
        let e = process_results("m", "minerva_math", &doc(r#"{"problem":"p"}"#), 3, "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("document 3") && e.contains("answer"), "{e}");
    }
}
