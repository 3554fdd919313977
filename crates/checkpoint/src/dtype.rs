//! Element types of the safetensors format and their conversion to f32.

use serde::{Deserialize, Serialize};

/// A safetensors dtype, spelled as in the file header (`"BF16"`, `"F32"`, …).
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Dtype {
    BOOL,
    U8,
    I8,
    F8_E5M2,
    F8_E4M3,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
}

impl Dtype {
    /// All dtypes, in the order the safetensors specification lists them.
    pub const ALL: [Dtype; 15] = [
        Dtype::BOOL,
        Dtype::U8,
        Dtype::I8,
        Dtype::F8_E5M2,
        Dtype::F8_E4M3,
        Dtype::I16,
        Dtype::U16,
        Dtype::F16,
        Dtype::BF16,
        Dtype::I32,
        Dtype::U32,
        Dtype::F32,
        Dtype::F64,
        Dtype::I64,
        Dtype::U64,
    ];

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::BOOL | Dtype::U8 | Dtype::I8 | Dtype::F8_E5M2 | Dtype::F8_E4M3 => 1,
            Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::BF16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
        }
    }

    /// The header spelling.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::BOOL => "BOOL",
            Dtype::U8 => "U8",
            Dtype::I8 => "I8",
            Dtype::F8_E5M2 => "F8_E5M2",
            Dtype::F8_E4M3 => "F8_E4M3",
            Dtype::I16 => "I16",
            Dtype::U16 => "U16",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I32 => "I32",
            Dtype::U32 => "U32",
            Dtype::F32 => "F32",
            Dtype::F64 => "F64",
            Dtype::I64 => "I64",
            Dtype::U64 => "U64",
        }
    }

    /// Parses a header spelling; `None` for anything unknown.
    pub fn parse(s: &str) -> Option<Dtype> {
        Dtype::ALL.into_iter().find(|d| d.name() == s)
    }

    /// Whether [`convert_to_f32`] accepts this dtype.
    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64)
    }

    /// Bytes a tensor of `shape` takes, computed without overflow (`None` when it would not fit in u128).
    pub fn byte_len(self, shape: &[usize]) -> Option<u128> {
        shape
            .iter()
            .try_fold(self.size() as u128, |acc, &d| acc.checked_mul(d as u128))
    }

    /// Comma-separated list of known spellings, for error messages.
    pub fn known_list() -> String {
        Dtype::ALL.map(Dtype::name).join(", ")
    }
}

/// Decodes little-endian `bytes` of `dtype` into f32, appending to `out`. Returns `false` (and appends nothing)
/// for dtypes that are not floating point. Byte-wise decoding, so memory-mapped data need not be aligned.
pub fn convert_to_f32(dtype: Dtype, bytes: &[u8], out: &mut Vec<f32>) -> bool {
    match dtype {
        Dtype::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        Dtype::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        Dtype::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        Dtype::F64 => out.extend(
            bytes
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32),
        ),
        _ => return false,
    }
    true
}

/// Encodes f32 values as little-endian bytes of `dtype` (round to nearest even for F16/BF16, as PyTorch does).
/// Returns `None` for non-float dtypes.
pub fn convert_from_f32(dtype: Dtype, values: &[f32]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(values.len() * dtype.size());
    match dtype {
        Dtype::F32 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        Dtype::F16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&half::f16::from_f32(*v).to_le_bytes())),
        Dtype::BF16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&half::bf16::from_f32(*v).to_le_bytes())),
        Dtype::F64 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&(*v as f64).to_le_bytes())),
        _ => return None,
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in Dtype::ALL {
            assert_eq!(Dtype::parse(d.name()), Some(d));
        }
        assert_eq!(Dtype::parse("F4"), None);
    }

    #[test]
    fn bf16_and_f16_convert_exactly_representable_values() {
        let values = [0.0f32, -1.5, 3.25, 65504.0, -0.0078125];
        for dt in [Dtype::F16, Dtype::BF16, Dtype::F32, Dtype::F64] {
            let bytes = convert_from_f32(dt, &values).unwrap();
            assert_eq!(bytes.len(), values.len() * dt.size());
            let mut back = Vec::new();
            assert!(convert_to_f32(dt, &bytes, &mut back));
            if dt == Dtype::BF16 {
                // 65504 is not representable in bf16 (8 bits of mantissa); it rounds to 65536.
                assert_eq!(back[3], 65536.0);
                back[3] = 65504.0;
            }
            assert_eq!(back, values, "{dt:?}");
        }
        assert!(!convert_to_f32(Dtype::I64, &[0; 8], &mut Vec::new()));
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        // 1 + 2^-8 lies exactly between two bf16 values (1 and 1 + 2^-7): ties go to the even mantissa, 1.0.
        let bytes = convert_from_f32(Dtype::BF16, &[1.0 + 1.0 / 256.0]).unwrap();
        let mut back = Vec::new();
        convert_to_f32(Dtype::BF16, &bytes, &mut back);
        assert_eq!(back, [1.0]);
    }
}
