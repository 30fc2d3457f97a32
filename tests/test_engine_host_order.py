"""The runtime drives durable-rules' C extension as durable's own Host.assert_fact does, and the
engine answers it exactly what it answers the Host.

engine/runtime.py calls the C extension directly, in Host.assert_fact's order, instead of through
the Host (docs/performance.md says why), leaving out the Host's `update_state` after each action,
which rewrites a session state no rule can match (engine/runtime.py says why). Both call logs are
recorded here, through the same extension, on whatever interpreter runs the suite: `make test` on
each supported CPython (CI runs 3.11 and 3.13) checks that the order, the arguments and every
result hold there, and that the Host's extra calls changed nothing the engine answered.
"""

from __future__ import annotations

import importlib.metadata
import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from durable import engine as durable_engine

from liandong.document.model import InputSpec, InputType
from liandong.engine import descriptor
from liandong.engine import runtime as runtime_module
from liandong.engine.combine import combine
from liandong.engine.compile import ANCHOR_FIELD, CompiledRuleSet
from liandong.engine.result import Incident
from liandong.engine.runtime import DurableRuntime
from liandong.errors import InvalidIncident
from liandong.fixtures import fixture_path, load_fixtures
from liandong.rulebook import RuleBook
from support.data import DATA, ROOT

Call = tuple[str, tuple[object, ...], object]


class CallLog:
    """Stands in for the C extension module: forwards each call, recording name, arguments and result."""

    def __init__(self, real: object) -> None:
        self._real = real
        self.calls: list[Call] = []

    def __getattr__(self, name: str) -> Callable[..., object]:
        target = getattr(self._real, name)

        def call(*args: object) -> object:
            result = target(*args)
            self.calls.append((name, args, result))
            return result

        return call


@pytest.fixture(scope="module")
def books(runtime: DurableRuntime) -> list[RuleBook]:
    return [RuleBook.load(ROOT / "rules", runtime), RuleBook.load(DATA / "rules", runtime)]


# Numbers on both sides of the bundled plans' thresholds (counts, water levels, losses in yuan).
NUMBERS = [
    0,
    1,
    2,
    3,
    5,
    9,
    10,
    11,
    29,
    30,
    31,
    49,
    50,
    99,
    100,
    300,
    451.9,
    452.5,
    453.0,
    454.0,
    455.5,
    1000,
    10**6,
    10**7,
    5 * 10**7,
    10**8,
]


def sample_facts(rng: random.Random, inputs: tuple[InputSpec, ...]) -> dict[str, object]:
    """Inputs a caller might send: each input present or not, numbers on both sides of thresholds."""
    facts: dict[str, object] = {}
    for spec in inputs:
        if rng.random() < 0.4:
            continue
        if spec.type is InputType.ENUM:
            facts[spec.name] = rng.choice(spec.values).id
        elif spec.type is InputType.BOOLEAN:
            facts[spec.name] = rng.random() < 0.5
        elif spec.type is InputType.INTEGER:
            facts[spec.name] = int(rng.choice(NUMBERS))
        elif spec.type is InputType.NUMBER:
            facts[spec.name] = rng.choice(NUMBERS)
        else:
            facts[spec.name] = "备"
    return facts


def host_fire(runtime: DurableRuntime, compiled: CompiledRuleSet, fact: dict[str, object], sid: str) -> list[str]:
    """The rules durable's own Host.assert_fact fires for the fact in session `sid`, which is then freed."""
    host_fired: list[str] = []
    runtime._fired = host_fired  # the Host runs the same registered actions, which record here
    try:
        runtime._host.assert_fact(compiled.name, {**fact, ANCHOR_FIELD: True, "sid": sid})
    finally:
        runtime._host.delete_state(compiled.name, sid)
    return host_fired


def without_state_updates(calls: list[Call]) -> list[Call]:
    return [c for c in calls if c[0] != "update_state"]


# durable's Host warns on 3.12+ for every action it runs (utcfromtimestamp; docs/engine.md, "Not patched").
@pytest.mark.filterwarnings("ignore:datetime.datetime.utcfromtimestamp:DeprecationWarning")
def test_runtime_makes_the_hosts_c_calls(
    monkeypatch: pytest.MonkeyPatch, runtime: DurableRuntime, books: list[RuleBook]
) -> None:
    """For every bundled and test rule set, fire() makes the C calls Host.assert_fact makes, with the
    same arguments and results, but for the Host's state updates, and frees the session with the C
    call Host.delete_state makes."""
    ours = CallLog(runtime_module.durable_rules_engine)
    hosts = CallLog(durable_engine.durable_rules_engine)
    monkeypatch.setattr(runtime_module, "durable_rules_engine", ours)
    monkeypatch.setattr(durable_engine, "durable_rules_engine", hosts)
    rng = random.Random(20)
    fired_counts: list[int] = []
    for book in books:
        for ruleset in book.rulesets():
            for compiled in book.versions(ruleset):
                doc = compiled.document
                handle = runtime._handles[compiled.name][0]
                for _ in range(40):
                    try:
                        checked = descriptor.normalize(doc, sample_facts(rng, doc.inputs))
                    except InvalidIncident:
                        continue
                    fact = {**checked, **descriptor.presence_flags(doc, checked)}
                    ours.calls.clear()
                    fired = runtime.fire(compiled.name, fact)
                    sid = json.loads(str(ours.calls[0][1][1]))["sid"]

                    hosts.calls.clear()
                    host_fired = host_fire(runtime, compiled, fact, sid)
                    host_calls = list(hosts.calls)

                    where = f"{doc.ruleset} {doc.version} {fact}"
                    assert ours.calls[:-1] == without_state_updates(host_calls[:-1]), where
                    assert ours.calls[-1] == host_calls[-1] == ("delete_state", (handle, sid), None), where
                    # The Host wrote the state back once per action (its rule's and the anchor's).
                    assert [c[0] for c in host_calls].count("update_state") == len(host_fired) + 1, where
                    assert list(fired) == host_fired
                    fired_counts.append(len(fired))
    # The comparison covered answers where no rule fired and answers where several did.
    assert 0 in fired_counts and max(fired_counts) >= 3 and len(fired_counts) >= 100


