//! The `describe` example's work: one image and a question in, the VLM's answer out — preprocessing, the
//! LLaVA prompt with `<image>` expanded to the image's token count, prefill with the image features, then
//! greedy decoding with the KV cache.

use std::path::PathBuf;

use burn::tensor::{Tensor, TensorData, backend::Backend};
use mmreason_checkpoint::{DecoderKind, ModelConfig, ModelDir};

use crate::anyres;
use crate::backend::BackendKind;
use crate::chat::{Conversation, Message};
use crate::error::{ModelError, Result};
use crate::image_processor::{ProcessorConfig, clip_pixels, llava_next_pixels, llava15_pixels, load_image};
use crate::kv_cache::KvCache;
use crate::llama::Batch;
use crate::llava::{Llava, Pixels};
use crate::load::WeightDtype;
use crate::tokenizer::TextTokenizer;

#[derive(Debug, Clone)]
pub struct DescribeOptions {
    pub model: PathBuf,
    pub image: PathBuf,
    pub prompt: String,
    pub max_new_tokens: usize,
    pub backend: BackendKind,
    pub dtype: WeightDtype,
}

#[derive(Debug, Clone)]
pub struct Description {
    /// The prompt with `<image>` still as a placeholder.
    pub prompt: String,
    pub image_tokens: usize,
    pub text: String,
}

pub fn run_describe(opts: &DescribeOptions) -> Result<Description> {
    if opts.prompt.trim().is_empty() {
        return Err(ModelError::Input(
            "empty prompt: ask something about the image".into(),
        ));
    }
    crate::on_backend!(opts.backend, describe_on(opts))
}

fn describe_on<B: Backend>(opts: &DescribeOptions, device: &B::Device) -> Result<Description> {
    VisionModel::<B>::load(&opts.model, opts.dtype, device)?.answer(
        &opts.image,
        &opts.prompt,
        opts.max_new_tokens,
        &[],
    )
}

/// A LLaVA-1.5 / NeXT checkpoint ready to answer questions about images: the model, its tokenizer, its image
/// processor settings and its conversation format, loaded once (the harness asks it many questions).
pub struct VisionModel<B: Backend> {
    pub llava: Llava<B>,
    pub tokenizer: TextTokenizer,
    proc: ProcessorConfig,
    next: bool,
    conversation: Conversation,
    device: B::Device,
}

impl<B: Backend> VisionModel<B> {
    pub fn load(model: &std::path::Path, dtype: WeightDtype, device: &B::Device) -> Result<Self> {
        let dir = ModelDir::open(model)?;
        let llava = Llava::<B>::load(&dir, dtype, device)?;
        let tokenizer = TextTokenizer::from_dir(model)?;
        let cfg = &llava.cfg;
        let pp = dir.root.join("preprocessor_config.json");
        let mut proc = if pp.is_file() {
            ProcessorConfig::from_file(&pp)?
        } else {
            ProcessorConfig::clip(cfg.vision.image_size)
        };
        let next = matches!(dir.config, ModelConfig::LlavaNext(_));
        if next && proc.image_grid_pinpoints.is_none() {
            proc.image_grid_pinpoints = Some(cfg.image_grid_pinpoints.clone());
        }
        let conversation = match cfg.text.kind {
            DecoderKind::Mistral => Conversation::MistralInstruct,
            DecoderKind::Llama => Conversation::VicunaV1,
        };
        Ok(Self {
            llava,
            tokenizer,
            proc,
            next,
            conversation,
            device: device.clone(),
        })
    }

    /// Greedy answer to `question` about the image at `image` (LLaVA's `<image>\n{question}` user turn), ended
    /// by EOS, `max_new_tokens`, or the first of the `until` strings (cut off, as lmms-eval's wrappers do).
    pub fn answer(
        &self,
        image: &std::path::Path,
        question: &str,
        max_new_tokens: usize,
        until: &[String],
    ) -> Result<Description> {
        self.answer_image(&load_image(image)?, question, max_new_tokens, until)
    }

