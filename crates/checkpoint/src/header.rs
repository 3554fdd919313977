//! The safetensors header: an 8-byte little-endian length, then that many bytes of JSON mapping tensor names to
//! `{dtype, shape, data_offsets}` (offsets relative to the end of the header), plus optional `__metadata__`.
//!
//! Parsed here by hand rather than through the `safetensors` crate so that every failure becomes its own typed
//! error naming the tensor (the crate folds several classes into one and rejects files with gaps between
//! tensors, which older writers produced). The `safetensors` crate is used in this crate's tests as an
//! independent reader to cross-check what we read and write.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::dtype::Dtype;
use crate::error::{CheckpointError, Result};

/// Headers above this size are refused before any JSON is parsed (the same limit as the reference crate), so a
/// corrupt length cannot make us allocate gigabytes.
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// One tensor's entry in a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Byte offsets into the data section, `begin..end`.
    pub begin: u64,
    pub end: u64,
}

impl TensorInfo {
    /// Number of elements (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size of the data in bytes.
    pub fn byte_len(&self) -> u64 {
        self.end - self.begin
    }
}

/// A validated header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Length of the JSON part in bytes.
    pub header_len: u64,
    /// Free-form string metadata (`__metadata__`), e.g. `{"format": "pt"}`.
    pub metadata: BTreeMap<String, String>,
    /// Tensors ordered by their position in the data section (file order).
    pub tensors: Vec<TensorInfo>,
}

impl Header {
    /// Absolute offset of the data section in the file.
    pub fn data_start(&self) -> u64 {
        8 + self.header_len
    }
}

/// Parses and validates the header of a safetensors file whose full contents (or at least its first
/// `8 + header_len` bytes) are `bytes`, and whose total length is `file_len`. `path` only labels errors.
///
/// Checks: the file holds the length prefix and the whole header; the header is a JSON object; every dtype is
/// known; `shape` and `data_offsets` are non-negative integers; `begin ≤ end ≤ data length`; the byte span equals
/// `numel × dtype size` (computed without overflow); no two non-empty tensors overlap.
pub fn parse_header(path: &Path, bytes: &[u8], file_len: u64) -> Result<Header> {
    let json_err = |message: String| CheckpointError::HeaderJson {
        path: path.to_path_buf(),
        message,
    };
    if file_len < 8 || bytes.len() < 8 {
        return Err(CheckpointError::Truncated {
            path: path.to_path_buf(),
            len: file_len.min(bytes.len() as u64),
        });
    }
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&bytes[..8]);
    let header_len = u64::from_le_bytes(prefix);
    if header_len > file_len - 8 || header_len > (bytes.len() - 8) as u64 {
        return Err(CheckpointError::HeaderPastEof {
            path: path.to_path_buf(),
            header_len,
            file_len,
        });
    }
    if header_len > MAX_HEADER_LEN {
        return Err(json_err(format!(
            "header of {header_len} bytes exceeds the {MAX_HEADER_LEN}-byte limit"
        )));
    }
    let data_len = file_len - 8 - header_len;
    let json = &bytes[8..8 + header_len as usize];
    let root: serde_json::Map<String, Value> =
        serde_json::from_slice(json).map_err(|e| json_err(format!("{e}")))?;

    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::with_capacity(root.len());
    for (name, entry) in root {
        if name == "__metadata__" {
            let obj = entry
                .as_object()
                .ok_or_else(|| json_err("`__metadata__` is not an object".into()))?;
            for (k, v) in obj {
                let v = v
                    .as_str()
                    .ok_or_else(|| json_err(format!("`__metadata__.{k}` is not a string")))?;
                metadata.insert(k.clone(), v.to_string());
            }
            continue;
        }
        tensors.push(parse_entry(path, &name, &entry, data_len)?);
    }

    tensors.sort_by(|a, b| (a.begin, a.end, &a.name).cmp(&(b.begin, b.end, &b.name)));
    // With tensors sorted by start, an overlap always shows up between a tensor and the furthest-reaching
    // non-empty tensor before it.
    let mut reach: Option<&TensorInfo> = None;
    for t in &tensors {
        if t.begin == t.end {
            continue;
        }
        if let Some(prev) = reach
            && t.begin < prev.end
        {
            return Err(CheckpointError::OffsetsOverlap {
                path: path.to_path_buf(),
                first: prev.name.clone(),
                second: t.name.clone(),
            });
        }
        if reach.is_none_or(|p| t.end > p.end) {
            reach = Some(t);
        }
    }
    Ok(Header {
        header_len,
        metadata,
        tensors,
    })
}

