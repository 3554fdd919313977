//! The two request kinds of lm-evaluation-harness, answered by a decoder and its tokenizer:
//! `loglikelihood(context, continuation)` and `generate_until(context, until, max_gen_toks)`, with
//! lm-eval's tokenization rules (HFLM, lm-eval 0.4.13) so that scores are comparable with its `hf` model.

use std::path::Path;

use burn::tensor::backend::Backend;
use mmreason_checkpoint::ModelDir;
use serde::{Deserialize, Serialize};

use crate::chat::{Conversation, Message, render_chat_template};
use crate::error::{ModelError, Result};
use crate::kv_cache::KvCache;
use crate::llama::{Batch, Decoder};
use crate::load::WeightDtype;
use crate::logits::load_decoder;
use crate::tokenizer::TextTokenizer;

/// One `loglikelihood` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoglikelihoodRequest {
    pub context: String,
    pub continuation: String,
}

/// Sum of the continuation's token log-probabilities, and whether greedy decoding would produce it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Loglikelihood {
    pub logprob: f64,
    pub is_greedy: bool,
}

/// Optional sampling for generation (greedy when absent).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub temperature: f64,
    pub top_p: f64,
    pub seed: u64,
}

/// One `generate_until` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    pub context: String,
    pub until: Vec<String>,
    pub max_gen_toks: usize,
    #[serde(default)]
    pub sampling: Option<Sampling>,
}

/// Which logits a score is taken over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum VocabScope {
    /// The model's whole head.
    Full,
    /// The first `n` rows only — a VLM's 32064-row head scored over its base LLM's 32000 tokens, so both are
    /// compared over the same distribution.
    First(usize),
}

/// A decoder with its tokenizer, answering harness requests in input order.
pub struct TextModel<B: Backend> {
    pub decoder: Decoder<B>,
    pub tokenizer: TextTokenizer,
    /// Context window (lm-eval: the config's `max_position_embeddings`).
    pub max_length: usize,
    pub batch_size: usize,
    pub vocab: VocabScope,
    /// LLaVA conversation format used by `chat_prompt` when the tokenizer has no chat template.
    pub conversation: Conversation,
}

/// Progress callback: (requests done, total).
pub type ProgressFn<'a> = &'a mut dyn FnMut(usize, usize);

impl<B: Backend> TextModel<B> {
    /// Loads an LLM directory, or a VLM's language model (then `vocab` decides the scored vocabulary).
    pub fn load(dir: &Path, dtype: WeightDtype, device: &B::Device, vocab: VocabScope) -> Result<Self> {
        let md = ModelDir::open(dir)?;
        let decoder = load_decoder::<B>(&md, dtype, device)?;
        let tokenizer = TextTokenizer::from_dir(dir)?;
        let cfg = &decoder.cfg;
        if let VocabScope::First(n) = vocab
            && n > cfg.vocab_size
        {
            return Err(ModelError::Input(format!(
                "vocabulary scope {n} exceeds the head's {} rows",
                cfg.vocab_size
            )));
        }
        let conversation = match cfg.kind {
            mmreason_checkpoint::DecoderKind::Mistral => Conversation::MistralInstruct,
            mmreason_checkpoint::DecoderKind::Llama => Conversation::VicunaV1,
        };
        Ok(Self {
            max_length: cfg.max_position_embeddings,
            batch_size: 1,
            vocab,
            conversation,
            decoder,
            tokenizer,
        })
    }

    /// lm-eval's `tok_encode`: special tokens (BOS) added unless the text already starts with the BOS string.
    fn tok_encode(&self, text: &str) -> Result<Vec<u32>> {
        let has_bos = self
            .tokenizer
            .bos_token
            .as_deref()
            .is_some_and(|b| !b.is_empty() && text.starts_with(b));
        self.tokenizer.encode(text, !has_bos)
    }

    /// lm-eval's context/continuation split: trailing whitespace of the context moves to the continuation,
    /// the whole is encoded and split at the context's token count; an empty context becomes the BOS token.
    pub fn encode_pair(&self, context: &str, continuation: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        if context.is_empty() {
            let cont = self.tokenizer.encode(continuation, false)?;
            let prefix = self.tokenizer.bos_id.or(self.tokenizer.eos_id).ok_or_else(|| {
                ModelError::Input("an empty context needs a BOS or EOS token to condition on".into())
            })?;
            if cont.is_empty() {
                return Err(ModelError::Input("empty context and empty continuation".into()));
            }
            return Ok(if cont[0] != prefix {
                (vec![prefix], cont)
            } else {
                (cont[..1].to_vec(), cont[1..].to_vec())
            });
        }
        let trimmed = context.trim_end();
        let (ctx, cont) = if trimmed.len() < context.len() {
            (
                trimmed.to_string(),
                format!("{}{continuation}", &context[trimmed.len()..]),
            )
        } else {
            (context.to_string(), continuation.to_string())
        };
        let whole = self.tok_encode(&format!("{ctx}{cont}"))?;
        let ctx_enc = self.tok_encode(&ctx)?;
        let cont_enc = whole.get(ctx_enc.len()..).unwrap_or(&[]).to_vec();
        Ok((ctx_enc, cont_enc))
    }