    /// [`VisionModel::answer`] for an image already decoded (datasets that embed the image bytes).
    pub fn answer_image(
        &self,
        img: &image::RgbImage,
        question: &str,
        max_new_tokens: usize,
        until: &[String],
    ) -> Result<Description> {
        let (llava, tok, device) = (&self.llava, &self.tokenizer, &self.device);
        let cfg = &llava.cfg;
        let s = cfg.vision.image_size;
        let with_cls = cfg.vision_feature_select_strategy == mmreason_checkpoint::FeatureSelect::Full;
        let (pixels, image_tokens) = if self.next {
            let (values, tiles, hw) = llava_next_pixels(img, &self.proc)?;
            let t = Tensor::<B, 5>::from_data(TensorData::new(values, [1, tiles, 3, s, s]), device);
            let n =
                anyres::num_image_tokens(hw, &cfg.image_grid_pinpoints, s, cfg.vision.patch_size, with_cls)
                    .ok_or_else(|| ModelError::Image("no pinpoints".into()))?;
            (Pixels::Tiles(t, vec![hw]), n)
        } else {
            let values = if self.proc.do_pad {
                llava15_pixels(img, &self.proc)?
            } else {
                clip_pixels(img, &self.proc)?
            };
            let g = cfg.vision.patches_per_side();
            (
                Pixels::Square(Tensor::from_data(TensorData::new(values, [1, 3, s, s]), device)),
                g * g + with_cls as usize,
            )
        };
        let prompt = self
            .conversation
            .prompt(&[Message::new("user", &format!("<image>\n{question}"))])?;
        // Encode around the placeholder: BOS + text before, image tokens, text after (no special tokens).
        let (before, after) = prompt
            .split_once("<image>")
            .expect("the prompt was built with one <image>");
        let mut ids = tok.encode(before, true)?;
        ids.extend(std::iter::repeat_n(cfg.image_token_index, image_tokens));
        ids.extend(tok.encode(after, false)?);
        let mut cache = KvCache::with_capacity(llava.decoder.num_layers(), ids.len() + max_new_tokens);
        let mask = vec![vec![true; ids.len()]];
        let h = llava.forward_hidden(std::slice::from_ref(&ids), &mask, Some(pixels), &mut cache)?;
        let seq = h.dims()[1];
        let mut next_id = argmax_last(llava.decoder.logits(h.narrow(1, seq - 1, 1)))?;
        let mut out = Vec::new();
        // Stop strings are looked for in the decoded text, as `TextModel::generate_until` does.
        let stop_at = |ids: &[u32]| -> Result<Option<String>> {
            if until.is_empty() {
                return Ok(None);
            }
            let text = tok.decode(ids, true)?;
            Ok(crate::scoring::stop_position(&text, until).map(|cut| text[..cut].to_string()))
        };
        for _ in 0..max_new_tokens {
            if Some(next_id) == tok.eos_id {
                break;
            }
            out.push(next_id);
            if let Some(text) = stop_at(&out)? {
                return Ok(Description {
                    prompt,
                    image_tokens,
                    text,
                });
            }
            let logits = llava.decoder.forward(
                &Batch {
                    ids: vec![vec![next_id]],
                    mask: vec![vec![true]],
                },
                &mut cache,
            )?;
            next_id = argmax_last(logits)?;
        }
        Ok(Description {
            prompt,
            image_tokens,
            text: tok.decode(&out, true)?,
        })
    }
}

fn argmax_last<B: Backend>(logits: Tensor<B, 3>) -> Result<u32> {
    let [b, s, v] = logits.dims();
    if b == 0 || s == 0 || v == 0 {
        return Err(ModelError::Input("no logits".into()));
    }
    crate::fused::argmax_rows(logits.narrow(1, s - 1, 1).reshape([b, v]))
        .first()
        .copied()
        .ok_or_else(|| ModelError::Input("no logits".into()))
}
