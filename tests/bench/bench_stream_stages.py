"""DetermineStream's own work per decision, in process: the stream generator driven without gRPC over
--count fire incidents in messages of --batch-size, each stage timed (µs a decision), --rounds times.

    PYTHONPATH=service:tests/bench .venv/bin/python tests/bench/bench_stream_stages.py

What the server adds on top of this is grpc.aio's read and write (docs/performance.md). Log lines go
to /dev/null, as rendered JSON, the way `liandong serve` writes them to stderr.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from bench_common import RULES
from bench_loadgen import batches, requests
from liandong.engine.runtime import DurableRuntime
from liandong.server import answers, calls, convert, logs
from liandong.server import servicer as sv
from liandong.server.metrics import Metrics
from liandong.server.reload import RulesState
from liandong.v1 import liandong_pb2 as pb


class Context:
    """A call that stays active, for the generator."""

    def is_active(self) -> bool:
        return True

    def time_remaining(self) -> None:
        return None

    def abort_with_status(self, status: Any) -> None:
        raise RuntimeError(status)


def timed(owner: Any, name: str, totals: collections.Counter[str]) -> None:
    fn: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[name] += time.perf_counter() - start

    setattr(owner, name, wrapper)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-message-bytes", type=int, default=1024 * 1024)
    args = parser.parse_args()
    null = os.open(os.devnull, os.O_WRONLY)

    def discard(line: bytes) -> None:
        os.write(null, line)

    logs.configure("info", "json", discard)
    metrics = Metrics(CollectorRegistry())
    state = RulesState(Path(RULES), DurableRuntime(), metrics, False)
    if not state.reload("startup").ok:
        raise SystemExit("the bundled rules did not load")
    servicer = sv.ResponseServicer(state, metrics, max_message_bytes=args.max_message_bytes)
    messages = [
        pb.DetermineStreamRequest.FromString(m.SerializeToString())
        for m in batches(requests("fire-linkage", args.count), args.batch_size)
    ]
    for _ in servicer.DetermineStream(iter(messages[:2]), Context()):  # type: ignore[arg-type]
        pass  # warm-up: loggers cached, answer parts kept
    totals: collections.Counter[str] = collections.Counter()
    for owner, name in (
        (sv, "evaluate"),
        (sv, "new_decision_id"),
        (convert, "incident_from_proto"),
        (answers.AnswerCodec, "wire"),
        (sv.ResponseServicer, "_record"),
        (calls.CallMetrics, "decided"),
        (answers, "stream_response"),
    ):
        timed(owner, name, totals)
    for _ in range(args.rounds):
        totals.clear()
        start = time.perf_counter()
        for _ in servicer.DetermineStream(iter(messages), Context()):  # type: ignore[arg-type]
            pass
        stages = {k: round(v / args.count * 1e6, 1) for k, v in totals.items()}
        print(json.dumps({"us_per_decision": round((time.perf_counter() - start) / args.count * 1e6, 1), **stages}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
