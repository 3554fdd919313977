//! LLaVA-1.5 and LLaVA-NeXT (1.6): CLIP features from `vision_feature_layer`, the `mlp2x_gelu` projector,
//! image features spliced into the token embeddings at the `<image>` token positions, and the decoder.
//! NeXT tiles images ("anyres"), arranges tile features on their grid, crops the padding back to the original
//! aspect, appends `image_newline` to every row and puts the base (whole-image) features first — transformers'
//! `pack_image_features`.

use std::collections::HashMap;

use burn::tensor::{Int, Tensor, TensorData, activation, backend::Backend};
use mmreason_checkpoint::{FeatureSelect, LlavaConfig, ModelConfig, ModelDir, TensorView};

use crate::anyres;
use crate::clip::ClipVision;
use crate::error::{ModelError, Result};
use crate::kv_cache::KvCache;
use crate::llama::{Decoder, Init, Linear, Loader, TensorSource};
use crate::load::WeightDtype;
use crate::logits::LanguageModelView;

/// Canonical (llava-hf) names over any of the three layouts.
struct Canonical<'a> {
    dir: &'a ModelDir,
    names: HashMap<String, String>,
}

impl TensorSource for Canonical<'_> {
    fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        let actual = self.names.get(name).map_or(name, String::as_str);
        Ok(self.dir.weights.get(actual)?)
    }
}

/// `multi_modal_projector`: Linear → exact GELU → Linear.
#[derive(Debug, Clone)]
pub struct Projector<B: Backend> {
    l1: Linear<B>,
    l2: Linear<B>,
}

impl<B: Backend> Projector<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.l2.forward(activation::gelu(self.l1.forward(x)))
    }
}

/// Pixel input of a forward pass.
pub enum Pixels<B: Backend> {
    /// LLaVA-1.5: [N, 3, S, S].
    Square(Tensor<B, 4>),
    /// LLaVA-NeXT: [N, tiles, 3, S, S] and each image's (height, width).
    Tiles(Tensor<B, 5>, Vec<(usize, usize)>),
}

/// A LLaVA model.
#[derive(Debug, Clone)]
pub struct Llava<B: Backend> {
    pub cfg: LlavaConfig,
    pub vision: ClipVision<B>,
    pub projector: Projector<B>,
    pub decoder: Decoder<B>,
    /// NeXT only.
    image_newline: Option<Tensor<B, 1>>,
    next: bool,
}

impl<B: Backend> Llava<B> {
    pub fn load(dir: &ModelDir, dtype: WeightDtype, device: &B::Device) -> Result<Self> {
        let (cfg, next) = match &dir.config {
            ModelConfig::Llava(c) => (c.clone(), false),
            ModelConfig::LlavaNext(c) => (c.clone(), true),
            ModelConfig::LlavaOriginal(_) => {
                return Err(ModelError::Unsupported(format!(
                    "{}: an original (liuhaotian) LLaVA config names its CLIP tower instead of describing it; \
                     use the llava-hf conversion of this checkpoint",
                    dir.root.display()
                )));
            }
            other => {
                return Err(ModelError::Unsupported(format!(
                    "{} is a {} checkpoint, not LLaVA",
                    dir.root.display(),
                    other.kind_name()
                )));
            }
        };
        if cfg.projector_hidden_act != "gelu" {
            return Err(ModelError::Unsupported(format!(
                "projector_hidden_act `{}` (gelu)",
                cfg.projector_hidden_act
            )));
        }
        let canon = Canonical {
            dir,
            names: dir.canonical_names().into_iter().collect(),
        };
        let vision = ClipVision::load(&cfg.vision, &canon, "vision_tower.vision_model.", dtype, device)?;
        let ld = Loader::<B> {
            init: Init::Checkpoint(&canon),
            dtype,
            device,
        };
        let (hv, ht) = (cfg.vision.hidden_size, cfg.text.hidden_size);
        let bias = cfg.multimodal_projector_bias;
        let projector = Projector {
            l1: ld.linear("multi_modal_projector.linear_1", hv, ht, bias)?,
            l2: ld.linear("multi_modal_projector.linear_2", ht, ht, bias)?,
        };
        let decoder = Decoder::load(
            &cfg.text,
            &LanguageModelView::new(dir),
            "model.",
            "lm_head.weight",
            dtype,
            device,
        )?;
        let image_newline = if next {
            Some(ld.t1("image_newline", ht)?)
        } else {
            None
        };
        Ok(Self {
            cfg,
            vision,
            projector,
            decoder,
            image_newline,
            next,
        })
    }

    /// Projected features of square images: [N, tokens, text hidden].
    fn tile_features(&self, pixels: Tensor<B, 4>) -> Result<Tensor<B, 3>> {
        let states = self.vision.hidden_states(pixels)?;
        let l = self.cfg.vision_feature_layer;
        let idx = if l < 0 { states.len() as i64 + l } else { l };
        let sel = usize::try_from(idx)
            .ok()
            .and_then(|i| states.get(i).cloned())
            .ok_or_else(|| {
                ModelError::Input(format!("vision_feature_layer {l} is outside 0..{}", states.len()))
            })?;
        let sel = match self.cfg.vision_feature_select_strategy {
            FeatureSelect::Default => {
                let t = sel.dims()[1];
                sel.narrow(1, 1, t - 1)
            }
            FeatureSelect::Full => sel,
        };
        Ok(self.projector.forward(sel))
    }

