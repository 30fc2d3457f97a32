"""The soak: N decisions through one process's rule book and durable-rules host (the session trap).

Run by tests/reliability/test_soak.py as a subprocess (so its memory is its own and a crash is a
failed test, not a dead pytest):

    python tests/reliability/soak.py --rules DIR --decisions 1000000

Prints one JSON line per checkpoint ({"done", "rss_kib", "seconds"}) and a last {"summary": ...}.
Every answer is checked against the demo plan's grades; a wrong one stops the run with exit 3.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from liandong.engine.result import Incident
from liandong.engine.runtime import DurableRuntime
from liandong.errors import InvalidIncident
from liandong.rulebook import RuleBook

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def rss_kib() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * PAGE_KIB


def incident(i: int) -> tuple[Incident, str | None]:
    """The i-th incident and the level the demo plan gives it (None: it must be refused)."""
    if i % 997 == 0:
        return Incident(type="demo", facts={"deaths": -1}), None  # refused before the engine
    deaths = i % 40
    facts: dict[str, object] = {"deaths": deaths, "hazmat": i % 3 == 0, "status": ("normal", "险情", "breach")[i % 3]}
    if i % 5 == 0:
        facts["level_m"] = 30 + (i % 7) * 0.25
    if i % 11 == 0:
        facts["loss_yuan"] = (1e-05, 1e16, 2e7)[i % 3]  # 1e-05 and 1e16 are floats durable-rules once could not read
    if i % 13 == 0:
        facts["note"] = f"第{i}号"
    # grade-II: deaths >= 10; grade-III: 3 <= deaths < 10 or a loss in [1e7, 5e7); grade-IV: deaths < 3.
    level = "II" if deaths >= 10 else "III" if deaths >= 3 or facts.get("loss_yuan") == 2e7 else "IV"
    return Incident(type="demo", facts=facts), level


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rules", required=True)
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--checkpoints", type=int, default=20)
    args = parser.parse_args()
    book = RuleBook.load(Path(args.rules), DurableRuntime())
    every = max(1, args.decisions // args.checkpoints)
    start = time.monotonic()
    decided = refused = 0
    print(json.dumps({"done": 0, "rss_kib": rss_kib(), "seconds": 0.0}), flush=True)
    cycle = [incident(i) for i in range(1, 9974)]  # made once: the run measures the service, not this script
    i = 0
    while decided < args.decisions:
        i += 1
        item, want = cycle[i % len(cycle)]
        try:
            det = book.determine(item)
        except InvalidIncident:
            if want is not None:
                print(json.dumps({"error": f"incident {i} refused: {item.facts}"}), flush=True)
                return 3
            refused += 1
            continue
        got = det.level.code if det.level else None
        if got != want:
            print(json.dumps({"error": f"incident {i} {item.facts}: level {got}, want {want}"}), flush=True)
            return 3
        decided += 1
        if decided % every == 0:
            print(
                json.dumps({"done": decided, "rss_kib": rss_kib(), "seconds": round(time.monotonic() - start, 2)}),
                flush=True,
            )
    seconds = time.monotonic() - start
    print(
        json.dumps(
            {
                "summary": {
                    "decisions": decided,
                    "refused": refused,
                    "seconds": round(seconds, 1),
                    "per_second": round(decided / seconds),
                    "rss_kib": rss_kib(),
                }
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
