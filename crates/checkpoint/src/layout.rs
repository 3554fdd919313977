//! LLaVA checkpoints come in three tensor-name layouts. Everything downstream (model loading, merging) speaks
//! one canonical naming — the llava-hf layout that the Hub's `llava-hf/*` checkpoints use and transformers 4.x
//! writes with `save_pretrained` — and this module translates.
//!
//! | part | original (liuhaotian) | llava-hf = canonical | transformers ≥ 4.52 in memory |
//! |---|---|---|---|
//! | decoder | `model.layers.*`, `model.embed_tokens.weight`, `model.norm.weight` | `language_model.model.*` | `model.language_model.*` |
//! | head | `lm_head.weight` | `language_model.lm_head.weight` | `lm_head.weight` |
//! | vision | `model.vision_tower.vision_tower.vision_model.*` | `vision_tower.vision_model.*` | `model.vision_tower.vision_model.*` |
//! | projector | `model.mm_projector.{0,2}.*` | `multi_modal_projector.linear_{1,2}.*` | `model.multi_modal_projector.linear_{1,2}.*` |
//! | NeXT | `model.image_newline` | `image_newline` | `model.image_newline` |
//!
//! The base LLM (Vicuna, Mistral) uses `model.*` + `lm_head.weight`; [`vlm_to_llm_name`] maps a canonical
//! language-model name onto it.

use std::fmt;

/// The naming layout of a LLaVA checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlavaLayout {
    /// liuhaotian/LLaVA `LlavaLlamaForCausalLM` / `LlavaMistralForCausalLM`.
    Original,
    /// llava-hf checkpoints as on the Hub (and as transformers 4.x saves them): the canonical naming.
    LlavaHf,
    /// transformers ≥ 4.52 module names (`model.language_model.*`).
    Transformers452,
}

impl fmt::Display for LlavaLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LlavaLayout::Original => "original (liuhaotian)",
            LlavaLayout::LlavaHf => "llava-hf",
            LlavaLayout::Transformers452 => "transformers>=4.52",
        })
    }
}

impl LlavaLayout {
    /// Recognises the layout from tensor names; `None` when the names are not a LLaVA's (e.g. a plain LLM).
    pub fn detect<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let mut found = None;
        for n in names {
            if n.starts_with("model.language_model.") || n.starts_with("model.multi_modal_projector.") {
                return Some(LlavaLayout::Transformers452);
            }
            if n.starts_with("language_model.") || n.starts_with("multi_modal_projector.") {
                found = Some(LlavaLayout::LlavaHf);
            } else if found.is_none()
                && (n.starts_with("model.mm_projector.") || n.starts_with("model.vision_tower."))
            {
                found = Some(LlavaLayout::Original);
            }
        }
        found
    }

    /// Maps a tensor name of this layout to the canonical (llava-hf) name. `None` for names that belong to no
    /// known part (callers pass those through or report them).
    pub fn to_canonical(self, name: &str) -> Option<String> {
        match self {
            LlavaLayout::LlavaHf => Some(name.to_string()),
            LlavaLayout::Transformers452 => {
                if let Some(rest) = name.strip_prefix("model.language_model.") {
                    Some(format!("language_model.model.{rest}"))
                } else if name == "lm_head.weight" {
                    Some("language_model.lm_head.weight".into())
                } else {
                    name.strip_prefix("model.").map(str::to_string)
                }
            }
            LlavaLayout::Original => {
                if let Some(rest) = name.strip_prefix("model.mm_projector.") {
                    let (idx, tail) = rest.split_once('.')?;
                    let linear = match idx {
                        "0" => "linear_1",
                        "2" => "linear_2",
                        _ => return None,
                    };
                    Some(format!("multi_modal_projector.{linear}.{tail}"))
                } else if let Some(rest) = name.strip_prefix("model.vision_tower.vision_tower.") {
                    Some(format!("vision_tower.{rest}"))
                } else if name == "model.image_newline" {
                    Some("image_newline".into())
                } else if name == "lm_head.weight" {
                    Some("language_model.lm_head.weight".into())
                } else {
                    name.strip_prefix("model.")
                        .map(|rest| format!("language_model.model.{rest}"))
                }
            }
        }
    }

    /// Maps a canonical name back to this layout (for writing a merged model in its input's layout).
    pub fn from_canonical(self, canonical: &str) -> Option<String> {
        match self {
            LlavaLayout::LlavaHf => Some(canonical.to_string()),
            LlavaLayout::Transformers452 => {
                if let Some(rest) = canonical.strip_prefix("language_model.model.") {
                    Some(format!("model.language_model.{rest}"))
                } else if canonical == "language_model.lm_head.weight" {
                    Some("lm_head.weight".into())
                } else {
                    Some(format!("model.{canonical}"))
                }
            }
            LlavaLayout::Original => {
                if let Some(rest) = canonical.strip_prefix("multi_modal_projector.") {
                    let (linear, tail) = rest.split_once('.')?;
                    let idx = match linear {
                        "linear_1" => "0",
                        "linear_2" => "2",
                        _ => return None,
                    };
                    Some(format!("model.mm_projector.{idx}.{tail}"))
                } else if let Some(rest) = canonical.strip_prefix("vision_tower.") {
                    Some(format!("model.vision_tower.vision_tower.{rest}"))
                } else if canonical == "image_newline" {
                    Some("model.image_newline".into())
                } else if canonical == "language_model.lm_head.weight" {
                    Some("lm_head.weight".into())
                } else {
                    canonical
                        .strip_prefix("language_model.model.")
                        .map(|rest| format!("model.{rest}"))
                }
            }
        }
    }
}

