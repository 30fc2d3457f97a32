"""Bounds on what a caller sends besides the fact values: free strings, and `occurred_at`.

A fact's string value is bounded by its input's `max_length` (engine/descriptor.py). Everything
else a caller writes freely is bounded here, so no request can make an answer, a log line or an
error message grow with it: an identifier is echoed in the answer and in the decision log line, a
name is looked up and quoted in refusals. `occurred_at` must be a time that has a day in the
plans' time zone (Beijing, UTC+8), the only thing it is used for.
"""

from __future__ import annotations

import datetime as dt

from google.protobuf import struct_pb2, timestamp_pb2

from liandong.server import status
from liandong.wire import value_from_proto

MAX_ID_CHARS = 256  # incident.id
MAX_NAME_CHARS = 128  # incident.type, ruleset, version, fact names

# 0001-01-01T00:00:00Z up to the last second whose Beijing day is still 9999-12-31.
MIN_SECONDS = -62_135_596_800
MAX_SECONDS = 253_402_300_799 - 8 * 3600
MAX_NANOS = 999_999_999


def too_long(field: str, text: str, limit: int) -> status.Refusal:
    return status.Refusal(
        status.bad_request(field, f"is {len(text)} characters; the limit is {limit}", reason="too_long")
    )


def check_text(field: str, text: str, limit: int = MAX_NAME_CHARS) -> None:
    if len(text) > limit:
        raise too_long(field, text, limit)


def facts(field: str, struct: struct_pb2.Struct) -> dict[str, object]:
    """The facts as Python values; a Refusal for a fact name over MAX_NAME_CHARS (shown cut), before
    any check could quote it whole."""
    out = {k: value_from_proto(v) for k, v in struct.fields.items()}
    if out and max(map(len, out)) > MAX_NAME_CHARS:
        for name in out:
            if len(name) > MAX_NAME_CHARS:
                raise too_long(f"{field}.{name[:32]}…", name, MAX_NAME_CHARS)
    return out


def to_datetime(field: str, ts: timestamp_pb2.Timestamp) -> dt.datetime:
    """The moment in UTC; a Refusal on `field` for a Timestamp protobuf would not convert, or whose
    Beijing day is past 9999-12-31 (every time a caller sends: occurred_at, reported_at, start events…)."""
    if not 0 <= ts.nanos <= MAX_NANOS:
        raise status.Refusal(
            status.bad_request(field, f"nanos is {ts.nanos}; it must be 0 to {MAX_NANOS}", reason="out_of_range")
        )
    if not MIN_SECONDS <= ts.seconds <= MAX_SECONDS:
        raise status.Refusal(
            status.bad_request(
                field,
                f"seconds is {ts.seconds}; it must be {MIN_SECONDS} (0001-01-01T00:00:00Z) to {MAX_SECONDS} (9999-12-31T15:59:59Z, the last second of 9999-12-31 in Beijing time)",
                reason="out_of_range",
            )
        )
    return ts.ToDatetime(tzinfo=dt.UTC)
