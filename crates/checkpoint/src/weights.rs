//! All weights of a model directory, one file or sharded through `model.safetensors.index.json`, behind one
//! name → tensor lookup.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{CheckpointError, Result};
use crate::header::TensorInfo;
use crate::safetensors_file::SafetensorsFile;
use crate::tensor::TensorView;

/// File name of an unsharded checkpoint (transformers' `SAFE_WEIGHTS_NAME`).
pub const SINGLE_FILE: &str = "model.safetensors";
/// File name of a sharded checkpoint's index (transformers' `SAFE_WEIGHTS_INDEX_NAME`).
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Lazily-read weights of one model: every tensor is reachable by name, nothing is loaded until asked for.
#[derive(Debug)]
pub struct Weights {
    root: PathBuf,
    shards: Vec<SafetensorsFile>,
    /// name → (shard, position in that shard's file order)
    lookup: HashMap<String, (usize, usize)>,
    index: Option<PathBuf>,
}

impl Weights {
    /// Opens the weights of a model directory the way transformers looks for them: `model.safetensors`, else
    /// `model.safetensors.index.json`, else every `*.safetensors` file in name order (adapters, odd exports).
    pub fn open_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let single = dir.join(SINGLE_FILE);
        if single.is_file() {
            return Self::open_files(dir, &[single]);
        }
        let index = dir.join(INDEX_FILE);
        if index.is_file() {
            return Self::open_index(index);
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| CheckpointError::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors") && p.is_file())
            .collect();
        if files.is_empty() {
            return Err(CheckpointError::NoWeights {
                dir: dir.to_path_buf(),
            });
        }
        files.sort();
        Self::open_files(dir, &files)
    }

    /// Opens a sharded checkpoint through its index, checking that every shard it names exists and that every
    /// tensor it maps is really in the named shard.
    pub fn open_index(index_path: impl AsRef<Path>) -> Result<Self> {
        let index_path = index_path.as_ref();
        let root = index_path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let text = std::fs::read_to_string(index_path).map_err(|e| CheckpointError::io(index_path, e))?;
        let bad = |message: String| CheckpointError::IndexJson {
            index: index_path.to_path_buf(),
            message,
        };
        let value: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let map = value
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("missing object `weight_map`".into()))?;
        let mut weight_map: BTreeMap<&str, &str> = BTreeMap::new();
        for (tensor, shard) in map {
            let shard = shard
                .as_str()
                .ok_or_else(|| bad(format!("`weight_map.{tensor}` is not a string")))?;
            weight_map.insert(tensor, shard);
        }
        // Shards in order of first appearance in sorted file names (model-00001-of-… sorts naturally).
        let mut shard_names: Vec<&str> = weight_map.values().copied().collect();
        shard_names.sort_unstable();
        shard_names.dedup();
        let mut paths = Vec::with_capacity(shard_names.len());
        for name in &shard_names {
            let p = root.join(name);
            if !p.is_file() {
                return Err(CheckpointError::IndexMissingShard {
                    index: index_path.to_path_buf(),
                    shard: name.to_string(),
                });
            }
            paths.push(p);
        }
        let mut weights = Self::open_files(&root, &paths)?;
        weights.index = Some(index_path.to_path_buf());
        for (tensor, shard) in weight_map {
            let found = weights
                .lookup
                .get(tensor)
                .is_some_and(|&(s, _)| weights.shards[s].path().file_name() == Some(shard.as_ref()));
            if !found {
                return Err(CheckpointError::IndexMissingTensor {
                    index: index_path.to_path_buf(),
                    shard: shard.to_string(),
                    tensor: tensor.to_string(),
                });
            }
        }
        Ok(weights)
    }

    /// Opens the given safetensors files as one checkpoint; a tensor name in two files is an error.
    pub fn open_files(root: impl AsRef<Path>, files: &[PathBuf]) -> Result<Self> {
        let mut shards = Vec::with_capacity(files.len());
        let mut lookup = HashMap::new();
        for (s, path) in files.iter().enumerate() {
            let file = SafetensorsFile::open(path)?;
            for (i, info) in file.infos().iter().enumerate() {
                if let Some(&(first, _)) = lookup.get(&info.name) {
                    let first: &SafetensorsFile = &shards[first];
                    return Err(CheckpointError::DuplicateTensor {
                        tensor: info.name.clone(),
                        first: first.path().to_path_buf(),
                        second: path.clone(),
                    });
                }
                lookup.insert(info.name.clone(), (s, i));
            }
            shards.push(file);
        }
        Ok(Self {
            root: root.as_ref().to_path_buf(),
            shards,
            lookup,
            index: None,
        })
    }

    /// The directory the weights were opened from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The index file, for a sharded checkpoint.
    pub fn index_path(&self) -> Option<&Path> {
        self.index.as_deref()
    }

    pub fn shards(&self) -> &[SafetensorsFile] {
        &self.shards
    }

    pub fn len(&self) -> usize {
        self.lookup.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lookup.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.lookup.contains_key(name)
    }

    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.lookup.get(name).map(|&(s, i)| &self.shards[s].infos()[i])
    }

    /// The tensor called `name`, or an error naming the directory and the missing key.
    pub fn get(&self, name: &str) -> Result<TensorView<'_>> {
        self.try_get(name).ok_or_else(|| CheckpointError::TensorNotFound {
            dir: self.root.clone(),
            tensor: name.to_string(),
        })
    }

    /// The tensor called `name`, if present.
    pub fn try_get(&self, name: &str) -> Option<TensorView<'_>> {
        self.lookup.get(name).map(|&(s, i)| self.shards[s].view(i))
    }

    /// Releases the resident pages of tensor `name` (see `SafetensorsFile::release`); a no-op for unknown
    /// names. Call after a tensor's bytes are consumed when streaming a model larger than memory.
    pub fn release(&self, name: &str) {
        if let Some(&(s, i)) = self.lookup.get(name) {
            self.shards[s].release(i);
        }
    }

    /// Tensor names in file order (shard by shard, by data offset).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.shards
            .iter()
            .flat_map(|s| s.infos().iter().map(|t| t.name.as_str()))
    }

    /// All tensors in file order; iterating touches only the pages of tensors whose bytes are read.
    pub fn tensors(&self) -> impl Iterator<Item = TensorView<'_>> {
        self.shards.iter().flat_map(SafetensorsFile::tensors)
    }

    /// Total size of all tensor data in bytes (the index's `metadata.total_size`).
    pub fn total_bytes(&self) -> u64 {
        self.shards
            .iter()
            .flat_map(|s| s.infos())
            .map(TensorInfo::byte_len)
            .sum()
    }

    /// Total number of parameters (elements over all tensors).
    pub fn total_params(&self) -> u64 {
        self.shards
            .iter()
            .flat_map(|s| s.infos())
            .map(|t| t.numel() as u64)
            .sum()
    }
}
