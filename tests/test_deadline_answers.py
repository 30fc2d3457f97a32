"""Issue 14: each obligation's clock in the answer, on the wire, back in the client, in GetRuleSet and in text."""

from __future__ import annotations

from liandong.client import determination_from_proto
from liandong.document.model import DeadlineKind, Repeat, Timing
from liandong.engine import workdays
from liandong.engine.result import Determination
from liandong.render import to_json, to_text
from liandong.rulebook import RuleBook
from liandong.server.answers import AnswerCodec
from liandong.server.convert import ruleset_to_proto, version_info
from liandong.v1 import liandong_pb2 as pb
from support.probe import inline_rule_set

DOCUMENT = """
ruleset: clocks
version: "1"
title: 时限
source: {plan: 测试预案, location: tests}
effective_from: 2024-01-01
incident_types: [probe]
boundary: civil-code
inputs:
  x: {type: integer, min: 0, default: 0, meaning: 规模}
units:
  - {id: office, name: 办公室, duties: 报告, citation: 一}
  - {id: clinic, name: 医教科, duties: 反馈, citation: 一}
obligations:
  - {id: reply, text: 20分钟内答复, who: [office], within: 20m, starts: request_received, citation: 一}
  - {id: feedback, text: 10个工作日内反馈, who: [clinic], within: 10wd, starts: complaint_received, citation: 一}
  - {id: simple, text: 5日内反馈, who: [clinic], within: 5d, starts: complaint_received, citation: 一}
  - {id: answer, text: 批示当天报送, who: [office], within: same_day, latest: 24h, starts: instruction_received, citation: 一}
  - {id: daily, text: 每日8:00点前书面上报, who: participating, by: "08:00", every: day, citation: 一}
  - {id: followups, text: 随后报送详细情况, who: [office], every: continuing, citation: 一}
  - {id: at_once, text: 立即报告, who: [office], within: at_once, starts: order_issued, citation: 一}
  - {id: promptly, text: 及时通报, who: [office], within: promptly, citation: 一}
rules:
  - id: all
    title: 全部
    citation: 一
    when: {all: []}
    then: {obligations: [reply, feedback, simple, answer, daily, followups, at_once, promptly]}
"""


doc, book, det = inline_rule_set(DOCUMENT, "clocks.yaml", {"x": 1})


def test_the_answer_carries_each_clock(det: Determination) -> None:
    """Each obligation of the answer has its start event, kind, numbers and words as the document writes them."""
    by_id = {o.id: o for o in det.obligations}
    assert (by_id["feedback"].timing, by_id["feedback"].within_text, by_id["feedback"].within_seconds) == (
        Timing.CALENDAR,
        "10wd",
        None,
    )
    d = by_id["feedback"].deadline
    assert (d.kind, d.days, d.start, d.wording) == (
        DeadlineKind.WORKING_DAYS,
        10,
        "complaint_received",
        "接到投诉后10个工作日内",
    )
    assert by_id["answer"].deadline.latest_seconds == 86400
    assert (by_id["daily"].deadline.repeat, by_id["daily"].deadline.time_of_day) == (Repeat.DAILY, "08:00")
    assert by_id["followups"].timing is Timing.NONE and by_id["followups"].deadline.repeat is Repeat.CONTINUING
    assert by_id["reply"].timing is Timing.WITHIN and by_id["reply"].within_seconds == 1200


