"""What fixtures cannot say about the bundled rule sets (issue 10): how each obligation's time is written,
consistently across the three documents, and which units owe the duties the plans bind to 成员单位."""

from __future__ import annotations

import re

import pytest

from liandong.document.load import load_tree
from liandong.document.model import Obligation, Timing
from liandong.engine.result import Determination, Incident
from liandong.engine.runtime import DurableRuntime
from liandong.rulebook import RuleBook
from support.data import ROOT

RULES = ROOT / "rules"
AT_ONCE_WORDS = ("立即", "第一时间", "零时间", "即发即报")
PROMPTLY_WORDS = ("及时", "迅速", "随时")
# N分钟内 / N小时内, 半小时内 (30 minutes).
FIXED_LIMIT = re.compile(r"(\d+|半)(分钟|小时)内")
# 「不得超过2小时」 (生产安全事故报告和调查处理条例 第十一条): 超过 excludes, so exactly the limit is in time.
NOT_OVER_LIMIT = re.compile(r"不得超过(\d+)(分钟|小时)")
SECONDS = {"分钟": 60, "小时": 3600}
# Deadlines on the calendar: N日内 / N天内, N个工作日内, 当天, 每日 with its hour (每日8:00点前);
# 每日 with no hour (每日汇总后报) recurs but gives no deadline.
CALENDAR = re.compile(r"\d+(日|天|个工作日)内|当天|每日\d")
OBLIGATIONS = [(doc.ruleset, o) for doc in load_tree(RULES) for o in doc.obligations]


@pytest.fixture(scope="module")
def book(runtime: DurableRuntime) -> RuleBook:
    return RuleBook.load(RULES, runtime)