fn parse_entry(path: &Path, name: &str, entry: &Value, data_len: u64) -> Result<TensorInfo> {
    let json_err = |message: String| CheckpointError::HeaderJson {
        path: path.to_path_buf(),
        message: format!("tensor `{name}`: {message}"),
    };
    let obj = entry
        .as_object()
        .ok_or_else(|| json_err("entry is not an object".into()))?;
    let dtype_str = obj
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| json_err("missing or non-string `dtype`".into()))?;
    let dtype = Dtype::parse(dtype_str).ok_or_else(|| CheckpointError::UnknownDtype {
        path: path.to_path_buf(),
        tensor: name.to_string(),
        dtype: dtype_str.to_string(),
        known: Dtype::known_list(),
    })?;
    let shape = obj
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| json_err("missing or non-array `shape`".into()))?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| json_err("`shape` holds something other than non-negative integers".into()))?;
    let offsets = obj
        .get("data_offsets")
        .and_then(Value::as_array)
        .ok_or_else(|| json_err("missing or non-array `data_offsets`".into()))?;
    let (begin, end) = match offsets.as_slice() {
        [b, e] => match (b.as_u64(), e.as_u64()) {
            (Some(b), Some(e)) => (b, e),
            _ => return Err(json_err("`data_offsets` are not non-negative integers".into())),
        },
        _ => return Err(json_err("`data_offsets` must have exactly two entries".into())),
    };
    if begin > end || end > data_len {
        return Err(CheckpointError::OffsetsOutOfBounds {
            path: path.to_path_buf(),
            tensor: name.to_string(),
            begin,
            end,
            data_len,
        });
    }
    let expected = dtype.byte_len(&shape);
    let actual = end - begin;
    if expected != Some(actual as u128) {
        return Err(CheckpointError::SizeMismatch {
            path: path.to_path_buf(),
            tensor: name.to_string(),
            dtype,
            shape,
            expected: expected.unwrap_or(u128::MAX),
            actual,
        });
    }
    Ok(TensorInfo {
        name: name.to_string(),
        dtype,
        shape,
        begin,
        end,
    })
}

