#!/usr/bin/env python3
"""PyTorch + transformers peer of `cargo run --release --example throughput`: same shapes, same measurement
(best of N; prefill = one forward over batch x prompt; decode = gen steps with the KV cache, greedy).

    python benches/peers/torch_throughput.py --preset llama-30m --batch 1 --prompt-len 128 --gen-len 32 --threads 2
    python benches/peers/torch_throughput.py --preset mistral-7b --device cuda --dtype bfloat16 \
        --runs 8x512x0,1x128x128
    python benches/peers/torch_throughput.py --preset clip-vit-l-336 --device cuda --dtype bfloat16 --runs 32x0x0

On a GPU the model is built on the device in the target dtype (no host copy of 7B f32 weights).
"""
import argparse
import json
import time

import torch
from transformers import (CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM, MistralConfig,
                          MistralForCausalLM)

PRESETS = {
    "llama-30m": lambda: LlamaConfig(vocab_size=32000, hidden_size=384, intermediate_size=1024, num_hidden_layers=6,
                                     num_attention_heads=6, num_key_value_heads=6, max_position_embeddings=4096,
                                     rms_norm_eps=1e-5),
    "llama-2-7b": lambda: LlamaConfig(max_position_embeddings=4096, rms_norm_eps=1e-5),
    "mistral-7b": lambda: MistralConfig(max_position_embeddings=32768, rope_theta=1e6, sliding_window=None,
                                        rms_norm_eps=1e-5),
    "clip-vit-l-336": lambda: CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                               num_attention_heads=16, image_size=336, patch_size=14,
                                               projection_dim=768, hidden_act="quick_gelu"),
}

ap = argparse.ArgumentParser()
ap.add_argument("--preset", default="llama-30m")
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--prompt-len", type=int, default=128)
ap.add_argument("--gen-len", type=int, default=32)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--repeats", type=int, default=3)
ap.add_argument("--dtype", default="float32")
ap.add_argument("--device", default="cpu")
ap.add_argument("--attn", default="sdpa")
ap.add_argument("--runs", default=None, help="BATCHxPROMPTxGEN,... on one model (overrides the three above)")
a = ap.parse_args()
torch.set_num_threads(a.threads)
cfg = PRESETS[a.preset]()
cfg._attn_implementation = a.attn
dtype = getattr(torch, a.dtype)
torch.set_default_dtype(dtype)
with torch.device(a.device):
    if isinstance(cfg, CLIPVisionConfig):
        model = CLIPVisionModel(cfg).eval()
    else:
        model = (MistralForCausalLM if isinstance(cfg, MistralConfig) else LlamaForCausalLM)(cfg).eval()
torch.set_default_dtype(torch.float32)
params = sum(p.numel() for p in model.parameters())
runs = ([tuple(int(x) for x in r.split("x")) for r in a.runs.split(",")] if a.runs
        else [(a.batch, a.prompt_len, a.gen_len)])


def sync():
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()


def report(batch, prompt_len, gen_len, **rates):
    print(json.dumps({"peer": "torch", "backend": "torch", "torch": torch.__version__, "config": a.preset,
                      "params": params, "dtype": a.dtype, "attn": a.attn, "threads": a.threads, "batch": batch,
                      "prompt_len": prompt_len, "gen_len": gen_len, **rates}), flush=True)


for batch, prompt_len, gen_len in runs:
    if isinstance(cfg, CLIPVisionConfig):
        px = torch.randn((batch, 3, cfg.image_size, cfg.image_size), device=a.device, dtype=dtype)
        best = 0.0
        with torch.inference_mode():
            for r in range(a.repeats + 1):  # one untimed warm-up
                sync()
                t0 = time.perf_counter()
                model(pixel_values=px, output_hidden_states=True).last_hidden_state[:, :1].sum().item()
                if r:
                    best = max(best, batch / (time.perf_counter() - t0))
        report(batch, 0, 0, prefill_tok_s=0.0, decode_tok_s=0.0, images_s=best)
        continue
    v = cfg.vocab_size
    prompt = torch.tensor([[((b * 7919 + i * 104729) % (v - 3)) + 3 for i in range(prompt_len)] for b in range(batch)],
                          device=a.device)
    best_p = best_d = 0.0
    with torch.inference_mode():
        for _ in range(a.repeats):
            sync()
            t0 = time.perf_counter()
            out = model(input_ids=prompt, use_cache=True)
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            nxt.cpu()
            p = time.perf_counter() - t0
            past = out.past_key_values
            del out
            t1 = time.perf_counter()
            for _ in range(gen_len):
                out = model(input_ids=nxt, past_key_values=past, use_cache=True)
                past = out.past_key_values
                nxt = out.logits[:, -1].argmax(-1, keepdim=True)
                nxt.cpu()
            d = time.perf_counter() - t1
            best_p = max(best_p, batch * prompt_len / p)
            if gen_len:
                best_d = max(best_d, batch * gen_len / d)
            del past
    report(batch, prompt_len, gen_len, prefill_tok_s=best_p, decode_tok_s=best_d)
