"""In-process cost of the decision log line: microseconds per `decision` line as ResponseServicer._record
writes it, for the round-2 logging set-up and the current one (server/logs.py), alternated in one run,
and each processor of both chains alone.

    python tests/bench/bench_logline.py [--seconds 1] [--rounds 5]     # prints one JSON object

The fields come from real fire-linkage determinations of varied incidents (bundled rules). Each line
goes the whole way: the module-level logger proxy, the processor chain, the rendering, and the
write(2) of line and newline under the process lock, to stderr sent to /dev/null. Configurations
alternate round by round (A B A B ...), each round bounded by count and by --seconds; the figures are
the medians over every line of every round, and `ratio` is before/after. `after_bound` is the current
set-up called on the bound logger itself rather than through the module-level proxy (what the proxy
costs).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import structlog

from bench_common import RULES, incident_pool, summary_us
from liandong.engine.result import Determination, Incident
from liandong.engine.runtime import DurableRuntime
from liandong.rulebook import RuleBook
from liandong.server import logs

MAX_LINES = 50_000  # per configuration and round
WARMUP = 500
PROCESSOR_CALLS = 20_000


def decision_fields(det: Determination, elapsed: float, log_facts: bool) -> dict[str, object]:
    """The keyword arguments of the decision line, built as ResponseServicer._record builds them."""
    fields: dict[str, object] = dict(
        decision_id=str(uuid.uuid4()),
        incident_id=det.incident_id,
        incident_type=det.incident_type,
        ruleset=det.ruleset,
        version=det.version,
        response_level=det.level.code if det.level else "none",
        applies=det.applies,
        rules=[r.id for r in det.matched_rules],
        latency_ms=round(elapsed * 1000, 3),
    )
    if det.assumed:
        fields["assumed"] = [a.input for a in det.assumed]
    if log_facts:
        fields["facts"] = det.facts
    return fields


def round2_write_line(line: bytes) -> None:
    """logs.write_line as round 2 had it: a memoryview and a loop for every line."""
    fd = sys.stderr.fileno()
    view = memoryview(line)
    with logs._write_lock:
        while view:
            written = os.write(fd, view)
            view = view[written:]


def round2_settings() -> dict[str, Any]:
    """The round-2 set-up, as server/logs.py had it: json.dumps through structlog's JSONRenderer, text
    encoded by the logger, structlog's TimeStamper."""

    class TextLineLogger:
        def msg(self, message: str) -> None:
            round2_write_line(message.encode("utf-8", "backslashreplace") + b"\n")

        info = msg

    logger = TextLineLogger()
    return dict(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=lambda *args: logger,
        cache_logger_on_first_use=True,
    )


def proxy(settings: dict[str, Any]) -> Any:
    """A logger as servicer.py holds one: a module-level lazy proxy, cached on first use."""
    return structlog.wrap_logger(
        settings["logger_factory"](),
        processors=settings["processors"],
        wrapper_class=settings["wrapper_class"],
        cache_logger_on_first_use=settings["cache_logger_on_first_use"],
    )


def time_lines(log: Any, lines: list[dict[str, object]], seconds: float) -> list[float]:
    clock = time.perf_counter
    durations: list[float] = []
    end = clock() + seconds
    i = 0
    while i < MAX_LINES and clock() < end:
        fields = lines[i % len(lines)]
        start = clock()
        log.info("decision", **fields)
        durations.append(clock() - start)
        i += 1
    return durations


def time_processor(proc: Callable[..., Any], lines: list[dict[str, object]]) -> float:
    """Median µs of one processor on a fresh copy of an event dict (the copy not timed)."""
    events = [dict(f, event="decision", level="info", timestamp="2026-12-02T06:42:57.123456Z") for f in lines]
    clock = time.perf_counter
    spent: list[float] = []
    for i in range(PROCESSOR_CALLS):
        d = dict(events[i % len(events)])
        start = clock()
        proc(None, "info", d)
        spent.append(clock() - start)
    return round(statistics.median(spent) * 1e6, 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="upper bound per configuration and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    book = RuleBook.load(RULES, DurableRuntime())
    pool = incident_pool("fire-linkage", 500)
    dets = [book.determine(Incident(type=t, facts=f, id=f"119-2026-{i:06d}")) for i, (t, f) in enumerate(pool)]

    # Lines go where the service writes them, stderr (logs.write_line), with fd 2 sent to /dev/null.
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(2)
    os.dup2(devnull, 2)
    try:
        configs = {"before": round2_settings(), "after": logs.settings("info", "json")}
        out: dict[str, Any] = {"unit": "µs per decision line", "rounds": args.rounds}
        for name, log_facts in (("decision", False), ("decision_with_facts", True)):
            lines = [decision_fields(d, 0.0873, log_facts) for d in dets]
            loggers = {k: proxy(s) for k, s in configs.items()}
            # What the module-level proxy costs: the same set-up, called on the logger it resolves to.
            loggers["after_bound"] = proxy(configs["after"]).bind()
            for log in loggers.values():
                for fields in lines[:WARMUP]:
                    log.info("decision", **fields)
            durations: dict[str, list[float]] = {k: [] for k in loggers}
            per_round: dict[str, list[float]] = {k: [] for k in loggers}
            for _ in range(args.rounds):
                for k, log in loggers.items():  # alternated: before, after, after_bound, before, ...
                    got = time_lines(log, lines, args.seconds)
                    durations[k] += got
                    per_round[k].append(round(statistics.median(got) * 1e6, 2))
            figures = {k: summary_us(v) | {"round_medians_us": per_round[k]} for k, v in durations.items()}
            figures["ratio_median"] = round(figures["before"]["median_us"] / figures["after"]["median_us"], 2)
            figures["bytes"] = {
                "before": len(configs["before"]["processors"][-1](None, "info", dict(lines[0], event="decision"))),
                "after": len(configs["after"]["processors"][-1](None, "info", dict(lines[0], event="decision"))),
            }
            out[name] = figures

        lines = [decision_fields(d, 0.0873, False) for d in dets]
        out["processors_median_us"] = {
            k: {getattr(p, "__name__", type(p).__name__): time_processor(p, lines) for p in s["processors"]}
            for k, s in configs.items()
        }
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    print(json.dumps(out, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
