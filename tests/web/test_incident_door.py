"""IncidentService on the /v1 JSON door: the same states, codes and details as gRPC, with the same identities and roles."""

from __future__ import annotations

import json
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from prometheus_client import CollectorRegistry

from liandong.engine.runtime import DurableRuntime
from liandong.server import metrics as names
from liandong.server.app import Service
from liandong.v1 import incidents_pb2 as ipb
from support.certs import make_certs
from support.incidents import ManualClock, facts, incident_service, kind, obligation, requested, stub
from support.metrics import sample
from support.servers import LOOPBACK, channel, target
from support.status import details
from support.web import Reply, base_url, call

CROWD = "mass_incident"
REPLY = "reply_20min"


def http(svc: Service, path: str, message: Message | None = None, token: str = "", method: str = "") -> Reply:
    """One call to the door, with a bearer token if given; an HTTP error status is a Reply too."""
    body = json_format.MessageToJson(message).encode("utf-8") if message is not None else None
    request = urllib.request.Request(
        base_url(svc) + path, data=body, method=method or ("POST" if body is not None else "GET")
    )
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return Reply(reply.status, reply.headers.get("Content-Type", ""), reply.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.headers.get("Content-Type", ""), exc.read())


def state_of(reply: Reply) -> ipb.IncidentState:
    assert reply.status == 200, reply.text
    return json_format.Parse(reply.body, ipb.IncidentState())


def same_state(grpc_state: ipb.IncidentState, http_state: ipb.IncidentState) -> None:
    """Equal but for the incident id and the determination's decision id (fresh on every answer)."""
    a, b = ipb.IncidentState(), ipb.IncidentState()
    a.CopyFrom(grpc_state)
    b.CopyFrom(http_state)
    for s in (a, b):
        s.incident_id = ""
        s.determination.ClearField("decision_id")
        s.determination.incident_id = ""
    assert b == a


def refused(reply: Reply) -> tuple[int, grpc.StatusCode, str, list[tuple[str, str, str]]]:
    """(HTTP status, gRPC code, message, BadRequest violations) of a refused call's google.rpc.Status JSON."""
    st = json_format.Parse(reply.body, status_pb2.Status())
    violations: list[tuple[str, str, str]] = []
    for detail in st.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            violations.extend((v.field, v.description, v.reason) for v in bad.field_violations)
    code = next(c for c in grpc.StatusCode if c.value[0] == st.code)
    return reply.status, code, st.message, violations


