#!/usr/bin/env python3
"""PyTorch peer of `cargo run --release --example gemm_bench`: `F.linear(x, w)` (x: m×k, w: n×k, as a
transformers linear layer without bias calls cuBLAS) on the same shapes, timed the same way — one warm-up call,
then the mean of `--iters` calls queued back to back and ended by one read-back. Prints JSON lines with
gemm_bench's field names (`linear_nt_tflops`, `linear_nt_impl: "torch"`), so benches/gpu/gemm_table.py can put
both in one table.

    python benches/peers/torch_gemm.py --shapes 4096x4096x14336,32x4096x14336 --dtype bfloat16 --iters 10
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--shapes", default="8192x8192x8192,4096x4096x14336,32x4096x14336")
ap.add_argument("--dtype", default="bfloat16")
ap.add_argument("--device", default="cuda")
ap.add_argument("--iters", type=int, default=10)
a = ap.parse_args()
dtype = getattr(torch, a.dtype)
NAMES = {torch.bfloat16: "bf16", torch.float16: "f16", torch.float32: "f32"}


def sync():
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()


with torch.inference_mode():
    for shape in a.shapes.split(","):
        m, k, n = (int(d) for d in shape.lower().split("x"))
        x = torch.randn((m, k), device=a.device, dtype=dtype)
        w = torch.randn((n, k), device=a.device, dtype=dtype) * 0.02
        y = F.linear(x, w)
        y[:1, :1].cpu()
        iters = max(a.iters, 1)
        sync()
        t0 = time.perf_counter()
        for _ in range(iters):
            y = F.linear(x, w)
        y[:1, :1].cpu()
        t = (time.perf_counter() - t0) / iters
        print(json.dumps({"backend": "torch", "torch": torch.__version__, "dtype": NAMES.get(dtype, a.dtype),
                          "m": m, "k": k, "n": n, "linear_nt_tflops": 2.0 * m * k * n / t / 1e12,
                          "linear_nt_impl": "torch", "mean_us": t * 1e6}), flush=True)
