"""What both ends of the liandong.v1 wire share: its limits, and protobuf Struct values as Python.

The server (server/) and the clients (client.py) import these from here, so neither imports the
other and a limit is written once.
"""

from __future__ import annotations

from google.protobuf import struct_pb2

from liandong.document.model import Timing
from liandong.engine import descriptor
from liandong.v1 import liandong_pb2 as pb

MAX_BATCH = 1000  # requests in one DetermineStreamRequest (proto/liandong/v1/liandong.proto)

# How an obligation's time is given, on the wire.
TIMING = {
    Timing.NONE: pb.Obligation.TIMING_UNSPECIFIED,
    Timing.WITHIN: pb.Obligation.TIMING_WITHIN,
    Timing.AT_ONCE: pb.Obligation.TIMING_AT_ONCE,
    Timing.PROMPTLY: pb.Obligation.TIMING_PROMPTLY,
}
TIMING_BACK = {code: timing for timing, code in TIMING.items()}


def value_from_proto(value: struct_pb2.Value) -> object:
    """A Struct value as Python; NaN stays a float (json_format would turn it into the text 'NaN')."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return value.number_value
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return {k: value_from_proto(v) for k, v in value.struct_value.fields.items()}
    if kind == "list_value":
        return [value_from_proto(v) for v in value.list_value.values]
    if kind == "null_value":
        return None
    return descriptor.NO_VALUE  # no kind at all: a malformed Value, refused by the input checks
