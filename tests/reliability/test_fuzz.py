"""Bad input tried for real: hypothesis generates incidents (random types, huge and negative numbers,
NaN/inf, unicode and empty strings, deep nesting, thousands of fields, unknown incident types,
oversized messages) and checks each against the documented rules for inputs (rules/README.md).

Every call ends with an answer exactly when the incident is valid, or with a documented error; the
engine never fails, the server never crashes, and every answer names a version that is loaded.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from liandong.document.model import InputSpec, InputType, RuleSetDocument
from liandong.engine import descriptor, trace
from liandong.engine.descriptor import MAX_FACTS
from liandong.engine.result import Determination, Incident
from liandong.engine.runtime import DurableRuntime
from liandong.errors import InvalidIncident, UnknownIncidentType
from liandong.rulebook import RuleBook
from liandong.server.app import Service
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.data import BUNDLED
from support.messages import answers_of, batches
from support.metrics import sample
from support.rules import copy_demo
from support.servers import LOOPBACK, make_config
from support.status import details

# Repeatable by default (the same inputs every run, as CI needs); LIANDONG_FUZZ_EXPLORE=1 draws new
# ones, ten times as many.
EXPLORE = os.environ.get("LIANDONG_FUZZ_EXPLORE", "") not in ("", "0")
SCALE = 10 if EXPLORE else 1
REASONS = {
    "missing",
    "wrong_type",
    "out_of_range",
    "not_finite",
    "unknown_value",
    "unknown_field",
    "too_long",
    "too_many",
    "empty_report",
    "check_failed",
}
MAX_MESSAGE = 256 * 1024  # the server under test is configured with this --max-message-bytes
TRIED: dict[str, int] = {"engine": 0, "engine_answered": 0, "rpc": 0, "rpc_answered": 0, "stream": 0}


# -- the rule sets under test: every bundled one, plus the demo set (it has string and optional inputs) --
@pytest.fixture(scope="module")
def rules_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz-rules")
    for ruleset in BUNDLED.iterdir():
        if ruleset.is_dir():
            shutil.copytree(ruleset, root / ruleset.name)
    copy_demo(root)
    return root


@pytest.fixture(scope="module")
def book(rules_root: Path, runtime: DurableRuntime) -> RuleBook:
    return RuleBook.load(rules_root, runtime)


def documents(rules_root: Path, runtime: DurableRuntime) -> list[RuleSetDocument]:
    loaded = RuleBook.load(rules_root, runtime)
    return [loaded.versions(name)[-1].document for name in loaded.rulesets()]


# -- what the documentation says is valid (an independent reading of rules/README.md "Inputs") --------
def value_ok(spec: InputSpec, value: object) -> bool:
    if spec.type is InputType.BOOLEAN:
        return isinstance(value, bool)
    if spec.type in (InputType.INTEGER, InputType.NUMBER):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if spec.type is InputType.INTEGER and isinstance(value, float) and not value.is_integer():
            return False
        return not (
            (spec.minimum is not None and value < spec.minimum) or (spec.maximum is not None and value > spec.maximum)
        )
    if not isinstance(value, str):
        return False
    if spec.type is InputType.ENUM:
        return any(value in (v.id, v.label) for v in spec.values)
    return len(value) <= spec.max_length


def expected_valid(doc: RuleSetDocument, facts: Mapping[str, object]) -> bool:
    if len(facts) > MAX_FACTS or any(doc.input(k) is None for k in facts):
        return False
    for spec in doc.inputs:
        value = facts.get(spec.name)
        if value is None:  # null is the same as absent
            if spec.required:
                return False
        elif not value_ok(spec, value):
            return False
    if all(v is None for v in facts.values()) and not doc.empty_report_meaningful:
        return False  # an empty report (rules/README.md, "Empty reports")
    # Checks between inputs hold wherever all their inputs have a value, sent or by default.
    values = {
        spec.name: spec.default if facts.get(spec.name) is None else descriptor.coerce(spec, facts[spec.name])[0]
        for spec in doc.inputs
    }
    given = {name: value for name, value in values.items() if value is not None}
    return all(trace.holds(c.require, given) for c in doc.checks if all(name in given for name in c.inputs))


# -- strategies --------------------------------------------------------------------------------------
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)  # any Unicode that UTF-8 can carry
huge_or_negative = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.sampled_from([0, -1, 2**31, 2**53 + 1, 2**63, 2**64, 10**30])
)
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e-05, 1e16, 5e-324, 1.7976931348623157e308, -0.0, 2.5, 3.0]),
)


def nested(depth: int) -> object:
    value: object = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


junk = st.one_of(
    st.none(),
    st.booleans(),
    huge_or_negative,
    floats,
    text,
    st.just(""),
    st.integers(min_value=1, max_value=30).map(nested),
    st.lists(st.one_of(st.integers(), text), max_size=4),
    st.dictionaries(text, st.integers(), max_size=3),
)


def proper(spec: InputSpec) -> st.SearchStrategy[object]:
    """Values of the input's type, in or near its bounds (so mostly, not always, valid)."""
    if spec.type in (InputType.INTEGER, InputType.NUMBER):
        low = int(spec.minimum) if spec.minimum is not None else -1000
        high = int(spec.maximum) if spec.maximum is not None else 10**12
        if spec.type is InputType.INTEGER:
            return st.one_of(st.integers(low, min(high, 100)), st.integers(low, high))
        return st.one_of(
            st.floats(low, min(high, 1000.0)),
            st.floats(low, float(high)),
            st.sampled_from([1e-05, 1e-320, 1e16, 0.1 + 0.2]).filter(lambda v: low <= v <= high),
        )
    if spec.type is InputType.ENUM:
        return st.sampled_from([v.id for v in spec.values] + [v.label for v in spec.values])
    if spec.type is InputType.STRING:
        return st.text(st.characters(exclude_categories=("Cs",)), max_size=spec.max_length + 1)
    return st.booleans()


