"""The stages of one evaluation in process, in µs: what `RuleBook.determine` spends choosing the
version, checking the facts, in durable-rules and combining the answer, for the three big bundled
rule sets over 1 000 generated incidents each plus every fixture case of the rule set.

    python tests/bench/bench_evaluation_stages.py [--seconds 2]       # this tree, one JSON object
    python tests/bench/bench_evaluation_stages.py --against DIR       # DIR (another checkout) vs this
                                                                       # tree, alternated, a table

Each stage is timed by calling the function `evaluate` calls for it, one incident at a time, so
the figures of two checkouts compare stage by stage. With --against, the two run as separate
processes in turn (A, B, A, B, ...; --rounds of each) on the same incidents; the table gives the
median over rounds of each round's median, and the ratio new / old.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_common import BENCH, RULES, env, incident_pool

RULE_SETS = ("fire-linkage", "flood-control", "township-mass-incident")
STAGES = ("select", "normalize", "refuse_empty", "cross_check", "presence_flags", "fire", "combine", "determine")
MAX_ROUNDS_PER_SET = 20  # passes over the pool, bounded by --seconds too


def pool(ruleset: str) -> list[Any]:
    from liandong.engine.result import Incident
    from liandong.fixtures import load_fixtures

    generated = [Incident(type=t, facts=f, id=str(i)) for i, (t, f) in enumerate(incident_pool(ruleset, 1000))]
    fixtures = load_fixtures(RULES / ruleset / "2024.1.fixtures.yaml")
    return generated + [c.incident for c in fixtures.cases if not c.want_error_code]


def measure(seconds: float) -> dict[str, dict[str, float]]:
    from liandong.engine import descriptor
    from liandong.engine.combine import combine
    from liandong.engine.runtime import DurableRuntime
    from liandong.rulebook import RuleBook

    book = RuleBook.load(RULES, DurableRuntime())
    clock = time.perf_counter_ns
    out: dict[str, dict[str, float]] = {}
    for ruleset in RULE_SETS:
        incidents = pool(ruleset)
        times: dict[str, list[int]] = {stage: [] for stage in STAGES}

        def one(incident: Any) -> tuple[int, ...]:
            """The ns each stage took for this incident, in STAGES order."""
            t0 = clock()
            compiled = book.select(incident)
            t1 = clock()
            doc = compiled.document
            facts = descriptor.normalize(doc, incident.facts, compiled.inputs)
            t2 = clock()
            descriptor.refuse_empty(doc, incident.facts)
            t3 = clock()
            if doc.checks:
                descriptor.cross_check(doc, facts)
            t4 = clock()
            flags = descriptor.presence_flags(doc, facts, compiled.inputs)
            fact = {**facts, **flags} if flags else facts
            t5 = clock()
            fired = book.runtime.fire(compiled.name, fact)
            t6 = clock()
            combine(compiled.answers, incident, facts, fired)
            t7 = clock()
            book.determine(incident)
            t8 = clock()
            return (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6, t8 - t7)

        for incident in incidents:  # warm-up
            one(incident)
        end = time.monotonic() + seconds
        rounds = 0
        while rounds < MAX_ROUNDS_PER_SET and time.monotonic() < end:
            for incident in incidents:
                for stage, took in zip(STAGES, one(incident), strict=True):
                    times[stage].append(took)
            rounds += 1
        out[ruleset] = {stage: round(statistics.median(values) / 1e3, 2) for stage, values in times.items()}
        out[ruleset]["stages_sum"] = round(sum(out[ruleset][s] for s in STAGES[:-1]), 2)
        out[ruleset]["incidents"] = len(incidents)
    return out


def run_tree(service_dir: Path | None, seconds: float) -> dict[str, dict[str, float]]:
    """This script's measurement in a fresh interpreter, importing liandong from service_dir if given."""
    environment = env()
    if service_dir is not None:
        environment["PYTHONPATH"] = os.pathsep.join([str(service_dir), environment["PYTHONPATH"]])
    done = subprocess.run(
        [sys.executable, str(BENCH / "bench_evaluation_stages.py"), "--seconds", str(seconds)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result: dict[str, dict[str, float]] = json.loads(done.stdout)
    return result


def compare(against: Path, rounds: int, seconds: float) -> str:
    runs: dict[str, list[dict[str, dict[str, float]]]] = {"old": [], "new": []}
    for _ in range(rounds):
        runs["old"].append(run_tree(against / "service", seconds))
        runs["new"].append(run_tree(None, seconds))
    lines = [f"old: {against}, new: this tree; {rounds} alternated rounds, median of per-round medians, µs"]
    for ruleset in RULE_SETS:
        lines += ["", f"{ruleset}", "", "| stage | old | new | new / old |", "|---|---|---|---|"]
        for stage in (*STAGES[:-1], "stages_sum", "determine"):
            old = statistics.median(r[ruleset][stage] for r in runs["old"])
            new = statistics.median(r[ruleset][stage] for r in runs["new"])
            lines.append(f"| {stage} | {old:.2f} | {new:.2f} | {new / old if old else float('nan'):.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="upper bound per rule set")
    parser.add_argument("--against", type=Path, help="another checkout (its service/ is imported) to compare with")
    parser.add_argument("--rounds", type=int, default=5, help="with --against: rounds of each, alternated")
    args = parser.parse_args()
    if args.against is not None:
        print(compare(args.against.resolve(), args.rounds, args.seconds))
    else:
        print(json.dumps(measure(args.seconds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