def grpc_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def test_an_incidents_life_over_http_matches_grpc(runtime: DurableRuntime) -> None:
    """Report, acknowledge, escalate, override, list, get and close over /v1 answer the very states gRPC answers for a twin incident."""
    clock = ManualClock()
    with incident_service(runtime, clock, http=f"{LOOPBACK}:0") as svc, channel(target(svc)) as ch:
        st = stub(ch)
        first = ipb.ReportRequest(
            type=CROWD, facts=facts(participants=80, local_forces_can_control=False), start_events=requested()
        )
        g = st.Report(ipb.ReportRequest(incident_id="g1", **_fields(first)))
        h = state_of(http(svc, "/v1/incidents/h1:report", first))
        same_state(g, h)
        assert (
            h.command_level.level.code == "township"
            and obligation(h, REPLY).state == ipb.TrackedObligation.STATE_PENDING
        )

        unit = obligation(h, REPLY).who[0].id
        clock.advance(minutes=5)
        ack = ipb.AcknowledgeRequest(obligation_id=REPLY, unit=unit, note="已答复")
        g = st.Acknowledge(ipb.AcknowledgeRequest(incident_id="g1", **_fields(ack)))
        h = state_of(http(svc, "/v1/incidents/h1:acknowledge", ack))
        same_state(g, h)
        assert obligation(h, REPLY).state == ipb.TrackedObligation.STATE_MET

        more = ipb.ReportRequest(facts=facts(participants=150))
        g = st.Report(ipb.ReportRequest(incident_id="g1", **_fields(more)))
        h = state_of(http(svc, "/v1/incidents/h1:report", more))
        same_state(g, h)
        assert (h.command_level.level.code, h.change) == ("county", ipb.LEVEL_CHANGE_ESCALATED)

        override = ipb.SetCommandLevelRequest(level="city", by="总指挥 张三", reason="舆情升温")
        g = st.SetCommandLevel(ipb.SetCommandLevelRequest(incident_id="g1", **_fields(override)))
        h = state_of(http(svc, "/v1/incidents/h1:setCommandLevel", override))
        same_state(g, h)
        assert h.command_level.overridden and h.command_level.caller == "local"

        listed = http(svc, "/v1/incidents?status=INCIDENT_STATUS_OPEN&type=mass_incident&levelAtLeast=city&pageSize=1")
        assert listed.status == 200
        page = json_format.Parse(listed.body, ipb.ListIncidentsResponse())
        want = st.ListIncidents(
            ipb.ListIncidentsRequest(status=ipb.INCIDENT_STATUS_OPEN, type=CROWD, level_at_least="city", page_size=1)
        )
        assert [s.incident_id for s in page.incidents] == [s.incident_id for s in want.incidents] == ["g1"]
        assert page.next_page_token == want.next_page_token != ""
        rest = json_format.Parse(
            http(svc, f"/v1/incidents?pageSize=1&pageToken={page.next_page_token}&level_at_least=city").body,
            ipb.ListIncidentsResponse(),
        )
        assert [s.incident_id for s in rest.incidents] == ["h1"]

        record = json_format.Parse(http(svc, "/v1/incidents/h1").body, ipb.IncidentRecord())
        twin = st.GetIncident(ipb.GetIncidentRequest(incident_id="g1"))
        assert [(x.kind, x.caller, x.detail) for x in record.history] == [
            (x.kind, x.caller, x.detail) for x in twin.history
        ]
        assert [(kind(e), e.to_level.code) for e in record.events] == [(kind(e), e.to_level.code) for e in twin.events]
        assert "level_changed" in [kind(e) for e in record.events]

        close = ipb.CloseRequest(by="总指挥 张三", reason="处置完毕")
        g = st.Close(ipb.CloseRequest(incident_id="g1", **_fields(close)))
        h = state_of(http(svc, "/v1/incidents/h1:close", close))
        same_state(g, h)
        assert h.status == ipb.INCIDENT_STATUS_CLOSED


def _fields(message: Message) -> dict[str, object]:
    """The set fields of a request, to build its twin for another incident."""
    return {f.name: v for f, v in message.ListFields()}


def test_refusals_carry_the_grpc_codes_and_details(runtime: DurableRuntime) -> None:
    """A first report without a type, an unknown incident, a level the plan lacks: the HTTP status, code, message and violations gRPC gives."""
    with incident_service(runtime, ManualClock(), http=f"{LOOPBACK}:0") as svc, channel(target(svc)) as ch:
        st = stub(ch)
        untyped = ipb.ReportRequest(facts=facts(participants=80))
        got = refused(http(svc, "/v1/incidents/x1:report", untyped))
        want = details(grpc_error(lambda: st.Report(ipb.ReportRequest(incident_id="x1", facts=facts(participants=80)))))
        assert got == (400, want.code, want.message, want.violations)
        assert want.code == grpc.StatusCode.INVALID_ARGUMENT and want.violations[0][0] == "type"

        got = refused(http(svc, "/v1/incidents/nobody"))
        want = details(grpc_error(lambda: st.GetIncident(ipb.GetIncidentRequest(incident_id="nobody"))))
        assert got[:3] == (404, grpc.StatusCode.NOT_FOUND, want.message)

        st.Report(ipb.ReportRequest(incident_id="t1", type=CROWD, facts=facts(participants=80)))
        no_level = ipb.SetCommandLevelRequest(level="galaxy", by="x")
        got = refused(http(svc, "/v1/incidents/t1:setCommandLevel", no_level))
        want = details(
            grpc_error(lambda: st.SetCommandLevel(ipb.SetCommandLevelRequest(incident_id="t1", level="galaxy", by="x")))
        )
        assert got == (400, want.code, want.message, want.violations)

        status, code, message, _ = refused(http(svc, "/v1/incidents/t1:explode", ipb.CloseRequest()))
        assert (status, code) == (404, grpc.StatusCode.NOT_FOUND) and "explode" in message
        status, code, message, violations = refused(
            http(svc, "/v1/incidents/t1:close", ipb.CloseRequest(incident_id="t2", by="x"))
        )
        assert (status, code, violations[0][0]) == (400, grpc.StatusCode.INVALID_ARGUMENT, "incident_id")
        status, code, _, violations = refused(http(svc, "/v1/incidents?pageSize=many"))
        assert (status, code, violations[0][0]) == (400, grpc.StatusCode.INVALID_ARGUMENT, "request")
        status, code, _, violations = refused(http(svc, "/v1/incidents?pageSize=9999"))
        assert (status, code, violations[0][0]) == (400, grpc.StatusCode.INVALID_ARGUMENT, "page_size")


