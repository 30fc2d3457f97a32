"""Summarize bench_before_after.sh output: medians over rounds, each figure as a ratio to the faster
empty server (thread pool or asyncio) of the same round and load, and side B against side A.

    python tests/bench/bench_summarize.py bench-out/before_after.jsonl
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

EMPTY = ("baseline", "baseline_aio")


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(lines: list[dict[str, Any]]) -> str:
    sides = {x["side"]: x for x in lines if "rev" in x}
    stages = {x["side"]: x["stages"] for x in lines if "stages" in x}
    unary: dict[tuple[int, int], dict[str, dict[str, Any]]] = defaultdict(dict)  # (round, n) -> server -> result
    stream: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for x in lines:
        if "round" in x and x.get("stream"):
            stream[x["round"]][x["server"]] = x["result"]
        elif "round" in x:
            unary[(x["round"], x["n"])][x["server"]] = x["result"]
    out = []
    for side, x in sorted(sides.items()):
        out.append(f"side {side}: {x['rev']} ({x['commit']}){' serve ' + x['args'] if x['args'] else ''}")
    out += [
        "",
        "Determine, medians over rounds (ratios are per round, to that round's faster empty server):",
        f"{'N':>3}  {'side':<4}  {'calls/s':>9}  {'p99 ms':>8}  {'thr/empty':>9}  {'p99/empty':>9}  {'faster empty':<13}",
    ]
    for n in sorted({n for _, n in unary}):
        rounds = [row for (_, k), row in sorted(unary.items()) if k == n]
        refs = [max(EMPTY, key=lambda e, row=row: row[e]["throughput_rps"]) for row in rounds]
        faster = max(set(refs), key=refs.count)
        ratios: dict[str, dict[str, float]] = {}
        for name in (*EMPTY, "A", "B"):
            thr = [row[name]["throughput_rps"] for row in rounds if name in row]
            p99 = [row[name]["p99_ms"] for row in rounds if name in row]
            t_ratio = med(
                [
                    row[name]["throughput_rps"] / row[ref]["throughput_rps"]
                    for row, ref in zip(rounds, refs, strict=True)
                ]
            )
            p_ratio = med([row[name]["p99_ms"] / row[ref]["p99_ms"] for row, ref in zip(rounds, refs, strict=True)])
            ratios[name] = {"thr": med(thr), "p99": med(p99)}
            label = {"baseline": "thr", "baseline_aio": "aio"}.get(name, name)
            out.append(
                f"{n:>3}  {label:<4}  {med(thr):>9.1f}  {med(p99):>8.3f}  {t_ratio:>9.3f}  {p_ratio:>9.3f}  {faster if name in ('A', 'B') else '':<13}"
            )
        out.append(
            f"{n:>3}  B/A   calls/s x{ratios['B']['thr'] / ratios['A']['thr']:.3f}, p99 x{ratios['B']['p99'] / ratios['A']['p99']:.3f}"
        )
    if stream:
        out += ["", "DetermineStream, 10 000 fire incidents, 100 a message (decisions/s, medians over rounds):"]
        rates = {
            name: med([r[name]["decisions_per_s"] for r in stream.values() if name in r]) for name in (*EMPTY, "A", "B")
        }
        out += [f"  {name:<12} {rate:>10.1f}" for name, rate in rates.items()]
        out.append(f"  B/A x{rates['B'] / rates['A']:.3f}; target 10 000/s")
    if stages:
        names = list(next(iter(stages.values()))["stages"])
        out += ["", "In-process stages of one Determine (median µs):", f"  {'stage':<20} {'A':>8} {'B':>8} {'B-A':>8}"]
        for name in names:
            a = stages.get("A", {}).get("stages", {}).get(name, {}).get("median_us", float("nan"))
            b = stages.get("B", {}).get("stages", {}).get(name, {}).get("median_us", float("nan"))
            out.append(f"  {name:<20} {a:>8.1f} {b:>8.1f} {b - a:>8.1f}")
        wa = stages.get("A", {}).get("whole_untimed", {}).get("median_us", float("nan"))
        wb = stages.get("B", {}).get("whole_untimed", {}).get("median_us", float("nan"))
        out.append(f"  {'whole (untimed)':<20} {wa:>8.1f} {wb:>8.1f} {wb - wa:>8.1f}")
    return "\n".join(out)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    lines = [json.loads(s) for s in Path(sys.argv[1]).read_text(encoding="utf-8").splitlines() if s.strip()]
    print(summarize(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
