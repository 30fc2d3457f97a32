"""The HTTP/JSON door under /v1: the same answers, codes and details as gRPC, in protobuf's JSON mapping."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from grpc_status import rpc_status

from liandong.document.load import document_paths
from liandong.engine.runtime import DurableRuntime
from liandong.server import config
from liandong.server.app import Service
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.certs import make_certs
from support.data import BUNDLED
from support.servers import LOOPBACK, channel, running, target
from support.web import base_url, call, fixture_requests

CASES = fixture_requests()


@pytest.fixture(scope="module")
def web(runtime: DurableRuntime) -> Iterator[Service]:
    with running(BUNDLED, runtime, http=f"{LOOPBACK}:0") as svc:
        yield svc


@pytest.fixture(scope="module")
def grpc_stub(web: Service) -> Iterator[pb_grpc.ResponseServiceStub]:
    with channel(target(web)) as ch:
        yield pb_grpc.ResponseServiceStub(ch)


def _post(svc: Service, request: pb.DetermineRequest) -> tuple[int, str]:
    reply = call(base_url(svc) + "/v1/determine", json_format.MessageToJson(request).encode("utf-8"))
    return reply.status, reply.text


def _same_answer(grpc_answer: pb.Determination, http_json: str) -> None:
    http_answer = json_format.Parse(http_json, pb.Determination())
    assert http_answer.decision_id and grpc_answer.decision_id
    grpc_answer.ClearField("decision_id")
    http_answer.ClearField("decision_id")
    assert http_answer == grpc_answer


def test_every_bundled_fixture_has_cases() -> None:
    """The comparison below runs over every bundled fixture case, so there must be some of each rule set."""
    assert {note.split(" ")[0] for note, _ in CASES} == {p.parent.name for p in document_paths(BUNDLED)[0]}
    assert len(CASES) > 100


@pytest.mark.parametrize("explain", [False, True], ids=["plain", "explain"])
def test_every_fixture_answers_the_same_over_json_and_grpc(
    web: Service, grpc_stub: pb_grpc.ResponseServiceStub, explain: bool
) -> None:
    """For every bundled fixture case, POST /v1/determine gives the gRPC answer field for field (or the same status and details)."""
    answered = refused = 0
    unwritable = []
    for note, request in CASES:
        request.explain = explain
        try:
            json_format.MessageToJson(request)
        except json_format.SerializeToJsonError:
            # NaN and infinities have no JSON form in a google.protobuf.Value: no curl can send them.
            unwritable.append(note)
            with pytest.raises(grpc.RpcError) as refusal:
                grpc_stub.Determine(request, timeout=10)
            assert refusal.value.code() is grpc.StatusCode.INVALID_ARGUMENT, note
            continue
        status, body = _post(web, request)
        try:
            grpc_answer = grpc_stub.Determine(request, timeout=10)
        except grpc.RpcError as error:
            want = rpc_status.from_call(error)
            assert want is not None, note
            got = json_format.Parse(body, status_pb2.Status())
            assert got == want, note
            assert status == {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.NOT_FOUND: 404}[error.code()], note
            refused += 1
            continue
        assert status == 200, (note, body)
        _same_answer(grpc_answer, body)
        answered += 1
    assert answered > 50 and refused > 0
    assert len(unwritable) <= 3, unwritable


def test_invalid_facts_are_invalid_argument_with_bad_request_as_json(web: Service) -> None:
    """Facts out of range get HTTP 400 and the google.rpc.Status JSON with every BadRequest violation."""
    body = json.dumps({"incident": {"type": "fire", "facts": {"deaths": -3, "serious_injuries": "many"}}})
    reply = call(base_url(web) + "/v1/determine", body.encode())
    assert reply.status == 400 and reply.content_type.startswith("application/json")
    data = reply.json()
    assert data["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    [details] = data["details"]  # type: ignore[misc]
    assert details["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    fields = {v["field"]: v["reason"] for v in details["fieldViolations"]}
    assert fields["incident.facts.deaths"] == "out_of_range"
    assert "incident.facts.serious_injuries" in fields


def test_unknown_rule_set_is_not_found_with_resource_info(web: Service) -> None:
    """GET /v1/rulesets/{unknown} answers 404 with ResourceInfo naming it, as GetRuleSet's NOT_FOUND."""
    reply = call(base_url(web) + "/v1/rulesets/no-such-plan")
    assert reply.status == 404
    [details] = reply.json()["details"]  # type: ignore[misc]
    assert details["@type"].endswith("google.rpc.ResourceInfo") and details["resourceName"] == "no-such-plan"


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"incident": {"type": "fire"}, "nonsense": 1}', b"\xff\xfe"],
    ids=["broken-json", "unknown-field", "not-utf8"],
)
def test_a_body_that_is_not_a_determine_request_is_invalid_argument(web: Service, body: bytes) -> None:
    """A body that protobuf's JSON parser refuses gets 400 with a BadRequest on `request`, never 500."""
    reply = call(base_url(web) + "/v1/determine", body)
    assert reply.status == 400
    [details] = reply.json()["details"]  # type: ignore[misc]
    assert [v["field"] for v in details["fieldViolations"]] == ["request"]


