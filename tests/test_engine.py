"""Evaluation through durable-rules: how fired rules combine, no-match answers, explain, long runs."""

from __future__ import annotations

import dataclasses
import gc
import subprocess
import sys
import tracemalloc

import pytest

from liandong.engine.result import Incident
from liandong.engine.runtime import DurableRuntime
from liandong.errors import EngineFailure
from liandong.rulebook import RuleBook


def determine(book: RuleBook, **facts: object) -> object:
    return book.determine(Incident(type="demo", facts=facts, id="t"), explain=True)


def test_highest_level_wins_and_lists_are_unions(demo_book: RuleBook) -> None:
    """With several rules firing, the highest level wins and units, groups, obligations are merged in catalogue order."""
    det = demo_book.determine(Incident(type="demo", facts={"deaths": 12, "loss_yuan": 20_000_000, "hazmat": True}))
    assert det.level is not None and det.level.code == "II"
    assert [r.id for r in det.matched_rules] == ["grade-III", "grade-II", "hazmat", "not-above-warning"]
    assert det.lead is not None and det.lead.id == "hq"
    assert det.command_tier == "市指挥部"  # from the most senior rule that sets it
    assert [c.who for c in det.commanders] == ["副县长"]  # only grade-III sets commanders
    assert [u.id for u in det.units] == ["brigade", "hq", "chem", "police"]  # catalogue order, group members included
    assert [g.id for g in det.groups] == ["combat"]
    assert [o.id for o in det.obligations] == ["reply", "report", "turn_out"]  # de-duplicated, catalogue order
    assert det.obligations[0].within_seconds == 1200
    assert det.obligations[1].within_seconds == 0
    assert [u.id for u in det.obligations[2].who] == [u.id for u in det.units]  # who: participating


def test_decided_level_brings_its_own_consequences(demo_book: RuleBook) -> None:
    """The decided level's `then` applies, with its citation, but a rule at that level overrides it."""
    det = demo_book.determine(Incident(type="demo", facts={"deaths": 10}))
    assert det.level is not None and det.level.code == "II"
    assert det.level.citation is not None and det.level.citation.clause == "第九条"
    assert [o.id for o in det.obligations] == ["reply", "report"]
    assert det.command_tier == "市指挥部"  # grade-II says so; the level's default 县指挥部 yields
    assert "police" in {u.id for u in det.units}  # owes the report obligation


def test_level_consequences_only_for_the_decided_level(demo_book: RuleBook) -> None:
    """A lower level's consequences do not apply when a higher level is decided, nor when it is not reached."""
    det = demo_book.determine(Incident(type="demo", facts={"deaths": 5, "level_m": 31}))
    assert det.level is not None and det.level.code == "III"
    assert "report" not in {o.id for o in det.obligations}


def test_obligation_owners_participate(demo_book: RuleBook) -> None:
    """A unit that owes an obligation is listed among the participating units."""
    det = demo_book.determine(Incident(type="demo", facts={"deaths": 1}))
    assert [o.id for o in det.obligations] == ["reply"]
    assert "hq" in {u.id for u in det.units}


def test_levelled_rule_outranks_unlevelled_for_lead(demo_book: RuleBook) -> None:
    """A rule that sets no level does not decide the lead over one that sets a level."""
    det = demo_book.determine(Incident(type="demo", facts={"deaths": 1, "level_m": 31}))
    assert det.level is not None and det.level.code == "IV"
    assert det.lead is not None and det.lead.id == "brigade"
    assert {u.id for u in det.units} == {"brigade", "police"}


def test_no_rule_applies_is_an_answer(runtime: DurableRuntime, make_doc: object) -> None:
    """An incident no rule matches gets a valid answer that says so, not an exception."""
    from support.data import DEMO

    text = DEMO.read_text(encoding="utf-8")
    # Keep only the hazmat rule, so an incident without hazmat matches nothing.
    head, _, rules = text.partition("rules:\n")
    only = rules[rules.index("  - id: hazmat") : rules.index("  - id: breach-or-danger")]
    doc = make_doc(head + "rules:\n" + only)  # type: ignore[operator]
    book = RuleBook([doc], runtime)
    det = book.determine(Incident(type="demo", facts={"deaths": 50}, id="x"))
    assert det.applies is False
    assert det.level is None and det.lead is None
    assert det.units == () and det.groups == () and det.matched_rules == ()
    assert det.incident_id == "x" and det.ruleset == "demo" and det.content_hash == doc.content_hash


