"""DetermineStream gives the event loop a turn every TURN_EVERY requests, so a long request message
does not hold back the other calls the loop serves (a live Determine beside a replay)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from liandong.engine.runtime import DurableRuntime
from liandong.server import servicer as sv
from liandong.server.metrics import Metrics
from liandong.server.reload import RulesState
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.incidents import ManualClock, incident_service
from support.messages import request
from support.rules import copy_demo
from support.servers import channel, target

BOUND = 30.0  # seconds: the most any wait below may take


class Context:
    """A stand-in for a call that stays active."""

    def is_active(self) -> bool:
        return True

    def time_remaining(self) -> float:
        return 30.0

    def add_callback(self, callback: Any) -> bool:
        return True

    def abort_with_status(self, status: Any) -> None:
        raise AssertionError(f"aborted: {status}")


@pytest.fixture(scope="module")
def servicer(tmp_path_factory: pytest.TempPathFactory, runtime: DurableRuntime) -> sv.ResponseServicer:
    rules = tmp_path_factory.mktemp("stream-turn-rules")
    copy_demo(rules)
    metrics = Metrics(CollectorRegistry())
    state = RulesState(rules, runtime, metrics, run_fixtures=False)
    assert state.reload("startup").ok
    return sv.ResponseServicer(state, metrics)


def test_stream_yields_a_turn_after_every_turn_every_requests(servicer: sv.ResponseServicer) -> None:
    """A message of 40 requests yields a turn after the 16th and the 32nd, then its one response, and the count runs on across messages."""
    stream = servicer._stream(Context())  # type: ignore[arg-type]
    assert next(stream) is sv.NEXT_REQUEST
    batch = pb.DetermineStreamRequest(requests=[request("demo", {"deaths": d % 5}) for d in range(40)])
    seen = [stream.send(batch)]
    while seen[-1] is not sv.NEXT_REQUEST:
        seen.append(next(stream))
    assert sv.TURN_EVERY == 16
    assert seen[:2] == [sv.TURN, sv.TURN]
    assert isinstance(seen[2], bytes) and len(pb.DetermineStreamResponse.FromString(seen[2]).determinations) == 40
    assert seen[3:] == [sv.NEXT_REQUEST]
    more = [stream.send(pb.DetermineStreamRequest(requests=[request("demo", {"deaths": 1})] * 8))]
    assert more == [sv.TURN]  # the 48th request of the stream
    stream.close()


def test_live_determine_is_answered_while_a_long_message_is_evaluated(
    runtime: DurableRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Determine sent while a stream evaluates a message of 200 requests, answered in one response message, is evaluated before the message's last request, not after all of it."""
    # One response for the whole message (200 fire answers are about 3.6 MB): no write mid-message
    # gives the loop a turn, only the stream's own turns do.
    monkeypatch.setattr(sv, "TURN_EVERY", 2)
    order: list[str] = []
    stream_started, live_done = threading.Event(), threading.Event()
    original = sv.ResponseServicer._determine

    def recorded(self: sv.ResponseServicer, serving: Any, req: Any) -> Any:
        name = req.incident.id
        order.append(name)
        if name.startswith("s"):
            stream_started.set()
            if not live_done.is_set():
                time.sleep(0.05)  # keeps the message in evaluation (at most 200 x 50 ms) until the live call is in
        else:
            live_done.set()
        return original(self, serving, req)

    monkeypatch.setattr(sv.ResponseServicer, "_determine", recorded)
    message = pb.DetermineStreamRequest(
        requests=[request("fire", {"deaths": i % 4}, incident_id=f"s{i}") for i in range(200)]
    )

    def one_message() -> Iterator[pb.DetermineStreamRequest]:
        yield message

    with incident_service(runtime, ManualClock(), max_message_bytes=8 * 1024 * 1024) as svc, channel(target(svc)) as ch:
        stub = pb_grpc.ResponseServiceStub(ch)  # type: ignore[no-untyped-call]
        replay = stub.DetermineStream(one_message(), timeout=BOUND)
        answered: list[int] = []
        reader = threading.Thread(target=lambda: answered.extend(len(r.determinations) for r in replay), daemon=True)
        reader.start()
        assert stream_started.wait(BOUND)
        live = stub.Determine(request("fire", {"deaths": 3}, incident_id="live"), timeout=BOUND)
        reader.join(BOUND)
    assert live.level.code
    assert answered == [200]
    assert order.index("live") < order.index("s199"), "the live call waited for the whole message"
    assert replay.code() is grpc.StatusCode.OK
