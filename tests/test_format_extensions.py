"""Format extensions of issue 10: several citations, three kinds of obligation timing, member units only."""

from __future__ import annotations

from liandong.client import determination_from_proto
from liandong.document.model import Citation, RuleSetDocument, Timing
from liandong.engine.result import Determination
from liandong.render import to_json, to_text
from liandong.rulebook import RuleBook
from liandong.server.answers import AnswerCodec
from liandong.server.convert import ruleset_to_proto
from liandong.v1 import liandong_pb2 as pb
from support.probe import inline_rule_set

DOCUMENT = """
ruleset: extensions
version: "1"
title: 扩展格式
source: {plan: 测试预案, location: tests}
effective_from: 2024-01-01
incident_types: [probe]
boundary: civil-code
inputs:
  x: {type: integer, min: 0, default: 0, meaning: 规模}
levels:
  - {code: IV, name: 一般, rank: 1, citation: [第一条, 第二条]}
units:
  - {id: hq, name: 指挥部, duties: 下达指令, citation: 第三条, member: false}
  - {id: police, name: 公安局, duties: 交通管制, citation: [第三条, {document: 公安预案, clause: 二}]}
  - {id: health, name: 卫健局, duties: 救治, citation: 第三条, member: true}
groups:
  - {id: rescue, name: 救援组, lead: police, members: [police, health], duties: 救援, citation: [第五条, 第六条]}
obligations:
  - {id: report_at_once, text: 立即报告, who: [hq], within: at_once, citation: 第八条}
  - {id: act_promptly, text: 及时处置, who: participating, within: promptly, citation: [第四条(二)3, 第八条]}
  - {id: reply_20m, text: 20分钟内答复, who: [hq], within: 20m, citation: 第九条}
  - {id: members_duty, text: 成员单位履职, who: members, citation: [第四条(二)3, 第八条]}
  - {id: no_time, text: 做好保障, who: [police], citation: 第十条}
rules:
  - id: any
    title: 任何事件
    citation: [第七条, {document: 等级标准, clause: 一般}]
    when: {x: {gte: 0}}
    then:
      level: IV
      lead: hq
      groups: [rescue]
      obligations: [report_at_once, act_promptly, reply_20m, members_duty, no_time]
"""


doc, book, det = inline_rule_set(DOCUMENT, "extensions.yaml", {"x": 1})


def test_a_citation_list_keeps_every_clause_in_order(doc: RuleSetDocument) -> None:
    """A list of citations is read as every clause in the order written; a single string stays one citation."""
    rule = doc.rules[0]
    assert rule.citations == (Citation("测试预案", "第七条"), Citation("等级标准", "一般"))
    assert rule.citation == Citation("测试预案", "第七条")
    assert doc.levels[0].citations == (Citation("测试预案", "第一条"), Citation("测试预案", "第二条"))
    assert doc.units[0].citations == (Citation("测试预案", "第三条"),)
    assert doc.units[1].citations == (Citation("测试预案", "第三条"), Citation("公安预案", "二"))
    assert [c.clause for c in doc.obligations[1].citations] == ["第四条(二)3", "第八条"]


def test_answers_carry_every_citation(det: Determination) -> None:
    """Rules, levels, units, groups and obligations in an answer carry all their clauses, the first also as `citation`."""
    assert [c.clause for c in det.matched_rules[0].citations] == ["第七条", "一般"]
    assert det.matched_rules[0].citation.clause == "第七条"
    assert det.level is not None and [c.clause for c in det.level.citations] == ["第一条", "第二条"]
    police = next(u for u in det.units if u.id == "police")
    assert [str(c) for c in police.citations] == ["测试预案 第三条", "公安预案 二"]
    assert [c.clause for c in det.groups[0].citations] == ["第五条", "第六条"]
    promptly = next(o for o in det.obligations if o.id == "act_promptly")
    assert [c.clause for c in promptly.citations] == [
        "第四条(二)3",
        "第八条",
    ] and promptly.citation.clause == "第四条(二)3"


def test_three_kinds_of_timing_stay_distinct(det: Determination) -> None:
    """at_once is due at once (zero), promptly has no number, a limit has its seconds, and no `within` is no time."""
    timing = {o.id: (o.timing, o.within_seconds, o.within_text) for o in det.obligations}
    assert timing["report_at_once"] == (Timing.AT_ONCE, 0, "")
    assert timing["act_promptly"] == (Timing.PROMPTLY, None, "")
    assert timing["reply_20m"] == (Timing.WITHIN, 1200, "20m")
    assert timing["no_time"] == (Timing.NONE, None, "")


