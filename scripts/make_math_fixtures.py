#!/usr/bin/env python3
"""lm-evaluation-harness 0.4.13's minerva_math answer checking on real MATH answers and crafted model outputs,
for crates/metrics/tests/minerva_math.rs. Needs lm-eval's `math` extra (sympy, math_verify, antlr4 4.11).

    HF_DATASETS_OFFLINE=1 /work/venv/bin/python scripts/make_math_fixtures.py \
        --math ../shared/data/datasets/math/test.jsonl --fixtures tests/fixtures

Writes tests/fixtures/metrics/minerva_math.json:
  boxes:   every distinct last-box content of the MATH test solutions → lm-eval's normalised gold answer
  equiv:   [a, b, is_equiv(a, b)] for normalised answers (real golds against themselves, numeric rewrites of
           them, their neighbours, and crafted cases)
  outputs: {generation, gold, exact_match} through lm-eval's process_results
"""
import argparse
import json
import re
from fractions import Fraction
from pathlib import Path

import lm_eval.tasks.minerva_math.utils as u

ap = argparse.ArgumentParser()
ap.add_argument("--math", default="../shared/data/datasets/math/test.jsonl")
ap.add_argument("--fixtures", default="tests/fixtures")
ap.add_argument("--golds", type=int, default=600, help="distinct gold answers paired for equivalence")
a = ap.parse_args()

rows = [json.loads(l) for l in open(a.math, encoding="utf-8")]
boxes = {}
for r in rows:
    raw = u.remove_boxed(u.last_boxed_only_string(r["solution"]))
    boxes.setdefault(raw, u.normalize_final_answer(raw))
golds = list(dict.fromkeys(boxes.values()))


def numeric(s):
    """A gold that is a plain integer, decimal or simple fraction, as a Fraction."""
    m = re.fullmatch(r"(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}", s)
    if m:
        return Fraction(int(m[2]), int(m[3])) * (-1 if m[1] else 1)
    if re.fullmatch(r"-?\d+(\.\d+)?", s):
        return Fraction(s)
    return None


pairs = []
for i, g in enumerate(golds[: a.golds]):
    pairs.append((g, g))
    pairs.append((g, golds[(i + 1) % len(golds)]))
    v = numeric(g)
    if v is not None:
        if v.denominator == 1:
            pairs.append((g, f"{v.numerator}.0"))
            pairs.append((g, f"\\frac{{{2 * v.numerator}}}{{2}}"))
        else:
            pairs.append((g, f"\\frac{{{v.numerator}}}{{{v.denominator}}}"))
            pairs.append((g, f"\\dfrac{{{v.numerator}}}{{{v.denominator}}}"))
            if 10**6 % v.denominator == 0:
                pairs.append((g, str(float(v))))
        pairs.append((g, str(v.numerator + 1)))
crafted = [
    ("\\frac{1}{2}", "0.5"), (".5", "\\frac{1}{2}"), ("10", "10.0"), ("2^{10}", "1024"), ("2\\frac{1}{2}", "1"),
    ("(1+2)\\cdot3", "9"), ("6\\times7", "42"), ("0.333", "\\frac{1}{3}"), ("-\\frac{2}{3}", "\\frac{-2}{3}"),
    ("\\frac{9}{7}", "\\tfrac{9}{7}"), ("1/2", "\\frac{1}{2}"), ("5", "[invalidanswer]"), ("", ""),
    ("x+1", "1+x"), ("\\sqrt{8}", "2\\sqrt{2}"), ("\\frac{\\pi}{2}", "\\pi/2"), ("3", "3,"), ("1,2", "2,1"),
    ("\\left(3\\right)", "3"), ("12", "012"), ("-0", "0"), ("5.", "5"), ("50\\%", "50"), ("2^3", "8"),
    ("\\frac{1}{0}", "1"), ("4\\div2", "2"), ("{5}", "5"), ("(5)", "5"), ("0.1+0.2", "0.3"),
    # sympy's parser reads a complete expression and ignores what follows a comma or closing bracket.
    ("4,6,14,15", "4,7"), ("1,2", "1"), ("4)", "4"), ("4}", "4"), ("{4", "4"), ("(1,2)", "(1,5)"),
    ("\\frac{1}{2},3", "0.5"), ("1,234.50", "1234.5"), ("1,000", "1000"), ("1,0000", "0"), ("1,2.", "1"),
    ("10^{-2}", "0.01"), ("\\frac{1}{2}^2", "0.25"), ("(2)(3)", "6"), ("-(-2)", "2"), ("\\frac{6}{-3}", "-2"),
    ("\\dfrac{1}{2}", "\\frac{2}{4}"), ("5\\%", "5"), ("0.5", "\\frac{1}{2}"), ("0.30000000000000004", "0.3"),
    ("1.5\\cdot2", "3"), ("\\frac{1}{3}", "0.3333333333333333"), ("3^{0}", "1"), ("007", "7"),
]
pairs += crafted
equiv = [[x, y, bool(u.is_equiv(x, y))] for x, y in pairs]

