#!/usr/bin/env python3
"""Golden values for crates/merge, computed independently of mmreason.

1. The study's sparse task-vector merge, computed directly with torch (float64 arithmetic, ranking by |T| as
   float32 with a stable descending sort, k = floor(density * n)) on the tiny LLaVA fixtures and their base LLMs.
2. mergekit's methods run by mergekit itself on tiny checkpoints (see mergekit_cases below).

Command that made the committed fixtures (from the repository root, after make_fixtures.py):

    /work/venv/bin/python scripts/make_merge_fixtures.py --fixtures tests/fixtures

Output: tests/fixtures/merge/sparse_task_vector.json; tests/fixtures/merge/mergekit/{models,expected,*.yml}.
Needs mergekit 0.1.4 (the last release that runs with transformers<5) in the same venv.
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


MERGEKIT_CASES = {
    "linear": {"merge_method": "linear",
               "models": [{"model": "models/a", "parameters": {"weight": 0.3}},
                          {"model": "models/b", "parameters": {"weight": [0.2, 0.9]}}]},
    "task_arithmetic": {"merge_method": "task_arithmetic", "base_model": "models/base",
                        "models": [{"model": "models/a", "parameters": {"weight": 0.7}},
                                   {"model": "models/b", "parameters": {"weight": 0.5}}],
                        "parameters": {"lambda": 0.9}},
    "ties": {"merge_method": "ties", "base_model": "models/base",
             "models": [{"model": "models/a", "parameters": {"weight": 0.7, "density": 0.5}},
                        {"model": "models/b", "parameters": {"weight": 0.5, "density": 0.3}}]},
    "ties_filters": {"merge_method": "ties", "base_model": "models/base",
                     "models": [{"model": "models/a", "parameters": {"weight": [1.0, 0.2],
                                 "density": [{"filter": "mlp", "value": 0.4}, {"value": 0.6}]}},
                                {"model": "models/b", "parameters": {"weight": 0.8}}],
                     "parameters": {"lambda": 1.2, "normalize": False, "density": 0.7, "int8_mask": True}},
    "dare_linear_d1": {"merge_method": "dare_linear", "base_model": "models/base",
                       "models": [{"model": "models/a", "parameters": {"weight": 0.6, "density": 1.0}},
                                  {"model": "models/b", "parameters": {"weight": 0.4, "density": 1.0}}]},
    "dare_ties_d1": {"merge_method": "dare_ties", "base_model": "models/base",
                     "models": [{"model": "models/a", "parameters": {"weight": 0.6, "density": 1.0}},
                                {"model": "models/b", "parameters": {"weight": 0.4, "density": 1.0}}]},
    "breadcrumbs": {"merge_method": "breadcrumbs", "base_model": "models/base",
                    "models": [{"model": "models/a", "parameters": {"weight": 0.7, "density": 0.8, "gamma": 0.1}},
                               {"model": "models/b", "parameters": {"weight": 0.5, "density": 0.8, "gamma": 0.1}}]},
    "breadcrumbs_ties": {"merge_method": "breadcrumbs_ties", "base_model": "models/base",
                         "models": [{"model": "models/a", "parameters": {"weight": 0.7, "density": 0.7, "gamma": 0.07}},
                                    {"model": "models/b", "parameters": {"weight": 0.5, "density": 0.7, "gamma": 0.07}}]},
    "della_d1": {"merge_method": "della", "base_model": "models/base",
                 "models": [{"model": "models/a", "parameters": {"weight": 0.6, "density": 1.0}},
                            {"model": "models/b", "parameters": {"weight": 0.5, "density": 1.0}}]},
    "slerp": {"merge_method": "slerp", "base_model": "models/base",
              "models": [{"model": "models/base"}, {"model": "models/a"}],
              "parameters": {"t": [{"filter": "self_attn", "value": [0.0, 0.5, 1.0]},
                                   {"filter": "mlp", "value": [1.0, 0.5, 0.0]}, {"value": 0.3}]}},
    "model_stock": {"merge_method": "model_stock", "base_model": "models/base",
                    "models": [{"model": "models/a"}, {"model": "models/b"}]},
    "model_stock_filter_wise": {"merge_method": "model_stock", "base_model": "models/base",
                                "models": [{"model": "models/a"}, {"model": "models/b"}],
                                "parameters": {"filter_wise": True}},
    "task_arithmetic_bf16_out": {"merge_method": "task_arithmetic", "base_model": "models/base",
                                 "models": [{"model": "models/a", "parameters": {"weight": 0.7}},
                                            {"model": "models/b", "parameters": {"weight": 0.5}}],
                                 "out_dtype": "bfloat16"},
    # Random methods, reproducible in mergekit only with --random-seed (here 42).
    "dare_ties_seeded": {"merge_method": "dare_ties", "base_model": "models/base",
                         "models": [{"model": "models/a", "parameters": {"weight": 0.6, "density": 0.5}},
                                    {"model": "models/b", "parameters": {"weight": 0.4, "density": 0.7}}],
                         "parameters": {"seed": 42}},
    "dare_linear_seeded": {"merge_method": "dare_linear", "base_model": "models/base",
                           "models": [{"model": "models/a", "parameters": {"weight": 0.6, "density": 0.4}},
                                      {"model": "models/b", "parameters": {"weight": 0.4, "density": 0.6}}],
                           "parameters": {"seed": 42}},
    "della_seeded": {"merge_method": "della", "base_model": "models/base",
                     "models": [{"model": "models/a", "parameters": {"weight": 0.6, "density": 0.5, "epsilon": 0.2}},
                                {"model": "models/b", "parameters": {"weight": 0.5, "density": 0.4, "epsilon": 0.1}}],
                     "parameters": {"seed": 42}},
}


def make_mergekit_fixtures(fx):
    """Three tiny Llama checkpoints (a base and two 'fine-tunes' of it) and mergekit's output for every case.
    Our own `seed` key is removed before mergekit sees a config (it gets --random-seed instead)."""
    import subprocess
    import tempfile
    import yaml
    from transformers import LlamaConfig, LlamaForCausalLM

    root = fx / "merge" / "mergekit"
    (root / "expected").mkdir(parents=True, exist_ok=True)
    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
                      tie_word_embeddings=False)
    base_sd = None
    for i, name in enumerate(["base", "a", "b"]):
        g = torch.Generator().manual_seed(100 + i)
        m = LlamaForCausalLM(cfg)
        with torch.no_grad():
            for k, p in sorted(m.named_parameters()):
                if name == "base":
                    p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if "norm" in k else 0.0))
                else:
                    p.copy_(base_sd[k] + torch.randn(p.shape, generator=g) * 0.05)
        if name == "base":
            base_sd = {k: v.clone() for k, v in m.state_dict().items()}
        m.save_pretrained(root / "models" / name, safe_serialization=True)
    from safetensors.torch import load_file, save_file
    for case, conf in MERGEKIT_CASES.items():
        conf = dict(conf)
        params = dict(conf.get("parameters", {}))
        seed = params.pop("seed", None)
        mk_conf = {**conf, "dtype": "float32"}
        if params:
            mk_conf["parameters"] = params
        else:
            mk_conf.pop("parameters", None)
        ours = {**conf, "dtype": "float32"}
        with open(root / f"{case}.yml", "w") as f:
            f.write(f"# mergekit 0.1.4 output for this config is expected/{case}.safetensors\n")
            yaml.safe_dump(ours, f, sort_keys=False)
        with tempfile.TemporaryDirectory() as tmp:
            with open(Path(tmp) / "c.yml", "w") as f:
                yaml.safe_dump(mk_conf, f, sort_keys=False)
            cmd = ["/work/venv/bin/mergekit-yaml", str(Path(tmp) / "c.yml"), str(Path(tmp) / "out"),
                   "--no-copy-tokenizer", "--no-write-model-card", "--quiet"]
            if seed is not None:
                cmd += ["--random-seed", str(seed)]
            subprocess.run(cmd, cwd=root, check=True, capture_output=True)
            out = load_file(str(Path(tmp) / "out" / "model.safetensors"))
        save_file(out, str(root / "expected" / f"{case}.safetensors"), metadata={"mergekit": "0.1.4"})
    print(f"{len(MERGEKIT_CASES)} mergekit cases")


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
    make_mergekit_fixtures(fx)


if __name__ == "__main__":
    main()