/// Serialises a header for the given tensors (in the given order, offsets as given) with `metadata`, padded
/// with spaces so the data section starts on an 8-byte boundary (as the reference writer does). Returns the
/// complete prefix: 8-byte length + JSON.
pub fn encode_header(tensors: &[TensorInfo], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut root = serde_json::Map::new();
    if !metadata.is_empty() {
        let meta: serde_json::Map<String, Value> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        root.insert("__metadata__".into(), Value::Object(meta));
    }
    for t in tensors {
        root.insert(
            t.name.clone(),
            serde_json::json!({
                "dtype": t.dtype.name(),
                "shape": t.shape,
                "data_offsets": [t.begin, t.end],
            }),
        );
    }
    let mut json =
        serde_json::to_vec(&Value::Object(root)).expect("a map of strings and integers always serialises");
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(json: &str, data: usize) -> Vec<u8> {
        let mut v = (json.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(json.as_bytes());
        v.extend(std::iter::repeat_n(0u8, data));
        v
    }

    fn parse(bytes: &[u8]) -> Result<Header> {
        parse_header(Path::new("x.safetensors"), bytes, bytes.len() as u64)
    }

    #[test]
    fn valid_header_sorted_by_offset() {
        let b = file(
            r#"{"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"BF16","shape":[2,2],"data_offsets":[8,16]},"s":{"dtype":"F32","shape":[],"data_offsets":[16,20]}}"#,
            20,
        );
        let h = parse(&b).unwrap();
        assert_eq!(h.metadata["format"], "pt");
        let names: Vec<_> = h.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["b", "a", "s"]);
        assert_eq!(h.tensors[2].numel(), 1);
    }

    #[test]
    fn every_error_class() {
        assert!(matches!(
            parse(&[1, 2, 3]),
            Err(CheckpointError::Truncated { len: 3, .. })
        ));
        let mut past = 1000u64.to_le_bytes().to_vec();
        past.extend_from_slice(b"{}");
        assert!(matches!(
            parse(&past),
            Err(CheckpointError::HeaderPastEof { header_len: 1000, .. })
        ));
        assert!(matches!(
            parse(&file("{nope", 0)),
            Err(CheckpointError::HeaderJson { .. })
        ));
        assert!(matches!(
            parse(&file("[1,2]", 0)),
            Err(CheckpointError::HeaderJson { .. })
        ));
        let e = parse(&file(
            r#"{"w":{"dtype":"F4","shape":[1],"data_offsets":[0,1]}}"#,
            1,
        ))
        .unwrap_err();
        assert!(
            matches!(&e, CheckpointError::UnknownDtype { tensor, dtype, .. } if tensor == "w" && dtype == "F4")
        );
        let e = parse(&file(
            r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
            8,
        ))
        .unwrap_err();
        assert!(
            matches!(
                &e,
                CheckpointError::SizeMismatch {
                    expected: 12,
                    actual: 8,
                    ..
                }
            ),
            "{e}"
        );
        let e = parse(&file(
            r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            8,
        ))
        .unwrap_err();
        assert!(
            matches!(
                &e,
                CheckpointError::OffsetsOutOfBounds {
                    end: 16,
                    data_len: 8,
                    ..
                }
            ),
            "{e}"
        );
        let e = parse(&file(
            r#"{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#,
            8,
        ))
        .unwrap_err();
        assert!(matches!(&e, CheckpointError::OffsetsOutOfBounds { .. }), "{e}");
        let e = parse(&file(
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            16,
        ))
        .unwrap_err();
        assert!(
            matches!(&e, CheckpointError::OffsetsOverlap { first, second, .. } if first == "a" && second == "b"),
            "{e}"
        );
        let e = parse(&file(
            r#"{"w":{"dtype":"U8","shape":[18446744073709551615,18446744073709551615,2],"data_offsets":[0,1]}}"#,
            1,
        ))
        .unwrap_err();
        assert!(matches!(&e, CheckpointError::SizeMismatch { .. }), "{e}");
        let e = parse(&file(
            r#"{"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}"#,
            1,
        ))
        .unwrap_err();
        assert!(matches!(&e, CheckpointError::HeaderJson { .. }), "{e}");
    }

    #[test]
    fn empty_tensors_may_share_offsets() {
        let b = file(
            r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
            4,
        );
        assert_eq!(parse(&b).unwrap().tensors.len(), 2);
    }

    #[test]
    fn encode_then_parse_round_trips() {
        let tensors = vec![
            TensorInfo {
                name: "x".into(),
                dtype: Dtype::F16,
                shape: vec![3],
                begin: 0,
                end: 6,
            },
            TensorInfo {
                name: "y".into(),
                dtype: Dtype::I64,
                shape: vec![1, 1],
                begin: 6,
                end: 14,
            },
        ];
        let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
        let mut bytes = encode_header(&tensors, &meta);
        assert_eq!((bytes.len() - 8) % 8, 0);
        bytes.extend_from_slice(&[0; 14]);
        let h = parse(&bytes).unwrap();
        assert_eq!(h.tensors, tensors);
        assert_eq!(h.metadata, meta);
    }
}
