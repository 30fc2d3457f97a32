"""The engine's fast paths answer exactly what the straightforward code they replaced answers.

Each reference below is that code as it was (combine, the fact checks, the fact's JSON), kept here
as the oracle; the faster code must agree with it on every input, valid or not, and share the same
result objects answers have always shared.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace

import pytest

from liandong.document.model import EnumValue, InputSpec, InputType, Level, Pos, Rule, RuleSetDocument
from liandong.engine import combine as combine_module
from liandong.engine import descriptor, trace
from liandong.engine import runtime as runtime_module
from liandong.engine.combine import Prepared, combine
from liandong.engine.compile import ANCHOR_FIELD
from liandong.engine.result import AssumedInput, CommanderResult, Determination, Incident, MatchedRule
from liandong.engine.runtime import DurableRuntime
from liandong.errors import EngineFailure, FieldViolation, InvalidIncident
from liandong.rulebook import RuleBook
from liandong.suggest import closest
from support.data import BUNDLED, DATA


# -- the references ----------------------------------------------------------------------------------
def reference_combine(
    prepared: Prepared, incident: Incident, facts: Mapping[str, object], fired: Collection[str], explain: bool = False
) -> Determination:
    doc = prepared.doc
    fired_rules = [r for r in doc.rules if r.id in fired]
    ranks = prepared.ranks
    below_every_level = min(ranks.values(), default=0) - 1
    level_rule = max(
        (r for r in fired_rules if r.then.level is not None), key=lambda r: ranks[r.then.level or ""], default=None
    )
    decided: Level | None = next((lv for lv in doc.levels if level_rule and lv.code == level_rule.then.level), None)
    sources = [
        (ranks[r.then.level] if r.then.level is not None else below_every_level, i, r.then)
        for i, r in enumerate(fired_rules)
    ]
    if decided is not None and decided.then is not None:
        sources.append((decided.rank, len(fired_rules), decided.then))
    sources.sort(key=lambda s: (-s[0], s[1]))
    thens = [t for _, _, t in sources]
    lead_id = next((t.lead for t in thens if t.lead is not None), None)
    tier = next((t.command_tier for t in thens if t.command_tier is not None), "")
    commanders = next((t.commanders for t in thens if t.commanders is not None), ())
    group_ids = {g for t in thens for g in t.groups}
    groups = [g for g in doc.groups if g.id in group_ids]
    obligation_ids = {o for t in thens for o in t.obligations}
    obligations = [o for o in doc.obligations if o.id in obligation_ids]
    unit_ids = {u for t in thens for u in t.units}
    unit_ids.update(m for g in groups for m in g.members)
    unit_ids.update(g.lead for g in groups if g.lead is not None)
    unit_ids.update(w for o in obligations for w in o.who)
    if lead_id is not None:
        unit_ids.add(lead_id)
    by_id = prepared.units
    participants = tuple(u.id for u in doc.units if u.id in unit_ids)

    def matched(rule: Rule) -> MatchedRule:
        if not explain:
            return prepared.rules[rule.id]
        return MatchedRule(rule.id, rule.title, rule.citation, trace.evaluate(rule.when, facts), rule.citations)

    matched_rules = tuple(matched(r) for r in fired_rules)
    unmatched: tuple[MatchedRule, ...] = ()
    if explain:
        unmatched = tuple(matched(r) for r in doc.rules if r.id not in fired)
        disagree = [
            m.id
            for m in matched_rules + unmatched
            if m.conditions is not None and m.conditions.holds != (m.id in fired)
        ]
        if disagree:
            raise EngineFailure(
                f"durable-rules and the explanation disagree on rules {', '.join(disagree)} of '{doc.ruleset}' {doc.version}",
                ruleset=doc.ruleset,
                rule_id=disagree[0],
            )
    return Determination(
        ruleset=doc.ruleset,
        version=doc.version,
        content_hash=doc.content_hash,
        incident_id=incident.id,
        incident_type=incident.type,
        applies=bool(fired_rules),
        level=prepared.levels[decided.code] if decided is not None else None,
        command_tier=tier,
        commanders=tuple(CommanderResult(c.role, c.who) for c in commanders),
        lead=by_id[lead_id] if lead_id is not None else None,
        units=tuple(by_id[u] for u in participants),
        groups=tuple(prepared.groups[g.id] for g in groups),
        obligations=tuple(
            replace(prepared.obligations[o.id], who=tuple(by_id[w] for w in participants))
            if o.by_participants
            else replace(prepared.obligations[o.id], who=tuple(by_id[w] for w in participants if by_id[w].member))
            if o.by_members
            else prepared.obligations[o.id]
            for o in obligations
        ),
        matched_rules=matched_rules,
        facts=dict(facts),
        unmatched_rules=unmatched,
        assumed=tuple(
            AssumedInput(i.name, i.default, i.meaning)
            for i in doc.inputs
            if i.default is not None and incident.facts.get(i.name) is None
        ),
    )


def reference_normalize(doc: RuleSetDocument, facts: Mapping[str, object]) -> dict[str, object]:
    violations: list[FieldViolation] = []
    if len(facts) > descriptor.MAX_FACTS:
        raise InvalidIncident(
            doc.ruleset,
            [FieldViolation("facts", f"{len(facts)} facts; the limit is {descriptor.MAX_FACTS}", "too_many")],
        )
    names = [spec.name for spec in doc.inputs]
    for key in facts:
        if doc.input(key) is None:
            hint = closest(str(key), names)
            extra = f"; did you mean '{hint}'?" if hint else ""
            violations.append(
                FieldViolation(str(key), f"is not an input of rule set '{doc.ruleset}'{extra}", "unknown_field")
            )
    out: dict[str, object] = {}
    for spec in doc.inputs:
        if spec.name in facts and facts[spec.name] is not None:
            value, violation = descriptor.coerce(spec, facts[spec.name])
            if violation is not None:
                violations.append(violation)
                continue
            out[spec.name] = value
        elif spec.required:
            violations.append(FieldViolation(spec.name, f"is required ({spec.meaning})", "missing"))
        elif spec.default is not None:
            out[spec.name] = spec.default
    if violations:
        raise InvalidIncident(doc.ruleset, violations)
    return out


def reference_fact_json(fact: Mapping[str, object]) -> str:
    odd = [k for k, v in fact.items() if type(v) is float and "e" in repr(v) and "." not in repr(v).partition("e")[0]]
    if not odd:
        return json.dumps(fact, ensure_ascii=False)
    parts = []
    for key, value in fact.items():
        if key in odd:
            mantissa, _, exponent = repr(value).partition("e")
            shown = f"{mantissa}.0e{exponent}"
        else:
            shown = json.dumps(value, ensure_ascii=False)
        parts.append(f"{json.dumps(key, ensure_ascii=False)}: {shown}")
    return "{" + ", ".join(parts) + "}"


def outcome(fn: Callable[..., object], *args: object) -> object:
    """What a call returns, or the type, text and fields of what it raises."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - any error must be the same error
        return ("raised", type(exc), str(exc), sorted((k, repr(v)) for k, v in vars(exc).items()))


