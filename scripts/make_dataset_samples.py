#!/usr/bin/env python3
"""Copies the first rows of some shared evaluation sets into tests/fixtures/datasets, as JSONL (byte copies of
the first lines) and Parquet (pyarrow, the source's schema and Hugging Face metadata kept).

    /work/venv/bin/python scripts/make_dataset_samples.py --shared ../shared/data --fixtures tests/fixtures
"""
import argparse
from pathlib import Path

import pyarrow.parquet as pq

SAMPLES = [("arc_easy", "validation"), ("hellaswag", "validation"), ("mmlu", "test"), ("boolq", "validation"),
           ("strategyqa", "test"), ("gsm8k", "test"), ("winogrande", "validation"), ("commonsense_qa", "validation"),
           ("arc_challenge", "test"), ("openbookqa", "test"), ("piqa", "validation"), ("social_iqa", "validation"),
           ("mmlu", "dev"), ("math", "test")]
ROWS = 50

ap = argparse.ArgumentParser()
ap.add_argument("--shared", default="../shared/data")
ap.add_argument("--fixtures", default="tests/fixtures")
a = ap.parse_args()
for task, split in SAMPLES:
    src = Path(a.shared) / "datasets" / task
    dst = Path(a.fixtures) / "datasets" / task
    dst.mkdir(parents=True, exist_ok=True)
    with open(src / f"{split}.jsonl", encoding="utf-8") as f:
        lines = [next(f) for _ in range(ROWS)]
    with open(dst / f"{split}.jsonl", "w", encoding="utf-8", newline="") as f:
        f.writelines(lines)
    table = pq.read_table(src / f"{split}.parquet").slice(0, ROWS)
    pq.write_table(table, dst / f"{split}.parquet", compression="snappy")
    print(task, split, table.num_rows)
