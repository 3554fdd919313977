#!/usr/bin/env python3
"""Golden values for crates/merge, computed independently of mmreason.

1. The study's sparse task-vector merge, computed directly with torch (float64 arithmetic, ranking by |T| as
   float32 with a stable descending sort, k = floor(density * n)) on the tiny LLaVA fixtures and their base LLMs.
2. mergekit's methods run by mergekit itself on tiny checkpoints (see mergekit_cases below).

Command that made the committed fixtures (from the repository root, after make_fixtures.py):

    /work/venv/bin/python scripts/make_merge_fixtures.py --fixtures tests/fixtures

Output: tests/fixtures/merge/sparse_task_vector.json, tests/fixtures/merge/mergekit/...
"""

import argparse
import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

# Every merged tensor is pinned by the sha256 of its bytes; these few are also stored value by value, so a
# failing test can show where it differs.
SHOWN = ("language_model.model.layers.0.self_attn.q_proj.weight", "language_model.model.norm.weight")


def lm_pairs(vlm_sd, llm_sd):
    """(vlm_name, llm_name) for the llava-hf layout of the fixtures."""
    out = []
    for name in vlm_sd:
        if name == "language_model.lm_head.weight":
            out.append((name, "lm_head.weight"))
        elif name.startswith("language_model.model."):
            out.append((name, "model." + name[len("language_model.model."):]))
    assert all(l in llm_sd for _, l in out)
    return out


def keys(d):
    return d.abs().to(torch.float32)


def stv(vlm_sd, llm_sd, alpha, k_spec, scope, direction):
    pairs = lm_pairs(vlm_sd, llm_sd)
    deltas = {}
    for v, l in pairs:
        lv = llm_sd[l].to(torch.float64)
        vv = vlm_sd[v].to(torch.float64)[: lv.shape[0]]
        deltas[v] = (lv - vv) if direction == "toward_llm" else (vv - lv)

    def k_of(n):
        kind, x = k_spec
        return min(n, int(x * n)) if kind == "density" else min(n, int(x))

    masks = {}
    if scope == "per_tensor":
        for v, d in deltas.items():
            flat = keys(d).flatten()
            order = torch.sort(flat, descending=True, stable=True).indices
            m = torch.zeros(flat.numel(), dtype=torch.bool)
            m[order[: k_of(flat.numel())]] = True
            masks[v] = m.view(d.shape)
    else:
        names = [v for v, _ in pairs]  # VLM file order = order of the state dict as saved (sorted names)
        flat = torch.cat([keys(deltas[v]).flatten() for v in names])
        order = torch.sort(flat, descending=True, stable=True).indices
        m = torch.zeros(flat.numel(), dtype=torch.bool)
        m[order[: k_of(flat.numel())]] = True
        off = 0
        for v in names:
            n = deltas[v].numel()
            masks[v] = m[off: off + n].view(deltas[v].shape)
            off += n

    out, kept = {}, 0
    for v, _ in pairs:
        src = vlm_sd[v]
        vv = src.to(torch.float64)
        rows = deltas[v].shape[0]
        merged = vv.clone()
        upd = vv[:rows] + alpha * deltas[v]
        merged[:rows] = torch.where(masks[v], upd, vv[:rows]) if alpha != 0 else vv[:rows]
        kept += int(masks[v].sum())
        out[v] = merged.to(torch.float32).to(src.dtype)
    return out, kept


def describe(name, t):
    b = t.contiguous().view(torch.uint8).numpy().tobytes() if t.dtype != torch.float32 else t.numpy().tobytes()
    d = {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape), "sha256": hashlib.sha256(b).hexdigest()}
    if name in SHOWN:
        d["values"] = [float(x) for x in t.to(torch.float32).flatten()]
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default="tests/fixtures")
    args = ap.parse_args()
    fx = Path(args.fixtures)
    (fx / "merge").mkdir(exist_ok=True)
    cases = []
    for vlm, llm in [("llava-1.5", "vicuna-base"), ("llava-next", "mistral-base")]:
        vsd = load_file(fx / "models" / vlm / "model.safetensors")
        lsd = load_file(fx / "models" / llm / "model.safetensors")
        grid = [
            (0.0, ("density", 1.0), "per_tensor", "toward_llm"),
            (1.0, ("density", 1.0), "per_tensor", "toward_llm"),
            (1.0, ("density", 1.0), "global", "toward_llm"),
            (0.5, ("density", 0.1), "per_tensor", "toward_llm"),
            (0.5, ("density", 0.1), "global", "toward_llm"),
            (1.5, ("density", 0.2), "global", "away_from_llm"),
            (0.7, ("density", 0.05), "per_tensor", "away_from_llm"),
            (0.3, ("count", 5000), "global", "toward_llm"),
            (0.8, ("count", 37), "per_tensor", "toward_llm"),
        ]
        for alpha, k, scope, direction in grid:
            merged, kept = stv(vsd, lsd, alpha, k, scope, direction)
            cases.append({
                "vlm": vlm, "llm": llm, "alpha": alpha, k[0]: k[1], "scope": scope, "direction": direction,
                "kept": kept, "tensors": {n: describe(n, t) for n, t in sorted(merged.items())},
            })
    with open(fx / "merge" / "sparse_task_vector.json", "w") as f:
        json.dump({"generator": "scripts/make_merge_fixtures.py", "torch": torch.__version__, "cases": cases}, f)
    print(f"{len(cases)} sparse_task_vector cases")


if __name__ == "__main__":
    main()