# -- inputs ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def books(runtime: DurableRuntime) -> list[RuleBook]:
    return [RuleBook.load(BUNDLED, runtime), RuleBook.load(DATA / "rules", runtime)]


def documents(books: list[RuleBook]) -> list[RuleSetDocument]:
    return [c.document for book in books for ruleset in book.rulesets() for c in book.versions(ruleset)]


ODD_VALUES: list[object] = [
    None,
    True,
    False,
    0,
    1,
    -7,
    3.0,
    3.5,
    -0.0,
    1e-05,
    1e16,
    1.5e300,
    2.5e-300,
    math.nan,
    math.inf,
    -math.inf,
    10**20,
    "",
    "正常",
    "决口",
    "normal",
    "danger",
    "x" * 21,
    'quote " and \\ back',
    "tab\tnew\nline \x00 \u2028",
    [1],
    {"a": 1},
    descriptor.NO_VALUE,
]


def random_value(rng: random.Random, spec: InputSpec) -> object:
    if rng.random() < 0.3:
        return rng.choice(ODD_VALUES)
    if spec.type is InputType.BOOLEAN:
        return rng.random() < 0.5
    if spec.type is InputType.ENUM:
        v = rng.choice(spec.values)
        return rng.choice([v.id, v.label])
    if spec.type is InputType.STRING:
        return "备" * rng.randint(0, 25)
    low = spec.minimum if spec.minimum is not None else -1000.0
    high = spec.maximum if spec.maximum is not None else low + 10_000
    number = rng.uniform(low - 5, min(high, low + 1e9) + 5)
    return rng.choice([number, float(round(number)), int(round(number))])


def random_facts(rng: random.Random, doc: RuleSetDocument) -> dict[str, object]:
    facts = {spec.name: random_value(rng, spec) for spec in doc.inputs if rng.random() < 0.6}
    if rng.random() < 0.1:
        facts[rng.choice(["death", "zzz", "Hazmat", "夜间", spec_name(rng, doc) + "_"])] = 1
    return facts


def spec_name(rng: random.Random, doc: RuleSetDocument) -> str:
    return rng.choice(doc.inputs).name if doc.inputs else "input"  # a document may declare none (epidemic)


