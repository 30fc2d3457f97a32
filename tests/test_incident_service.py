"""IncidentService in-process with an injected clock: the township story, the override rule, clocks,
watch resumption, the bad-input list with exact codes, identities and roles, metrics."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from liandong.engine.runtime import DurableRuntime
from liandong.server import metrics as names
from liandong.v1 import incidents_pb2 as ipb
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.incidents import T0, ManualClock, facts, incident_service, kind, obligation, requested, stub
from support.metrics import sample
from support.servers import channel, target
from support.status import details

CROWD = "mass_incident"
REPLY = "reply_20min"


def _open(st: object, incident_id: str = "t1", participants: int = 80) -> ipb.IncidentState:
    return st.Report(  # type: ignore[attr-defined, no-any-return]
        ipb.ReportRequest(
            incident_id=incident_id,
            type=CROWD,
            facts=facts(participants=participants, local_forces_can_control=False),
            reporter="村委会",
            start_events=requested(),
        )
    )


def test_township_story_in_process(runtime: DurableRuntime) -> None:
    """The township story: 镇级 with the 20-minute reply due, acknowledged, 县级, lowered by a commander, 市级 despite the override, closed; every event on one watch stream in order."""
    clock = ManualClock()
    registry = CollectorRegistry()
    with incident_service(runtime, clock, registry) as svc, channel(target(svc)) as ch:
        st = stub(ch)
        watched: list[ipb.IncidentEvent] = []
        done = threading.Event()

        def watch() -> None:
            for e in st.WatchIncidents(ipb.WatchIncidentsRequest(), timeout=60):
                watched.append(e)
                if kind(e) == "closed":
                    done.set()
                    return

        th = threading.Thread(target=watch)
        th.start()

        s = _open(st)
        assert (s.rules_level.code, s.command_level.level.code, s.change) == (
            "township",
            "township",
            ipb.LEVEL_CHANGE_ESCALATED,
        )
        assert s.ruleset == "township-mass-incident" and s.ruleset_version == "2024.1"
        assert s.determination.level.code == "township" and s.facts["participants"] == 80
        reply = obligation(s, REPLY)
        assert reply.state == ipb.TrackedObligation.STATE_PENDING
        assert reply.due_at.ToDatetime(tzinfo=dt.UTC) == T0 + dt.timedelta(minutes=20)
        owed_by = reply.who[0].id

        clock.advance(minutes=5)
        s = st.Acknowledge(ipb.AcknowledgeRequest(incident_id="t1", obligation_id=REPLY, unit=owed_by, note="已答复"))
        assert obligation(s, REPLY).state == ipb.TrackedObligation.STATE_MET

        clock.advance(minutes=30)
        assert svc.clocks is not None and svc.clocks.run_once() == 3  # the at-once duties, after 5 minutes' grace
        s = st.Report(ipb.ReportRequest(incident_id="t1", facts=facts(participants=150)))
        assert (s.rules_level.code, s.command_level.level.code, s.change) == (
            "county",
            "county",
            ipb.LEVEL_CHANGE_ESCALATED,
        )
        assert "county_leading_group" in [u.id for u in s.units_added]
        assert obligation(s, REPLY).state == ipb.TrackedObligation.STATE_MET  # still met, not restarted

        s = st.SetCommandLevel(
            ipb.SetCommandLevelRequest(incident_id="t1", level="township", by="总指挥", reason="事态已趋缓")
        )
        assert (s.rules_level.code, s.command_level.level.code, s.change) == (
            "county",
            "township",
            ipb.LEVEL_CHANGE_LOWERED,
        )
        assert s.command_level.overridden and s.command_level.reason == "事态已趋缓"
        assert s.command_level.authority.clause == "四、2"

        clock.advance(hours=4)
        s = st.Report(ipb.ReportRequest(incident_id="t1", facts=facts(participants=600)))
        assert (s.rules_level.code, s.command_level.level.code, s.change) == (
            "city",
            "city",
            ipb.LEVEL_CHANGE_ESCALATED,
        )
        assert not s.command_level.overridden

        s = st.Close(ipb.CloseRequest(incident_id="t1", by="镇党委、政府", reason="响应终止"))
        assert s.status == ipb.INCIDENT_STATUS_CLOSED
        clock.advance(days=1)
        assert svc.clocks.run_once() == 0  # closed: no clock fires
        assert done.wait(30)
        th.join(10)

        record = st.GetIncident(ipb.GetIncidentRequest(incident_id="t1"))
        calls = [h.kind for h in record.history if h.kind != "overdue"]
        assert calls == ["report", "acknowledge", "report", "override", "report", "close"]
        # The at-once duties (five minutes of grace) fell overdue as the clock moved; the reply was met.
        overdue = [e.obligation.id for e in watched if kind(e) == "obligation_overdue"]
        assert sorted(overdue) == ["neighbours_muster", "prepare_on_request", "village_first_response"]
        assert [e.sequence for e in record.events] == [e.sequence for e in watched]
        assert [e.sequence for e in watched] == sorted({e.sequence for e in watched})
        levels = [(e.to_level.code, e.changed_by) for e in watched if kind(e) == "level_changed"]
        assert levels == [("township", "rules"), ("county", "rules"), ("township", "override"), ("city", "rules")]
        assert [kind(e) for e in watched][0] == "opened" and kind(watched[-1]) == "closed"
        assert any(kind(e) == "obligation_met" and e.obligation.id == REPLY for e in watched)
        assert any(kind(e) == "units_added" for e in watched)
        assert (
            sample(
                registry,
                names.INCIDENT_LEVEL_CHANGES + "_total",
                ruleset="township-mass-incident",
                direction="escalated",
            )
            == 3
        )
        assert (
            sample(
                registry, names.INCIDENT_LEVEL_CHANGES + "_total", ruleset="township-mass-incident", direction="lowered"
            )
            == 1
        )


def test_overdue_by_injected_clock_and_resumed_watch(runtime: DurableRuntime) -> None:
    """The reply not acknowledged: overdue exactly once when the injected clock passes its due time; a watcher resuming from its last sequence gets the rest, nothing repeated."""
    clock = ManualClock()
    registry = CollectorRegistry()
    with incident_service(runtime, clock, registry, at_once_grace=1500) as svc, channel(target(svc)) as ch:
        st = stub(ch)
        _open(st)
        seen = []
        for e in st.WatchIncidents(ipb.WatchIncidentsRequest(), timeout=30):
            seen.append(e)
            if e.sequence == 3:
                break
        assert svc.clocks is not None
        clock.advance(minutes=19, seconds=59)
        assert svc.clocks.run_once() == 0
        clock.advance(seconds=1)
        assert svc.clocks.run_once() == 0  # exactly 20 minutes: 以内 counts that instant as in time
        clock.advance(seconds=1)
        assert svc.clocks.run_once() == 1  # the 20-minute reply; the at-once duties have 25 minutes of grace
        assert svc.clocks.run_once() == 0
        state = st.GetIncident(ipb.GetIncidentRequest(incident_id="t1")).state
        assert obligation(state, REPLY).state == ipb.TrackedObligation.STATE_OVERDUE
        clock.advance(minutes=5)
        assert svc.clocks.run_once() == 3  # the at-once duties, 25 minutes after the report
        last = st.GetIncident(ipb.GetIncidentRequest(incident_id="t1")).events[-1].sequence
        rest = []
        for e in st.WatchIncidents(ipb.WatchIncidentsRequest(after_sequence=seen[-1].sequence), timeout=30):
            rest.append(e)
            if e.sequence == last:
                break
        sequences = [e.sequence for e in seen + rest]
        assert sequences == list(range(1, last + 1))
        overdue = [e for e in rest if kind(e) == "obligation_overdue"]
        assert [e.obligation.id for e in overdue][0] == REPLY and not any(e.late for e in overdue)
        assert sample(registry, names.OBLIGATIONS_OVERDUE + "_total", ruleset="township-mass-incident") == 4
        assert sample(registry, names.TIMER_LAG + "_count") == 4
        assert sample(registry, names.INCIDENTS_OPEN, ruleset="township-mass-incident", level="township") == 1
        _open(st, "t2", participants=600)
        listed = st.ListIncidents(ipb.ListIncidentsRequest(level_at_least="county"))
        assert [s.incident_id for s in listed.incidents] == ["t2"]
        page = st.ListIncidents(ipb.ListIncidentsRequest(status=ipb.INCIDENT_STATUS_OPEN, page_size=1))
        assert [s.incident_id for s in page.incidents] == ["t1"] and page.next_page_token
        rest = st.ListIncidents(ipb.ListIncidentsRequest(page_size=1, page_token=page.next_page_token))
        assert [s.incident_id for s in rest.incidents] == ["t2"] and not rest.next_page_token
        assert st.ListIncidents(ipb.ListIncidentsRequest(status=ipb.INCIDENT_STATUS_CLOSED)).incidents == []


def _code(fn: object, *args: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args)  # type: ignore[operator]
    return info.value


def test_bad_input_gets_exact_codes(runtime: DurableRuntime) -> None:
    """Unknown id NOT_FOUND; report after close FAILED_PRECONDITION; unknown level, changed type, missing type, lowering without reason INVALID_ARGUMENT; bad facts exactly as Determine."""
    clock = ManualClock()
    with incident_service(runtime, clock) as svc, channel(target(svc)) as ch:
        st = stub(ch)
        for call, req in (
            (st.GetIncident, ipb.GetIncidentRequest(incident_id="nope")),
            (st.SetCommandLevel, ipb.SetCommandLevelRequest(incident_id="nope", level="city", by="x")),
            (st.Acknowledge, ipb.AcknowledgeRequest(incident_id="nope", obligation_id=REPLY, unit="u")),
            (st.Close, ipb.CloseRequest(incident_id="nope", by="x")),
        ):
            assert _code(call, req).code() == grpc.StatusCode.NOT_FOUND
        first = _code(st.Report, ipb.ReportRequest(incident_id="t2", facts=facts(participants=1)))
        assert details(first).fields() == [("type", "missing")]
        _open(st)
        changed = _code(st.Report, ipb.ReportRequest(incident_id="t1", type="fire", facts=facts(participants=1)))
        assert (changed.code(), details(changed).fields()) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            [("type", "type_changed")],
        )
        unknown = _code(st.SetCommandLevel, ipb.SetCommandLevelRequest(incident_id="t1", level="national", by="x"))
        assert (unknown.code(), details(unknown).fields()) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            [("level", "unknown_level")],
        )
        lower = _code(st.SetCommandLevel, ipb.SetCommandLevelRequest(incident_id="t1", level="local", by="x"))
        assert (lower.code(), details(lower).fields()) == (grpc.StatusCode.INVALID_ARGUMENT, [("reason", "missing")])
        bad = {"participants": -3, "local_forces_can_control": "maybe"}
        via_report = _code(st.Report, ipb.ReportRequest(incident_id="t1", facts=facts(**bad)))
        request = pb.DetermineRequest(incident=pb.Incident(type=CROWD, facts=facts(**bad)))
        via_determine = _code(pb_grpc.ResponseServiceStub(ch).Determine, request)  # type: ignore[no-untyped-call]
        assert via_report.code() == via_determine.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(via_report).violations == details(via_determine).violations
        assert st.GetIncident(ipb.GetIncidentRequest(incident_id="t1")).state.version == 1  # nothing changed
        st.Close(ipb.CloseRequest(incident_id="t1", by="x"))
        after = _code(st.Report, ipb.ReportRequest(incident_id="t1", facts=facts(participants=5)))
        assert after.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert _code(st.Close, ipb.CloseRequest(incident_id="t1", by="x")).code() == grpc.StatusCode.FAILED_PRECONDITION


def test_out_of_range_times_are_invalid_argument_on_their_field(runtime: DurableRuntime) -> None:
    """A Timestamp protobuf cannot convert (nanos -1, seconds past year 9999) or a fact name over its bound, in any incident call, is INVALID_ARGUMENT on its field as in Determine, and changes nothing."""
    clock = ManualClock()
    with incident_service(runtime, clock) as svc, channel(target(svc)) as ch:
        st = stub(ch)
        _open(st)
        bad_nanos = {"seconds": 1, "nanos": -1}
        bad_seconds = {"seconds": 253_402_300_800}
        more = facts(participants=90)
        cases = (
            (st.Report, ipb.ReportRequest(incident_id="t1", facts=more, reported_at=bad_nanos), "reported_at"),
            (
                st.Report,
                ipb.ReportRequest(incident_id="t1", facts=more, start_events={"order_issued": bad_seconds}),
                "start_events.order_issued",
            ),
            (
                st.SetCommandLevel,
                ipb.SetCommandLevelRequest(incident_id="t1", level="city", by="x", at=bad_nanos),
                "at",
            ),
            (
                st.Acknowledge,
                ipb.AcknowledgeRequest(incident_id="t1", obligation_id=REPLY, unit="u", at=bad_seconds),
                "at",
            ),
            (st.Close, ipb.CloseRequest(incident_id="t1", by="x", at=bad_nanos), "at"),
            (st.ListIncidents, ipb.ListIncidentsRequest(updated_since=bad_seconds), "updated_since"),
        )
        for call, req, field in cases:
            refused = _code(call, req)
            got = (refused.code(), details(refused).fields())
            assert got == (grpc.StatusCode.INVALID_ARGUMENT, [(field, "out_of_range")]), (field, got)
        long_name = _code(st.Report, ipb.ReportRequest(incident_id="t1", facts=facts(**{"x" * 200: 1})))
        assert (long_name.code(), details(long_name).fields()) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            [("facts." + "x" * 32 + "…", "too_long")],
        )
        assert st.GetIncident(ipb.GetIncidentRequest(incident_id="t1")).state.version == 1  # nothing changed


def test_unreachable_store_is_unavailable_and_determine_answers(runtime: DurableRuntime) -> None:
    """With its PostgreSQL store unreachable the service starts, incident calls answer UNAVAILABLE, Determine answers."""
    registry = CollectorRegistry()
    with (
        incident_service(runtime, ManualClock(), registry, store="postgresql://nobody@127.0.0.1:1/none") as svc,
        channel(target(svc)) as ch,
    ):
        assert _code(_open, stub(ch)).code() == grpc.StatusCode.UNAVAILABLE
        answer = pb_grpc.ResponseServiceStub(ch).Determine(  # type: ignore[no-untyped-call]
            pb.DetermineRequest(incident=pb.Incident(type=CROWD, facts=facts(participants=80)))
        )
        assert answer.level.code == "local"
        assert sample(registry, names.STORE_ERRORS + "_total", operation="migrate") >= 1


TOKENS = {
    "reporter": "reporter-token-0123456789",
    "commander": "commander-token-0123456789",
    "ack": "ack-token-0123456789ab",
}


def _identities(tmp_path: Path) -> str:
    path = tmp_path / "identities.yaml"
    path.write_text(
        f"""callers:
  - name: 村委会
    token: {TOKENS["reporter"]}
    roles: [report]
  - name: 镇综治办
    token: {TOKENS["ack"]}
    roles: [acknowledge]
    units: [township_linkage_office]
  - name: 总指挥
    token: {TOKENS["commander"]}
    roles: [report, command]
