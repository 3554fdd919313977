//! The `logits` example's work: read `input_ids` (and `attention_mask`) from a safetensors file, run the
//! model, write `logits` (F32 [B, S, V]). For a LLaVA directory the language model runs text-only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use mmreason_checkpoint::{Dtype, ModelDir, TensorView, Weights, write_safetensors_file};

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
        BackendKind::Cuda => run_on::<crate::backend::CudaBackend>(opts, &Default::default()),
        #[allow(unreachable_patterns)]
        other => Err(ModelError::BackendNotCompiled {
            name: other.name().into(),
            compiled: String::new(),
        }),
    }
}

fn run_on<B: Backend>(opts: &LogitsOptions, device: &B::Device) -> Result<LogitsReport> {
    let dir = ModelDir::open(&opts.model)?;
    let inputs = Weights::open_files(
        opts.inputs.parent().unwrap_or(Path::new(".")),
        std::slice::from_ref(&opts.inputs),
    )?;
    let ids = read_rows(&inputs, "input_ids", &opts.inputs)?.ok_or_else(|| {
        ModelError::Input(format!(
            "{}: no tensor `input_ids` (I64 [B, S])",
            opts.inputs.display()
        ))
    })?;
    let mask = match read_rows(&inputs, "attention_mask", &opts.inputs)? {
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
    let decoder = load_decoder::<B>(&dir, opts.dtype, device)?;
    let logits = decoder.forward(&Batch { ids, mask }, &mut KvCache::new(decoder.num_layers()))?;
    let shape = logits.dims();
    let values = logits
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| ModelError::Input(format!("{e:?}")))?;
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_safetensors_file(&opts.out, &[("logits", Dtype::F32, &shape, &bytes)])?;
    Ok(LogitsReport {
        shape,
        out: opts.out.clone(),
    })
}