def plausible(spec: InputSpec) -> st.SearchStrategy[object]:
    """Values near what the input accepts, valid or just outside it."""
    if spec.type is InputType.BOOLEAN:
        return st.booleans()
    if spec.type in (InputType.INTEGER, InputType.NUMBER):
        low = int(spec.minimum) if spec.minimum is not None else -1000
        high = int(spec.maximum) if spec.maximum is not None else 10**9
        inside: st.SearchStrategy[object] = (
            st.integers(low, high) if spec.type is InputType.INTEGER else st.floats(low, high)
        )
        edges = [b + d for b in (spec.minimum, spec.maximum) if b is not None for d in (-1, -0.5, 0, 0.5, 1)]
        return st.one_of(inside, inside, inside, st.sampled_from(edges or [0]), huge_or_negative, floats)
    if spec.type is InputType.ENUM:
        known = st.sampled_from([v.id for v in spec.values] + [v.label for v in spec.values])
        return st.one_of(known, known, known, text)
    return st.one_of(text, st.integers(spec.max_length - 2, spec.max_length + 2).map(lambda n: "字" * n))


@st.composite
def incidents(
    draw: st.DrawFn, docs: list[RuleSetDocument], struct_safe: bool = False
) -> tuple[str, dict[str, object], RuleSetDocument | None]:
    """(incident type, facts, the document that claims the type or None)."""
    doc = draw(st.sampled_from(docs))
    unknown_type = draw(st.integers(0, 9)) == 0
    incident_type = (
        draw(st.one_of(text, st.sampled_from(["", "Fire", "fire ", "火灾", "flood\x00"])))
        if unknown_type
        else doc.incident_types[0]
    )
    clean = draw(st.booleans())  # half the incidents only hold values of the right type
    facts: dict[str, object] = {}
    for spec in doc.inputs:
        if draw(st.integers(0, 2)) == 0 and not (clean and spec.required):
            continue
        facts[spec.name] = draw(proper(spec) if clean else junk if draw(st.integers(0, 11)) == 0 else plausible(spec))
    if not clean:
        for i in range(draw(st.sampled_from([0] * 8 + [1, 3, MAX_FACTS + 1, 3000]))):
            facts[f"x{i}"] = i
        if draw(st.integers(0, 7)) == 0:
            facts[draw(text)] = draw(junk)
    if struct_safe:
        facts = {k: _struct_safe(v) for k, v in facts.items()}
    claimed = next(
        (d for d in docs if incident_type in d.incident_types), None
    )  # facts may be another set's: still judged by the claimant
    return incident_type, facts, claimed