""",
        encoding="utf-8",
    )
    return str(path)


def test_roles_decide_who_may_change_an_incident(runtime: DurableRuntime, tmp_path: Path) -> None:
    """Without a token UNAUTHENTICATED; a reporter's SetCommandLevel PERMISSION_DENIED and nothing changes; the commander's goes through, recorded under its name."""
    with incident_service(runtime, ManualClock(), identities=_identities(tmp_path)) as svc, channel(target(svc)) as ch:
        st = stub(ch)

        def as_(who: str) -> tuple[tuple[str, str]]:
            return (("authorization", f"Bearer {TOKENS[who]}"),)

        assert _code(_open, st).code() == grpc.StatusCode.UNAUTHENTICATED
        wrong = _code(
            lambda: st.GetIncident(
                ipb.GetIncidentRequest(incident_id="t1"), metadata=(("authorization", "Bearer wrong-token-0123456789"),)
            )
        )
        assert wrong.code() == grpc.StatusCode.UNAUTHENTICATED
        st.Report(
            ipb.ReportRequest(
                incident_id="t1", type=CROWD, facts=facts(participants=80, local_forces_can_control=False)
            ),
            metadata=as_("reporter"),
        )
        denied = _code(
            lambda: st.SetCommandLevel(
                ipb.SetCommandLevelRequest(incident_id="t1", level="city", by="x"), metadata=as_("reporter")
            )
        )
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        assert _code(lambda: st.Close(ipb.CloseRequest(incident_id="t1", by="x"), metadata=as_("reporter"))).code() == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        not_their_unit = _code(
            lambda: st.Acknowledge(
                ipb.AcknowledgeRequest(incident_id="t1", obligation_id=REPLY, unit="township_leading_group"),
                metadata=as_("ack"),
            )
        )
        assert not_their_unit.code() == grpc.StatusCode.PERMISSION_DENIED
        record = st.GetIncident(ipb.GetIncidentRequest(incident_id="t1"), metadata=as_("reporter"))
        assert record.state.version == 1 and not record.state.command_level.overridden
        s = st.SetCommandLevel(
            ipb.SetCommandLevelRequest(incident_id="t1", level="city", by="总指挥 张三"), metadata=as_("commander")
        )
        assert s.command_level.level.code == "city" and s.command_level.caller == "总指挥"
        history = st.GetIncident(ipb.GetIncidentRequest(incident_id="t1"), metadata=as_("commander")).history
        assert [(h.kind, h.caller) for h in history] == [("report", "村委会"), ("override", "总指挥")]


def test_served_with_health_and_reflection_beside_response_service(runtime: DurableRuntime) -> None:
    """IncidentService answers health checks under its own name and is listed by reflection, on the ResponseService port."""
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    from support.servers import SERVING, health_status

    with incident_service(runtime, ManualClock()) as svc, channel(target(svc)) as ch:
        assert health_status(ch, "liandong.v1.IncidentService") == SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(ch)  # type: ignore[no-untyped-call]
        (answer,) = list(reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        assert "liandong.v1.IncidentService" in {s.name for s in answer.list_services_response.service}


def test_mutual_tls_subject_is_an_identity(runtime: DurableRuntime, tmp_path: Path) -> None:
    """Over mutual TLS the client certificate's subject names the caller: its roles apply and the history records it."""
    from liandong.tls import channel_credentials
    from support.certs import make_certs

    pki = make_certs(tmp_path / "pki")
    identities = tmp_path / "identities.yaml"
    identities.write_text(
        "callers:\n  - name: 调度台\n    subject: CN=dispatch-client\n    roles: [report]\n", encoding="utf-8"
    )
    flags = dict(
        tls_cert=str(pki.server_cert),
        tls_key=str(pki.server_key),
        tls_client_ca=str(pki.ca),
        identities=str(identities),
    )
    with incident_service(runtime, ManualClock(), **flags) as svc:
        creds = channel_credentials(str(pki.ca), str(pki.client_cert), str(pki.client_key))
        ch = grpc.secure_channel(f"localhost:{svc.port}", creds)
        try:
            st = stub(ch)
            _open(st)
            denied = _code(
                lambda: st.Close(ipb.CloseRequest(incident_id="t1", by="x")),
            )
            assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
            history = st.GetIncident(ipb.GetIncidentRequest(incident_id="t1")).history
            assert [(h.kind, h.caller) for h in history] == [("report", "调度台")]
        finally:
            ch.close()
