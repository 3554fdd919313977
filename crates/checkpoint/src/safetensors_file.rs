//! One memory-mapped safetensors file. Nothing is read until a tensor's bytes are touched, so opening a 14 GB
//! checkpoint costs a few header reads.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{CheckpointError, Result};
use crate::header::{Header, TensorInfo, parse_header};
use crate::tensor::TensorView;

/// A validated, memory-mapped safetensors file.
#[derive(Debug)]
pub struct SafetensorsFile {
    path: PathBuf,
    mmap: Option<Mmap>,
    header: Header,
    by_name: HashMap<String, usize>,
}

impl SafetensorsFile {
    /// Maps `path` and validates its header (see [`parse_header`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| CheckpointError::io(&path, e))?;
        let len = file.metadata().map_err(|e| CheckpointError::io(&path, e))?.len();
        // Mapping an empty file fails on some platforms; such a file is simply truncated.
        let mmap = if len == 0 {
            None
        } else {
            // SAFETY: the map is read-only; as with every mmap-based reader (safetensors, candle), a file
            // truncated by another process while mapped is outside what we can defend against.
            Some(unsafe { Mmap::map(&file) }.map_err(|e| CheckpointError::io(&path, e))?)
        };
        let bytes: &[u8] = mmap.as_deref().unwrap_or(&[]);
        let header = parse_header(&path, bytes, len)?;
        let by_name = header
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(Self {
            path,
            mmap,
            header,
            by_name,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Tensor entries in file order.
    pub fn infos(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.header.tensors[i])
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The tensor called `name`, if present.
    pub fn get(&self, name: &str) -> Option<TensorView<'_>> {
        self.by_name.get(name).map(|&i| self.view(i))
    }

    /// Views of all tensors in file order.
    pub fn tensors(&self) -> impl Iterator<Item = TensorView<'_>> {
        (0..self.header.tensors.len()).map(|i| self.view(i))
    }

    /// Drops the pages of tensor `i` from this process's mapping (they stay in the OS page cache and come back
    /// on the next read). Streaming code calls it after consuming a tensor so resident memory stays a few
    /// tensors, not the whole model.
    pub(crate) fn release(&self, i: usize) {
        let (Some(m), Some(info)) = (&self.mmap, self.header.tensors.get(i)) else {
            return;
        };
        let start = (self.header.data_start() + info.begin) as usize;
        let len = info.byte_len() as usize;
        if len == 0 {
            return;
        }
        // SAFETY: the mapping is read-only and file-backed, so MADV_DONTNEED only discards clean pages that the
        // kernel re-reads from the file on the next access; no data can be lost or changed. Failure is harmless.
        let _ = unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len) };
    }

    pub(crate) fn view(&self, i: usize) -> TensorView<'_> {
        let info = &self.header.tensors[i];
        let start = (self.header.data_start() + info.begin) as usize;
        let end = (self.header.data_start() + info.end) as usize;
        let bytes = match &self.mmap {
            Some(m) => &m[start..end],
            None => &[],
        };
        TensorView::new(&self.path, info, bytes)
    }
}
