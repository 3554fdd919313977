#!/usr/bin/env python3
"""lm-evaluation-harness 0.4.13's gsm8k filter pipelines and exact_match on crafted model outputs.

    /work/venv/bin/python scripts/make_filter_fixtures.py --fixtures tests/fixtures
"""
import argparse
import json
from pathlib import Path

from lm_eval.api.metrics import exact_match_hf_evaluate
from lm_eval.filters.extraction import RegexFilter, WhitespaceFilter
from lm_eval.filters.selection import MajorityVoteFilter, TakeFirstFilter
from lm_eval.filters.transformation import LowercaseFilter

OUTPUTS = [
    " Janet sells 16 - 3 - 4 = 9 eggs.\n#### 18",
    "First #### 5 then #### 18",
    "The answer is $1,234.",
    "#### 1,234.5\nQuestion: next",
    "I do not know.",
    "Il en reste -7 €, soit #### -7",
    "x = 3.14 and y = 42",
    "٣ or 3? #### 3",
    "",
    "  #### 18  ",
]
TARGET = "Janet's ducks... she makes 9 * 2 = $<<9*2=18>>18 every day at the farmer's market.\n#### 18"
EM = dict(ignore_case=True, ignore_punctuation=False, regexes_to_ignore=[",", "\\$", "(?s).*#### ", "\\.$"])

ap = argparse.ArgumentParser()
ap.add_argument("--fixtures", default="tests/fixtures")
a = ap.parse_args()
strict = RegexFilter(regex_pattern="#### (\\-?[0-9\\.\\,]+)")
flexible = RegexFilter(regex_pattern="(-?[$0-9.,]{2,})|(-?[0-9]+)", group_select=-1)
take_first = TakeFirstFilter()
rows = []
for out in OUTPUTS:
    s = list(take_first.apply(strict.apply([[out]], None), None))[0]
    f = list(take_first.apply(flexible.apply([[out]], None), None))[0]
    rows.append({"output": out, "strict-match": s, "flexible-extract": f,
                 "em_strict": exact_match_hf_evaluate([s], [TARGET], **EM)["exact_match"],
                 "em_flexible": exact_match_hf_evaluate([f], [TARGET], **EM)["exact_match"],
                 "lowercase": LowercaseFilter().apply([[out]], None)[0][0],
                 "whitespace": WhitespaceFilter().apply([[out]], None)[0][0]})
votes = [["18", "17", "18", "17"], ["a", "b", "c"], ["x", "y", "y"]]
majority = [list(MajorityVoteFilter().apply(votes, None))]
out = Path(a.fixtures) / "tasks" / "filters_gsm8k.json"
out.write_text(json.dumps({"target": TARGET, "rows": rows, "votes": votes, "majority": [m for m in majority[0]]},
                          ensure_ascii=False, indent=1), encoding="utf-8")
print(json.dumps(rows[:4], ensure_ascii=False), majority)