/// Which part of a LLaVA a canonical name belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlavaPart {
    LanguageModel,
    VisionTower,
    Projector,
    ImageNewline,
}

/// Classifies a canonical name.
pub fn part_of(canonical: &str) -> Option<LlavaPart> {
    if canonical.starts_with("language_model.") {
        Some(LlavaPart::LanguageModel)
    } else if canonical.starts_with("vision_tower.") {
        Some(LlavaPart::VisionTower)
    } else if canonical.starts_with("multi_modal_projector.") {
        Some(LlavaPart::Projector)
    } else if canonical == "image_newline" {
        Some(LlavaPart::ImageNewline)
    } else {
        None
    }
}

/// Maps a canonical VLM language-model name to the base LLM's name (`language_model.model.layers.0.…` →
/// `model.layers.0.…`, `language_model.lm_head.weight` → `lm_head.weight`); `None` for vision/projector names.
pub fn vlm_to_llm_name(canonical: &str) -> Option<String> {
    if canonical == "language_model.lm_head.weight" {
        return Some("lm_head.weight".into());
    }
    canonical
        .strip_prefix("language_model.model.")
        .map(|rest| format!("model.{rest}"))
}

/// The inverse of [`vlm_to_llm_name`].
pub fn llm_to_vlm_name(llm: &str) -> Option<String> {
    if llm == "lm_head.weight" {
        return Some("language_model.lm_head.weight".into());
    }
    llm.strip_prefix("model.")
        .map(|rest| format!("language_model.model.{rest}"))
}

/// Tensors whose first dimension is the vocabulary: llava-hf pads it from 32000 to 32064 rows (the image token
/// and padding to a multiple of 64); rows beyond the base LLM's vocabulary have no counterpart there.
pub fn is_vocab_tensor(llm_name: &str) -> bool {
    llm_name == "model.embed_tokens.weight" || llm_name == "lm_head.weight"
}

#[cfg(test)]
mod tests {
    use super::*;

    const HF: &[&str] = &[
        "language_model.model.embed_tokens.weight",
        "language_model.model.layers.0.self_attn.q_proj.weight",
        "language_model.model.norm.weight",
        "language_model.lm_head.weight",
        "vision_tower.vision_model.embeddings.patch_embedding.weight",
        "multi_modal_projector.linear_1.weight",
        "multi_modal_projector.linear_2.bias",
        "image_newline",
    ];

    #[test]
    fn every_layout_round_trips_through_canonical() {
        for layout in [
            LlavaLayout::Original,
            LlavaLayout::LlavaHf,
            LlavaLayout::Transformers452,
        ] {
            let names: Vec<String> = HF.iter().map(|n| layout.from_canonical(n).unwrap()).collect();
            assert_eq!(
                LlavaLayout::detect(names.iter().map(String::as_str)),
                Some(layout),
                "{layout}"
            );
            for (n, c) in names.iter().zip(HF) {
                assert_eq!(layout.to_canonical(n).as_deref(), Some(*c), "{layout}: {n}");
            }
        }
        let original: Vec<String> = HF
            .iter()
            .map(|n| LlavaLayout::Original.from_canonical(n).unwrap())
            .collect();
        assert_eq!(original[0], "model.embed_tokens.weight");
        assert_eq!(
            original[4],
            "model.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight"
        );
        assert_eq!(original[5], "model.mm_projector.0.weight");
        assert_eq!(original[6], "model.mm_projector.2.bias");
        let t452: Vec<String> = HF
            .iter()
            .map(|n| LlavaLayout::Transformers452.from_canonical(n).unwrap())
            .collect();
        assert_eq!(t452[1], "model.language_model.layers.0.self_attn.q_proj.weight");
        assert_eq!(t452[3], "lm_head.weight");
    }

    #[test]
    fn plain_llm_is_not_llava() {
        assert_eq!(
            LlavaLayout::detect(["model.embed_tokens.weight", "lm_head.weight"]),
            None
        );
    }

    #[test]
    fn language_model_maps_to_base_llm() {
        assert_eq!(
            vlm_to_llm_name(HF[1]).as_deref(),
            Some("model.layers.0.self_attn.q_proj.weight")
        );
        assert_eq!(vlm_to_llm_name(HF[3]).as_deref(), Some("lm_head.weight"));
        assert_eq!(vlm_to_llm_name(HF[4]), None);
        for n in &HF[..4] {
            assert_eq!(llm_to_vlm_name(&vlm_to_llm_name(n).unwrap()).as_deref(), Some(*n));
        }
        assert_eq!(part_of(HF[7]), Some(LlavaPart::ImageNewline));
        assert!(is_vocab_tensor("lm_head.weight"));
    }
}
