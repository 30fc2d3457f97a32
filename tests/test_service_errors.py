"""End to end: every way the service refuses a request, with its status code and google.rpc details."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog.testing

from liandong import errors
from liandong.client import Client, ServiceError
from liandong.engine.runtime import DurableRuntime
from liandong.server.app import Service
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.data import load_cases
from support.messages import answers_of, batches, request
from support.metrics import sample
from support.rules import copy_demo
from support.servers import channel, running, target
from support.status import Details, details

CASES = load_cases("service_errors.yaml")
CLIENT_ERRORS: dict[str, type[errors.LiandongError]] = {
    "InvalidIncident": errors.InvalidIncident,
    "UnknownIncidentType": errors.UnknownIncidentType,
    "RuleSetNotFound": errors.RuleSetNotFound,
    "AmbiguousIncidentType": errors.AmbiguousIncidentType,
}
NO_TRACE = ("Traceback", 'File "', "raise ", "Error(")


RULE_SETS = ("fire-linkage", "demo")  # the module's rules directory (conftest.py `rules_dir`)


def _request(case: dict[str, Any]) -> pb.DetermineRequest:
    r = case["request"]
    req = request(
        r["type"],
        r.get("facts") or {},
        ruleset=r.get("ruleset", ""),
        version=r.get("version", ""),
        incident_id=case["note"][:40],
    )
    if "occurred_at" in r:
        req.incident.occurred_at.FromDatetime(dt.datetime.fromisoformat(r["occurred_at"]))
    return req


def _check(got: Details, want: dict[str, Any]) -> None:
    assert got.code.name == want["code"], got
    if "violations" in want:
        assert sorted(f"{f}: {reason}" for f, _, reason in got.violations) == sorted(want["violations"])
        assert all(description for _, description, _ in got.violations)
    if "resource" in want:
        assert got.resources == [want["resource"]]
    for words in want.get("message", []):
        assert words in got.message, got.message
    assert not any(bad in got.message for bad in NO_TRACE), got.message


@pytest.mark.parametrize("case", CASES, ids=[c["note"] for c in CASES])
def test_determine_refusal(stub: pb_grpc.ResponseServiceStub, case: dict[str, Any]) -> None:
    """Determine refuses the request with the case's status code, every field violation and a message without a stack trace."""
    with pytest.raises(grpc.RpcError) as caught:
        stub.Determine(_request(case), timeout=10)
    _check(details(caught.value), case["want"])


@pytest.mark.parametrize("case", CASES, ids=[c["note"] for c in CASES])
def test_stream_refusal(stub: pb_grpc.ResponseServiceStub, case: dict[str, Any]) -> None:
    """DetermineStream ends with the same status and details as Determine for the same refused request, after the answer before it in its batch."""
    good = request("demo", {"deaths": 1}, incident_id="good")
    answered: list[str] = []
    with pytest.raises(grpc.RpcError) as caught:
        for answer in answers_of(stub.DetermineStream(batches([good, _request(case)], size=2), timeout=10)):
            answered.append(answer.incident_id)
    assert answered == ["good"]
    _check(details(caught.value), case["want"])


@pytest.mark.parametrize("case", CASES, ids=[c["note"] for c in CASES])
def test_client_refusal(server: Service, case: dict[str, Any]) -> None:
    """The Python client raises the case's exception, carrying the field violations and the server's message."""
    r = case["request"]
    occurred = dt.datetime.fromisoformat(r["occurred_at"]) if "occurred_at" in r else None
    want = case["want"]
    with Client(target(server), timeout=10) as client:
        with pytest.raises(errors.LiandongError) as caught:
            client.determine(
                r["type"],
                r.get("facts") or {},
                ruleset=r.get("ruleset", ""),
                version=r.get("version", ""),
                occurred_at=occurred,
            )
    exc = caught.value
    assert type(exc) is CLIENT_ERRORS[want["client"]]
    if want["client"] == "InvalidIncident":
        assert isinstance(exc, errors.InvalidIncident)
        # The client names an input by itself, and the facts as a whole by "".
        assert sorted(f"{v.field}: {v.reason}" for v in exc.violations) == sorted(
            w.removeprefix("incident.facts").removeprefix(".") for w in want["violations"]
        )
    for words in want.get("message", []):
        assert words in exc.message, exc.message


# -- several rule sets claiming one type -------------------------------------------------------------------
@pytest.fixture(scope="module")
def ambiguous(tmp_path_factory: pytest.TempPathFactory, runtime: DurableRuntime) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("ambiguous-rules")
    copy_demo(root, "demo")
    copy_demo(root, "demo-copy")
    with running(root, runtime, metrics_listen="") as svc:
        yield svc


def test_ambiguous_incident_type_is_failed_precondition(ambiguous: Service) -> None:
    """When two rule sets claim the incident type and none is named, the call fails with FAILED_PRECONDITION naming both."""
    with channel(target(ambiguous)) as ch:
        stub = pb_grpc.ResponseServiceStub(ch)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as caught:
            stub.Determine(request("demo", {"deaths": 3}), timeout=10)
        got = details(caught.value)
        assert got.code == grpc.StatusCode.FAILED_PRECONDITION
        assert sorted(got.preconditions) == ["demo", "demo-copy"]
        assert "demo, demo-copy" in got.message and "name one with 'ruleset'" in got.message
        assert got.kinds == ["google.rpc.PreconditionFailure"]
        # Naming one of them answers.
        for name in ("demo", "demo-copy"):
            assert stub.Determine(request("demo", {"deaths": 3}, ruleset=name), timeout=10).ruleset == name