    /// Scores every request; results in input order. Requests run longest first (as lm-eval, so memory
    /// failures come early) in batches of `batch_size`.
    pub fn loglikelihood(
        &self,
        reqs: &[LoglikelihoodRequest],
        progress: ProgressFn<'_>,
    ) -> Result<Vec<Loglikelihood>> {
        let mut items = Vec::with_capacity(reqs.len());
        for (i, r) in reqs.iter().enumerate() {
            let (ctx, cont) = self.encode_pair(&r.context, &r.continuation)?;
            if cont.is_empty() {
                return Err(ModelError::Input(format!(
                    "request {i}: the continuation {:?} has no tokens",
                    r.continuation
                )));
            }
            if cont.len() > self.max_length {
                return Err(ModelError::Input(format!(
                    "request {i}: continuation of {} tokens exceeds the context window of {}",
                    cont.len(),
                    self.max_length
                )));
            }
            // Left truncation to the window, as lm-eval: (ctx + cont)[-(max_length + 1):][:-1].
            let all: Vec<u32> = ctx.iter().chain(&cont).copied().collect();
            let start = all.len().saturating_sub(self.max_length + 1);
            let inp = all[start..all.len() - 1].to_vec();
            items.push((i, inp, cont));
        }
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by_key(|&k| (std::cmp::Reverse(items[k].1.len()), k));
        let mut out = vec![
            Loglikelihood {
                logprob: 0.0,
                is_greedy: false
            };
            items.len()
        ];
        let mut done = 0;
        for chunk in order.chunks(self.batch_size.max(1)) {
            let seqs: Vec<Vec<u32>> = chunk.iter().map(|&k| items[k].1.clone()).collect();
            let batch = Batch::left_padded(&seqs, self.tokenizer.pad_id.unwrap_or(0));
            let s = batch.ids[0].len();
            // Only the continuation positions are scored: the head and the host copy cover the last `tail`
            // positions instead of the whole [B, S, V].
            let tail = chunk.iter().map(|&k| items[k].2.len()).max().unwrap_or(1).min(s);
            let hidden = self
                .decoder
                .hidden(&batch, &mut KvCache::new(self.decoder.num_layers()))?;
            let logits = self.decoder.logits(hidden.narrow(1, s - tail, tail));
            let v = logits.dims()[2];
            let values = logits
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .map_err(|e| ModelError::Input(format!("reading logits: {e:?}")))?;
            for (row, &k) in chunk.iter().enumerate() {
                let cont = &items[k].2;
                let n = self.vocab_limit(v);
                let mut logprob = 0.0f64;
                let mut greedy = true;
                for (j, &tok) in cont.iter().enumerate() {
                    let pos = tail - cont.len() + j;
                    let l = &values[(row * tail + pos) * v..(row * tail + pos) * v + n];
                    let (lp, argmax) = log_prob(l, tok as usize)?;
                    logprob += lp;
                    greedy &= argmax == tok as usize;
                }
                out[items[k].0] = Loglikelihood {
                    logprob,
                    is_greedy: greedy,
                };
            }
            done += chunk.len();
            progress(done, items.len());
        }
        Ok(out)
    }

    fn vocab_limit(&self, v: usize) -> usize {
        match self.vocab {
            VocabScope::Full => v,
            VocabScope::First(n) => n.min(v),
        }
    }

    /// Generates a continuation for each request until a stop string, EOS or `max_gen_toks`; the returned text
    /// is cut before the first stop string (lm-eval semantics). Results in input order.
    pub fn generate_until(&self, reqs: &[GenerateRequest], progress: ProgressFn<'_>) -> Result<Vec<String>> {
        let mut order: Vec<usize> = (0..reqs.len()).collect();
        let encoded: Vec<Vec<u32>> = reqs
            .iter()
            .map(|r| self.tok_encode(&r.context))
            .collect::<Result<_>>()?;
        order.sort_by_key(|&k| (std::cmp::Reverse(encoded[k].len()), k));
        let mut out = vec![String::new(); reqs.len()];
        let mut done = 0;
        for chunk in order.chunks(self.batch_size.max(1)) {
            let texts = self.generate_batch(chunk.iter().map(|&k| (&reqs[k], &encoded[k])).collect())?;
            for (&k, t) in chunk.iter().zip(texts) {
                out[k] = t;
            }
            done += chunk.len();
            progress(done, reqs.len());
        }
        Ok(out)
    }

