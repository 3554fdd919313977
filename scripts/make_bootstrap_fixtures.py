#!/usr/bin/env python3
"""lm-evaluation-harness 0.4.13's bootstrap standard errors (`bootstrap_stderr`, the estimate lm-eval reports for
metrics without a closed form: median, F1, Matthews correlation) on fixed synthetic inputs, and the statistics
themselves, for crates/metrics' golden test.

    DISABLE_MULTIPROC=1 /work/venv/bin/python scripts/make_bootstrap_fixtures.py --fixtures tests/fixtures
"""
import argparse
import json
import os
from pathlib import Path

os.environ["DISABLE_MULTIPROC"] = "1"  # the single-process path draws exactly the same replicates
from lm_eval.api.metrics import bootstrap_stderr, f1_score, matthews_corrcoef, mean, median  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--fixtures", default="tests/fixtures")
a = ap.parse_args()
xs = [((i * 37) % 23) / 7.0 - 1.5 for i in range(61)]
pairs = [((i * 7) % 3 == 0, (i * 5) % 4 < 2) for i in range(57)]
pairs = [(int(g), int(p)) for g, p in pairs]
iters = 3000
out = {
    "iters": iters,
    "xs": xs,
    "pairs": pairs,
    "mean": mean(xs), "mean_bootstrap_stderr": bootstrap_stderr(mean, xs, iters),
    "median": median(xs), "median_bootstrap_stderr": bootstrap_stderr(median, xs, iters),
    "f1": float(f1_score(pairs)), "f1_bootstrap_stderr": bootstrap_stderr(f1_score, pairs, iters),
    "mcc": float(matthews_corrcoef(pairs)), "mcc_bootstrap_stderr": bootstrap_stderr(matthews_corrcoef, pairs, iters),
}
path = Path(a.fixtures) / "metrics" / "bootstrap.json"
path.parent.mkdir(parents=True, exist_ok=True)
path.write_text(json.dumps(out, indent=1) + "\n")
print({k: v for k, v in out.items() if k not in ("xs", "pairs")})
