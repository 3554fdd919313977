//! Evaluation data from local files in the Hugging Face layouts: `<dir>/<task>/<split>.jsonl`, `.parquet` or
//! `.json`, every row a JSON object (Parquet rows are converted through Arrow, so a JSONL export and its
//! Parquet twin give the same documents). Malformed rows are errors naming the file and the row — nothing is
//! skipped silently.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Result, TasksError};

/// One document.
pub type Doc = Map<String, Value>;

/// A loaded split: its documents and the file they came from (for error messages).
#[derive(Debug, Clone)]
pub struct Split {
    pub path: PathBuf,
    pub docs: Vec<Doc>,
}

impl Split {
    /// A string field of row `row`, or an error naming file, row and field.
    pub fn str_field(&self, row: usize, field: &str) -> Result<&str> {
        match self.docs.get(row).and_then(|d| d.get(field)) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => {
                Err(self.field_err(row, field, format!("is {} where a string is needed", kind(other))))
            }
            None => Err(self.field_err(row, field, "is missing".into())),
        }
    }

    /// An integer field of row `row`.
    pub fn int_field(&self, row: usize, field: &str) -> Result<i64> {
        match self.docs.get(row).and_then(|d| d.get(field)) {
            Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64().expect("checked is_i64")),
            Some(other) => Err(self.field_err(
                row,
                field,
                format!("is {} where an integer is needed", kind(other)),
            )),
            None => Err(self.field_err(row, field, "is missing".into())),
        }
    }

    fn field_err(&self, row: usize, field: &str, problem: String) -> TasksError {
        TasksError::Field {
            path: self.path.clone(),
            row,
            field: field.into(),
            problem,
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Loads `<data_dir>/<task_dir>/<split>.{jsonl,parquet,json}`, the first that exists.
pub fn load_split(data_dir: &Path, task_dir: &str, split: &str) -> Result<Split> {
    let base = data_dir.join(task_dir);
    let candidates: Vec<PathBuf> = ["jsonl", "parquet", "json"]
        .iter()
        .map(|e| base.join(format!("{split}.{e}")))
        .collect();
    let Some(path) = candidates.iter().find(|p| p.is_file()).cloned() else {
        return Err(TasksError::MissingData {
            split: split.into(),
            looked: candidates,
        });
    };
    let docs = match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl") => read_jsonl(&path)?,
        Some("parquet") => read_parquet(&path)?,
        _ => read_json(&path)?,
    };
    if docs.is_empty() {
        return Err(TasksError::Empty { path });
    }
    Ok(Split { path, docs })
}

/// One JSON object per line; blank lines are allowed, anything else is an error with its line number.
pub fn read_jsonl(path: &Path) -> Result<Vec<Doc>> {
    let text = std::fs::read_to_string(path).map_err(|e| TasksError::Io {
        path: path.into(),
        source: e,
    })?;
    let mut docs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(o)) => docs.push(o),
            Ok(other) => {
                return Err(TasksError::BadLine {
                    path: path.into(),
                    line: i + 1,
                    message: format!("expected a JSON object, got {}", kind(&other)),
                });
            }
            Err(e) => {
                return Err(TasksError::BadLine {
                    path: path.into(),
                    line: i + 1,
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(docs)
}

/// A JSON array of objects (or `{"data": [...]}`).
pub fn read_json(path: &Path) -> Result<Vec<Doc>> {
    let text = std::fs::read_to_string(path).map_err(|e| TasksError::Io {
        path: path.into(),
        source: e,
    })?;
    let value: Value = serde_json::from_str(&text).map_err(|e| TasksError::BadFile {
        path: path.into(),
        message: e.to_string(),
    })?;
    let rows = match value {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("data") {
            Some(Value::Array(a)) => a,
            _ => {
                return Err(TasksError::BadFile {
                    path: path.into(),
                    message: "expected a list of rows or {\"data\": [...]}".into(),
                });
            }
        },
        other => {
            return Err(TasksError::BadFile {
                path: path.into(),
                message: format!("expected a list, got {}", kind(&other)),
            });
        }
    };
    rows.into_iter()
        .enumerate()
        .map(|(i, r)| match r {
            Value::Object(o) => Ok(o),
            other => Err(TasksError::BadLine {
                path: path.into(),
                line: i + 1,
                message: format!("row is {}", kind(&other)),
            }),
        })
        .collect()
}

/// Parquet through Arrow: record batches → JSON objects (arrow-json), rows in file order.
pub fn read_parquet(path: &Path) -> Result<Vec<Doc>> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let err = |m: String| TasksError::Parquet {
        path: path.into(),
        message: m,
    };
    let file = File::open(path).map_err(|e| TasksError::Io {
        path: path.into(),
        source: e,
    })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| err(e.to_string()))?
        .build()
        .map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| err(e.to_string()))?;
        let mut buf = Vec::new();
        {
            // Explicit nulls: a null cell stays a key with `null`, as in the JSONL exports.
            let mut w = arrow_json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow_json::writer::LineDelimited>(&mut buf);
            w.write(&batch).map_err(|e| err(e.to_string()))?;
            w.finish().map_err(|e| err(e.to_string()))?;
        }
        for line in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<Value>(line) {
                Ok(Value::Object(o)) => out.push(o),
                _ => return Err(err("a row did not convert to a JSON object".into())),
            }
        }
    }
    Ok(out)
}
