#!/usr/bin/env python3
"""Loads a VLM merged by mmreason in transformers and checks it against a direct torch computation of the
same merge (scripts/make_merge_fixtures.py's `stv`), then compares transformers' logits on the merged model
with mmreason's (`target/release/examples/logits`, built beforehand) on the same input with an image.

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
import subprocess
import tempfile

from safetensors.torch import save_file

ref = load_file(str(Path(vlm).parent.parent / "reference" / f"{Path(vlm).name}.safetensors"))
inputs = {k: ref[k] for k in ("input_ids", "pixel_values", "image_sizes") if k in ref}
with torch.no_grad():
    kw = {"image_sizes": inputs["image_sizes"]} if "image_sizes" in inputs else {}
    want = model(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"], **kw).logits
with tempfile.TemporaryDirectory() as tmp:
    save_file(inputs, f"{tmp}/in.safetensors")
    subprocess.run(["target/release/examples/logits", "--model", merged, "--inputs", f"{tmp}/in.safetensors",
                    "--out", f"{tmp}/out.safetensors"], check=True)
    got = load_file(f"{tmp}/out.safetensors")["logits"]
err = float((got - want).abs().max() / max(1.0, float(want.abs().max())))
print(f"logits {tuple(want.shape)}: mmreason vs transformers on the merged model, max |Δ| / max(1, max|ref|) = {err:.2e}")
sys.exit(1 if bad or err > 1e-4 else 0)