def test_members_excludes_bodies_that_are_not_member_units(det: Determination) -> None:
    """`who: members` names the participating member units only; `participating` names every participating unit."""
    assert [u.id for u in det.units] == ["hq", "police", "health"]
    owed = {o.id: [u.id for u in o.who] for o in det.obligations}
    assert owed["members_duty"] == ["police", "health"]
    assert owed["act_promptly"] == ["hq", "police", "health"]
    assert [u.member for u in det.units] == [False, True, True]


def test_proto_answer_carries_citations_timing_and_membership(book: RuleBook, det: Determination) -> None:
    """The serialized answer has every citation, the timing enum (zero within only for at_once) and each unit's membership."""
    codec = AnswerCodec(book.active("extensions"))
    wire = codec.wire(det, "d1")
    assert wire == codec.message(det, "d1", False).SerializeToString()
    msg = pb.Determination.FromString(wire)
    by_id = {o.id: o for o in msg.obligations}
    assert (
        by_id["report_at_once"].timing == pb.Obligation.TIMING_AT_ONCE
        and by_id["report_at_once"].HasField("within")
        and by_id["report_at_once"].within.seconds == 0
    )
    assert by_id["act_promptly"].timing == pb.Obligation.TIMING_PROMPTLY and not by_id["act_promptly"].HasField(
        "within"
    )
    assert by_id["reply_20m"].timing == pb.Obligation.TIMING_WITHIN and by_id["reply_20m"].within.seconds == 1200
    assert by_id["no_time"].timing == pb.Obligation.TIMING_UNSPECIFIED and not by_id["no_time"].HasField("within")
    assert [c.clause for c in by_id["act_promptly"].citations] == ["第四条(二)3", "第八条"]
    assert [w.id for w in by_id["members_duty"].who] == ["police", "health"]
    assert [c.clause for c in msg.matched_rules[0].citations] == ["第七条", "一般"] and msg.matched_rules[
        0
    ].citation.clause == "第七条"
    assert [c.clause for c in msg.level.citations] == ["第一条", "第二条"]
    assert [c.clause for c in msg.groups[0].citations] == ["第五条", "第六条"]
    assert [(u.id, u.member) for u in msg.participating_units] == [("hq", False), ("police", True), ("health", True)]
    assert [c.document for c in msg.participating_units[1].citations] == ["测试预案", "公安预案"]
    back = determination_from_proto(msg)
    assert back.obligations == det.obligations and back.units == det.units and back.matched_rules == det.matched_rules


def test_get_ruleset_lists_every_citation_and_membership(book: RuleBook) -> None:
    """GetRuleSet's rules, levels, units and groups carry all their citations, and units their membership."""
    rs = ruleset_to_proto(book.active("extensions"), [], True)
    assert [c.clause for c in rs.rules[0].citations] == ["第七条", "一般"]
    assert [c.clause for c in rs.levels[0].citations] == ["第一条", "第二条"]
    assert [(u.id, u.member, len(u.citations)) for u in rs.units] == [
        ("hq", False, 1),
        ("police", True, 2),
        ("health", True, 1),
    ]
    assert [c.clause for c in rs.groups[0].citations] == ["第五条", "第六条"]


def test_text_shows_each_timing_and_every_clause(det: Determination) -> None:
    """The CLI text says 立即/at once, 及时/promptly (no time) or the limit, nothing for no time, and lists every clause."""
    lines = to_text(det).splitlines()
    line = {
        o: next(x for x in lines if text in x)
        for o, text in (
            ("at_once", "立即报告"),
            ("promptly", "及时处置"),
            ("limit", "20分钟内答复"),
            ("none", "做好保障"),
        )
    }
    assert "立即/at once" in line["at_once"]
    assert "及时/promptly (no time)" in line["promptly"] and "within" not in line["promptly"]
    assert "within 20m" in line["limit"]
    assert "within" not in line["none"] and "立即" not in line["none"] and "promptly" not in line["none"]
    assert "(第四条(二)3; 第八条)" in line["promptly"]
    assert any("any: 任何事件 — 测试预案 第七条; 等级标准 一般" in x for x in lines)
    assert '"timing": "promptly"' in to_json(det)
