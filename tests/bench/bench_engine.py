"""In-process engine figures: microseconds per evaluation for each bundled rule set, with and without
explain, and the fire grading table in Liandong and in zen-engine (GoRules) in the same run.

    python tests/bench/bench_engine.py [--seconds 3]     # prints one JSON object

Each configuration evaluates a pool of varied incidents, warm-up first, then timed one evaluation at
a time, bounded by count and by --seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bench_common import GENERATORS, RULES, incident_pool, summary_us
from liandong.engine.result import Incident
from liandong.engine.runtime import DurableRuntime
from liandong.rulebook import RuleBook

MAX_EVALUATIONS = 20_000
WARMUP = 300


def timed(fn: Callable[[Any], object], items: list[Any], seconds: float) -> dict[str, float]:
    for item in items[:WARMUP]:
        fn(item)
    durations: list[float] = []
    clock = time.perf_counter
    end = clock() + seconds
    i = 0
    while i < MAX_EVALUATIONS and clock() < end:
        item = items[i % len(items)]
        start = clock()
        fn(item)
        durations.append(clock() - start)
        i += 1
    return summary_us(durations)


GRADES = ("grade-I", "grade-II", "grade-III", "grade-IV")


def grading_document(root: Path) -> Path:
    """fire-linkage reduced to its grading table (the four grade rules), as a rule set of its own."""
    doc = yaml.safe_load((RULES / "fire-linkage" / "2024.1.yaml").read_text(encoding="utf-8"))
    doc["ruleset"] = "fire-grading"
    doc["rules"] = [r for r in doc["rules"] if r["id"] in GRADES]
    for lv in doc["levels"]:
        lv.pop("then", None)
        lv.pop("citation", None)
    doc["groups"], doc["obligations"] = [], []
    doc["units"] = doc["units"][:1]
    out = root / "fire-grading"
    out.mkdir(parents=True)
    (out / "2024.1.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return root


def zen_grading_table() -> dict[str, object]:
    """The same table as a zen-engine decision (JDM): first hit, most severe grade first.

    公安部2007 grades with 以上 inclusive: a row per criterion, so any one criterion decides, as the
    rule document's `any`; 一般火灾 is the last row, reached only when every criterion is under 较大.
    """
    thresholds = [("I", 30, 100, 100_000_000), ("II", 10, 50, 50_000_000), ("III", 3, 10, 10_000_000)]
    rows: list[dict[str, str]] = []
    for grade, deaths, injuries, loss in thresholds:
        for field, bound in (("d", deaths), ("s", injuries), ("l", loss)):
            row = {"_id": f"{grade}-{field}", "in_d": "", "in_s": "", "in_l": "", "out_g": json.dumps(grade)}
            row[f"in_{field}"] = f">= {bound}"
            rows.append(row)
    rows.append({"_id": "IV", "in_d": "", "in_s": "", "in_l": "", "out_g": json.dumps("IV")})
    return {
        "nodes": [
            {"id": "in", "type": "inputNode", "name": "request", "position": {"x": 0, "y": 0}},
            {
                "id": "table",
                "type": "decisionTableNode",
                "name": "fire grade",
                "position": {"x": 200, "y": 0},
                "content": {
                    "hitPolicy": "first",
                    "inputs": [
                        {"id": "in_d", "name": "deaths", "field": "deaths"},
                        {"id": "in_s", "name": "serious_injuries", "field": "serious_injuries"},
                        {"id": "in_l", "name": "direct_loss_yuan", "field": "direct_loss_yuan"},
                    ],
                    "outputs": [{"id": "out_g", "name": "level", "field": "level"}],
                    "rules": rows,
                },
            },
            {"id": "out", "type": "outputNode", "name": "response", "position": {"x": 400, "y": 0}},
        ],
        "edges": [
            {"id": "e1", "sourceId": "in", "targetId": "table", "type": "edge"},
            {"id": "e2", "sourceId": "table", "targetId": "out", "type": "edge"},
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="upper bound per configuration")
    args = parser.parse_args()
    runtime = DurableRuntime()
    book = RuleBook.load(RULES, runtime)
    out: dict[str, Any] = {"rulesets": {}}
    for ruleset in GENERATORS:
        pool = [Incident(type=t, facts=f, id=str(i)) for i, (t, f) in enumerate(incident_pool(ruleset, 1000))]
        out["rulesets"][ruleset] = {
            "plain": timed(lambda inc: book.determine(inc), pool, args.seconds),
            "explain": timed(lambda inc: book.determine(inc, explain=True), pool, args.seconds),
        }

    # The grading table: Liandong (the grade rules alone, and the full fire-linkage set) vs zen-engine.
    import zen

    grading_pool = [f for _, f in incident_pool("fire-linkage", 1000)]
    grade_facts = [{k: f.get(k, 0) for k in ("deaths", "serious_injuries", "direct_loss_yuan")} for f in grading_pool]
    with tempfile.TemporaryDirectory() as tmp:
        grading = RuleBook.load(grading_document(Path(tmp)), runtime)
    decision = zen.ZenEngine().create_decision(json.dumps(zen_grading_table()))
    agree = sum(
        1
        for f in grade_facts
        if (grading.determine(Incident(type="fire", facts=f)).level or _no_level()).code
        == decision.evaluate(f)["result"]["level"]
    )
    incidents = [Incident(type="fire", facts=f) for f in grade_facts]
    liandong = timed(lambda inc: grading.determine(inc), incidents, args.seconds)
    zen_figures = timed(lambda f: decision.evaluate(f), grade_facts, args.seconds)
    out["grading"] = {
        "liandong": liandong,
        "zen_engine": zen_figures,
        "agree": agree,
        "of": len(grade_facts),
        "speedup_median": round(zen_figures["median_us"] / liandong["median_us"], 2),
        "speedup_mean": round(zen_figures["mean_us"] / liandong["mean_us"], 2),
    }
    print(json.dumps(out), flush=True)
    return 0


def _no_level() -> Any:
    class Nothing:
        code = ""

    return Nothing()


if __name__ == "__main__":
    sys.exit(main())
