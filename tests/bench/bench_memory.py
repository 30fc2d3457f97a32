"""RSS of a process evaluating --decisions incidents in process (the engine without gRPC).

    python tests/bench/bench_memory.py --decisions 1000000 [--max-seconds 400]

Loads the bundled rules as the service does, warms up, then evaluates incidents of the three bundled
rule sets in turn through RuleBook.determine (fact checks, a durable-rules session created and
deleted, combining) and converts each answer to its protobuf message, as the servicer does. Prints
one JSON object: RSS after warm-up and at checkpoints. Bounded by count and by --max-seconds.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

from bench_common import GENERATORS, RULES, incident_pool, rss_kib
from liandong.engine.result import Incident
from liandong.engine.runtime import DurableRuntime
from liandong.rulebook import RuleBook, evaluate
from liandong.server.answers import codecs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--warmup", type=int, default=20_000)
    parser.add_argument("--max-seconds", type=float, default=400.0)
    parser.add_argument(
        "--proto",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also build the serialized answer, as the service does",
    )
    args = parser.parse_args()
    book = RuleBook.load(RULES, DurableRuntime())
    answers = codecs(c for name in book.rulesets() for c in book.versions(name))
    pool = [Incident(type=t, facts=f, id=str(i)) for r in GENERATORS for i, (t, f) in enumerate(incident_pool(r, 1000))]
    pool = [pool[(i * 1000) % len(pool) + i // 3] for i in range(len(pool))]  # interleave the rule sets

    def one(i: int) -> None:
        incident = pool[i % len(pool)]
        compiled = book.select(incident)
        det = evaluate(book.runtime, compiled, incident)
        if args.proto:
            answers[compiled.name].wire(det, "d")

    for i in range(args.warmup):
        one(i)
    gc.collect()
    pid = os.getpid()
    before = rss_kib(pid)
    checkpoints = []
    start = time.perf_counter()
    done = 0
    step = max(1, args.decisions // 10)
    while done < args.decisions and time.perf_counter() - start < args.max_seconds:
        for i in range(done, min(done + step, args.decisions)):
            one(i)
        done = min(done + step, args.decisions)
        checkpoints.append(
            {"decisions": done, "rss_kib": rss_kib(pid), "seconds": round(time.perf_counter() - start, 1)}
        )
    gc.collect()
    after = rss_kib(pid)
    print(
        json.dumps(
            {
                "path": "in-process select + evaluate" + (" + serialized answer" if args.proto else ""),
                "decisions": done,
                "requested": args.decisions,
                "seconds": round(time.perf_counter() - start, 1),
                "rss_before_kib": before,
                "rss_after_kib": after,
                "growth_kib": after - before,
                "checkpoints": checkpoints,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