def test_wire_answer_is_byte_identical_and_structured(book: RuleBook, det: Determination) -> None:
    """The pre-serialized answer equals SerializeToString and carries each Deadline; the client reads back the same answer."""
    codec = AnswerCodec(book.active("clocks"))
    wire = codec.wire(det, "d1")
    assert wire == codec.message(det, "d1", False).SerializeToString()
    msg = pb.Determination.FromString(wire)
    by_id = {o.id: o for o in msg.obligations}
    feedback = by_id["feedback"]
    assert feedback.timing == pb.Obligation.TIMING_CALENDAR and not feedback.HasField("within")
    assert feedback.deadline.kind == pb.Deadline.KIND_WORKING_DAYS and feedback.deadline.days == 10
    assert feedback.deadline.start_event == "complaint_received" and feedback.deadline.written == "10wd"
    assert feedback.deadline.calendar_known_until == workdays.known_years()[1]
    assert by_id["reply"].deadline.duration.seconds == 1200 and by_id["reply"].deadline.calendar_known_until == 0
    assert by_id["answer"].deadline.latest.seconds == 86400 and by_id["answer"].deadline.end_included
    assert by_id["daily"].deadline.repeat == pb.Deadline.REPEAT_DAILY and by_id["daily"].deadline.time_of_day == "08:00"
    assert by_id["daily"].deadline.wording == "每日8:00前,直至事件结束"
    assert by_id["followups"].deadline.repeat == pb.Deadline.REPEAT_CONTINUING
    assert by_id["at_once"].deadline.kind == pb.Deadline.KIND_AT_ONCE and by_id["at_once"].within.seconds == 0
    assert by_id["promptly"].deadline.kind == pb.Deadline.KIND_PROMPTLY and not by_id["promptly"].HasField("within")
    assert determination_from_proto(msg).obligations == det.obligations


def test_an_old_server_answer_still_reads(det: Determination) -> None:
    """An answer without `deadline` (an older server) reads back with a deadline from its timing enum."""
    msg = pb.Determination(
        obligations=[
            pb.Obligation(id="a", timing=pb.Obligation.TIMING_AT_ONCE, within={"seconds": 0}),
            pb.Obligation(id="b", timing=pb.Obligation.TIMING_WITHIN, within={"seconds": 1200}),
        ]
    )
    back = {o.id: o for o in determination_from_proto(msg).obligations}
    assert back["a"].deadline.kind is DeadlineKind.AT_ONCE
    assert (back["b"].deadline.kind, back["b"].deadline.seconds, back["b"].within_text) == (
        DeadlineKind.ELAPSED,
        1200,
        "20m",
    )


def test_get_ruleset_and_list_describe_the_clocks(book: RuleBook) -> None:
    """GetRuleSet lists every obligation with its Deadline, and the version names the events that start its clocks."""
    compiled = book.active("clocks")
    rs = ruleset_to_proto(compiled, [], True)
    by_id = {o.id: o for o in rs.obligations}
    assert list(by_id) == ["reply", "feedback", "simple", "answer", "daily", "followups", "at_once", "promptly"]
    assert by_id["simple"].deadline.kind == pb.Deadline.KIND_CALENDAR_DAYS and by_id["simple"].deadline.days == 5
    assert [w.id for w in by_id["feedback"].who] == ["clinic"] and list(by_id["daily"].who) == []
    assert list(version_info(compiled, True).start_events) == [
        "incident_reported",
        "request_received",
        "order_issued",
        "instruction_received",
        "complaint_received",
    ]


def test_text_and_json_show_the_deadline_as_worded(det: Determination) -> None:
    """The CLI text shows each calendar or recurring deadline in words with its clock; JSON carries the structure."""
    lines = to_text(det).splitlines()
    feedback = next(x for x in lines if "10个工作日内反馈" in x)
    assert "时限 接到投诉后10个工作日内 [clock: complaint_received]" in feedback
    assert "时限 每日8:00前,直至事件结束" in next(x for x in lines if "每日8:00点前书面上报" in x)
    assert "within 20m [clock: request_received]" in next(x for x in lines if "20分钟内答复" in x)
    assert "立即/at once [clock: order_issued]" in next(x for x in lines if "立即报告" in x)
    assert "时限" not in next(x for x in lines if "及时通报" in x)
    assert '"kind": "working_days"' in to_json(det) and '"start": "complaint_received"' in to_json(det)
