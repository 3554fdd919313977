//! Checkpoint tensors → burn tensors, with the shape checked against what the model needs.

use std::str::FromStr;

use burn::tensor::{DType, Tensor, TensorCreationOptions, TensorData, backend::Backend};
use mmreason_checkpoint::{Dtype, TensorView};

use crate::error::{ModelError, Result};

/// The float type weights are loaded in (`--dtype f32|bf16|f16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightDtype {
    F32,
    F16,
    BF16,
}

impl WeightDtype {
    /// The burn dtype tensors of this weight type have.
    pub fn burn(self) -> DType {
        match self {
            WeightDtype::F32 => DType::F32,
            WeightDtype::F16 => DType::F16,
            WeightDtype::BF16 => DType::BF16,
        }
    }

    /// The command-line name (`f32`, `f16`, `bf16`), as reports and results files write it.
    pub fn name(self) -> &'static str {
        match self {
            WeightDtype::F32 => "f32",
            WeightDtype::F16 => "f16",
            WeightDtype::BF16 => "bf16",
        }
    }

    fn checkpoint(self) -> Dtype {
        match self {
            WeightDtype::F32 => Dtype::F32,
            WeightDtype::F16 => Dtype::F16,
            WeightDtype::BF16 => Dtype::BF16,
        }
    }
}

impl FromStr for WeightDtype {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(WeightDtype::F32),
            "f16" | "float16" => Ok(WeightDtype::F16),
            "bf16" | "bfloat16" => Ok(WeightDtype::BF16),
            _ => Err(ModelError::UnknownDtype(s.to_string())),
        }
    }
}

/// Loads a float tensor of the expected `shape` onto `device` as `dtype`. When the checkpoint already stores
/// `dtype`, its bytes go to the device unchanged (no f32 round trip on the host); otherwise values are decoded
/// to f32 and cast.
pub fn load_float<B: Backend, const D: usize>(
    view: &TensorView<'_>,
    shape: [usize; D],
    dtype: WeightDtype,
    device: &B::Device,
) -> Result<Tensor<B, D>> {
    if view.shape() != shape {
        return Err(ModelError::Shape {
            tensor: view.name().to_string(),
            found: view.shape().to_vec(),
            expected: shape.to_vec(),
        });
    }
    let data = if view.dtype() == dtype.checkpoint() {
        TensorData::from_bytes_vec(view.bytes().to_vec(), shape, dtype.burn())
    } else {
        TensorData::new(view.to_f32()?, shape).convert_dtype(dtype.burn())
    };
    let options = TensorCreationOptions::new(device.clone()).with_dtype(dtype.burn());
    Ok(Tensor::from_data(data, options))
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use std::path::Path;

    use mmreason_checkpoint::Weights;

    use super::*;
    use crate::backend::CpuBackend;

    fn fixture(name: &str) -> Weights {
        Weights::open_dir(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/models")
                .join(name),
        )
        .expect("committed fixture opens")
    }

    #[test]
    fn f16_checkpoint_loads_as_f32_with_exact_values() {
        let w = fixture("vicuna-base");
        let view = w.get("model.layers.0.self_attn.q_proj.weight").unwrap();
        let t: Tensor<CpuBackend, 2> =
            load_float(&view, [16, 16], WeightDtype::F32, &Default::default()).unwrap();
        let got = t.into_data().to_vec::<f32>().unwrap();
        assert_eq!(got, view.to_f32().unwrap());
    }

    #[test]
    fn wrong_shape_names_the_tensor() {
        let w = fixture("llama");
        let view = w.get("model.norm.weight").unwrap();
        let e = load_float::<CpuBackend, 1>(&view, [31], WeightDtype::F32, &Default::default()).unwrap_err();
        assert!(
            e.to_string().contains("model.norm.weight") && e.to_string().contains("31"),
            "{e}"
        );
    }
}
