#!/usr/bin/env python3
"""GEMM table of a GPU run: joins the JSON lines of `gemm_bench` (each `linear_nt_impl`: cublas and its
variants — the caller's thread, the device and wait orders, no workspace; burn's matmul; cubek's strategies)
and of the PyTorch peer (benches/peers/torch_gemm.py) by shape and prints, per shape, each side's TFLOP/s, its ratio to PyTorch and the
microseconds per call it spends beyond PyTorch's (what a product costs us that is not the kernel: host
synchronisations, launches, allocation — or a slower kernel). cubek's column is its fastest strategy within 1e-2
of burn's result.

    python3 benches/gpu/gemm_table.py OUT/gemm*.jsonl > OUT/gemm.md
"""
import json
import sys

from orders import fell_back

rows = [json.loads(l) for f in sys.argv[1:] for l in open(f) if l.startswith("{")]
by = {}
for r in rows:
    key = (r.get("dtype", "?"), r["m"], r["k"], r["n"])
    v = by.setdefault(key, {})
    # gemm_bench lines that time cubek's strategies (gemm-cubek.jsonl) time cuBLAS and burn with fewer
    # iterations: only their cubek figures are taken.
    own = not r.get("cubek")
    if own and r.get("linear_nt_tflops"):
        fell = "host fallback" if fell_back(r.get("linear_nt_impl", ""), r) else ""
        v.setdefault(r.get("linear_nt_impl", "?"), (r["linear_nt_tflops"], fell))
    if own and r.get("burn_tflops"):
        v.setdefault("burn", (r["burn_tflops"], ""))
    for c in r.get("cubek", []):
        ok = c.get("tflops") and c.get("max_rel_diff") is not None and c["max_rel_diff"] < 1e-2
        if ok and c["tflops"] > v.get("cubek", (0, ""))[0]:
            v["cubek"] = (c["tflops"], c["name"])

order = ["torch", "cublas", "cublas-stream", "cublas-host", "cublas-caller", "cublas-devorder", "cublas-wait", "cublas-nows", "cubek", "burn"]
sides = [s for s in order if any(s in v for v in by.values())]
sides += sorted({s for v in by.values() for s in v} - set(sides))
print("| dtype | m×k×n | " + " | ".join(f"{s} TFLOP/s | ratio | µs over torch" for s in sides) + " |")
print("|---|---|" + "---|---|---|" * len(sides))


def us(tflops, m, k, n):
    return 2.0 * m * k * n / (tflops * 1e12) * 1e6


for (dtype, m, k, n), v in sorted(by.items()):
    t = v.get("torch", (None, ""))[0]
    line = f"| {dtype} | {m}×{k}×{n} | "
    for s in sides:
        f, name = v.get(s, (None, ""))
        if not f:
            line += "— | — | — | "
            continue
        label = f"{f:,.1f}" + (f" ({name})" if name else "")
        ratio = f"{f / t:.2f}×" if t else "—"
        over = f"{us(f, m, k, n) - us(t, m, k, n):+,.0f}" if t else "—"
        line += f"{label} | {ratio} | {over} | "
    print(line.rstrip())
