//! Pairs a VLM's language model with its base LLM tensor by tensor — the step both the study's comparison and
//! its merge start from.

use serde::Serialize;

use crate::layout::is_vocab_tensor;
use crate::model_dir::ModelDir;

/// One language-model tensor present in both models.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairedTensor {
    /// Name in the base LLM (`model.layers.0.mlp.up_proj.weight`).
    pub llm_name: String,
    /// Name in the VLM checkpoint, in its own layout.
    pub vlm_name: String,
    pub llm_shape: Vec<usize>,
    pub vlm_shape: Vec<usize>,
}

impl PairedTensor {
    /// The VLM has more vocabulary rows (llava-hf pads 32000 → 32064): only the first `llm_shape[0]` rows have a
    /// counterpart in the LLM.
    pub fn vocab_padded(&self) -> bool {
        self.llm_shape != self.vlm_shape
            && is_vocab_tensor(&self.llm_name)
            && self.llm_shape.len() == 2
            && self.vlm_shape.len() == 2
            && self.llm_shape[1] == self.vlm_shape[1]
            && self.vlm_shape[0] > self.llm_shape[0]
    }
}

/// How a VLM's language model lines up with a base LLM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pairing {
    pub paired: Vec<PairedTensor>,
    /// Base-LLM tensors the VLM lacks.
    pub only_in_llm: Vec<String>,
    /// VLM language-model tensors (as base-LLM names) the LLM lacks.
    pub only_in_vlm: Vec<String>,
    /// Pairs whose shapes differ other than by vocabulary padding: these cannot be merged.
    pub shape_conflicts: Vec<PairedTensor>,
}

impl Pairing {
    /// Pairs `vlm`'s language-model tensors with `llm`'s by name. `vlm` may also be a plain LLM (then names are
    /// compared as they are), so two LLMs can be paired too.
    pub fn new(vlm: &ModelDir, llm: &ModelDir) -> Self {
        let vlm_tensors: Vec<(String, String)> = if vlm.layout.is_some() {
            vlm.language_model_tensors()
        } else {
            vlm.weights
                .names()
                .map(|n| (n.to_string(), n.to_string()))
                .collect()
        };
        let mut out = Pairing::default();
        let mut seen = std::collections::HashSet::new();
        for (llm_name, vlm_name) in vlm_tensors {
            seen.insert(llm_name.clone());
            let Some(l) = llm.weights.info(&llm_name) else {
                out.only_in_vlm.push(llm_name);
                continue;
            };
            let v = vlm
                .weights
                .info(&vlm_name)
                .expect("name listed by the same weights");
            let pair = PairedTensor {
                llm_name,
                vlm_name,
                llm_shape: l.shape.clone(),
                vlm_shape: v.shape.clone(),
            };
            if pair.llm_shape == pair.vlm_shape || pair.vocab_padded() {
                out.paired.push(pair);
            } else {
                out.shape_conflicts.push(pair);
            }
        }
        out.only_in_llm = llm
            .weights
            .names()
            .filter(|n| !seen.contains(*n))
            .map(str::to_string)
            .collect();
        out
    }

    /// Whether every tensor pairs up (vocabulary padding allowed).
    pub fn is_complete(&self) -> bool {
        self.only_in_llm.is_empty() && self.only_in_vlm.is_empty() && self.shape_conflicts.is_empty()
    }
}

impl std::fmt::Display for Pairing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let padded: Vec<_> = self.paired.iter().filter(|p| p.vocab_padded()).collect();
        writeln!(
            f,
            "paired     {} language-model tensors with the base LLM",
            self.paired.len()
        )?;
        for p in padded {
            writeln!(
                f,
                "vocab      {}: VLM {} rows, LLM {} rows (rows {}.. have no LLM counterpart)",
                p.llm_name, p.vlm_shape[0], p.llm_shape[0], p.llm_shape[0]
            )?;
        }
        for (what, list) in [
            ("only in LLM", &self.only_in_llm),
            ("only in VLM", &self.only_in_vlm),
        ] {
            if !list.is_empty() {
                writeln!(f, "{what:<10} {} tensor(s), first: {}", list.len(), list[0])?;
            }
        }
        for c in &self.shape_conflicts {
            writeln!(
                f,
                "conflict   {}: VLM {:?} vs LLM {:?}",
                c.llm_name, c.vlm_shape, c.llm_shape
            )?;
        }
        write!(f, "complete   {}", if self.is_complete() { "yes" } else { "no" })
    }
}