def test_client_ambiguous_incident_type_names_candidates(ambiguous: Service) -> None:
    """The client raises AmbiguousIncidentType whose candidates are both rule sets."""
    with Client(target(ambiguous), timeout=10) as client:
        with pytest.raises(errors.AmbiguousIncidentType) as caught:
            client.determine("demo", {"deaths": 3})
    assert caught.value.candidates == ("demo", "demo-copy")
    assert "demo, demo-copy" in caught.value.message


# -- failures the caller did not cause -------------------------------------------------------------------
class _Exploding:
    """A rule book that fails unexpectedly when asked for an answer, with a message that looks like a stack trace."""

    def __init__(self, real: object) -> None:
        self._real = real

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    def determine(self, *args: object, **kwargs: object) -> object:
        raise RuntimeError('Traceback (most recent call last):\n  File "/secret/path.py", line 1, in boom')

    select = determine  # the service picks the version with select, then evaluates it


def test_unexpected_failure_is_internal_without_details(
    tmp_path: Path, runtime: DurableRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected server failure is INTERNAL with a fixed message; the exception goes to the log, never to the caller."""
    copy_demo(tmp_path)
    with running(tmp_path, runtime, metrics_listen="") as svc, channel(target(svc)) as ch:
        serving = svc.state.serving
        assert serving is not None
        monkeypatch.setattr(svc.state, "_serving", dataclasses.replace(serving, book=_Exploding(serving.book)))
        stub = pb_grpc.ResponseServiceStub(ch)  # type: ignore[no-untyped-call]
        with structlog.testing.capture_logs() as logs:
            with pytest.raises(grpc.RpcError) as caught:
                stub.Determine(request("demo", {"deaths": 3}), timeout=10)
            with pytest.raises(grpc.RpcError) as caught_stream:
                list(stub.DetermineStream(batches([request("demo", {"deaths": 3})]), timeout=10))
        for error in (caught.value, caught_stream.value):
            got = details(error)
            assert got.code == grpc.StatusCode.INTERNAL
            assert got.message == "internal error; see the service log"
            assert got.kinds == []
        internal = [e for e in logs if e["event"] == "internal_error"]
        assert [e["method"] for e in internal] == ["Determine", "DetermineStream"]
        assert all(e.get("exc_info") for e in internal)
        with Client(target(svc), timeout=10, retries=3) as client:
            with pytest.raises(ServiceError) as caught_client:
                client.determine("demo", {"deaths": 3})
        assert caught_client.value.status_code == grpc.StatusCode.INTERNAL


def test_client_does_not_retry_refusals(server: Service) -> None:
    """The client sends a refused request once: only UNAVAILABLE is retried, never INVALID_ARGUMENT or NOT_FOUND."""

    def count(code: str) -> float:
        return sample(server.registry, "liandong_rpc_requests_total", method="Determine", code=code)

    before = {c: count(c) for c in ("INVALID_ARGUMENT", "NOT_FOUND")}
    with Client(target(server), timeout=10, retries=5, backoff=0.01) as client:
        with pytest.raises(errors.InvalidIncident):
            client.determine("demo", {"deaths": -1})
        with pytest.raises(errors.RuleSetNotFound):
            client.determine("demo", {}, version="1.0")
    assert {c: count(c) - before[c] for c in before} == {"INVALID_ARGUMENT": 1, "NOT_FOUND": 1}


def test_request_without_incident_is_invalid_argument(stub: pb_grpc.ResponseServiceStub) -> None:
    """A request with no incident at all is INVALID_ARGUMENT on incident.type, in Determine and DetermineStream."""
    with pytest.raises(grpc.RpcError) as caught:
        stub.Determine(pb.DetermineRequest(ruleset="demo"), timeout=10)
    with pytest.raises(grpc.RpcError) as caught_stream:
        list(stub.DetermineStream(batches([pb.DetermineRequest()]), timeout=10))
    for error in (caught.value, caught_stream.value):
        got = details(error)
        assert got.code == grpc.StatusCode.INVALID_ARGUMENT and [v[0] for v in got.violations] == ["incident.type"]


def test_client_unknown_type_names_the_type(server: Service) -> None:
    """The client's UnknownIncidentType carries the incident type the caller sent."""
    with Client(target(server), timeout=10) as client:
        with pytest.raises(errors.UnknownIncidentType) as caught:
            client.determine("fir", {})
    assert caught.value.incident_type == "fir"


def test_client_not_found_names_the_rule_set(server: Service) -> None:
    """The client's RuleSetNotFound for an unknown version names the rule set the server resolved the type to."""
    with Client(target(server), timeout=10) as client:
        with pytest.raises(errors.RuleSetNotFound) as caught:
            client.determine("fire", {}, version="2023.9")
    assert caught.value.ruleset == "fire-linkage"
