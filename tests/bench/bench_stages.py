"""What one Determine costs, stage by stage, in process: the steps of ResponseServicer._determine and
_record and of the call's metrics, each timed on its own, with the project's own functions, over the
pool of 1 000 varied fire incidents the load generator sends.

    python tests/bench/bench_stages.py [--seconds 3]     # prints one JSON object

Stages: decode the request (pb.DetermineRequest.FromString), request checks (bounds.check_text),
convert (convert.incident_from_proto), select (book.select), evaluate (rulebook.evaluate), uuid,
encode the answer (codec.wire), metrics (CallMetrics.decided and the call's Observed.finish), and the
decision log line (structlog as liandong.server.logs.configure sets it up, JSON, stderr on /dev/null,
as `make bench` runs the server). Also the whole path untimed stage by stage, to show what the
timers themselves add. gRPC's own work (HTTP/2, the threads or the event loop) is not in here: that
is what the empty servers measure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

from bench_common import RULES, incident_pool
from bench_loadgen import requests
from liandong.engine.runtime import DurableRuntime
from liandong.rulebook import RuleBook, evaluate
from liandong.server import bounds, convert
from liandong.server.answers import codecs
from liandong.server.calls import CallMetrics, Observed

try:
    from liandong.server.decision_ids import decision_id as new_decision_id
except ImportError:  # a checkout from before decision_ids (--against an older revision)
    import uuid

    def new_decision_id() -> str:
        return str(uuid.uuid4())


from liandong.server.metrics import Metrics

MAX_CALLS = 30_000
STAGES = (
    "decode request",
    "request checks",
    "convert",
    "select",
    "evaluate",
    "uuid",
    "encode answer",
    "metrics",
    "decision log line",
)


def decision_fields(det: Any, decision_id: str, elapsed: float) -> dict[str, object]:
    """The fields ResponseServicer._record logs (log_facts off, the default)."""
    level = det.level.code if det.level else "none"
    fields: dict[str, object] = dict(
        decision_id=decision_id,
        incident_id=det.incident_id,
        incident_type=det.incident_type,
        ruleset=det.ruleset,
        version=det.version,
        response_level=level,
        applies=det.applies,
        rules=[r.id for r in det.matched_rules],
        latency_ms=round(elapsed * 1000, 3),
    )
    if det.assumed:
        fields["assumed"] = [a.input for a in det.assumed]
    return fields


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per pass (timed stages, then untimed)")
    args = parser.parse_args()

    import grpc
    import structlog
    from prometheus_client import CollectorRegistry

    from liandong.server import logs

    book = RuleBook.load(RULES, DurableRuntime())
    coders = codecs(c for name in book.rulesets() for c in book.versions(name))
    calls = CallMetrics(Metrics(CollectorRegistry()))
    wire = [r.SerializeToString() for r in requests("fire-linkage", 1000)]
    distinct = len({repr(sorted(f.items())) for _, f in incident_pool("fire-linkage", 1000)})

    # The server's stderr is /dev/null under `make bench`: so is ours while the log line is timed.
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        logs.configure("info", "json")
        log = structlog.get_logger("liandong.decisions")
        from liandong.v1 import liandong_pb2 as pb

        runtime = book.runtime
        clock = time.perf_counter
        ok = grpc.StatusCode.OK

        def one(data: bytes, t: list[float] | None) -> None:
            c0 = clock()
            obs = Observed(calls, "Determine")
            request = pb.DetermineRequest.FromString(data)
            c1 = clock()
            if not request.HasField("incident") or not request.incident.type:
                raise RuntimeError("bench request without an incident")
            bounds.check_text("ruleset", request.ruleset)
            bounds.check_text("version", request.version)
            c2 = clock()
            incident = convert.incident_from_proto(request.incident)
            c3 = clock()
            compiled = book.select(incident, request.ruleset, request.version)
            c4 = clock()
            det = evaluate(runtime, compiled, incident, explain=request.explain)
            c5 = clock()
            decision_id = new_decision_id()
            c6 = clock()
            answer = coders[compiled.name].wire(det, decision_id)
            c7 = clock()
            level = det.level.code if det.level else "none"
            calls.decided(det, level, c5 - c3)
            obs.code = ok
            obs.finish()
            c8 = clock()
            log.info("decision", **decision_fields(det, decision_id, c5 - c3))
            c9 = clock()
            if not answer:
                raise RuntimeError("empty answer")
            if t is not None:
                t.extend((c1 - c0, c2 - c1, c3 - c2, c4 - c3, c5 - c4, c6 - c5, c7 - c6, c8 - c7, c9 - c8))

        for data in wire[:300]:  # warm-up: label children, caches of the first use
            one(data, None)
        samples: list[list[float]] = []
        end = clock() + args.seconds
        i = 0
        while i < MAX_CALLS and clock() < end:
            t: list[float] = []
            one(wire[i % len(wire)], t)
            samples.append(t)
            i += 1
        # The same path with no timers between the stages: the whole call as the server runs it.
        whole: list[float] = []
        end = clock() + args.seconds
        j = 0
        while j < MAX_CALLS and clock() < end:
            start = clock()
            one(wire[j % len(wire)], None)
            whole.append(clock() - start)
            j += 1
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)

    stages: dict[str, dict[str, float]] = {}
    for k, name in enumerate(STAGES):
        values = sorted(s[k] for s in samples)
        stages[name] = {
            "mean_us": round(statistics.fmean(values) * 1e6, 1),
            "median_us": round(statistics.median(values) * 1e6, 1),
        }
    result = {
        "calls": len(samples),
        "pool": len(wire),
        "distinct_fact_sets": distinct,
        "stages": stages,
        "sum_mean_us": round(sum(s["mean_us"] for s in stages.values()), 1),
        "sum_median_us": round(sum(s["median_us"] for s in stages.values()), 1),
        "whole_untimed": {
            "calls": len(whole),
            "mean_us": round(statistics.fmean(whole) * 1e6, 1),
            "median_us": round(statistics.median(whole) * 1e6, 1),
        },
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
