#!/usr/bin/env python3
"""Requests rendered by lm-evaluation-harness 0.4.13 for every bundled task on the dataset samples in
tests/fixtures/datasets (each task's own YAML from lm-eval, pointed at the local JSONL), in mmreason's dry-run
format: {"task","doc_id","request_type","context","continuation"} or {..., "until": [...], "max_gen_toks": N}.

    pip download bigbench==1.0.0 --no-deps --no-binary :all: -d /tmp/bb && tar xzf /tmp/bb/bigbench-1.0.0.tar.gz -C /tmp/bb
    HF_DATASETS_OFFLINE=1 /work/venv/bin/python scripts/make_task_fixtures.py --fixtures tests/fixtures \
        --bigbench-src /tmp/bb/bigbench-1.0.0 --strategyqa-task ../shared/data/datasets/strategyqa/task.json

The BIG-bench source (Apache-2.0) is only imported, with its TensorFlow/T5 imports stubbed out: its `JsonTask`
turns strategyqa's examples into the formatted examples the Hugging Face `bigbench` dataset (and so lm-eval's
hails/bigbench) was built from.
"""
import argparse
import json
import os
from pathlib import Path

import lm_eval
from lm_eval.tasks._yaml_loader import load_yaml
from lm_eval.api.task import ConfigurableTask

TASKS = [("arc/arc_easy.yaml", "arc_easy", "validation"),
         ("commonsense_qa/default.yaml", "commonsense_qa", "validation"),
         ("gsm8k/gsm8k.yaml", "gsm8k", "test"),
         ("arc/arc_challenge.yaml", "arc_challenge", "test"),
         ("openbookqa/openbookqa.yaml", "openbookqa", "test"),
         ("super_glue/boolq/default.yaml", "boolq", "validation"),
         ("piqa/piqa.yaml", "piqa", "validation"),
         ("siqa/siqa.yaml", "social_iqa", "validation"),
         ("hellaswag/hellaswag.yaml", "hellaswag", "validation"),
         ("mmlu/default/mmlu_abstract_algebra.yaml", "mmlu", "test"),
         ("winogrande/default.yaml", "winogrande", "validation"),
         # RACE data is not available here: tests/fixtures/datasets/race/test.jsonl holds hand-made documents
         # in EleutherAI/race's schema (article, problems as a Python literal).
         ("race/race.yaml", "race", "test")]
# The local boolq sample is google/boolq (`answer`: bool); super_glue's `label` becomes `answer|int` (our YAML
# makes the same change), so the comparison is of everything else.
OVERRIDES = {"boolq": {"doc_to_target": "{{ answer|int }}"},
             # Our one `mmlu` task covers every subject (the sample is all abstract_algebra); lm-eval's
             # per-subject task is renamed so the rows read as ours.
             "mmlu_abstract_algebra": {"task": "mmlu"}}

ap = argparse.ArgumentParser()
ap.add_argument("--fixtures", default="tests/fixtures")
ap.add_argument("--bigbench-src", default="/tmp/bb/bigbench-1.0.0", help="the extracted bigbench 1.0.0 sdist")
ap.add_argument("--strategyqa-task", default="../shared/data/datasets/strategyqa/task.json")
a = ap.parse_args()
out_dir = Path(a.fixtures) / "tasks"
out_dir.mkdir(exist_ok=True)
root = Path(lm_eval.__file__).parent / "tasks"
datasets = Path(a.fixtures).resolve() / "datasets"


def local_config(rel, files):
    """lm-eval's task YAML (its own loader: `include`, `!function`) pointed at local JSONL files
    ({split: path})."""
    cfg = load_yaml(root / rel)
    cfg.pop("tag", None)
    cfg.pop("dataset_name", None)
    cfg["dataset_path"] = "json"
    cfg["dataset_kwargs"] = {"data_files": {k: str(v) for k, v in files.items()}}
    return cfg


