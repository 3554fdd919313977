//! A borrowed view of one tensor's bytes inside a mapped file.

use std::path::Path;

use crate::dtype::{Dtype, convert_to_f32};
use crate::error::{CheckpointError, Result};
use crate::header::TensorInfo;

/// One tensor: its name, dtype, shape and raw little-endian bytes (borrowed from the memory map).
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    path: &'a Path,
    info: &'a TensorInfo,
    bytes: &'a [u8],
}

impl<'a> TensorView<'a> {
    pub(crate) fn new(path: &'a Path, info: &'a TensorInfo, bytes: &'a [u8]) -> Self {
        Self { path, info, bytes }
    }

    pub fn name(&self) -> &'a str {
        &self.info.name
    }

    pub fn dtype(&self) -> Dtype {
        self.info.dtype
    }

    pub fn shape(&self) -> &'a [usize] {
        &self.info.shape
    }

    pub fn numel(&self) -> usize {
        self.info.numel()
    }

    /// The file this tensor lives in.
    pub fn path(&self) -> &'a Path {
        self.path
    }

    /// Raw little-endian bytes, exactly as stored.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Decodes the values to f32 (F32, F16, BF16 and F64; other dtypes are an error naming the tensor).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(self.numel());
        self.extend_f32(&mut out)?;
        Ok(out)
    }

    /// Like [`to_f32`](Self::to_f32) but appends to a caller-owned buffer (lets streaming code reuse memory).
    pub fn extend_f32(&self, out: &mut Vec<f32>) -> Result<()> {
        if convert_to_f32(self.dtype(), self.bytes, out) {
            Ok(())
        } else {
            Err(CheckpointError::NotFloat {
                path: self.path.to_path_buf(),
                tensor: self.name().to_string(),
                dtype: self.dtype(),
            })
        }
    }

    /// Decodes an I64/I32 tensor (token ids, image sizes) to i64.
    pub fn to_i64(&self) -> Result<Vec<i64>> {
        match self.dtype() {
            Dtype::I64 => Ok(self
                .bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect()),
            Dtype::I32 => Ok(self
                .bytes
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect()),
            other => Err(CheckpointError::Unexpected {
                path: self.path.to_path_buf(),
                tensor: self.name().to_string(),
                found: other,
                found_shape: self.shape().to_vec(),
                expected: "an I64 or I32 tensor".into(),
            }),
        }
    }

    /// Checks the shape (and, if given, the dtype) against what a model expects; the error names the tensor.
    pub fn expect(&self, dtype: Option<Dtype>, shape: &[usize]) -> Result<Self> {
        let dtype_ok = dtype.is_none_or(|d| d == self.dtype());
        if dtype_ok && self.shape() == shape {
            return Ok(*self);
        }
        Err(CheckpointError::Unexpected {
            path: self.path.to_path_buf(),
            tensor: self.name().to_string(),
            found: self.dtype(),
            found_shape: self.shape().to_vec(),
            expected: match dtype {
                Some(d) => format!("{d:?} {shape:?}"),
                None => format!("shape {shape:?}"),
            },
        })
    }
}
