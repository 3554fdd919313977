//! The `logits` example's work: read `input_ids` (and `attention_mask`) from a safetensors file, run the
//! model, write `logits` (F32 [B, S, V]). A LLaVA directory also takes `pixel_values` ([N,3,S,S] for 1.5,
//! [N,tiles,3,S,S] plus `image_sizes` I64 [N,2] (height, width) for NeXT) and runs text-only without them;
//! a CLIP vision directory takes `pixel_values` and writes `hidden_states` (F32 [L+1, N, T, H]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData, backend::Backend};
use mmreason_checkpoint::{Dtype, ModelConfig, ModelDir, TensorView, Weights, write_safetensors_file};

use crate::clip::ClipVision;
use crate::llava::{Llava, Pixels};

use crate::backend::BackendKind;
use crate::error::{ModelError, Result};
use crate::kv_cache::KvCache;
use crate::llama::{Batch, Decoder, TensorSource};
use crate::load::WeightDtype;

/// A VLM's language model served under the base LLM's tensor names.
pub struct LanguageModelView<'a> {
    weights: &'a Weights,
    names: HashMap<String, String>,
}

impl<'a> LanguageModelView<'a> {
    pub fn new(dir: &'a ModelDir) -> Self {
        let names = dir.language_model_tensors().into_iter().collect();
        Self {
            weights: &dir.weights,
            names,
        }
    }
}

impl TensorSource for LanguageModelView<'_> {
    fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        let actual = self.names.get(name).map_or(name, String::as_str);
        Ok(self.weights.get(actual)?)
    }
}

/// Loads the decoder of an LLM directory, or the language model of a VLM directory.
pub fn load_decoder<B: Backend>(
    dir: &ModelDir,
    dtype: WeightDtype,
    device: &B::Device,
) -> Result<Decoder<B>> {
    let cfg = dir.config.text().ok_or_else(|| {
        ModelError::Unsupported(format!(
            "{} is a {} checkpoint, which has no language model",
            dir.root.display(),
            dir.config.kind_name()
        ))
    })?;
    if dir.layout.is_some() {
        Decoder::load(
            cfg,
            &LanguageModelView::new(dir),
            "model.",
            "lm_head.weight",
            dtype,
            device,
        )
    } else {
        Decoder::load(cfg, &dir.weights, "model.", "lm_head.weight", dtype, device)
    }
}

/// Options of the `logits` example.
#[derive(Debug, Clone)]
pub struct LogitsOptions {
    pub model: PathBuf,
    pub inputs: PathBuf,
    pub out: PathBuf,
    pub backend: BackendKind,
    pub dtype: WeightDtype,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct LogitsReport {
    pub shape: [usize; 3],
    pub out: PathBuf,
}

fn read_rows(inputs: &Weights, name: &str, path: &Path) -> Result<Option<Vec<Vec<i64>>>> {
    let Some(t) = inputs.try_get(name) else {
        return Ok(None);
    };
    if t.shape().len() != 2 {
        return Err(ModelError::Input(format!(
            "{}: `{name}` must be [B, S], got {:?}",
            path.display(),
            t.shape()
        )));
    }
    let s = t.shape()[1];
    Ok(Some(t.to_i64()?.chunks(s.max(1)).map(<[i64]>::to_vec).collect()))
}

/// Runs the model on the inputs file and writes the logits file.
pub fn run_logits(opts: &LogitsOptions) -> Result<LogitsReport> {
    match opts.backend {
        #[cfg(feature = "cpu")]
        BackendKind::Cpu => run_on::<crate::backend::CpuBackend>(opts, &Default::default()),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => run_on::<crate::backend::WgpuBackend>(opts, &Default::default()),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => {
            crate::backend::check_cuda()?;
            run_on::<crate::backend::CudaBackend>(opts, &Default::default())
        }
        #[allow(unreachable_patterns)]
        other => Err(ModelError::BackendNotCompiled {
            name: other.name().into(),
            compiled: String::new(),
        }),
    }
}

/// Reads a float tensor of rank `D` from the inputs file.
fn read_float<B: Backend, const D: usize>(
    inputs: &Weights,
    name: &str,
    path: &Path,
    device: &B::Device,
) -> Result<Option<Tensor<B, D>>> {
    let Some(t) = inputs.try_get(name) else {
        return Ok(None);
    };
    let shape: [usize; D] = t.shape().try_into().map_err(|_| {
        ModelError::Input(format!(
            "{}: `{name}` must have {D} dimensions, got {:?}",
            path.display(),
            t.shape()
        ))
    })?;
    Ok(Some(Tensor::from_data(
        TensorData::new(t.to_f32()?, shape),
        device,
    )))
}

fn write_f32<B: Backend, const D: usize>(out: &Path, name: &str, t: Tensor<B, D>) -> Result<[usize; D]> {
    let shape = t.dims();
    let values = t
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| ModelError::Input(format!("{e:?}")))?;
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_safetensors_file(out, &[(name, Dtype::F32, &shape, &bytes)])?;
    Ok(shape)
}

