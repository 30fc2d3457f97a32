"""Building liandong.v1 requests and DetermineStream batches, and reading the answers back."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Mapping

import grpc

from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc


def request(
    incident_type: str,
    facts: Mapping[str, object] | None = None,
    *,
    incident_id: str = "",
    ruleset: str = "",
    version: str = "",
    explain: bool = False,
) -> pb.DetermineRequest:
    req = pb.DetermineRequest(ruleset=ruleset, version=version, explain=explain)
    req.incident.id = incident_id
    req.incident.type = incident_type
    req.incident.facts.update(dict(facts or {}))
    return req


def batches(requests: Iterable[pb.DetermineRequest], size: int = 1) -> Iterator[pb.DetermineStreamRequest]:
    """DetermineStream messages of up to `size` requests, built lazily: each is handed to grpc once
    full or once the requests run out, so a generator that waits between requests (size 1) holds
    the stream open with its earlier requests already sent."""
    batch: list[pb.DetermineRequest] = []
    for req in requests:
        batch.append(req)
        if len(batch) >= size:
            yield pb.DetermineStreamRequest(requests=batch)
            batch = []
    if batch:
        yield pb.DetermineStreamRequest(requests=batch)


def answers_of(responses: Iterable[pb.DetermineStreamResponse]) -> Iterator[pb.Determination]:
    """The answers of DetermineStream's response messages, one by one, as the messages arrive."""
    for response in responses:
        yield from response.determinations


class HeldStream:
    """A DetermineStream kept in flight from a thread of its own: the test sends its requests one at
    a time (send) and ends the request side with finish() or close(). `first` is set at the first
    answer or when the call ends, `done` when it ends; `answers` and `error` say how it went."""

    def __init__(self, stub: pb_grpc.ResponseServiceStub, timeout: float = 90.0) -> None:
        self.outbox: queue.Queue[pb.DetermineRequest | None] = queue.Queue()
        self.answers: list[pb.Determination] = []
        self.error: grpc.RpcError | None = None
        self.first = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(stub, timeout), daemon=True)
        self.thread.start()

    def _requests(self) -> Iterator[pb.DetermineRequest]:
        while True:
            item = self.outbox.get(timeout=60)
            if item is None:
                return
            yield item

    def _run(self, stub: pb_grpc.ResponseServiceStub, timeout: float) -> None:
        try:
            for answer in answers_of(stub.DetermineStream(batches(self._requests()), timeout=timeout)):
                self.answers.append(answer)
                self.first.set()
        except grpc.RpcError as error:
            self.error = error
        finally:
            self.first.set()
            self.done.set()

    def send(self, req: pb.DetermineRequest) -> None:
        self.outbox.put(req)

    def finish(self) -> None:
        self.outbox.put(None)

    def close(self, timeout: float) -> None:
        """finish(), and wait up to timeout seconds for the call to end."""
        self.finish()
        self.thread.join(timeout)
