#!/usr/bin/env python3
"""Ratio table of a GPU run: reads the JSON lines that benches/gpu/run.sh collected (mmreason's `throughput`
example with each GEMM implementation, and the PyTorch peer) and prints a Markdown table, mmreason / PyTorch.
mmreason's cells add the share of the time the host spent issuing work ("h 93%": near 100 %, the host sets
the pace) where the example reports it.

    python3 benches/gpu/table.py OUT/throughput.jsonl > OUT/table.md
"""
import json
import sys

from orders import fell_back

TARGETS = {  # (work, batch) -> the target as a ratio to PyTorch, or an absolute rate
    "prefill": "≥ 1.2× torch",
    "decode b1": "≥ 165 tok/s",
    "decode b32": "≥ 2× torch",
    "images": "≥ 1× torch",
}

rows = [json.loads(l) for f in sys.argv[1:] for l in open(f) if l.startswith("{")]
by = {}
for r in rows:
    side = "torch" if r.get("backend") == "torch" else f"mmreason/{r.get('gemm', '?')}"
    key = (r["config"], r["batch"], r["prompt_len"], r["gen_len"])
    by.setdefault(key, {})[side] = r

sides = sorted({s for v in by.values() for s in v if s != "torch"})
print("| model | work | torch | " + " | ".join(f"{s} | ratio" for s in sides) + " | target |")
print("|---|---|---|" + "---|---|" * len(sides) + "---|")


def cell(v):
    return f"{v:,.1f}" if v else "—"


for (config, b, p, g), v in sorted(by.items()):
    works = []
    if config.startswith("clip"):
        works.append((f"images/s b{b}", "images_s", "images"))
    else:
        if p and not g:
            works.append((f"prefill b{b}×{p} tok/s", "prefill_tok_s", "prefill"))
        if g:
            works.append((f"decode b{b} ({g} new, prompt {p}) tok/s", "decode_tok_s", f"decode b{1 if b == 1 else 32}"))
    for label, field, tkey in works:
        t = v.get("torch", {}).get(field)
        line = f"| {config} | {label} | {cell(t)} | "
        for s in sides:
            m = v.get(s, {}).get(field)
            ratio = f"{m / t:.2f}×" if (m and t) else "—"
            share = v.get(s, {}).get(field.replace("_tok_s", "_host_share")) if field.endswith("_tok_s") else None
            host = f" (h {100 * share:.0f}%)" if m and share is not None else ""
            if m and fell_back(s, v.get(s, {})):
                host += " ⚠ host-order fallback"
            line += f"{cell(m)}{host} | {ratio} | "
        print(line + TARGETS.get(tkey, "") + " |")
