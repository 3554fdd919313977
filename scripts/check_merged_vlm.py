#!/usr/bin/env python3
"""Loads a VLM merged by mmreason in transformers and checks it against a direct torch computation of the
same merge (scripts/make_merge_fixtures.py's `stv`), then runs a forward pass.

    cargo run --release --example merge -- --vlm tests/fixtures/models/llava-1.5 \
        --llm tests/fixtures/models/vicuna-base --alpha 0.5 --density 0.1 --scope global --out /tmp/merged
    /work/venv/bin/python scripts/check_merged_vlm.py /tmp/merged tests/fixtures/models/llava-1.5 \
        tests/fixtures/models/vicuna-base 0.5 0.1 global
"""
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, LlavaForConditionalGeneration, LlavaNextForConditionalGeneration

sys.path.insert(0, str(Path(__file__).parent))
from make_merge_fixtures import stv  # noqa: E402

merged, vlm, llm, alpha, density, scope = sys.argv[1:7]
cfg = AutoConfig.from_pretrained(merged)
cls = LlavaNextForConditionalGeneration if cfg.model_type == "llava_next" else LlavaForConditionalGeneration
model = cls.from_pretrained(merged, dtype=torch.float32).eval()
expected, kept = stv(load_file(f"{vlm}/model.safetensors"), load_file(f"{llm}/model.safetensors"),
                     float(alpha), ("density", float(density)), scope, "toward_llm")
got = load_file(f"{merged}/model.safetensors")
bad = [n for n, t in expected.items() if not torch.equal(got[n], t)]
print(f"loaded {cls.__name__}; {len(expected)} merged tensors, {kept} entries kept; mismatching tensors: {bad}")
with torch.no_grad():
    out = model(input_ids=torch.tensor([[1, 450, 4996, 17354, 1701, 29916]]))
print("logits", tuple(out.logits.shape), "finite:", bool(torch.isfinite(out.logits).all()))
sys.exit(1 if bad else 0)
