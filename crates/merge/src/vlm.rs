//! The study's merge on real checkpoints: a VLM and its base LLM in, a complete VLM checkpoint out.
//!
//! The VLM's language-model tensors are mapped to the base LLM's names (any of the three LLaVA layouts, see
//! `mmreason_checkpoint::layout`) and merged with [`SparseTaskVector`]; the vision tower, the projector and
//! `image_newline` pass through unchanged. Where llava-hf padded the vocabulary (32000 → 32064 rows of
//! `embed_tokens` and `lm_head`), the rows beyond the LLM's vocabulary keep the VLM's values and are not part
//! of the top-K population. The output keeps the VLM's layout, dtypes, config and tokenizer/processor files, so
//! transformers loads it as the VLM it came from.

use std::path::{Path, PathBuf};

use mmreason_checkpoint::{
    CheckpointWriter, Dtype, ModelDir, PairedTensor, Pairing, TensorView, WriterOptions,
};
use serde::Serialize;

use crate::error::{MergeError, Result};
use crate::progress::Progress;
use crate::select::{self, GlobalSelect, Threshold};
use crate::sparse_task_vector::{Scope, SparseTaskVector};

/// Everything `merge --vlm --llm` needs.
#[derive(Debug, Clone)]
pub struct VlmMergeOptions {
    pub vlm: PathBuf,
    pub llm: PathBuf,
    pub out: PathBuf,
    pub method: SparseTaskVector,
    /// Replace an existing output directory.
    pub force: bool,
    /// Merge even if an input holds NaN/Inf (refused by default, naming the tensor).
    pub allow_nonfinite: bool,
    pub max_shard_bytes: u64,
    pub show_progress: bool,
}

/// What a merge did.
#[derive(Debug, Clone, Serialize)]
pub struct VlmMergeReport {
    pub out: PathBuf,
    pub merged_tensors: usize,
    pub passed_through: usize,
    /// Entries of the task vector considered (LLM-vocabulary rows only).
    pub population: u64,
    pub kept: u64,
    pub seconds: f64,
    pub bytes_read: u64,
    pub shards: usize,
}

/// Runs the merge. Inputs are never modified; nothing appears at `out` unless the whole merge succeeds.
pub fn merge_vlm_with_llm(opts: &VlmMergeOptions) -> Result<VlmMergeReport> {
    opts.method.validate()?;
    let vlm = ModelDir::open(&opts.vlm)?;
    let llm = ModelDir::open(&opts.llm)?;
    let pairing = Pairing::new(&vlm, &llm);
    if pairing.paired.is_empty() || !pairing.is_complete() {
        return Err(MergeError::Unpaired {
            vlm: opts.vlm.clone(),
            llm: opts.llm.clone(),
            detail: describe_unpaired(&pairing),
        });
    }
    let paired: std::collections::HashMap<&str, &PairedTensor> =
        pairing.paired.iter().map(|p| (p.vlm_name.as_str(), p)).collect();

    // Global scope: two streaming passes over the task vector find the exact threshold.
    let threshold = match opts.method.scope {
        Scope::PerTensor => None,
        Scope::Global => {
            let population: u64 = pairing
                .paired
                .iter()
                .map(|p| p.llm_shape.iter().product::<usize>() as u64)
                .sum();
            let mut g = GlobalSelect::new(select::k_of(opts.method.topk, population));
            let mut bar = Progress::new("threshold", pairing.paired.len() as u64 * 2, opts.show_progress);
            for p in &pairing.paired {
                let (v, l) = load_pair(&vlm, &llm, p, opts.allow_nonfinite)?;
                g.coarse(&opts.method.keys(&v[..l.len()], &l));
                vlm.weights.release(&p.vlm_name);
                llm.weights.release(&p.llm_name);
                bar.tick((l.len() * 8) as u64);
            }
            if g.refine_bin().is_some() {
                for p in &pairing.paired {
                    let (v, l) = load_pair(&vlm, &llm, p, opts.allow_nonfinite)?;
                    g.fine(&opts.method.keys(&v[..l.len()], &l));
                    vlm.weights.release(&p.vlm_name);
                    llm.weights.release(&p.llm_name);
                    bar.tick((l.len() * 8) as u64);
                }
            }
            bar.finish();
            Some(g.threshold())
        }
    };

    let wopts = WriterOptions {
        max_shard_bytes: opts.max_shard_bytes,
        force: opts.force,
        protected: vec![opts.vlm.clone(), opts.llm.clone()],
        ..WriterOptions::default()
    };
    let mut writer = CheckpointWriter::create(&opts.out, wopts)?;
    let mut bar = Progress::new("merge", vlm.weights.len() as u64, opts.show_progress);
    let (mut merged, mut passed, mut population, mut kept, mut equal_seen) = (0, 0, 0u64, 0u64, 0u64);
    for t in vlm.weights.tensors() {
        let Some(p) = paired.get(t.name()) else {
            writer.add(t.name(), t.dtype(), t.shape(), t.bytes().to_vec())?;
            vlm.weights.release(t.name());
            passed += 1;
            bar.tick(t.bytes().len() as u64);
            continue;
        };
        let (v, l) = load_pair(&vlm, &llm, p, opts.allow_nonfinite)?;
        let paired_v = &v[..l.len()];
        let (mut out, k) = match &threshold {
            Some(th) => opts.method.apply(paired_v, &l, th, &mut equal_seen),
            None => opts.method.merge_tensor(paired_v, &l),
        };
        population += l.len() as u64;
        kept += k;
        // Rows past the LLM's vocabulary keep the VLM's values.
        out.extend_from_slice(&v[l.len()..]);
        finite_output(t.name(), t.dtype(), &out, opts.allow_nonfinite)?;
        writer.add_f32(t.name(), t.dtype(), t.shape(), &out)?;
        vlm.weights.release(&p.vlm_name);
        llm.weights.release(&p.llm_name);
        merged += 1;
        bar.tick((t.bytes().len() + l.len() * 4) as u64);
    }
    copy_side_files(&vlm.root, &mut writer)?;
    let summary = writer.finish()?;
    let (seconds, bytes_read) = bar.finish();
    debug_assert!(
        threshold.is_none_or(|t: Threshold| t.keep_all || t.keep_none || equal_seen == t.equal_quota)
    );
    Ok(VlmMergeReport {
        out: summary.dir,
        merged_tensors: merged,
        passed_through: passed,
        population,
        kept,
        seconds,
        bytes_read,
        shards: summary.shard_files.len(),
    })
}