# -- the checks --------------------------------------------------------------------------------------
def test_normalize_and_presence_flags_match_the_reference(books: list[RuleBook]) -> None:
    """Same facts out, or the same violations in the same order with the same words."""
    rng = random.Random(1)
    for doc in documents(books):
        for _ in range(3000):
            facts = random_facts(rng, doc)
            got, want = outcome(descriptor.normalize, doc, facts), outcome(reference_normalize, doc, facts)
            assert repr(got) == repr(want), facts
            assert descriptor.presence_flags(doc, facts) == {
                descriptor.PRESENT_PREFIX + s.name: s.name in facts for s in doc.inputs if s.optional
            }
        too_many = {f"f{i}": i for i in range(descriptor.MAX_FACTS + 1)}
        assert repr(outcome(descriptor.normalize, doc, too_many)) == repr(outcome(reference_normalize, doc, too_many))


def test_enum_lookup_matches_enum_id_when_a_label_is_another_id() -> None:
    """An id or label that two values share goes to the first value, as InputSpec.enum_id says."""
    spec = InputSpec(
        "status",
        InputType.ENUM,
        "状况",
        Pos("x.yaml", 1, 1),
        values=(EnumValue("a", "b"), EnumValue("b", "a"), EnumValue("c", "正常")),
    )
    table = descriptor._enum_ids(spec)
    for word in ("a", "b", "c", "正常", "d"):
        assert table.get(word) == spec.enum_id(word)


def test_compiled_rule_sets_carry_their_input_table(books: list[RuleBook]) -> None:
    """Each compiled version checks facts with a table of its own document's inputs, and a table built on the spot checks alike."""
    for book in books:
        for name in book.rulesets():
            for compiled in book.versions(name):
                doc = compiled.document
                assert compiled.inputs.names == frozenset(s.name for s in doc.inputs)
                assert [flag for flag, _ in compiled.inputs.presence] == [
                    descriptor.PRESENT_PREFIX + s.name for s in doc.inputs if s.optional
                ]


def test_combine_matches_the_reference_and_shares_results(books: list[RuleBook]) -> None:
    """Any set of fired rules (in any order, repeated, or naming rules the document lacks) combines
    to an equal determination, made of the document's shared result objects."""
    rng = random.Random(2)
    for book in books:
        for ruleset in book.rulesets():
            for compiled in book.versions(ruleset):
                prepared, doc = compiled.answers, compiled.document
                ids = [r.id for r in doc.rules]
                for n in range(1500):
                    fired = rng.sample(ids, rng.randint(0, len(ids)))
                    if rng.random() < 0.1:
                        fired += fired[:2] + ["no-such-rule"]
                    incident = Incident(type=doc.incident_types[0], id=str(n))
                    facts = {"x": n}
                    got = combine(prepared, incident, facts, tuple(fired))
                    assert got == reference_combine(prepared, incident, facts, tuple(fired))
                    assert got.level is None or got.level is prepared.levels[got.level.code]
                    assert got.lead is None or got.lead is prepared.units[got.lead.id]
                    assert all(u is prepared.units[u.id] for u in got.units)
                    assert all(g is prepared.groups[g.id] for g in got.groups)
                    assert all(r is prepared.rules[r.id] for r in got.matched_rules)
                    for o in got.obligations:
                        shared = prepared.obligations[o.id]
                        owed_by = next(x for x in doc.obligations if x.id == o.id)
                        owers = tuple(u for u in got.units if u.member) if owed_by.by_members else got.units
                        assert o is shared or (o.who == owers and o.citation is shared.citation)
                assert len(prepared._pieces) <= combine_module.PIECES_CACHE_SIZE


def test_combine_with_explain_matches_the_reference(books: list[RuleBook]) -> None:
    """Explained answers agree too, and so does the refusal when the trace and the engine disagree."""
    rng = random.Random(3)
    for book in books:
        for doc in documents([book]):
            compiled = book.select(Incident(type=doc.incident_types[0]), doc.ruleset, doc.version)
            for n in range(150):
                facts = outcome(descriptor.normalize, doc, random_facts(rng, doc))
                if not isinstance(facts, dict):
                    continue
                incident = Incident(type=doc.incident_types[0], id=str(n))
                fired = book.runtime.fire(compiled.name, {**facts, **descriptor.presence_flags(doc, facts)})
                for f in (fired, tuple(rng.sample(fired, len(fired))), fired + ("no-such-rule",), fired[1:]):
                    got = outcome(combine, compiled.answers, incident, facts, f, True)
                    assert repr(got) == repr(outcome(reference_combine, compiled.answers, incident, facts, f, True))


def test_pieces_store_stays_bounded() -> None:
    """Past its size the store of answer pieces starts afresh rather than growing."""
    doc = RuleBook.load(BUNDLED, DurableRuntime()).active("fire-linkage").document
    prepared = Prepared(doc)
    for bits in range(combine_module.PIECES_CACHE_SIZE + 10):
        prepared.pieces(bits)
    assert 0 < len(prepared._pieces) <= combine_module.PIECES_CACHE_SIZE
    assert prepared.pieces(3) is prepared.pieces(3)