def test_a_body_over_the_message_limit_is_refused(runtime: DurableRuntime) -> None:
    """A JSON body over --max-message-bytes is refused with INVALID_ARGUMENT before it is parsed."""
    with running(BUNDLED, runtime, http=f"{LOOPBACK}:0", max_message_bytes=2048) as svc:
        body = json.dumps({"incident": {"type": "fire", "id": "x" * 4000, "facts": {"deaths": 1}}}).encode()
        reply = call(base_url(svc) + "/v1/determine", body)
        assert reply.status == 400 and "over the limit of 2048" in reply.json()["message"]  # type: ignore[operator]


def test_rule_sets_are_the_grpc_messages(web: Service, grpc_stub: pb_grpc.ResponseServiceStub) -> None:
    """GET /v1/rulesets and /v1/rulesets/{id}?version= are ListRuleSets and GetRuleSet in JSON."""
    listed = json_format.Parse(call(base_url(web) + "/v1/rulesets").text, pb.ListRuleSetsResponse())
    assert listed == grpc_stub.ListRuleSets(pb.ListRuleSetsRequest(), timeout=10)
    for summary in listed.rulesets:
        for info in summary.versions:
            url = f"{base_url(web)}/v1/rulesets/{summary.id}?version={info.version}"
            got = json_format.Parse(call(url).text, pb.RuleSet())
            assert got == grpc_stub.GetRuleSet(
                pb.GetRuleSetRequest(ruleset=summary.id, version=info.version), timeout=10
            )
            assert got.inputs or got.empty_report_meaningful, summary.id  # a plan may condition nothing


def test_wrong_method_is_refused(web: Service) -> None:
    """GET /v1/determine is 405: the door serves Determine on POST only."""
    assert call(base_url(web) + "/v1/determine").status == 405


def test_http_is_off_by_default_and_loopback_unless_tls(tmp_path: Path) -> None:
    """--http is opt-in; off loopback it needs TLS or --allow-plaintext, as the gRPC port does."""
    assert config.load({}, env={}).http == ""
    assert config.load({"http": "127.1:8080"}, env={}).http == "127.0.0.1:8080"
    with pytest.raises(config.ConfigError, match="--http"):
        config.load({"http": "0.0.0.0:8080"}, env={})
    assert config.load({"http": "0.0.0.0:8080", "allow_plaintext": True}, env={}).http == "0.0.0.0:8080"
    assert config.load({}, env={"LIANDONG_HTTP": "127.0.0.1:8081"}).http == "127.0.0.1:8081"


def test_an_address_in_use_stops_the_start(runtime: DurableRuntime, web: Service) -> None:
    """A --http address that cannot be bound stops the start with a message naming it, and frees the gRPC port."""
    from liandong.server.app import StartupError

    with pytest.raises(StartupError, match="cannot serve HTTP"):
        with running(BUNDLED, runtime, http=f"{LOOPBACK}:{web.http_port}"):
            pass


def test_tls_serves_https_and_mutual_tls_needs_a_client_certificate(runtime: DurableRuntime, tmp_path: Path) -> None:
    """With --tls-cert/--tls-key the web port is HTTPS; with --tls-client-ca a client without a certificate is refused."""
    certs = make_certs(tmp_path / "pki")
    flags = dict(http=f"{LOOPBACK}:0", tls_cert=str(certs.server_cert), tls_key=str(certs.server_key))
    trusted = ssl.create_default_context(cafile=str(certs.ca))
    trusted.verify_flags &= ~ssl.VERIFY_X509_STRICT  # the test PKI is minimal (Python 3.13 checks more by default)
    with running(BUNDLED, runtime, **flags) as svc:
        assert call(base_url(svc, "https") + "/v1/rulesets", context=trusted).status == 200
        with pytest.raises(OSError):
            call(base_url(svc, "http") + "/v1/rulesets")
    with running(BUNDLED, runtime, tls_client_ca=str(certs.ca), **flags) as svc:
        with pytest.raises(OSError):
            call(base_url(svc, "https") + "/v1/rulesets", context=trusted)
        trusted.load_cert_chain(str(certs.client_cert), str(certs.client_key))
        assert call(base_url(svc, "https") + "/v1/rulesets", context=trusted).status == 200


def test_stop_closes_the_web_port(runtime: DurableRuntime) -> None:
    """After the service stops, the web port refuses connections: it drains and stops with gRPC."""
    with running(BUNDLED, runtime, http=f"{LOOPBACK}:0") as svc:
        url = base_url(svc) + "/v1/rulesets"
        assert call(url).status == 200
    with pytest.raises(OSError):
        call(url)


def test_json_calls_are_counted_and_decided_like_grpc_calls(runtime: DurableRuntime) -> None:
    """A JSON call is counted under its RPC's name and code, and an answer counts as a decision, as over gRPC."""
    from prometheus_client import CollectorRegistry

    from liandong.server.metrics import DECISIONS, RPC_REQUESTS
    from support.metrics import sample

    registry = CollectorRegistry()
    with running(BUNDLED, runtime, registry=registry, http=f"{LOOPBACK}:0") as svc:
        url = base_url(svc) + "/v1/determine"
        assert call(url, b'{"incident": {"type": "fire", "facts": {"deaths": 3}}}').status == 200
        assert call(url, b'{"incident": {"type": "fire", "facts": {"deaths": -3}}}').status == 400
    assert sample(registry, RPC_REQUESTS + "_total", method="Determine", code="OK") == 1
    assert sample(registry, RPC_REQUESTS + "_total", method="Determine", code="INVALID_ARGUMENT") == 1
    assert sample(registry, DECISIONS + "_total", ruleset="fire-linkage", version="2024.1", level="III") == 1
