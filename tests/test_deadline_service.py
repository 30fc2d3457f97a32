"""Issue 14 over gRPC: Determine, ListRuleSets and GetRuleSet carry the bundled plans' clocks."""

from __future__ import annotations

from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc

RULE_SETS = ("township-mass-incident", "flood-control")


def test_determine_shows_the_reply_clock_from_the_request(stub: pb_grpc.ResponseServiceStub) -> None:
    """The 20-minute reply is due 20 minutes from the neighbour's request, worded as the plan words it."""
    incident = pb.Incident(id="i1", type="mass_incident")
    incident.facts.update({"participants": 50})
    det = stub.Determine(pb.DetermineRequest(incident=incident), timeout=10)
    reply = next(o for o in det.obligations if o.id == "reply_20min")
    assert reply.timing == pb.Obligation.TIMING_WITHIN and reply.within.seconds == 1200
    assert (reply.deadline.kind, reply.deadline.start_event, reply.deadline.duration.seconds) == (
        pb.Deadline.KIND_ELAPSED,
        "request_received",
        1200,
    )
    assert reply.deadline.wording == "接到请求后20分钟内" and reply.deadline.end_included
    first = next(o for o in det.obligations if o.id == "village_first_response")
    assert first.deadline.kind == pb.Deadline.KIND_AT_ONCE and first.deadline.start_event == "incident_reported"


def test_list_and_get_describe_the_clocks(stub: pb_grpc.ResponseServiceStub) -> None:
    """ListRuleSets names each version's start events; GetRuleSet lists each obligation's deadline, follow-ups included."""
    listed = {s.id: s for s in stub.ListRuleSets(pb.ListRuleSetsRequest(), timeout=10).rulesets}
    assert list(listed["township-mass-incident"].versions[0].start_events) == [
        "incident_reported",
        "request_received",
    ]
    assert list(listed["flood-control"].versions[0].start_events) == ["incident_reported"]
    rs = stub.GetRuleSet(pb.GetRuleSetRequest(ruleset="flood-control"), timeout=10)
    by_id = {o.id: o for o in rs.obligations}
    assert by_id["report_followups"].deadline.repeat == pb.Deadline.REPEAT_CONTINUING
    assert by_id["report_followups"].deadline.wording == "随后续报,直至事件结束"
    assert by_id["report_written_1h"].deadline.duration.seconds == 3600
    assert by_id["report_disaster_info"].deadline.kind == pb.Deadline.KIND_PROMPTLY
    assert by_id["joint_consultation"].deadline.kind == pb.Deadline.KIND_UNSPECIFIED
    assert [w.id for w in by_id["report_written_1h"].who] == ["emergency_office", "townships", "departments"]