def test_explain_shows_conditions_with_values(demo_book: RuleBook) -> None:
    """With explain, each matched rule carries its conditions, the values seen and the outcome."""
    det = demo_book.determine(Incident(type="demo", facts={"deaths": 10}), explain=True)
    grade = next(r for r in det.matched_rules if r.id == "grade-II")
    assert grade.conditions is not None and grade.conditions.holds
    assert grade.conditions.expression == "deaths 以上 10 (≥ 10)"
    assert grade.conditions.actual == "deaths = 10"
    unmatched = {r.id: r for r in det.unmatched_rules}
    trace = unmatched["grade-III"].conditions
    assert trace is not None and not trace.holds
    assert trace.children[0].children[1].expression == "deaths 以下 10 (< 10)"
    assert trace.children[0].children[1].holds is False
    assert grade.citation.document == "等级标准"


def test_without_explain_no_traces(demo_book: RuleBook) -> None:
    """Without explain, matched rules carry citations but no condition traces."""
    det = demo_book.determine(Incident(type="demo", facts={"deaths": 10}))
    assert all(r.conditions is None for r in det.matched_rules)
    assert det.unmatched_rules == ()


def test_determination_is_frozen(demo_book: RuleBook) -> None:
    """A determination cannot be changed after it is made."""
    det = demo_book.determine(Incident(type="demo", facts={"deaths": 1}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        det.applies = False  # type: ignore[misc]


def test_long_run_frees_every_session(demo_book: RuleBook) -> None:
    """Far more evaluations than durable-rules' 1024 live sessions run without error and without growth: every session is freed in durable-rules' own memory and the Python heap does not grow."""
    # The C memory is checked exactly, session by session, where a resident-size high-water mark
    # (ru_maxrss) could only guess; resident memory over a million decisions is measured by the
    # benchmark (tests/bench/bench_memory.py) and the soak (reliability/test_soak.py).
    runtime = demo_book.runtime
    name = demo_book.active("demo").name
    first_sid = int(next(runtime._sids))  # the run's sessions are numbered after this one
    facts = [{"deaths": i % 40, "hazmat": i % 3 == 0, "level_m": 30 + (i % 3) * 0.5} for i in range(6000)]
    expected_levels = {d: ("II" if d >= 10 else "III" if d >= 3 else "IV") for d in range(40)}
    for f in facts[:1000]:  # warm up caches before measuring
        demo_book.determine(Incident(type="demo", facts=f))
    gc.collect()
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    for f in facts[1000:]:
        det = demo_book.determine(Incident(type="demo", facts=f))
        assert det.level is not None and det.level.code == expected_levels[int(f["deaths"])]  # type: ignore[call-overload]
    gc.collect()  # durable-rules' callbacks form reference cycles: count what survives collection
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert after - before < 256 * 1024, "Python heap grew over 5000 evaluations"
    last_sid = int(next(runtime._sids))
    assert last_sid - first_sid - 1 == len(facts), "one session per evaluation"
    for sid in range(first_sid + 1, last_sid):  # durable-rules holds none of them any more
        with pytest.raises(Exception, match="Could not get state"):
            runtime._host.get_state(name, str(sid))


LEAK_PROBE = """
from durable import engine
from liandong.engine.compile import compile_document
from liandong.engine.runtime import DurableRuntime
from liandong.document.load import load_document
from pathlib import Path
runtime = DurableRuntime()
compiled = compile_document(load_document(Path(%r)))
runtime.register(compiled)
for i in range(1100):
    try:
        runtime._host.assert_fact(compiled.name, {"_anchor": True, "sid": f"leak-{i}"})
    except MemoryError:
        print("MemoryError at", i)
        break
"""


def test_leaked_sessions_would_hit_the_limit() -> None:
    """The limit the runtime guards against is real: the 1025th session left alive raises MemoryError."""
    from support.data import DEMO

    # In a child process: durable-rules may crash outright after exhausting its sessions.
    out = subprocess.run([sys.executable, "-c", LEAK_PROBE % str(DEMO)], capture_output=True, text=True, timeout=60)
    assert "MemoryError at 1024" in out.stdout, out.stdout + out.stderr


def test_engine_failure_is_wrapped(runtime: DurableRuntime) -> None:
    """A failure inside durable-rules surfaces as EngineFailure naming the rule set."""
    with pytest.raises(EngineFailure) as caught:
        runtime.fire("no-such-ruleset", {"x": 1})
    assert "no-such-ruleset" in caught.value.message