def properties_read(condition: object) -> set[str]:
    """Every fact property a compiled durable-rules condition reads, on either side of a comparison."""
    found: set[str] = set()
    if isinstance(condition, list):
        for item in condition:
            found |= properties_read(item)
    elif isinstance(condition, dict):
        for key, value in condition.items():
            if key == "$m":
                found.add(str(value))
            elif key.startswith("$"):
                found |= properties_read(value)
            else:
                found.add(key)
                found |= properties_read(value) if isinstance(value, dict) else set()
    return found


def test_no_rule_can_match_the_session_state(books: list[RuleBook]) -> None:
    """The session state durable-rules keeps beside each fact has only properties no compiled rule
    reads, so rewriting it (the Host's update_state, which fire() leaves out) can reach no rule."""
    state_properties = {"sid", "id", "$s"}
    for book in books:
        for ruleset in book.rulesets():
            for compiled in book.versions(ruleset):
                patterns = [pattern for rule in compiled.rules.values() for pattern in rule["all"]]  # type: ignore[attr-defined]
                assert all(list(pattern) == ["m"] for pattern in patterns)  # one fact pattern per rule, named m
                read = set().union(*(properties_read(pattern["m"]) for pattern in patterns))
                inputs = set(compiled.inputs.names) | {flag for flag, _ in compiled.inputs.presence}
                assert read <= inputs | {ANCHOR_FIELD}, compiled.name
                assert not read & state_properties, compiled.name
    assert properties_read({"$gte": {"a": {"$m": "b"}}}) == {"a", "b"}  # the walk itself sees references


# A generated incident for each bundled rule set, this many per version, beside every fixture case.
GENERATED_PER_VERSION = 1500


@pytest.mark.filterwarnings("ignore:datetime.datetime.utcfromtimestamp:DeprecationWarning")
def test_answers_equal_the_hosts_on_every_fixture_and_generated_incident(
    runtime: DurableRuntime, books: list[RuleBook]
) -> None:
    """For every fixture case of every bundled and test rule set, and many generated incidents, the
    determination equals the one combined from what durable's own Host fires for the same fact."""
    rng = random.Random(21)
    compared = with_fixtures = 0
    for book in books:
        for ruleset in book.rulesets():
            for compiled in book.versions(ruleset):
                doc = compiled.document
                fixtures = fixture_path(Path.cwd() / doc.path)  # the document's path as loaded, from here
                cases = [c.incident for c in load_fixtures(fixtures).cases] if fixtures.exists() else []
                cases = [c for c in cases if c.type in doc.incident_types]  # the others are refused before any rule
                with_fixtures += bool(cases)
                generated = [
                    Incident(type=doc.incident_types[0], facts=sample_facts(rng, doc.inputs), id=f"g{n}")
                    for n in range(GENERATED_PER_VERSION)
                ]
                for incident in cases + generated:
                    try:
                        checked = descriptor.normalize(doc, incident.facts, compiled.inputs)
                        descriptor.refuse_empty(doc, incident.facts)
                        descriptor.cross_check(doc, checked)
                    except InvalidIncident:
                        continue
                    got = book.determine(incident, doc.ruleset, doc.version)
                    fact = {**checked, **descriptor.presence_flags(doc, checked)}
                    host_fired = host_fire(runtime, compiled, fact, f"host-{compared}")
                    assert got == combine(compiled.answers, incident, checked, host_fired), (doc.ruleset, incident)
                    compared += 1
    assert compared >= 10_000 and with_fixtures >= 10  # every bundled rule set has fixtures


def test_installed_engine_is_the_patched_build() -> None:
    """The durable-rules in this environment is the wheel tools/engine_wheel.py builds, without PyEval_CallObject."""
    assert importlib.metadata.version("durable-rules") == "2.0.28+liandong.1"
    extension = Path(str(runtime_module.durable_rules_engine.__file__))
    assert extension.suffix == ".so" and b"PyObject_CallObject" in extension.read_bytes()
    assert b"PyEval_CallObject" not in extension.read_bytes()
