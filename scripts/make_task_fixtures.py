#!/usr/bin/env python3
"""Zero-shot requests rendered by lm-evaluation-harness 0.4.13 for some tasks on the dataset samples in
tests/fixtures/datasets (each task's own YAML from lm-eval, pointed at the local JSONL), in mmreason's dry-run
format: {"task","doc_id","request_type","context","continuation"} or {..., "until": [...], "max_gen_toks": N}.

    HF_DATASETS_OFFLINE=1 /work/venv/bin/python scripts/make_task_fixtures.py --fixtures tests/fixtures
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


for rel, data, split in TASKS:
    cfg = local_config(rel, {split: datasets / data / f"{split}.jsonl"})
    cfg.update(OVERRIDES.get(cfg["task"], {}))
    for k in ("training_split", "validation_split", "fewshot_split"):
        cfg.pop(k, None)
    cfg["test_split"] = split
    cfg["num_fewshot"] = 0
    task = ConfigurableTask(config=cfg)
    task.build_all_requests(rank=0, world_size=1)
    lines = []
    for inst in sorted(task.instances, key=lambda i: (i.doc_id, i.idx)):
        row = {"task": cfg["task"], "doc_id": inst.doc_id, "request_type": inst.request_type}
        if inst.request_type == "generate_until":
            ctx, kwargs = inst.arguments
            row.update(context=ctx, until=kwargs["until"], max_gen_toks=kwargs.get("max_gen_toks", 256))
        else:
            row.update(context=inst.arguments[0], continuation=inst.arguments[1])
        lines.append(json.dumps(row, ensure_ascii=False))
    (out_dir / f"{cfg['task']}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(cfg["task"], len(lines), "requests")

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
    lines = []
    for inst in sorted(task.instances, key=lambda i: (i.doc_id, i.idx)):
        lines.append(json.dumps({"task": cfg["task"], "doc_id": inst.doc_id, "request_type": inst.request_type,
                                 "context": inst.arguments[0], "continuation": inst.arguments[1]}, ensure_ascii=False))
    (out_dir / f"{cfg['task']}_3shot.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(cfg["task"], "3-shot", len(lines), "requests")

# MMLU 5-shot: lm-eval's first_n sampler over the subject's dev split (here: the dev sample's abstract_algebra
# rows, which come first).
cfg = local_config("mmlu/default/mmlu_abstract_algebra.yaml",
                   {"test": datasets / "mmlu/test.jsonl", "dev": datasets / "mmlu/dev.jsonl"})
cfg["task"] = "mmlu"
cfg["num_fewshot"] = 5
task = ConfigurableTask(config=cfg)
task.set_fewshot_seed(1234)
task.build_all_requests(rank=0, world_size=1)
lines = [json.dumps({"task": "mmlu", "doc_id": i.doc_id, "request_type": i.request_type, "context": i.arguments[0],
                     "continuation": i.arguments[1]}, ensure_ascii=False)
         for i in sorted(task.instances, key=lambda i: (i.doc_id, i.idx))]
(out_dir / "mmlu_5shot.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
print("mmlu 5-shot", len(lines), "requests")

# gsm8k_cot: lm-eval's 8 fixed exemplars (fewshot_config.samples, first_n).
cfg = local_config("gsm8k/gsm8k-cot.yaml", {"test": datasets / "gsm8k/test.jsonl"})
task = ConfigurableTask(config=cfg)
task.set_fewshot_seed(1234)
task.build_all_requests(rank=0, world_size=1)
lines = []
for i in sorted(task.instances, key=lambda i: (i.doc_id, i.idx)):
    ctx, kw = i.arguments
    lines.append(json.dumps({"task": "gsm8k_cot", "doc_id": i.doc_id, "request_type": i.request_type, "context": ctx,
                             "until": kw["until"], "max_gen_toks": kw.get("max_gen_toks", 256)}, ensure_ascii=False))
(out_dir / "gsm8k_cot_8shot.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
print("gsm8k_cot 8-shot", len(lines), "requests")

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