outputs = []
generations = [
    ("We compute... Final Answer: The final answer is $\\frac{9}{7}$. I hope it is correct.", "\\frac{9}{7}"),
    ("Final Answer: The final answer is $\\dfrac{9}{7}$. I hope it is correct.\n\nProblem:", "\\frac{9}{7}"),
    ("Final Answer: The final answer is 0.5. I hope it is correct.", "\\frac{1}{2}"),
    ("Final Answer: The final answer is $1,234$. I hope it is correct.", "1234"),
    ("Final Answer: The final answer is \\$1,234.50. I hope it is correct.", "1234.5"),
    ("Final Answer: The final answer is 10 cm. I hope it is correct.", "10"),
    ("Final Answer: The final answer is $x = 4$. I hope it is correct.", "4"),
    ("Final Answer: The final answer is $\\boxed{7}$. I hope it is correct.", "7"),
    ("The answer is 7.", "7"),
    ("Final Answer: The final answer is 7. I hope it is correct. Final Answer: The final answer is 8. I hope it is correct.", "8"),
    ("Final Answer: The final answer is 5", "5"),
    ("Final Answer: The final answer is 5.", "5"),
    ("Final Answer: The final answer is\n5. I hope it is correct.", "5"),
    ("Final Answer: The final answer is $90^\\circ$. I hope it is correct.", "90"),
    ("Final Answer: The final answer is $\\text{(B)}$. I hope it is correct.", "\\text{(B)}"),
    ("Final Answer: The final answer is $x+1$. I hope it is correct.", "1+x"),
    ("Final Answer: The final answer is π. I hope it is correct.", "\\pi"),
    ("Final Answer: The final answer is $\\frac12$. I hope it is correct.", "\\frac{1}{2}"),
    ("Final Answer: The final answer is $[2,5)$. I hope it is correct.", "[2,5)"),
    ("Final Answer: The final answer is $12$ ways. I hope it is correct.", "12"),
    ("", "3"),
]
for r in rows[:40]:
    gold = u.normalize_final_answer(u.remove_boxed(u.last_boxed_only_string(r["solution"])))
    generations.append((f"Final Answer: The final answer is ${gold}$. I hope it is correct.", gold))
    generations.append((r["solution"] + "\nFinal Answer: The final answer is $0$. I hope it is correct.", gold))
for gen, gold in generations:
    res = u.process_results({"answer": gold, "solution": f"\\boxed{{{gold}}}"}, [gen])
    outputs.append({"generation": gen, "gold": gold, "exact_match": res["exact_match"]})

out = Path(a.fixtures) / "metrics" / "minerva_math.json"
out.write_text(json.dumps({"boxes": [[k, v] for k, v in boxes.items()], "equiv": equiv, "outputs": outputs},
                          ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
print(len(boxes), "boxes,", len(equiv), "pairs (", sum(e[2] for e in equiv), "equivalent ),", len(outputs), "outputs")
