#!/usr/bin/env python3
"""PyTorch + transformers peer of `cargo run --release --example throughput`: same shapes, same measurement
(best of N; prefill = one forward over batch x prompt; decode = gen steps with the KV cache, greedy).

    python benches/peers/torch_throughput.py --preset llama-30m --batch 1 --prompt-len 128 --gen-len 32 --threads 2
"""
import argparse
import json
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

PRESETS = {
    "llama-30m": lambda: LlamaConfig(vocab_size=32000, hidden_size=384, intermediate_size=1024, num_hidden_layers=6,
                                     num_attention_heads=6, num_key_value_heads=6, max_position_embeddings=4096,
                                     rms_norm_eps=1e-5),
    "llama-2-7b": lambda: LlamaConfig(max_position_embeddings=4096, rms_norm_eps=1e-5),
    "mistral-7b": lambda: MistralConfig(max_position_embeddings=32768, rope_theta=1e6, sliding_window=None,
                                        rms_norm_eps=1e-5),
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
a = ap.parse_args()
torch.set_num_threads(a.threads)
cfg = PRESETS[a.preset]()
cfg._attn_implementation = a.attn
cls = MistralForCausalLM if isinstance(cfg, MistralConfig) else LlamaForCausalLM
dtype = getattr(torch, a.dtype)
model = cls(cfg).to(device=a.device, dtype=dtype).eval()
params = sum(p.numel() for p in model.parameters())
v = cfg.vocab_size
prompt = torch.tensor([[((b * 7919 + i * 104729) % (v - 3)) + 3 for i in range(a.prompt_len)] for b in range(a.batch)],
                      device=a.device)


def sync():
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()


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
        t1 = time.perf_counter()
        for _ in range(a.gen_len):
            out = model(input_ids=nxt, past_key_values=past, use_cache=True)
            past = out.past_key_values
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            nxt.cpu()
        d = time.perf_counter() - t1
        best_p = max(best_p, a.batch * a.prompt_len / p)
        if a.gen_len:
            best_d = max(best_d, a.batch * a.gen_len / d)
print(json.dumps({"peer": "torch", "torch": torch.__version__, "config": a.preset, "params": params,
                  "threads": a.threads, "batch": a.batch, "prompt_len": a.prompt_len, "gen_len": a.gen_len,
                  "prefill_tok_s": best_p, "decode_tok_s": best_d}))