TOKENS = {"reporter": "reporter-token-0123456789", "commander": "commander-token-0123456789"}


def test_http_callers_are_known_by_bearer_token_with_their_roles(runtime: DurableRuntime, tmp_path: Path) -> None:
    """With an identities file: no or an unknown token is 401, a reporter's override 403 and nothing changes, the commander's goes through under its name."""
    path = tmp_path / "identities.yaml"
    path.write_text(
        f"""callers:
  - name: 村委会
    token: {TOKENS["reporter"]}
    roles: [report]
  - name: 总指挥
    token: {TOKENS["commander"]}
    roles: [report, command]
""",
        encoding="utf-8",
    )
    with incident_service(runtime, ManualClock(), http=f"{LOOPBACK}:0", identities=str(path)) as svc:
        report = ipb.ReportRequest(type=CROWD, facts=facts(participants=80, local_forces_can_control=False))
        assert refused(http(svc, "/v1/incidents/t1:report", report))[:2] == (401, grpc.StatusCode.UNAUTHENTICATED)
        assert refused(http(svc, "/v1/incidents", token="wrong-token-0123456789"))[:2] == (
            401,
            grpc.StatusCode.UNAUTHENTICATED,
        )
        opened = state_of(http(svc, "/v1/incidents/t1:report", report, token=TOKENS["reporter"]))
        override = ipb.SetCommandLevelRequest(level="city", by="总指挥 张三")
        status, code, message, _ = refused(
            http(svc, "/v1/incidents/t1:setCommandLevel", override, token=TOKENS["reporter"])
        )
        assert (status, code) == (403, grpc.StatusCode.PERMISSION_DENIED) and "command" in message
        unchanged = json_format.Parse(
            http(svc, "/v1/incidents/t1", token=TOKENS["reporter"]).body, ipb.IncidentRecord()
        ).state
        assert unchanged.version == opened.version
        done = state_of(http(svc, "/v1/incidents/t1:setCommandLevel", override, token=TOKENS["commander"]))
        assert (done.command_level.level.code, done.command_level.caller) == ("city", "总指挥")


