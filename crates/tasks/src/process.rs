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
        other => {
            return Err(TasksError::Template {
                task: task.into(),
                doc_id: 0,
                what: "process_docs".into(),
                message: format!("unknown function `{other}` (known: hellaswag, winogrande)"),
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
    let s = |k: &str| {
        doc.get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("field `{k}` is missing or not a string"))
    };
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
    let s = |k: &str| {
        doc.get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("field `{k}` is missing or not a string"))
    };
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
