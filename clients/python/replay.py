"""Replay past incidents against a running Liandong service, e.g. to compare a new rule version.

Reads incidents as JSON lines ({"id": ..., "type": ..., "facts": {...}, "occurred_at": "ISO time"})
and sends them through DetermineStream in batches of --batch-size (default 100, at most 1000)
incidents per message; answers come back in request order, and one JSON line is written per answer:
incident id, rule set, version, level, lead, matched rules. With --version every incident is
answered by that pinned version instead of the one in force when it occurred.

    python clients/python/replay.py incidents.jsonl --target 127.0.0.1:50051 [--version 2025.1] [--batch-size 100]

Exit codes: 0 all answered; 1 the service refused an incident (the stream stops there);
2 the input could not be read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from typing import TextIO

from liandong.client import DEFAULT_BATCH, MAX_BATCH, Client
from liandong.errors import InvalidIncident, LiandongError
from liandong.v1 import liandong_pb2 as pb


def read_requests(lines: TextIO, ruleset: str, version: str) -> list[pb.DetermineRequest]:
    """Every incident as a request; all are read before the first is sent, so a bad line sends nothing."""
    out = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            occurred = dt.datetime.fromisoformat(item["occurred_at"]) if item.get("occurred_at") else None
            out.append(
                Client.request(
                    item["type"],
                    item.get("facts", {}),
                    incident_id=str(item.get("id", number)),
                    occurred_at=occurred,
                    ruleset=ruleset,
                    version=version,
                )
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"line {number}: not an incident ({exc})") from None
    return out


def batch_size(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_BATCH:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_BATCH}, not {text!r}")
    return size


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "incidents", type=argparse.FileType("r", encoding="utf-8"), help="JSON lines file, or - for stdin"
    )
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--ruleset", default="")
    parser.add_argument("--version", default="", help="pin this version for every incident")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for the whole replay")
    parser.add_argument(
        "--batch-size",
        type=batch_size,
        default=DEFAULT_BATCH,
        help=f"incidents per stream message, 1 to {MAX_BATCH} (default {DEFAULT_BATCH}); "
        "lower it when a batch of requests would exceed the server's message size limit",
    )
    args = parser.parse_args(argv)
    try:
        requests = read_requests(args.incidents, args.ruleset, args.version)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    answered = 0
    try:
        with Client(args.target) as client:
            for det in client.determine_many(requests, timeout=args.timeout, batch_size=args.batch_size):
                answered += 1
                print(
                    json.dumps(
                        {
                            "incident_id": det.incident_id,
                            "ruleset": det.ruleset,
                            "version": det.version,
                            "level": det.level.code if det.HasField("level") else None,
                            "lead": det.lead_agency.id if det.HasField("lead_agency") else None,
                            "rules": [r.id for r in det.matched_rules],
                        },
                        ensure_ascii=False,
                    )
                )
    except LiandongError as exc:
        detail = (
            "; ".join(f"{v.field}: {v.description}" for v in exc.violations)
            if isinstance(exc, InvalidIncident)
            else exc.message
        )
        print(f"error after {answered} answers: {detail}", file=sys.stderr)
        return 1
    print(f"{answered} incidents answered", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