def test_watch_streams_incident_events_as_server_sent_events(runtime: DurableRuntime) -> None:
    """GET /v1/incidents:watch sends each IncidentEvent as JSON with its sequence as the event id, as WatchIncidents streams them."""
    with incident_service(runtime, ManualClock(), http=f"{LOOPBACK}:0") as svc, channel(target(svc)) as ch:
        st = stub(ch)
        st.Report(
            ipb.ReportRequest(
                incident_id="w1", type=CROWD, facts=facts(participants=80, local_forces_can_control=False)
            )
        )
        st.Report(ipb.ReportRequest(incident_id="w1", facts=facts(participants=150)))
        stored = len(st.GetIncident(ipb.GetIncidentRequest(incident_id="w1")).events)
        watching = st.WatchIncidents(ipb.WatchIncidentsRequest(filter=ipb.IncidentFilter(incident_id="w1")), timeout=30)
        want = [next(watching) for _ in range(stored)]
        watching.cancel()
        request = urllib.request.Request(base_url(svc) + "/v1/incidents:watch?incidentId=w1")
        got: list[tuple[str, ipb.IncidentEvent]] = []
        with urllib.request.urlopen(request, timeout=10) as stream:
            assert stream.headers.get("Content-Type", "").startswith("text/event-stream")
            event_id = ""
            while len(got) < len(want):  # bounded: the events already stored, then the socket timeout
                line = stream.readline().decode("utf-8")
                assert line, "the stream ended early"
                if line.startswith("id: "):
                    event_id = line[4:].strip()
                elif line.startswith("data: "):
                    got.append((event_id, json_format.Parse(line[6:], ipb.IncidentEvent())))
        assert [e for _, e in got] == want
        assert [int(i) for i, _ in got] == [e.sequence for e in want]
        assert [kind(e) for e in want].count("level_changed") == 2


def test_watch_refuses_an_unknown_kind_with_an_error_event(runtime: DurableRuntime) -> None:
    """An unknown event kind ends the stream with one `error` event carrying the INVALID_ARGUMENT status."""
    with incident_service(runtime, ManualClock(), http=f"{LOOPBACK}:0") as svc:
        reply = http(svc, "/v1/incidents:watch?kinds=exploded")
        lines = reply.text.splitlines()
        assert "event: error" in lines
        data = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
        assert data["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "exploded" in data["message"]


def test_without_identities_https_callers_are_not_local(runtime: DurableRuntime, tmp_path: Path) -> None:
    """Over TLS without --identities nobody is `local`: every incident call on the HTTPS door is 401, while Determine's door still answers."""
    certs = make_certs(tmp_path / "pki")
    trusted = ssl.create_default_context(cafile=str(certs.ca))
    trusted.verify_flags &= ~ssl.VERIFY_X509_STRICT  # the test PKI is minimal (Python 3.13 checks more by default)
    flags = dict(http=f"{LOOPBACK}:0", tls_cert=str(certs.server_cert), tls_key=str(certs.server_key))
    with incident_service(runtime, ManualClock(), **flags) as svc:
        url = base_url(svc, "https")
        report = ipb.ReportRequest(type=CROWD, facts=facts(participants=80))
        body = json_format.MessageToJson(report).encode("utf-8")
        assert refused(call(url + "/v1/incidents/t1:report", body, context=trusted))[:2] == (
            401,
            grpc.StatusCode.UNAUTHENTICATED,
        )
        assert refused(call(url + "/v1/incidents", context=trusted))[:2] == (401, grpc.StatusCode.UNAUTHENTICATED)
        assert call(url + "/v1/rulesets", context=trusted).status == 200


def test_a_watch_ends_when_its_client_goes(runtime: DurableRuntime) -> None:
    """Closing the event stream ends the WatchIncidents call behind it (counted OK), instead of leaving its thread waiting for events."""
    registry = CollectorRegistry()
    with incident_service(runtime, ManualClock(), registry, http=f"{LOOPBACK}:0") as svc:
        stream = urllib.request.urlopen(base_url(svc) + "/v1/incidents:watch", timeout=10)
        assert stream.readline() == b": watching\n"
        assert sample(registry, names.RPC_REQUESTS + "_total", method="WatchIncidents", code="OK") == 0
        stream.close()
        pause = threading.Event()
        for _ in range(200):  # bounded: 10 s at most; ends as soon as the call is counted
            if sample(registry, names.RPC_REQUESTS + "_total", method="WatchIncidents", code="OK") == 1:
                break
            pause.wait(0.05)
        assert sample(registry, names.RPC_REQUESTS + "_total", method="WatchIncidents", code="OK") == 1