def flat_facts(rng: random.Random) -> dict[str, object]:
    keys = ["deaths", "sid", ANCHOR_FIELD, "直接损失", 'q"uote', "ctl\x01", "level_m"]
    return {rng.choice(keys) + str(rng.randint(0, 3)): rng.choice(ODD_VALUES[:-1]) for _ in range(rng.randint(0, 8))}


def test_fact_json_matches_the_reference() -> None:
    """Byte for byte, for flat facts of every kind of value, and for what takes the general path."""
    rng = random.Random(4)
    cases: list[dict[object, object]] = [dict(flat_facts(rng)) for _ in range(5000)]
    cases += [
        {},
        {"a": [1e-05, {"b": 1e16}]},
        {1: 1e-05, "x": 2},
        {1: 2},
        {None: 1},
        {"a": descriptor.NO_VALUE},
        {"a": True, "b": 1e-05},
    ]
    for fact in cases:
        assert outcome(runtime_module.fact_json, fact) == outcome(reference_fact_json, fact), fact
    for _ in range(3000):
        fact = flat_facts(rng)
        if rng.random() < 0.2:
            fact["sid"] = rng.choice(["x", 5, None])
        sid = str(rng.randint(1, 10**9))
        want = reference_fact_json({**fact, ANCHOR_FIELD: True, "sid": sid})
        assert runtime_module._session_fact_json(fact, sid) == want
        # With the keys' texts written once (as fire() has them per rule set), some or all of them.
        known = [key for key in fact if rng.random() < 0.7] + ["absent"]
        prefixes = {key: json.dumps(key, ensure_ascii=False) + ": " for key in known}
        assert runtime_module._session_fact_json(fact, sid, prefixes) == want


def test_incident_types_is_a_copy(books: list[RuleBook]) -> None:
    """Changing what incident_types() returned changes nothing the book answers from."""
    book = books[0]
    types = book.incident_types()
    types.clear()
    assert book.incident_types() and book.select(Incident(type="fire")).document.ruleset == "fire-linkage"


def test_runtime_c_calls_are_unchanged(
    monkeypatch: pytest.MonkeyPatch, runtime: DurableRuntime, books: list[RuleBook]
) -> None:
    """fire() makes durable-rules' C calls with the fact's text as the Host's json.dumps writes it, and frees the session."""
    calls: list[tuple[str, tuple[object, ...]]] = []
    real = runtime_module.durable_rules_engine

    class Recorder:
        def __getattr__(self, name: str) -> object:
            def call(*args: object) -> object:
                calls.append((name, args))
                return getattr(real, name)(*args)

            return call

    monkeypatch.setattr(runtime_module, "durable_rules_engine", Recorder())
    book = books[0]
    compiled = book.active("flood-control")
    facts = descriptor.normalize(
        compiled.document, {"water_level_m": 1e-07, "warning_level_m": -1e20, "dike_status": "决口"}
    )
    fact = {**facts, **descriptor.presence_flags(compiled.document, facts)}
    fired = runtime.fire(compiled.name, fact)
    assert fired
    names = [n for n, _ in calls]
    assert names == ["assert_fact", "start_action_for_state"] + ["complete_and_start_action"] * (len(fired) + 1) + [
        "delete_state"
    ]
    text = calls[0][1][1]
    assert isinstance(text, str)
    sid = json.loads(text)["sid"]
    assert text == reference_fact_json({**fact, ANCHOR_FIELD: True, "sid": sid})
    assert calls[-1][1][1] == sid


def checked_facts(doc: RuleSetDocument, facts: Mapping[str, object]) -> dict[str, object]:
    """The reference fact checks, between the checks that are not fast paths (empty report, checks:)."""
    out = reference_normalize(doc, facts)
    descriptor.refuse_empty(doc, facts)
    descriptor.cross_check(doc, out)
    return out


def test_determine_is_unchanged_end_to_end(books: list[RuleBook]) -> None:
    """Whole determinations, or errors, through fire(): as the reference checks and combine make them."""
    rng = random.Random(5)
    for book in books:
        for doc in documents([book]):
            compiled = book.select(Incident(type=doc.incident_types[0]), doc.ruleset, doc.version)
            for n in range(300):
                incident = Incident(type=doc.incident_types[0], facts=random_facts(rng, doc), id=str(n))
                checked = outcome(checked_facts, doc, incident.facts)
                for explain in (False, True):
                    got = outcome(book.determine, incident, doc.ruleset, doc.version, explain)
                    if not isinstance(checked, dict):
                        assert got == checked
                        continue
                    fired = book.runtime.fire(compiled.name, {**checked, **descriptor.presence_flags(doc, checked)})
                    assert got == reference_combine(compiled.answers, incident, checked, fired, explain)
