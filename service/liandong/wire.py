"""What both ends of the liandong.v1 wire share: its limits, and protobuf Struct values as Python.

The server (server/) and the clients (client.py) import these from here, so neither imports the
other and a limit is written once.
"""

from __future__ import annotations

from google.protobuf import struct_pb2

from liandong.document.model import Deadline, DeadlineKind, Repeat, Timing
from liandong.engine import descriptor, workdays
from liandong.v1 import liandong_pb2 as pb

MAX_BATCH = 1000  # requests in one DetermineStreamRequest (proto/liandong/v1/liandong.proto)

# How an obligation's time is given, on the wire.
TIMING = {
    Timing.NONE: pb.Obligation.TIMING_UNSPECIFIED,
    Timing.WITHIN: pb.Obligation.TIMING_WITHIN,
    Timing.AT_ONCE: pb.Obligation.TIMING_AT_ONCE,
    Timing.PROMPTLY: pb.Obligation.TIMING_PROMPTLY,
    Timing.CALENDAR: pb.Obligation.TIMING_CALENDAR,
}
TIMING_BACK = {code: timing for timing, code in TIMING.items()}

DEADLINE_KIND = {
    DeadlineKind.NONE: pb.Deadline.KIND_UNSPECIFIED,
    DeadlineKind.AT_ONCE: pb.Deadline.KIND_AT_ONCE,
    DeadlineKind.PROMPTLY: pb.Deadline.KIND_PROMPTLY,
    DeadlineKind.ELAPSED: pb.Deadline.KIND_ELAPSED,
    DeadlineKind.CALENDAR_DAYS: pb.Deadline.KIND_CALENDAR_DAYS,
    DeadlineKind.WORKING_DAYS: pb.Deadline.KIND_WORKING_DAYS,
    DeadlineKind.SAME_DAY: pb.Deadline.KIND_SAME_DAY,
    DeadlineKind.TIME_OF_DAY: pb.Deadline.KIND_TIME_OF_DAY,
}
DEADLINE_KIND_BACK = {code: kind for kind, code in DEADLINE_KIND.items()}
REPEAT = {
    Repeat.ONCE: pb.Deadline.REPEAT_ONCE,
    Repeat.INTERVAL: pb.Deadline.REPEAT_INTERVAL,
    Repeat.DAILY: pb.Deadline.REPEAT_DAILY,
    Repeat.CONTINUING: pb.Deadline.REPEAT_CONTINUING,
}
REPEAT_BACK = {code: repeat for repeat, code in REPEAT.items()}
# Kinds whose due time needs the official calendar (a last day that is a holiday moves on).
CALENDAR_KINDS = frozenset({DeadlineKind.CALENDAR_DAYS, DeadlineKind.WORKING_DAYS})


def deadline_to_proto(d: Deadline, written: str) -> pb.Deadline:
    """An obligation's clock on the wire; `written` is the document's `within` (or `by`) as written."""
    msg = pb.Deadline(
        kind=DEADLINE_KIND[d.kind],
        start_event=d.start,
        days=d.days,
        time_of_day=d.time_of_day,
        repeat=REPEAT[d.repeat],
        end_included=d.end_included,
        wording=d.wording,
        written=written,
        calendar_known_until=workdays.known_years()[1] if d.kind in CALENDAR_KINDS else 0,
    )
    if d.kind is DeadlineKind.ELAPSED:
        msg.duration.FromSeconds(d.seconds)
    if d.latest_seconds is not None:
        msg.latest.FromSeconds(d.latest_seconds)
    if d.repeat is Repeat.INTERVAL:
        msg.every.FromSeconds(d.every_seconds)
    return msg


def deadline_from_proto(msg: pb.Deadline) -> Deadline:
    return Deadline(
        kind=DEADLINE_KIND_BACK.get(msg.kind, DeadlineKind.NONE),
        start=msg.start_event,
        seconds=msg.duration.seconds if msg.HasField("duration") else 0,
        days=msg.days,
        time_of_day=msg.time_of_day,
        latest_seconds=msg.latest.seconds if msg.HasField("latest") else None,
        repeat=REPEAT_BACK.get(msg.repeat, Repeat.ONCE),
        every_seconds=msg.every.seconds if msg.HasField("every") else 0,
        end_included=msg.end_included,
        wording=msg.wording,
    )


_SCALAR_KINDS = frozenset(("number_value", "string_value", "bool_value"))


def value_from_proto(value: struct_pb2.Value) -> object:
    """A Struct value as Python; NaN stays a float (json_format would turn it into the text 'NaN')."""
    kind = value.WhichOneof("kind")
    if kind in _SCALAR_KINDS:  # number_value (a float), string_value, bool_value: the field itself
        return getattr(value, kind)
    if kind == "struct_value":
        return {k: value_from_proto(v) for k, v in value.struct_value.fields.items()}
    if kind == "list_value":
        return [value_from_proto(v) for v in value.list_value.values]
    if kind == "null_value":
        return None
    return descriptor.NO_VALUE  # no kind at all: a malformed Value, refused by the input checks
