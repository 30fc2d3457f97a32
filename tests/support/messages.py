"""Building liandong.v1 requests and DetermineStream batches, and reading the answers back."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from liandong.v1 import liandong_pb2 as pb


def request(incident_type: str, facts: Mapping[str, object] | None = None, *, incident_id: str = "", ruleset: str = "", version: str = "", explain: bool = False) -> pb.DetermineRequest:
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
