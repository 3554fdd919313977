//! Writes a checkpoint directory (sharded safetensors + index + side files) the way `save_pretrained` lays it
//! out, atomically: everything goes to a hidden sibling directory that is renamed into place only when complete,
//! so a crash or an error leaves either the old state or the new one, never a half-written model.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::dtype::{Dtype, convert_from_f32};
use crate::error::{CheckpointError, Result};
use crate::header::{TensorInfo, encode_header};
use crate::weights::{INDEX_FILE, SINGLE_FILE};

/// transformers' default `max_shard_size` ("5GB", decimal).
pub const DEFAULT_MAX_SHARD_BYTES: u64 = 5_000_000_000;

/// How a [`CheckpointWriter`] behaves.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// A shard is closed before it would exceed this many bytes of tensor data (a single larger tensor gets a
    /// shard of its own, as in transformers).
    pub max_shard_bytes: u64,
    /// Replace an existing output directory (only after the new one is complete).
    pub force: bool,
    /// Paths the output must never replace or contain (the inputs of a merge).
    pub protected: Vec<PathBuf>,
    /// `__metadata__` of every shard; transformers expects `{"format": "pt"}`.
    pub metadata: BTreeMap<String, String>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            max_shard_bytes: DEFAULT_MAX_SHARD_BYTES,
            force: false,
            protected: Vec::new(),
            metadata: BTreeMap::from([("format".to_string(), "pt".to_string())]),
        }
    }
}

/// What a finished write produced.
#[derive(Debug, Clone)]
pub struct WriteSummary {
    pub dir: PathBuf,
    pub shard_files: Vec<PathBuf>,
    pub tensors: usize,
    pub total_bytes: u64,
}

/// Streams tensors into shards, buffering at most one shard in memory.
#[derive(Debug)]
pub struct CheckpointWriter {
    out: PathBuf,
    tmp: PathBuf,
    opts: WriterOptions,
    pending: Vec<(TensorInfo, Vec<u8>)>,
    pending_bytes: u64,
    /// Closed shards: temporary file name and the tensor names it holds.
    shards: Vec<(PathBuf, Vec<String>)>,
    names: HashSet<String>,
    total_bytes: u64,
    finished: bool,
}

