"""The runtime drives durable-rules' C extension exactly as durable's own Host.assert_fact does.

engine/runtime.py calls the C extension directly, in Host.assert_fact's order, instead of through
the Host (docs/performance.md says why). Both call logs are recorded here, through the same
extension, on whatever interpreter runs the suite: `make test` on each supported CPython (CI runs
3.11 and 3.13) checks that the order, the arguments and the results hold there.
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
from liandong.engine.compile import ANCHOR_FIELD
from liandong.engine.runtime import DurableRuntime
from liandong.errors import InvalidIncident
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


# durable's Host warns on 3.12+ for every action it runs (utcfromtimestamp; docs/engine.md, "Not patched").
@pytest.mark.filterwarnings("ignore:datetime.datetime.utcfromtimestamp:DeprecationWarning")
def test_runtime_makes_the_hosts_c_calls(
    monkeypatch: pytest.MonkeyPatch, runtime: DurableRuntime, books: list[RuleBook]
) -> None:
    """For every bundled and test rule set, fire() makes the C calls Host.assert_fact makes, with the same arguments and results."""
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
                    host_fired: list[str] = []
                    runtime._fired = host_fired  # the Host runs the same registered actions, which record here
                    runtime._host.assert_fact(compiled.name, {**fact, ANCHOR_FIELD: True, "sid": sid})
                    host_calls = list(hosts.calls)
                    runtime._host.delete_state(compiled.name, sid)

                    assert ours.calls == host_calls, f"{doc.ruleset} {doc.version} {fact}"
                    assert list(fired) == host_fired
                    fired_counts.append(len(fired))
    # The comparison covered answers where no rule fired and answers where several did.
    assert 0 in fired_counts and max(fired_counts) >= 3 and len(fired_counts) >= 100


def test_installed_engine_is_the_patched_build() -> None:
    """The durable-rules in this environment is the wheel tools/engine_wheel.py builds, without PyEval_CallObject."""
    assert importlib.metadata.version("durable-rules") == "2.0.28+liandong.1"
    extension = Path(str(runtime_module.durable_rules_engine.__file__))
    assert extension.suffix == ".so" and b"PyObject_CallObject" in extension.read_bytes()
    assert b"PyEval_CallObject" not in extension.read_bytes()