def _struct_safe(value: object) -> object:
    """What a protobuf Struct carries: numbers as doubles (ints beyond 2**53 get rounded)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return float(value) if abs(value) < 2**1023 else float("inf") * (1 if value > 0 else -1)
    if isinstance(value, list):
        return [_struct_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _struct_safe(v) for k, v in value.items()}
    return value


# -- in the engine: many examples ---------------------------------------------------------------------
ENGINE = settings(
    max_examples=1000 * SCALE,
    deadline=None,
    derandomize=not EXPLORE,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def docs(rules_root: Path, runtime: DurableRuntime) -> list[RuleSetDocument]:
    return documents(rules_root, runtime)


def test_engine_answers_exactly_the_valid_incidents(book: RuleBook, docs: list[RuleSetDocument]) -> None:
    """An incident is answered iff the documented input rules accept it; otherwise a documented refusal, never an engine failure."""
    hashes = {c.document.content_hash for name in book.rulesets() for c in book.versions(name)}

    @ENGINE
    @given(incidents(docs))
    def check(case: tuple[str, dict[str, object], RuleSetDocument | None]) -> None:
        incident_type, facts, doc = case
        TRIED["engine"] += 1
        try:
            det = book.determine(Incident(type=incident_type, facts=facts, id="fuzz"))
        except UnknownIncidentType:
            assert doc is None
            return
        except InvalidIncident as exc:
            assert doc is not None and not expected_valid(doc, facts), f"refused a valid incident: {exc.message}"
            assert exc.violations and all(v.reason in REASONS for v in exc.violations)
            assert all(
                v.field in facts
                or v.field == "facts"
                or (doc.input(v.field) and doc.input(v.field).required)  # type: ignore[union-attr]
                or (v.field == "" and v.reason == "empty_report")
                or (v.reason == "check_failed" and doc.input(v.field))
                for v in exc.violations
            )
            return
        TRIED["engine_answered"] += 1
        assert doc is not None and expected_valid(doc, facts), f"answered an invalid incident: {facts!r}"
        check_answer(det, doc, facts, hashes)

    check()
    assert TRIED["engine_answered"] > 50  # the generator reaches valid incidents, not only refusals


def check_answer(det: Determination, doc: RuleSetDocument, facts: Mapping[str, object], hashes: set[str]) -> None:
    assert det.ruleset == doc.ruleset and det.content_hash in hashes
    for name, value in facts.items():
        if value is not None:
            got = det.facts[name]
            if isinstance(value, str):
                spec = doc.input(name)
                assert spec is not None and (got == value or got == spec.enum_id(value))
            else:
                assert got == value
    if det.level is not None:
        assert det.level.code in {lv.code for lv in doc.levels}
    assert det.applies == bool(det.matched_rules)


# -- over gRPC: the whole path, with Struct conversion and message limits -----------------------------
RPC = settings(
    max_examples=250 * SCALE,
    deadline=None,
    derandomize=not EXPLORE,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def server(rules_root: Path, runtime: DurableRuntime) -> Iterator[Service]:
    svc = Service(make_config(rules_root, max_message_bytes=MAX_MESSAGE), registry=CollectorRegistry(), runtime=runtime)
    svc.start()
    try:
        yield svc
    finally:
        svc.stop(0)


def to_request(incident_type: str, facts: Mapping[str, object], blob: int) -> pb.DetermineRequest | None:
    req = pb.DetermineRequest()
    req.incident.type = incident_type
    req.incident.id = "fuzz"
    try:
        req.incident.facts.update(dict(facts))
        if blob:
            req.incident.facts["padding"] = "x" * blob
    except (ValueError, TypeError):  # the client library cannot even build it: nothing reaches a server
        return None
    return req


def test_rpc_ends_ok_or_with_a_documented_code(server: Service, docs: list[RuleSetDocument]) -> None:
    """Over gRPC every call ends OK (valid incidents) or INVALID_ARGUMENT with BadRequest / RESOURCE_EXHAUSTED for oversized ones; the server keeps serving."""
    hashes = {d.content_hash for d in docs}
    counts = {"ok": 0, "invalid": 0, "too_big": 0}
    channel = grpc.insecure_channel(
        f"{LOOPBACK}:{server.port}", options=[("grpc.max_send_message_length", 4 * MAX_MESSAGE)]
    )
    stub = pb_grpc.ResponseServiceStub(channel)  # type: ignore[no-untyped-call]
    try:

        @RPC
        @given(incidents(docs, struct_safe=True), st.sampled_from([0] * 15 + [MAX_MESSAGE // 2, MAX_MESSAGE + 1]))
        def check(case: tuple[str, dict[str, object], RuleSetDocument | None], blob: int) -> None:
            incident_type, facts, doc = case
            req = to_request(incident_type, facts, blob)
            if req is None:
                return
            TRIED["rpc"] += 1
            try:
                answer = stub.Determine(req, timeout=30)
            except grpc.RpcError as error:
                code = error.code()
                if req.ByteSize() > MAX_MESSAGE:
                    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, error.details())
                    counts["too_big"] += 1
                    return
                assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, error.details())
                assert details(error).fields(), "INVALID_ARGUMENT without BadRequest details"
                assert blob or doc is None or not expected_valid(doc, facts), (
                    f"refused a valid incident: {error.details()}"
                )
                counts["invalid"] += 1
                return
            TRIED["rpc_answered"] += 1
            assert req.ByteSize() <= MAX_MESSAGE and not blob and doc is not None and expected_valid(doc, facts)
            assert answer.content_hash in hashes and answer.ruleset == doc.ruleset and answer.version == doc.version
            counts["ok"] += 1

        check()
    finally:
        channel.close()
    print(f"\nrpc fuzz figures: {counts}")
    assert counts["ok"] > 20 and counts["invalid"] > 20 and counts["too_big"] > 0, counts
    decided = sum(
        sample(server.registry, "liandong_decisions_total", ruleset=d.ruleset, version=d.version, level=lv)
        for d in docs
        for lv in [*(x.code for x in d.levels), "none"]
    )
    assert decided == counts["ok"]  # every answer was counted once; no refused call was decided
    assert sample(server.registry, "liandong_rpc_requests_total", method="Determine", code="INTERNAL") == 0
    with grpc.insecure_channel(f"{LOOPBACK}:{server.port}") as again:
        health = health_pb2_grpc.HealthStub(again).Check(health_pb2.HealthCheckRequest(), timeout=10)  # type: ignore[no-untyped-call]
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_stream_answers_in_order_until_the_first_refusal(server: Service, docs: list[RuleSetDocument]) -> None:
    """A stream of random incidents, in batches of random size, gets one answer per valid incident, in order, and ends with the first refusal's code."""
    channel = grpc.insecure_channel(f"{LOOPBACK}:{server.port}")
    stub = pb_grpc.ResponseServiceStub(channel)  # type: ignore[no-untyped-call]
    try:

        @settings(
            max_examples=60 * SCALE,
            deadline=None,
            derandomize=not EXPLORE,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(
            st.lists(incidents(docs, struct_safe=True), min_size=1, max_size=8), st.integers(min_value=1, max_value=8)
        )
        def check(cases: list[tuple[str, dict[str, object], RuleSetDocument | None]], size: int) -> None:
            requests = [to_request(t, f, 0) for t, f, _ in cases]
            if any(r is None for r in requests):
                return
            TRIED["stream"] += 1
            valid = [d is not None and expected_valid(d, f) for _, f, d in cases]
            expected = valid.index(False) if False in valid else len(valid)
            answers: list[pb.Determination] = []
            try:
                for answer in answers_of(stub.DetermineStream(batches(requests, size), timeout=30)):
                    answers.append(answer)
            except grpc.RpcError as error:
                assert expected < len(valid) and error.code() == grpc.StatusCode.INVALID_ARGUMENT, (
                    error.code(),
                    error.details(),
                )
            else:
                assert expected == len(valid)
            assert len(answers) == expected
            assert [a.ruleset for a in answers] == [d.ruleset for _, _, d in cases[:expected] if d is not None]

        check()
    finally:
        channel.close()
    print(f"\nfuzz figures: {TRIED}")