    /// All image features in order, [total image tokens, text hidden].
    pub fn image_features(&self, pixels: Pixels<B>) -> Result<Tensor<B, 2>> {
        let ht = self.cfg.text.hidden_size;
        match pixels {
            Pixels::Square(p) => {
                if self.next {
                    return Err(ModelError::Input(
                        "LLaVA-NeXT needs tiled pixel_values [N, tiles, 3, S, S] and image_sizes".into(),
                    ));
                }
                let f = self.tile_features(p)?;
                let [n, t, _] = f.dims();
                Ok(f.reshape([n * t, ht]))
            }
            Pixels::Tiles(p, sizes) => {
                let newline = self.image_newline.clone().ok_or_else(|| {
                    ModelError::Input(
                        "tiled pixel_values are for LLaVA-NeXT; LLaVA-1.5 takes [N, 3, S, S]".into(),
                    )
                })?;
                let [n, max_tiles, c, s, s2] = p.dims();
                if sizes.len() != n {
                    return Err(ModelError::Input(format!(
                        "{} image_sizes for {n} images",
                        sizes.len()
                    )));
                }
                let tile = self.cfg.vision.image_size;
                let g = self.cfg.vision.patches_per_side();
                let mut parts = Vec::new();
                for (i, &(h, w)) in sizes.iter().enumerate() {
                    if h == 0 || w == 0 {
                        return Err(ModelError::Input(format!(
                            "image {i} has a zero dimension ({h}×{w})"
                        )));
                    }
                    let tiles = anyres::num_tiles((h, w), &self.cfg.image_grid_pinpoints, tile)
                        .ok_or_else(|| ModelError::Input("image_grid_pinpoints is empty".into()))?;
                    if tiles > max_tiles {
                        return Err(ModelError::Input(format!(
                            "image {i} ({h}×{w}) needs {tiles} tiles but pixel_values hold {max_tiles}"
                        )));
                    }
                    let px = p
                        .clone()
                        .narrow(0, i, 1)
                        .narrow(1, 0, tiles)
                        .reshape([tiles, c, s, s2]);
                    let f = self.tile_features(px)?; // [tiles, g², H]
                    let base = f.clone().narrow(0, 0, 1).reshape([g * g, ht]);
                    if tiles == 1 {
                        parts.push(base);
                        parts.push(newline.clone().reshape([1, ht]));
                        continue;
                    }
                    let (gh, gw) = anyres::grid_shape((h, w), &self.cfg.image_grid_pinpoints, tile)
                        .expect("pinpoints checked above");
                    if gh * gw != tiles - 1 {
                        return Err(ModelError::Input(format!(
                            "image {i}: grid {gh}×{gw} does not match {} tiles",
                            tiles - 1
                        )));
                    }
                    // [gh, gw, g, g, H] → [H, gh, g, gw, g] → [H, gh·g, gw·g]
                    let grid = f
                        .narrow(0, 1, tiles - 1)
                        .reshape([gh, gw, g, g, ht])
                        .permute([4, 0, 2, 1, 3])
                        .reshape([ht, gh * g, gw * g]);
                    let (crop_h, a, b) = anyres::unpad_range((gh * g, gw * g), (h, w));
                    let grid = if crop_h {
                        grid.narrow(1, a, b - a)
                    } else {
                        grid.narrow(2, a, b - a)
                    };
                    let [_, rows, cols] = grid.dims();
                    let nl = newline.clone().reshape([ht, 1, 1]).expand([ht, rows, 1]);
                    let grid = Tensor::cat(vec![grid, nl], 2)
                        .reshape([ht, rows * (cols + 1)])
                        .transpose();
                    parts.push(base);
                    parts.push(grid);
                }
                Ok(Tensor::cat(parts, 0))
            }
        }
    }

    /// Final hidden states [B, S, H] for token ids with `<image>` placeholders already expanded (one
    /// `image_token_index` per image feature, as transformers' processor does), and optional pixels.
    pub fn forward_hidden(
        &self,
        ids: &[Vec<u32>],
        mask: &[Vec<bool>],
        pixels: Option<Pixels<B>>,
        cache: &mut KvCache<B>,
    ) -> Result<Tensor<B, 3>> {
        let b = ids.len();
        let s = ids.first().map_or(0, Vec::len);
        let h = self.cfg.text.hidden_size;
        let image_token = self.cfg.image_token_index;
        let positions: Vec<usize> = ids
            .iter()
            .flatten()
            .enumerate()
            .filter(|(_, t)| **t == image_token)
            .map(|(i, _)| i)
            .collect();
        let embeds = self.decoder.embed(ids);
        let x = match pixels {
            None if positions.is_empty() => embeds,
            None => {
                return Err(ModelError::Input(format!(
                    "{} image tokens in the input but no pixel_values",
                    positions.len()
                )));
            }
            Some(px) => {
                let feats = self.image_features(px)?;
                let f = feats.dims()[0];
                if f != positions.len() {
                    return Err(ModelError::Input(format!(
                        "{} image tokens in the input but the images give {f} features (one token per feature)",
                        positions.len()
                    )));
                }
                // Gather rows from [token embeddings; image features]: image positions take features in order.
                let mut index: Vec<i64> = (0..(b * s) as i64).collect();
                for (k, &p) in positions.iter().enumerate() {
                    index[p] = (b * s + k) as i64;
                }
                let idx =
                    Tensor::<B, 1, Int>::from_data(TensorData::new(index, [b * s]), self.decoder.device());
                Tensor::cat(vec![embeds.reshape([b * s, h]), feats], 0)
                    .select(0, idx)
                    .reshape([b, s, h])
            }
        };
        self.decoder.forward_embeds(x, mask, cache)
    }
}