    fn generate_batch(&self, rows: Vec<(&GenerateRequest, &Vec<u32>)>) -> Result<Vec<String>> {
        let max_new = rows.iter().map(|(r, _)| r.max_gen_toks).max().unwrap_or(0);
        // Left-truncate contexts so context + generation fits the window, as lm-eval.
        let budget = self.max_length.saturating_sub(max_new).max(1);
        let seqs: Vec<Vec<u32>> = rows
            .iter()
            .map(|(_, ids)| ids[ids.len().saturating_sub(budget)..].to_vec())
            .collect();
        if seqs.iter().any(Vec::is_empty) {
            return Err(ModelError::Input(
                "empty prompt: nothing to condition generation on".into(),
            ));
        }
        let mut batch = Batch::left_padded(&seqs, self.tokenizer.pad_id.unwrap_or(0));
        // Room for the prompt and every new token: decode steps write into the cache in place.
        let width = batch.ids.first().map_or(0, Vec::len);
        let mut cache = KvCache::with_capacity(self.decoder.num_layers(), width + max_new);
        let mut generated: Vec<Vec<u32>> = vec![Vec::new(); rows.len()];
        let mut finished = vec![false; rows.len()];
        let mut rngs: Vec<SplitMix> = rows
            .iter()
            .map(|(r, _)| SplitMix(r.sampling.map_or(0, |s| s.seed)))
            .collect();
        for _ in 0..max_new {
            // Only the last position's logits are needed: the head (hidden × vocabulary) runs on one row per
            // sequence instead of the whole prompt.
            let hidden = self.decoder.hidden(&batch, &mut cache)?;
            let s = hidden.dims()[1];
            let last = self.decoder.logits(hidden.narrow(1, s - 1, 1));
            let v = last.dims()[2];
            let values = last
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .map_err(|e| ModelError::Input(format!("reading logits: {e:?}")))?;
            let n = self.vocab_limit(v);
            let mut next = Vec::with_capacity(rows.len());
            for (r, (req, _)) in rows.iter().enumerate() {
                let l = &values[r * v..r * v + n];
                let tok = match req.sampling {
                    Some(sm) if sm.temperature > 0.0 => sample(l, sm, &mut rngs[r]),
                    _ => argmax(l),
                } as u32;
                if !finished[r] {
                    generated[r].push(tok);
                    let eos = self.tokenizer.eos_id == Some(tok);
                    if eos
                        || generated[r].len() >= req.max_gen_toks
                        || stop_in_tail(&self.tokenizer, &generated[r], &req.until)?
                    {
                        finished[r] = true;
                    }
                }
                next.push(tok);
            }
            if finished.iter().all(|f| *f) {
                break;
            }
            batch = Batch {
                ids: next.into_iter().map(|t| vec![t]).collect(),
                mask: vec![vec![true]; rows.len()],
            };
        }
        rows.iter()
            .zip(generated)
            .map(|((req, _), ids)| {
                let ids: Vec<u32> = ids
                    .into_iter()
                    .filter(|&t| Some(t) != self.tokenizer.eos_id)
                    .collect();
                let mut text = self.tokenizer.decode(&ids, true)?;
                if let Some(p) = stop_position(&text, &req.until) {
                    text.truncate(p);
                }
                Ok(text)
            })
            .collect()
    }

    /// A prompt for one user message: the tokenizer's chat template when it has one (rendered with the
    /// generation prompt), otherwise LLaVA's conversation format for this model family. Returns the text and
    /// whether the tokenizer should still add BOS (templates include it themselves).
    pub fn chat_prompt(&self, user: &str) -> Result<(String, bool)> {
        let msgs = [Message::new("user", user)];
        match &self.tokenizer.chat_template {
            Some(t) => Ok((
                render_chat_template(
                    t,
                    &msgs,
                    true,
                    self.tokenizer.bos_token.as_deref().unwrap_or(""),
                    self.tokenizer.eos_token.as_deref().unwrap_or(""),
                )?,
                false,
            )),
            None => Ok((self.conversation.prompt(&msgs)?, true)),
        }
    }
}

/// How many trailing tokens certainly hold a just-completed stop string of `max_len` bytes: a token decodes to at
/// least one byte (byte-fallback tokens to exactly one), so `max_len` tokens cover it; the margin keeps the
/// window's first token — whose leading space a SentencePiece decoder drops, and which may start mid-character —
/// away from it.
pub fn stop_window(until: &[String]) -> usize {
    until.iter().map(String::len).max().unwrap_or(0) + 8
}

