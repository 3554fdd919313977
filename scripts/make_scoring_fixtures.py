#!/usr/bin/env python3
"""Expected values for the model crate's harness-facing API, from the reference tools themselves:

1. lm-evaluation-harness 0.4.13 `hf` model (HFLM) loglikelihoods and greedy generate_until on the tiny
   Mistral fixture with the real Mistral tokenizer;
2. transformers' `apply_chat_template` renderings of two chat templates.

Command that made the committed fixtures (from the repository root, after make_fixtures.py):

    /work/venv/bin/python scripts/make_scoring_fixtures.py --fixtures tests/fixtures
"""
import argparse
import json
from pathlib import Path

import torch
import transformers
from transformers import AutoTokenizer

MISTRAL_INSTRUCT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
# A Zephyr-style template: system role, whitespace control, .strip(), loop.last, add_generation_prompt.
ZEPHYR_LIKE_TEMPLATE = """{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>\\n' + message['content'].strip() + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>\\n' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>\\n'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}"""

LL_REQUESTS = [
    ("The capital of France is", " Paris"),
    ("Question: What is 2+2?\nAnswer:", " 4"),
    ("The cat sat on the ", "mat"),
    ("Answer:  ", "yes"),
    ("Once upon a time", " there was a little girl who lived in a village near the forest."),
    ("", "Hello world"),
    ("Le café est", " très chaud ☕"),
    ("Q: What?\nA:", "\nNothing."),
    # Longer than the tiny model's 64-token window: left truncation.
    (" ".join(["word"] * 80), " end of the story"),
]
GEN_REQUESTS = [
    ("Question: Natalia sold clips to 48 of her friends.\nAnswer:", ["\n\n", "Question:"], 12),
    ("The quick brown fox", ["."], 8),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default="tests/fixtures")
    args = ap.parse_args()
    fx = Path(args.fixtures)
    out = fx / "scoring"
    out.mkdir(exist_ok=True)

    import lm_eval
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    torch.set_num_threads(2)
    model_dir = str(fx / "models" / "mistral-base")
    lm = HFLM(pretrained=model_dir, device="cpu", dtype="float32", batch_size=1)
    insts = [Instance("loglikelihood", {}, (c, x), i) for i, (c, x) in enumerate(LL_REQUESTS)]
    ll = lm.loglikelihood(insts, disable_tqdm=True)
    gens = [Instance("generate_until", {}, (c, {"until": u, "max_gen_toks": n, "do_sample": False}), i)
            for i, (c, u, n) in enumerate(GEN_REQUESTS)]
    gen = lm.generate_until(gens, disable_tqdm=True)
    with open(out / "lm_eval_mistral_base.json", "w") as f:
        json.dump({
            "generator": "scripts/make_scoring_fixtures.py", "lm_eval": lm_eval.__version__,
            "transformers": transformers.__version__, "model": "models/mistral-base", "max_length": lm.max_length,
            "loglikelihood": [{"context": c, "continuation": x, "logprob": lp, "is_greedy": g}
                              for (c, x), (lp, g) in zip(LL_REQUESTS, ll)],
            "generate_until": [{"context": c, "until": u, "max_gen_toks": n, "output": o}
                               for (c, u, n), o in zip(GEN_REQUESTS, gen)],
        }, f, indent=1, ensure_ascii=False)

    tok = AutoTokenizer.from_pretrained(str(fx / "tokenizers" / "mistral-7b"))
    conversations = [
        [{"role": "user", "content": "What is in the image?"}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
         {"role": "user", "content": "  Solve 2+2.  "}],
    ]
    cases = []
    for name, template, extra in [("mistral_instruct", MISTRAL_INSTRUCT_TEMPLATE, []),
                                  ("zephyr_like", ZEPHYR_LIKE_TEMPLATE,
                                   [[{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "Name a colour."}]])]:
        for msgs in conversations + extra:
            for gen_prompt in [False, True]:
                text = tok.apply_chat_template(msgs, chat_template=template, tokenize=False,
                                               add_generation_prompt=gen_prompt)
                cases.append({"template": name, "messages": msgs, "add_generation_prompt": gen_prompt,
                              "expected": text})
    with open(out / "chat_templates.json", "w") as f:
        json.dump({"generator": "scripts/make_scoring_fixtures.py", "transformers": transformers.__version__,
                   "templates": {"mistral_instruct": MISTRAL_INSTRUCT_TEMPLATE, "zephyr_like": ZEPHYR_LIKE_TEMPLATE},
                   "cases": cases}, f, indent=1, ensure_ascii=False)
    print(f"{len(ll)} loglikelihoods, {len(gen)} generations, {len(cases)} chat renderings")


if __name__ == "__main__":
    main()