fn run_on<B: Backend>(opts: &LogitsOptions, device: &B::Device) -> Result<LogitsReport> {
    let dir = ModelDir::open(&opts.model)?;
    let inputs = Weights::open_files(
        opts.inputs.parent().unwrap_or(Path::new(".")),
        std::slice::from_ref(&opts.inputs),
    )?;
    // A CLIP vision checkpoint: pixel_values in, hidden states of every layer out.
    if let ModelConfig::ClipVision(cfg) = &dir.config {
        let px = read_float::<B, 4>(&inputs, "pixel_values", &opts.inputs, device)?.ok_or_else(|| {
            ModelError::Input(format!(
                "{}: no tensor `pixel_values` (F32 [N,3,S,S])",
                opts.inputs.display()
            ))
        })?;
        let prefix = if dir.weights.contains("vision_model.post_layernorm.weight") {
            "vision_model."
        } else {
            ""
        };
        let clip = ClipVision::<B>::load(cfg, &dir.weights, prefix, opts.dtype, device)?;
        let states = Tensor::stack::<4>(clip.hidden_states(px)?, 0);
        let [l, n, t, h] = write_f32(&opts.out, "hidden_states", states)?;
        return Ok(LogitsReport {
            shape: [l * n, t, h],
            out: opts.out.clone(),
        });
    }
    let ids = read_rows(&inputs, "input_ids", &opts.inputs)?.ok_or_else(|| {
        ModelError::Input(format!(
            "{}: no tensor `input_ids` (I64 [B, S])",
            opts.inputs.display()
        ))
    })?;
    let mask: Vec<Vec<bool>> = match read_rows(&inputs, "attention_mask", &opts.inputs)? {
        Some(m) => {
            if m.len() != ids.len() || m.iter().zip(&ids).any(|(a, b)| a.len() != b.len()) {
                return Err(ModelError::Input(format!(
                    "{}: attention_mask and input_ids differ in shape",
                    opts.inputs.display()
                )));
            }
            m.into_iter()
                .map(|r| r.into_iter().map(|x| x != 0).collect())
                .collect()
        }
        None => ids.iter().map(|r| vec![true; r.len()]).collect(),
    };
    let ids: Vec<Vec<u32>> = ids
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|x| u32::try_from(x).map_err(|_| ModelError::Input(format!("negative token id {x}"))))
                .collect()
        })
        .collect::<Result<_>>()?;
    if matches!(dir.config, ModelConfig::Llava(_) | ModelConfig::LlavaNext(_)) {
        let llava = Llava::<B>::load(&dir, opts.dtype, device)?;
        let pixels = match inputs.info("pixel_values").map(|t| t.shape.len()) {
            None => None,
            Some(5) => {
                let p = read_float::<B, 5>(&inputs, "pixel_values", &opts.inputs, device)?.expect("present");
                let sizes = read_rows(&inputs, "image_sizes", &opts.inputs)?.ok_or_else(|| {
                    ModelError::Input(format!(
                        "{}: tiled pixel_values need `image_sizes` (I64 [N,2], height, width)",
                        opts.inputs.display()
                    ))
                })?;
                let sizes = sizes
                    .iter()
                    .map(|r| match r.as_slice() {
                        [h, w] if *h > 0 && *w > 0 => Ok((*h as usize, *w as usize)),
                        other => Err(ModelError::Input(format!(
                            "image_sizes row {other:?} is not a positive (height, width)"
                        ))),
                    })
                    .collect::<Result<_>>()?;
                Some(Pixels::Tiles(p, sizes))
            }
            Some(_) => read_float::<B, 4>(&inputs, "pixel_values", &opts.inputs, device)?.map(Pixels::Square),
        };
        let h = llava.forward_hidden(&ids, &mask, pixels, &mut KvCache::new(llava.decoder.num_layers()))?;
        let shape = write_f32(&opts.out, "logits", llava.decoder.logits(h))?;
        return Ok(LogitsReport {
            shape,
            out: opts.out.clone(),
        });
    }
    let decoder = load_decoder::<B>(&dir, opts.dtype, device)?;
    let logits = decoder.forward(&Batch { ids, mask }, &mut KvCache::new(decoder.num_layers()))?;
    let shape = write_f32(&opts.out, "logits", logits)?;
    Ok(LogitsReport {
        shape,
        out: opts.out.clone(),
    })
}
