#!/usr/bin/env python3
"""Writes a random Llama-shaped bf16 checkpoint (config.json + model.safetensors) for merge benchmarks.

    python benches/peers/make_random_llama.py OUT_DIR --seed 0 [--hidden 2048 --intermediate 5632 --layers 16]

Default shapes give 0.95 B parameters (1.9 GB). Values are N(0, 0.02); a second model with another seed is
a fine stand-in for a fine-tune (only speed and memory are measured).
"""
import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--hidden", type=int, default=2048)
ap.add_argument("--intermediate", type=int, default=5632)
ap.add_argument("--layers", type=int, default=16)
ap.add_argument("--vocab", type=int, default=32000)
a = ap.parse_args()
cfg = LlamaConfig(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.intermediate,
                  num_hidden_layers=a.layers, num_attention_heads=16, num_key_value_heads=16,
                  torch_dtype="bfloat16", tie_word_embeddings=False, architectures=["LlamaForCausalLM"])
h, i, v = a.hidden, a.intermediate, a.vocab
shapes = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,), "lm_head.weight": (v, h)}
for l in range(a.layers):
    p = f"model.layers.{l}."
    shapes.update({p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (h, h),
                   p + "self_attn.v_proj.weight": (h, h), p + "self_attn.o_proj.weight": (h, h),
                   p + "mlp.gate_proj.weight": (i, h), p + "mlp.up_proj.weight": (i, h),
                   p + "mlp.down_proj.weight": (h, i), p + "input_layernorm.weight": (h,),
                   p + "post_attention_layernorm.weight": (h,)})
g = torch.Generator().manual_seed(a.seed)
tensors = {n: (torch.randn(s, generator=g) * 0.02).to(torch.bfloat16) for n, s in shapes.items()}
out = Path(a.out)
out.mkdir(parents=True, exist_ok=True)
save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
cfg.to_json_file(str(out / "config.json"))
print(f"{out}: {sum(t.numel() for t in tensors.values()) / 1e9:.3f} B parameters")