def write_requests(task, name, file, label=""):
    """The task's requests, in document order, as dry-run rows in tasks/<file>.jsonl."""
    lines = []
    for inst in sorted(task.instances, key=lambda i: (i.doc_id, i.idx)):
        row = {"task": name, "doc_id": inst.doc_id, "request_type": inst.request_type}
        if inst.request_type == "generate_until":
            ctx, kwargs = inst.arguments
            row.update(context=ctx, until=kwargs["until"], max_gen_toks=kwargs.get("max_gen_toks", 256))
        else:
            row.update(context=inst.arguments[0], continuation=inst.arguments[1])
        lines.append(json.dumps(row, ensure_ascii=False))
    (out_dir / f"{file}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(name, label, len(lines), "requests")


for rel, data, split in TASKS:
    cfg = local_config(rel, {split: datasets / data / f"{split}.jsonl"})
    cfg.update(OVERRIDES.get(cfg["task"], {}))
    for k in ("training_split", "validation_split", "fewshot_split"):
        cfg.pop(k, None)
    cfg["test_split"] = split
    cfg["num_fewshot"] = 0
    task = ConfigurableTask(config=cfg)
    task.build_all_requests(rank=0, world_size=1)
    write_requests(task, cfg["task"], cfg["task"])

# bigbench_strategyqa: the sample rows (BIG-bench task.json examples) through BIG-bench's own JsonTask (duplicates
# dropped, default "\nQ: "/"\nA: " prefixes) and the Hugging Face conversion (bigbench_bridge
# `_parse_for_huggingface`, then datasets' `bigbench.py` strips every string), then lm-eval's multiple-choice
# template b on the result, as on hails/bigbench `strategyqa_zero_shot`.
import sys
import tempfile
import types

sys.path.insert(0, a.bigbench_src)
stubbed = [n for n in ["tensorflow", "tensorflow.compat", "tensorflow.compat.v1", "tensorflow.compat.v2", "t5",
                       "t5.evaluation", "t5.evaluation.metrics", "bigbench.api.results", "bigbench.benchmark_tasks",
                       "sklearn", "sklearn.metrics", "datasets"] if n not in sys.modules or n == "datasets"]
saved = {n: sys.modules.get(n) for n in stubbed}
for name in stubbed:
    sys.modules[name] = types.ModuleType(name)
sys.modules["t5.evaluation"].metrics = sys.modules["t5.evaluation.metrics"]
sys.modules["sklearn.metrics"].f1_score = None
sys.modules["datasets"].load_metric = None
from bigbench.api import json_task  # noqa: E402
for name in stubbed:  # the stubs must not leak into transformers' import below
    if saved[name] is None:
        del sys.modules[name]
    else:
        sys.modules[name] = saved[name]

header = {k: v for k, v in json.load(open(a.strategyqa_task, encoding="utf-8")).items() if k != "examples"}
examples = [json.loads(l) for l in open(datasets / "strategyqa/test.jsonl", encoding="utf-8")]
bb = json_task.JsonTask(task_data={**header, "examples": examples})
hf_rows = [{"idx": i, "inputs": (bb.task_prefix + ex["input"]).strip(), "targets": [t.strip() for t in ex["target"]],
            "multiple_choice_targets": [k.strip() for k in ex["target_scores"]],
            "multiple_choice_scores": list(ex["target_scores"].values())} for i, ex in enumerate(bb._ds)]
with tempfile.TemporaryDirectory() as tmp:
    hf = Path(tmp) / "default.jsonl"
    hf.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in hf_rows), encoding="utf-8")
    cfg = local_config("bigbench/multiple_choice/strategyqa.yaml", {"default": hf})
    cfg["task"] = "bigbench_strategyqa"
    task = ConfigurableTask(config=cfg)
    task.build_all_requests(rank=0, world_size=1)
    write_requests(task, "bigbench_strategyqa", "bigbench_strategyqa")