/// Whether generated ids now contain a stop string. Only a tail window is decoded (a stop string that just
/// appeared ends within it, and the tail's text is the full text's suffix but for its first token), so the
/// check costs the same at token 10 and token 1000; the returned text is still cut on the full decode.
pub fn stop_in_tail(tokenizer: &TextTokenizer, generated: &[u32], until: &[String]) -> Result<bool> {
    if until.iter().all(String::is_empty) {
        return Ok(false);
    }
    let tail = &generated[generated.len().saturating_sub(stop_window(until))..];
    Ok(stop_position(&tokenizer.decode(tail, true)?, until).is_some())
}

/// Where generated text must be cut: the earliest occurrence of any non-empty stop string (lm-eval's
/// `until`), if one occurs.
pub fn stop_position(text: &str, until: &[String]) -> Option<usize> {
    until
        .iter()
        .filter(|u| !u.is_empty())
        .filter_map(|u| text.find(u.as_str()))
        .min()
}

/// log p(tok) under softmax(logits), and the argmax; computed in f64.
fn log_prob(logits: &[f32], tok: usize) -> Result<(f64, usize)> {
    if tok >= logits.len() {
        return Err(ModelError::Input(format!(
            "token {tok} is outside the scored vocabulary of {}",
            logits.len()
        )));
    }
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let lse = max + logits.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
    Ok((logits[tok] as f64 - lse, argmax(logits)))
}

/// First index of the maximum (torch's argmax on ties).
fn argmax(l: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in l.iter().enumerate() {
        if x > l[best] {
            best = i;
        }
    }
    best
}

/// Seeded generator for sampling (SplitMix64: small, fast, reproducible across platforms).
struct SplitMix(u64);

impl SplitMix {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Temperature + nucleus (top-p) sampling.
fn sample(logits: &[f32], s: Sampling, rng: &mut SplitMix) -> usize {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let mut probs: Vec<(usize, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &x)| (i, ((x as f64 - max) / s.temperature).exp()))
        .collect();
    let z: f64 = probs.iter().map(|p| p.1).sum();
    probs.iter_mut().for_each(|p| p.1 /= z);
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut cum = 0.0;
    let mut keep = probs.len();
    for (i, p) in probs.iter().enumerate() {
        cum += p.1;
        if cum >= s.top_p {
            keep = i + 1;
            break;
        }
    }
    let total: f64 = probs[..keep].iter().map(|p| p.1).sum();
    let mut u = rng.next_f64() * total;
    for p in &probs[..keep] {
        u -= p.1;
        if u <= 0.0 {
            return p.0;
        }
    }
    probs[keep - 1].0
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_stop_string_is_seen_in_the_tail_exactly_when_the_full_text_has_it() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/vicuna-base");
        let tok = TextTokenizer::from_dir(&dir).unwrap();
        let text = "Résumé: 12 × 3 = 36 ✓ — ok.\n\nQuestion: 東京 is 🗼? Answer: yes\n\nProblem: done";
        let ids = tok.encode(text, false).unwrap();
        for until in [
            vec!["\n\n".to_string()],
            vec!["Question:".into(), "🗼".into()],
            vec!["Problem:".into()],
            vec!["東京".into()],
            vec!["absent".into()],
        ] {
            let full_first = (1..=ids.len())
                .find(|&n| stop_position(&tok.decode(&ids[..n], true).unwrap(), &until).is_some());
            let tail_first = (1..=ids.len()).find(|&n| stop_in_tail(&tok, &ids[..n], &until).unwrap());
            assert_eq!(tail_first, full_first, "{until:?}");
        }
    }

    use super::*;

    #[test]
    fn log_prob_and_sampling() {
        let (lp, am) = log_prob(&[0.0, 0.0], 1).unwrap();
        assert!((lp - 0.5f64.ln()).abs() < 1e-12 && am == 0);
        let s = Sampling {
            temperature: 1.0,
            top_p: 0.5,
            seed: 3,
        };
        // top_p 0.5 over [0.7, 0.2, 0.1] keeps only the first.
        let l = [0.7f32.ln(), 0.2f32.ln(), 0.1f32.ln()];
        let mut rng = SplitMix(3);
        assert!((0..50).all(|_| sample(&l, s, &mut rng) == 0));
        let s = Sampling {
            temperature: 1.0,
            top_p: 1.0,
            seed: 3,
        };
        let mut rng = SplitMix(3);
        let draws: Vec<usize> = (0..2000).map(|_| sample(&l, s, &mut rng)).collect();
        let share = draws.iter().filter(|&&d| d == 1).count() as f64 / 2000.0;
        assert!((share - 0.2).abs() < 0.03, "{share}");
    }
}