impl CheckpointWriter {
    /// Prepares to write a checkpoint to `out`. Fails if `out` exists (unless `force`), or if it is, contains or
    /// lies inside a protected input.
    pub fn create(out: impl AsRef<Path>, opts: WriterOptions) -> Result<Self> {
        let out = absolute(out.as_ref())?;
        for p in &opts.protected {
            let p = absolute(p)?;
            if out == p || out.starts_with(&p) || p.starts_with(&out) {
                return Err(CheckpointError::OutputIsInput { path: out });
            }
        }
        if out.exists() && !opts.force {
            return Err(CheckpointError::OutputExists { path: out });
        }
        let parent = out.parent().unwrap_or(Path::new("/")).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(|e| CheckpointError::io(&parent, e))?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let base = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(".{base}.partial-{}-{stamp}", std::process::id()));
        std::fs::create_dir(&tmp).map_err(|e| CheckpointError::io(&tmp, e))?;
        Ok(Self {
            out,
            tmp,
            opts,
            pending: Vec::new(),
            pending_bytes: 0,
            shards: Vec::new(),
            names: HashSet::new(),
            total_bytes: 0,
            finished: false,
        })
    }

    /// The directory being written (not yet present until [`finish`](Self::finish)).
    pub fn out_dir(&self) -> &Path {
        &self.out
    }

    /// Adds one tensor given as raw little-endian bytes of `dtype`.
    pub fn add(&mut self, name: &str, dtype: Dtype, shape: &[usize], bytes: Vec<u8>) -> Result<()> {
        let expected = dtype.byte_len(shape);
        if expected != Some(bytes.len() as u128) {
            return Err(CheckpointError::Writer {
                message: format!(
                    "tensor `{name}`: {dtype:?} {shape:?} needs {} bytes, got {}",
                    expected.map_or("too many".to_string(), |e| e.to_string()),
                    bytes.len()
                ),
            });
        }
        if !self.names.insert(name.to_string()) {
            return Err(CheckpointError::Writer {
                message: format!("tensor `{name}` was added twice"),
            });
        }
        let len = bytes.len() as u64;
        if !self.pending.is_empty() && self.pending_bytes + len > self.opts.max_shard_bytes {
            self.flush()?;
        }
        self.pending.push((
            TensorInfo {
                name: name.to_string(),
                dtype,
                shape: shape.to_vec(),
                begin: 0,
                end: 0,
            },
            bytes,
        ));
        self.pending_bytes += len;
        self.total_bytes += len;
        Ok(())
    }

    /// Adds one tensor from f32 values, stored as `dtype` (F32/F16/BF16/F64; rounding to nearest even).
    pub fn add_f32(&mut self, name: &str, dtype: Dtype, shape: &[usize], values: &[f32]) -> Result<()> {
        let bytes = convert_from_f32(dtype, values).ok_or_else(|| CheckpointError::Writer {
            message: format!("tensor `{name}`: cannot store f32 values as {dtype:?}"),
        })?;
        self.add(name, dtype, shape, bytes)
    }

    /// Writes a side file (config.json, tokenizer files…) into the output directory.
    pub fn add_file(&mut self, name: &str, contents: &[u8]) -> Result<()> {
        let path = self.side_path(name)?;
        std::fs::write(&path, contents).map_err(|e| CheckpointError::io(&path, e))
    }

    /// Copies a side file from another directory into the output directory under `name`.
    pub fn copy_file(&mut self, src: &Path, name: &str) -> Result<()> {
        let path = self.side_path(name)?;
        std::fs::copy(src, &path).map_err(|e| CheckpointError::io(src, e))?;
        Ok(())
    }

    fn side_path(&self, name: &str) -> Result<PathBuf> {
        let valid = !name.is_empty()
            && Path::new(name).components().count() == 1
            && !name.starts_with('.')
            && !name.ends_with(".safetensors")
            && name != INDEX_FILE;
        if !valid {
            return Err(CheckpointError::Writer {
                message: format!("`{name}` is not a valid side-file name"),
            });
        }
        Ok(self.tmp.join(name))
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut offset = 0u64;
        let mut infos = Vec::with_capacity(self.pending.len());
        for (info, bytes) in &self.pending {
            let mut info = info.clone();
            info.begin = offset;
            offset += bytes.len() as u64;
            info.end = offset;
            infos.push(info);
        }
        let path = self.tmp.join(format!("shard-{}.safetensors", self.shards.len()));
        let file = File::create(&path).map_err(|e| CheckpointError::io(&path, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let io = |e| CheckpointError::io(&path, e);
        w.write_all(&encode_header(&infos, &self.opts.metadata))
            .map_err(io)?;
        for (_, bytes) in &self.pending {
            w.write_all(bytes).map_err(io)?;
        }
        let file = w.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        let names = infos.into_iter().map(|t| t.name).collect();
        self.shards.push((path, names));
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    /// Closes the last shard, names shards as transformers does (`model.safetensors`, or
    /// `model-0000k-of-0000n.safetensors` + index), and moves the directory into place.
    pub fn finish(mut self) -> Result<WriteSummary> {
        self.flush()?;
        let n = self.shards.len();
        let mut shard_files = Vec::with_capacity(n);
        let mut weight_map = BTreeMap::new();
        for (k, (tmp_path, names)) in self.shards.iter().enumerate() {
            let final_name = if n <= 1 {
                SINGLE_FILE.to_string()
            } else {
                format!("model-{:05}-of-{:05}.safetensors", k + 1, n)
            };
            let dst = self.tmp.join(&final_name);
            std::fs::rename(tmp_path, &dst).map_err(|e| CheckpointError::io(tmp_path, e))?;
            for name in names {
                weight_map.insert(name.clone(), final_name.clone());
            }
            shard_files.push(self.out.join(&final_name));
        }
        if n > 1 {
            let index = serde_json::json!({
                "metadata": { "total_size": self.total_bytes },
                "weight_map": weight_map,
            });
            let text = serde_json::to_string_pretty(&index).expect("index JSON always serialises");
            let path = self.tmp.join(INDEX_FILE);
            std::fs::write(&path, text + "\n").map_err(|e| CheckpointError::io(&path, e))?;
        }
        if self.out.exists() {
            // `force` was checked at creation; swap old out only now that the new directory is complete.
            let trash = self.tmp.with_extension("old");
            std::fs::rename(&self.out, &trash).map_err(|e| CheckpointError::io(&self.out, e))?;
            std::fs::rename(&self.tmp, &self.out).map_err(|e| CheckpointError::io(&self.tmp, e))?;
            std::fs::remove_dir_all(&trash).map_err(|e| CheckpointError::io(&trash, e))?;
        } else {
            std::fs::rename(&self.tmp, &self.out).map_err(|e| CheckpointError::io(&self.tmp, e))?;
        }
        self.finished = true;
        Ok(WriteSummary {
            dir: self.out.clone(),
            shard_files,
            tensors: self.names.len(),
            total_bytes: self.total_bytes,
        })
    }
}

impl Drop for CheckpointWriter {
    /// An unfinished writer removes its temporary directory: no partial output survives an error.
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).map_err(|e| CheckpointError::io(p, e))?;
    // Resolve symlinks and `..` through the longest existing ancestor, so neither links nor `a/../a` can sneak
    // past the input guard for a path that does not exist yet.
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return Ok(abs),
        }
    }
    let mut out = existing
        .canonicalize()
        .map_err(|e| CheckpointError::io(existing, e))?;
    out.extend(rest.iter().rev());
    Ok(out)
}

/// Writes one standalone safetensors file (tensors in the given order, `{"format":"pt"}` metadata) through a
/// temporary file in the same directory and a rename, so `path` is either untouched or complete.
pub fn write_safetensors_file(path: &Path, tensors: &[(&str, Dtype, &[usize], &[u8])]) -> Result<()> {
    let mut infos = Vec::with_capacity(tensors.len());
    let mut offset = 0u64;
    for (name, dtype, shape, bytes) in tensors {
        let expected = dtype.byte_len(shape);
        if expected != Some(bytes.len() as u128) {
            return Err(CheckpointError::Writer {
                message: format!(
                    "tensor `{name}`: {dtype:?} {shape:?} does not match {} bytes",
                    bytes.len()
                ),
            });
        }
        infos.push(TensorInfo {
            name: name.to_string(),
            dtype: *dtype,
            shape: shape.to_vec(),
            begin: offset,
            end: offset + bytes.len() as u64,
        });
        offset += bytes.len() as u64;
    }
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.partial-{}", std::process::id()));
    let result = (|| -> Result<()> {
        let file = File::create(&tmp).map_err(|e| CheckpointError::io(&tmp, e))?;
        let mut w = BufWriter::new(file);
        let io = |e| CheckpointError::io(&tmp, e);
        w.write_all(&encode_header(&infos, &meta)).map_err(io)?;
        for (_, _, _, bytes) in tensors {
            w.write_all(bytes).map_err(io)?;
        }
        w.into_inner()
            .map_err(|e| io(e.into_error()))?
            .sync_all()
            .map_err(io)?;
        std::fs::rename(&tmp, path).map_err(|e| CheckpointError::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