def timing_the_words_give(text: str) -> tuple[Timing, int | None]:
    """The timing an obligation's own text gives: 立即-words first, then a calendar deadline, then a fixed
    limit, then 及时-words, else none."""
    if any(w in text for w in AT_ONCE_WORDS):
        return Timing.AT_ONCE, 0
    if CALENDAR.search(text):
        return Timing.CALENDAR, None
    limit = FIXED_LIMIT.search(text) or NOT_OVER_LIMIT.search(text)
    if limit:
        count, unit = limit.group(1), limit.group(2)
        return Timing.WITHIN, (SECONDS[unit] // 2 if count == "半" else int(count) * SECONDS[unit])
    if any(w in text for w in PROMPTLY_WORDS):
        return Timing.PROMPTLY, None
    return Timing.NONE, None


@pytest.mark.parametrize(("ruleset", "obligation"), OBLIGATIONS, ids=[f"{r}: {o.id}" for r, o in OBLIGATIONS])
def test_every_obligation_is_timed_by_its_own_words(ruleset: str, obligation: Obligation) -> None:
    """立即/第一时间/零时间/即发即报 are at once, N日内/工作日内/当天/每日 a calendar deadline (每日 with its hour), N分钟内/N小时内 a fixed limit, 及时/迅速/随时 promptly with no number, and no word no time, in every document alike."""
    assert (obligation.timing, obligation.within_seconds) == timing_the_words_give(obligation.text), obligation.text


def test_the_word_rule_tells_the_four_kinds_apart() -> None:
    """The reading the documents are held to distinguishes at once, a limit, promptly and no time."""
    assert timing_the_words_give("应在第一时间赶赴现场") == (Timing.AT_ONCE, 0)
    assert timing_the_words_give('重大突发性事件要确保"零时间"电话报告') == (Timing.AT_ONCE, 0)
    assert timing_the_words_give("在20分钟内答复对方") == (Timing.WITHIN, 1200)
    assert timing_the_words_give("1小时内上报文字信息") == (Timing.WITHIN, 3600)
    assert timing_the_words_give("每级上报的时间不得超过2小时") == (Timing.WITHIN, 7200)
    assert timing_the_words_give("重要紧急信息半小时内报送") == (Timing.WITHIN, 1800)
    assert timing_the_words_give("力争实现批示当天即报送落实情况,最迟不得超过24小时") == (Timing.CALENDAR, None)
    assert timing_the_words_give("应当在10个工作日内向投诉人反馈") == (Timing.CALENDAR, None)
    assert timing_the_words_give("以书面形式于每日8:00点前上报综合组") == (Timing.CALENDAR, None)
    assert timing_the_words_give("重要情况应随时通报") == (Timing.PROMPTLY, None)
    assert timing_the_words_give("组织本部门联动力量迅速出动") == (Timing.PROMPTLY, None)
    assert timing_the_words_give("严格落实24小时领导带班双人双岗值班制度") == (Timing.NONE, None)


def _obligation(det: Determination, oid: str) -> tuple[Timing, int | None, list[str]]:
    (o,) = [o for o in det.obligations if o.id == oid]
    return o.timing, o.within_seconds, [u.id for u in o.who]


def test_fire_duties_of_member_units_exclude_the_county_and_its_hq(book: RuleBook) -> None:
    """At 较大, 第四条(二)3 and 第八条 bind every member unit called, including 县自然资源局, and neither 县政府 nor the HQ that gives the order."""
    det = book.determine(Incident(type="fire", facts={"deaths": 3}))
    members = [u.id for u in det.units if u.id not in ("county_government", "county_hq")]
    assert {"county_government", "county_hq", "natural_resources"} <= {u.id for u in det.units}
    assert _obligation(det, "report_on_order") == (Timing.AT_ONCE, 0, members)
    assert _obligation(det, "dispatch_on_order") == (Timing.PROMPTLY, None, members)
    assert _obligation(det, "hq_setup")[2] == ["county_government"]
    assert "natural_resources" in _obligation(det, "hq_tasking")[2]


def test_fire_duties_at_a_general_fire_bind_the_units_called(book: RuleBook) -> None:
    """At 一般, the brigade and each unit a situation calls owe 第八条 at once; no 县政府, HQ or 县自然资源局 takes part."""
    det = book.determine(Incident(type="fire", facts={"deaths": 2, "hazardous_materials": True}))
    assert [u.id for u in det.units] == ["emergency_bureau", "fire_brigade"]
    assert _obligation(det, "report_on_order") == (Timing.AT_ONCE, 0, ["emergency_bureau", "fire_brigade"])


def test_flood_breach_leaders_go_at_once_and_set_up_the_headquarters_promptly(book: RuleBook) -> None:
    """「在第一时间全部赶赴救援现场」 is at once and 「迅速成立」 promptly; the Ⅰ reports are at once by phone and within 1 hour in writing."""
    det = book.determine(Incident(type="flood", facts={"dike_status": "breach"}))
    assert _obligation(det, "leaders_to_scene") == (Timing.AT_ONCE, 0, ["county_leadership"])
    assert _obligation(det, "set_up_breach_hqs") == (Timing.PROMPTLY, None, ["county_leadership"])
    assert _obligation(det, "report_phone_zero_time")[:2] == (Timing.AT_ONCE, 0)
    assert _obligation(det, "report_written_1h")[:2] == (Timing.WITHIN, 3600)


def test_township_village_duties_are_timed_as_the_plan_words_them(book: RuleBook) -> None:
    """At 属地处置: 第一时间 and 立即 at once, the reply within 20 minutes, 及时 promptly, and 二、6 with no time."""
    det = book.determine(Incident(type="mass_incident", facts={"participants": 50}))
    assert _obligation(det, "village_first_response")[:2] == (Timing.AT_ONCE, 0)
    assert _obligation(det, "neighbours_muster")[:2] == (Timing.AT_ONCE, 0)
    assert _obligation(det, "reply_20min")[:2] == (Timing.WITHIN, 1200)
    assert _obligation(det, "notify_and_report")[:2] == (Timing.PROMPTLY, None)
    assert _obligation(det, "handle_per_plans")[:2] == (Timing.NONE, None)


@pytest.mark.parametrize(
    ("facts", "code"), [({"flood_magnitude": "major"}, "II"), ({"flood_magnitude": "extraordinary"}, "I")]
)
def test_flood_reporting_limits_cite_the_clause_that_sets_them(
    book: RuleBook, facts: dict[str, object], code: str
) -> None:
    """Ⅱ and Ⅰ answer with 篇7 三(二)三, where 「零时间」 and 「1小时内」 are written, among their level's clauses, and with 一(一)三、三(一)一 nowhere."""
    det = book.determine(Incident(type="flood", facts=facts))
    assert det.level is not None and det.level.code == code
    clauses = [c.clause for c in det.level.citations]
    assert any(c.startswith("篇7 三(二)三 ") for c in clauses), clauses
    assert not any("三(一)一" in c for c in clauses), clauses
    reporting = {
        o.id: [c.clause for c in o.citations]
        for o in det.obligations
        if o.id in ("report_phone_zero_time", "report_written_1h")
    }
    assert reporting == {"report_phone_zero_time": ["篇7 三(二)三"], "report_written_1h": ["篇7 三(二)三"]}
