"""One medical dispute through its clocks (issue 14): IncidentService in-process, an injected clock,
gRPC stubs. A complaint on 2026-09-30 opens it; the 10-working-day feedback falls due at 24:00 on
2026-10-20 Beijing time, across National Day and the 调休 Saturday 10-10."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from google.protobuf import timestamp_pb2

from liandong.engine.runtime import DurableRuntime
from liandong.v1 import incidents_pb2 as ipb
from support.incidents import ManualClock, facts, incident_service, kind, obligation, stub
from support.servers import channel, target

BEIJING = dt.timezone(dt.timedelta(hours=8))
COMPLAINT = dt.datetime(2026, 9, 30, 15, 0, tzinfo=BEIJING)
# 24:00 on 2026-10-20 in Beijing: 10-01..10-07 are not counted, the 调休 Saturday 10-10 is.
FEEDBACK_DUE = dt.datetime(2026, 10, 20, 16, 0, tzinfo=dt.UTC)
FEEDBACK = "feedback_10wd"
AT_ONCE = "report_to_head"
PENDING = ipb.TrackedObligation.STATE_PENDING
MET = ipb.TrackedObligation.STATE_MET
OVERDUE = ipb.TrackedObligation.STATE_OVERDUE
PROMPTLY = ipb.TrackedObligation.STATE_PROMPTLY


def _complaint(st: object, incident_id: str) -> ipb.IncidentState:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(COMPLAINT)
    return st.Report(  # type: ignore[attr-defined, no-any-return]
        ipb.ReportRequest(
            incident_id=incident_id,
            type="medical_dispute",
            facts=facts(multi_department=True),
            reporter="医院医患关系办公室",
            start_events={"complaint_received": stamp},
        )
    )


def _move(clock: ManualClock, moment: dt.datetime) -> None:
    clock.advance(seconds=(moment - clock()).total_seconds())


def _due(o: ipb.TrackedObligation) -> dt.datetime:
    return o.due_at.ToDatetime(tzinfo=dt.UTC)


def _overdue_events(st: object, incident_id: str) -> list[str]:
    record = st.GetIncident(ipb.GetIncidentRequest(incident_id=incident_id))  # type: ignore[attr-defined]
    return [e.obligation.id for e in record.events if kind(e) == "obligation_overdue"]


def test_medical_dispute_feedback_met_across_national_day(runtime: DurableRuntime) -> None:
    """A multi-department complaint on 2026-09-30 makes the 10-working-day feedback due at 24:00 Beijing on 2026-10-20; it does not fire a second before, and an acknowledgement then meets it."""
    clock = ManualClock(COMPLAINT.astimezone(dt.UTC))
    with incident_service(runtime, clock) as svc, channel(target(svc)) as ch:
        st = stub(ch)
        s = _complaint(st, "md1")
        assert s.ruleset == "medical-dispute" and s.ruleset_version == "2024.1"
        assert not s.HasField("rules_level") and s.determination.applies  # applies, no level
        feedback = obligation(s, FEEDBACK)
        assert feedback.state == PENDING and feedback.within == "10wd"
        assert _due(feedback) == FEEDBACK_DUE
        # 24:00 itself is in time (the last day runs to its end): late from the next instant.
        assert feedback.overdue_at.ToDatetime(tzinfo=dt.UTC) == FEEDBACK_DUE + dt.timedelta(microseconds=1)
        assert feedback.who == []  # the plan names no one who gives the feedback
        # The at-once report up the chain is due at the report itself, overdue after the grace.
        first = obligation(s, AT_ONCE)
        assert (first.state, _due(first)) == (PENDING, clock())
        assert first.overdue_at.ToDatetime(tzinfo=dt.UTC) == clock() + dt.timedelta(seconds=300)
        # Duties with no time stated have no clock.
        assert {o.id for o in s.obligations if o.state == PROMPTLY} == {
            "head_reports_up",
            "investigate",
            "explain_and_calm",
        }
        assert "feedback_5d" not in {o.id for o in s.obligations}  # the 10-working-day clause takes it out

        clock.advance(minutes=4)
        s = st.Acknowledge(
            ipb.AcknowledgeRequest(incident_id="md1", obligation_id=AT_ONCE, unit="responsible_person", note="已报告")
        )
        assert obligation(s, AT_ONCE).state == MET

        _move(clock, FEEDBACK_DUE - dt.timedelta(seconds=1))
        assert svc.clocks is not None and svc.clocks.run_once() == 0
        s = st.GetIncident(ipb.GetIncidentRequest(incident_id="md1")).state
        assert obligation(s, FEEDBACK).state == PENDING

        # `who` is empty, so Acknowledge takes any unit the caller may act for; it still needs one named.
        with pytest.raises(grpc.RpcError) as refused:
            st.Acknowledge(ipb.AcknowledgeRequest(incident_id="md1", obligation_id=FEEDBACK))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        s = st.Acknowledge(
            ipb.AcknowledgeRequest(
                incident_id="md1", obligation_id=FEEDBACK, unit="patient_relations_office", note="已向投诉人反馈"
            )
        )
        met = obligation(s, FEEDBACK)
        assert (met.state, met.met_by) == (MET, "patient_relations_office")
        assert met.met_at.ToDatetime(tzinfo=dt.UTC) == FEEDBACK_DUE - dt.timedelta(seconds=1)

        clock.advance(days=30)
        assert svc.clocks.run_once() == 0
        assert _overdue_events(st, "md1") == []


def test_medical_dispute_unanswered_feedback_overdue_once(runtime: DurableRuntime) -> None:
    """A dispute left unanswered has its at-once report overdue after the grace and its feedback overdue once past 24:00 on 2026-10-20, and never again."""
    clock = ManualClock(COMPLAINT.astimezone(dt.UTC))
    with incident_service(runtime, clock) as svc, channel(target(svc)) as ch:
        st = stub(ch)
        _complaint(st, "md2")
        assert svc.clocks is not None
        clock.advance(minutes=5, seconds=1)
        assert svc.clocks.run_once() == 1  # the at-once report up the chain, after 300 s of grace
        assert _overdue_events(st, "md2") == [AT_ONCE]

        _move(clock, FEEDBACK_DUE - dt.timedelta(seconds=1))
        assert svc.clocks.run_once() == 0
        _move(clock, FEEDBACK_DUE + dt.timedelta(seconds=1))
        assert svc.clocks.run_once() == 1
        assert svc.clocks.run_once() == 0
        clock.advance(days=30)
        assert svc.clocks.run_once() == 0
        assert _overdue_events(st, "md2") == [AT_ONCE, FEEDBACK]
        s = st.GetIncident(ipb.GetIncidentRequest(incident_id="md2")).state
        assert obligation(s, FEEDBACK).state == OVERDUE