# minerva_math: lm-eval's 4 fixed Minerva exemplars (first_n) before each of the first 50 MATH test problems
# (all algebra, so lm-eval's minerva_math_algebra task).
cfg = local_config("minerva_math/minerva_math_algebra.yaml", {"test": datasets / "math/test.jsonl"})
cfg.pop("training_split", None)
cfg["task"] = "minerva_math"
task = ConfigurableTask(config=cfg)
task.set_fewshot_seed(1234)
task.build_all_requests(rank=0, world_size=1)
write_requests(task, "minerva_math", "minerva_math_4shot", "4-shot")
# The documents lm-eval scores: process_docs' problem/solution/answer.
(out_dir / "minerva_math_docs.jsonl").write_text(
    "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in task.test_docs()), encoding="utf-8")

# Few-shot: 3 examples drawn from the evaluated split itself (so the document is excluded), seed 1234 as
# lm-eval's evaluator sets it.
for rel, data, split in TASKS[:2]:
    cfg = local_config(rel, {split: datasets / data / f"{split}.jsonl"})
    for k in ("training_split", "validation_split"):
        cfg.pop(k, None)
    cfg["test_split"] = split
    cfg["fewshot_split"] = split
    cfg["num_fewshot"] = 3
    task = ConfigurableTask(config=cfg)
    task.set_fewshot_seed(1234)
    task.build_all_requests(rank=0, world_size=1)
    write_requests(task, cfg["task"], f"{cfg['task']}_3shot", "3-shot")

# MMLU 5-shot: lm-eval's first_n sampler over the subject's dev split (here: the dev sample's abstract_algebra
# rows, which come first).
cfg = local_config("mmlu/default/mmlu_abstract_algebra.yaml",
                   {"test": datasets / "mmlu/test.jsonl", "dev": datasets / "mmlu/dev.jsonl"})
cfg["task"] = "mmlu"
cfg["num_fewshot"] = 5
task = ConfigurableTask(config=cfg)
task.set_fewshot_seed(1234)
task.build_all_requests(rank=0, world_size=1)
write_requests(task, "mmlu", "mmlu_5shot", "5-shot")

# gsm8k_cot: lm-eval's 8 fixed exemplars (fewshot_config.samples, first_n).
cfg = local_config("gsm8k/gsm8k-cot.yaml", {"test": datasets / "gsm8k/test.jsonl"})
task = ConfigurableTask(config=cfg)
task.set_fewshot_seed(1234)
task.build_all_requests(rank=0, world_size=1)
write_requests(task, "gsm8k_cot", "gsm8k_cot_8shot", "8-shot")

# Multiple-choice scoring: lm-eval's process_results on synthetic log-likelihoods (acc, acc_norm, acc_bytes).
scored = []
for rel, data, split in TASKS[:2]:
    cfg = local_config(rel, {split: datasets / data / f"{split}.jsonl"})
    for k in ("training_split", "validation_split", "fewshot_split"):
        cfg.pop(k, None)
    cfg["test_split"] = split
    cfg["metric_list"] = [{"metric": m} for m in ("acc", "acc_norm", "acc_bytes")]
    task = ConfigurableTask(config=cfg)
    for doc_id, doc in enumerate(task.test_docs()):
        n = len(task.doc_to_choice(doc))
        lls = [-((doc_id * 7 + j * 13) % 11) - 0.25 * j for j in range(n)]
        r = task.process_results(doc, [(ll, False) for ll in lls])
        scored.append({"task": cfg["task"], "doc_id": doc_id, "lls": lls, **{k: r[k] for k in ("acc", "acc_norm", "acc_bytes")}})
(out_dir / "multiple_choice_scores.json").write_text(json.dumps(scored, ensure_ascii=False, indent=0), encoding="utf-8")
print(len(scored), "scored documents")

# Chat formatting (--apply_chat_template, with and without --fewshot_as_multiturn): lm-eval's contexts rendered
# with a chat template that accepts a system message (the "zephyr_like" template of
# tests/fixtures/scoring/chat_templates.json) on the Mistral tokenizer; 10 documents each.
from transformers import AutoTokenizer

tok = AutoTokenizer.from_pretrained(str(Path(a.fixtures) / "tokenizers" / "mistral-7b"))
tok.chat_template = json.load(open(Path(a.fixtures) / "scoring" / "chat_templates.json"))["templates"]["zephyr_like"]


def chat_template(history, add_generation_prompt=True):
    return tok.apply_chat_template(history, tokenize=False, add_generation_prompt=add_generation_prompt,
                                   continue_final_message=not add_generation_prompt)


chat_rows = []
fx = datasets
for rel, name, split, shots, files in [
    ("arc/arc_easy.yaml", "arc_easy", "validation", 3, {"validation": fx / "arc_easy/validation.jsonl"}),
    ("mmlu/default/mmlu_abstract_algebra.yaml", "mmlu", "test", 2, {"test": fx / "mmlu/test.jsonl", "dev": fx / "mmlu/dev.jsonl"}),
    ("winogrande/default.yaml", "winogrande", "validation", 2, {"validation": fx / "winogrande/validation.jsonl"}),
    ("gsm8k/gsm8k-cot.yaml", "gsm8k_cot", "test", 8, {"test": fx / "gsm8k/test.jsonl"}),
]:
    for multiturn in (False, True):
        cfg = local_config(rel, files)
        cfg["task"] = name
        for k in ("training_split", "validation_split"):
            cfg.pop(k, None)
        cfg["test_split"] = split
        if name in ("arc_easy", "winogrande"):
            cfg["fewshot_split"] = split
        cfg["num_fewshot"] = shots
        task = ConfigurableTask(config=cfg)
        task.set_fewshot_seed(1234)
        task.build_all_requests(rank=0, world_size=1, limit=10, apply_chat_template=True,
                                fewshot_as_multiturn=multiturn, chat_template=chat_template)
        for i in sorted(task.instances, key=lambda i: (i.doc_id, i.idx)):
            row = {"task": name, "multiturn": multiturn, "doc_id": i.doc_id, "request_type": i.request_type,
                   "context": i.arguments[0]}
            if i.request_type == "generate_until":
                row.update(until=i.arguments[1]["until"], max_gen_toks=i.arguments[1].get("max_gen_toks", 256))
            else:
                row["continuation"] = i.arguments[1]
            chat_rows.append(row)
(out_dir / "chat_requests.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in chat_rows),
                                              encoding="utf-8")
print("chat", len(chat_rows), "requests")
