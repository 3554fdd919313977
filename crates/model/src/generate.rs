//! The `generate` example's work: one prompt in, the model's answer out.

use std::path::PathBuf;

use burn::tensor::backend::Backend;

use crate::backend::BackendKind;
use crate::error::{ModelError, Result};
use crate::load::WeightDtype;
use crate::scoring::{GenerateRequest, Sampling, TextModel, VocabScope};

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub model: PathBuf,
    pub prompt: String,
    /// Wrap the prompt in the model's chat template (or LLaVA's conversation format).
    pub chat: bool,
    pub max_new_tokens: usize,
    pub sampling: Option<Sampling>,
    pub backend: BackendKind,
    pub dtype: WeightDtype,
}

/// The prompt as sent (after templating) and the generated text.
#[derive(Debug, Clone)]
pub struct Generation {
    pub prompt: String,
    pub text: String,
}

pub fn run_generate(opts: &GenerateOptions) -> Result<Generation> {
    if opts.prompt.trim().is_empty() {
        return Err(ModelError::Input(
            "empty prompt: give some text to continue".into(),
        ));
    }
    crate::on_backend!(opts.backend, generate_on(opts))
}

fn generate_on<B: Backend>(opts: &GenerateOptions, device: &B::Device) -> Result<Generation> {
    let model = TextModel::<B>::load(&opts.model, opts.dtype, device, VocabScope::Full)?;
    let prompt = if opts.chat {
        let (text, _) = model.chat_prompt(&opts.prompt)?;
        text
    } else {
        opts.prompt.clone()
    };
    let req = GenerateRequest {
        context: prompt.clone(),
        until: Vec::new(),
        max_gen_toks: opts.max_new_tokens,
        sampling: opts.sampling,
    };
    let text = model.generate_until(&[req], &mut |_, _| {})?.remove(0);
    Ok(Generation { prompt, text })
}