/// Loads the paired tensors as f32 (the VLM's whole, padded rows included; its first `llm.len()` values pair
/// with the LLM's), refusing non-finite values by default.
fn load_pair(
    vlm: &ModelDir,
    llm: &ModelDir,
    p: &PairedTensor,
    allow_nonfinite: bool,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let l_view = llm.weights.get(&p.llm_name)?;
    let v_view = vlm.weights.get(&p.vlm_name)?;
    let l = finite(&l_view, allow_nonfinite)?;
    let v = finite(&v_view, allow_nonfinite)?;
    Ok((v, l))
}

/// Decodes a tensor to f32, checking for NaN/Inf.
pub fn finite(view: &TensorView<'_>, allow_nonfinite: bool) -> Result<Vec<f32>> {
    let values = view.to_f32()?;
    if let Some((first, count)) = (!allow_nonfinite)
        .then(|| first_and_count(&values, |x| !x.is_finite()))
        .flatten()
    {
        return Err(MergeError::NonFinite {
            tensor: view.name().to_string(),
            model: view.path().to_path_buf(),
            count,
            first,
        });
    }
    Ok(values)
}

/// The index of the first value `bad` picks out, and how many it picks; `None` when it picks none.
fn first_and_count(values: &[f32], bad: impl Fn(f32) -> bool) -> Option<(usize, usize)> {
    let first = values.iter().position(|&x| bad(x))?;
    Some((first, values[first..].iter().filter(|&&x| bad(x)).count()))
}

/// Refuses a merged tensor that is not finite once stored as `dtype` (a NaN, an infinity, or a value past
/// f16's or bf16's range), naming it: finite inputs can still merge to that (weights that sum to 0 under
/// normalisation, model_stock's angle at its pole, a large α), and a checkpoint holding it loads without
/// complaint and then scores nonsense.
pub fn finite_output(tensor: &str, dtype: Dtype, values: &[f32], allow_nonfinite: bool) -> Result<()> {
    if allow_nonfinite {
        return Ok(());
    }
    let bad = |x: f32| match dtype {
        Dtype::F16 => !half::f16::from_f32(x).is_finite(),
        Dtype::BF16 => !half::bf16::from_f32(x).is_finite(),
        _ => !x.is_finite(),
    };
    match first_and_count(values, bad) {
        None => Ok(()),
        Some((first, count)) => Err(MergeError::NonFiniteOutput {
            tensor: tensor.to_string(),
            dtype: format!("{dtype:?}"),
            count,
            first,
        }),
    }
}

/// Copies every non-weight file of a model directory (config, generation config, tokenizer, processor).
pub fn copy_side_files(dir: &Path, writer: &mut CheckpointWriter) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| MergeError::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let mut names: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(n, p)| p.is_file() && !is_weights(n) && !n.starts_with('.'))
        .collect();
    names.sort();
    for (name, path) in names {
        writer.copy_file(&path, &name)?;
    }
    Ok(())
}

/// Whether a file holds weights (or indexes them) rather than describing the model: the merged safetensors
/// replace the input's, and weights in any other format (a PyTorch `.bin` left beside the safetensors, say) would
/// be the unmerged model, which a loader that prefers that format would then load from the output.
fn is_weights(name: &str) -> bool {
    const WEIGHTS: [&str; 10] = [
        ".safetensors",
        ".bin",
        ".pt",
        ".pth",
        ".ckpt",
        ".gguf",
        ".h5",
        ".msgpack",
        ".onnx",
        ".index.json",
    ];
    WEIGHTS.iter().any(|ext| name.ends_with(ext))
}

fn describe_unpaired(p: &Pairing) -> String {
    if let Some(c) = p.shape_conflicts.first() {
        return format!(
            "`{}` is {:?} in the VLM but {:?} in the LLM (different hidden size or vocabulary?); {} conflict(s)",
            c.llm_name,
            c.vlm_shape,
            c.llm_shape,
            p.shape_conflicts.len()
        );
    }
    if let Some(n) = p.only_in_llm.first() {
        return format!(
            "`{n}` is in the LLM but not in the VLM ({} such tensors; different layer count?)",
            p.only_in_llm.len()
        );
    }
    if let Some(n) = p.only_in_vlm.first() {
        return format!(
            "`{n}` is in the VLM but not in the LLM ({} such tensors; different layer count?)",
            p.only_in_vlm.len()
        );
    }
    "no language-model tensors in common (is --vlm a LLaVA checkpoint and --llm its base?)".into()
}
