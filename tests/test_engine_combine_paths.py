"""combine's fast paths change no answer: the parts kept per set of fired rules
(combine.Prepared.parts), and determinations built by result.determination.

The oracle is tests/test_engine_speed_equivalence.py's reference_combine, the straightforward code
combine replaced; answers made from kept parts must equal it, whichever order the rules are named
in, and however often the same set comes back.
"""

from __future__ import annotations

import dataclasses
import inspect
import random

import pytest

from liandong.engine import combine as combine_module
from liandong.engine.combine import Prepared, combine
from liandong.engine.result import Determination, Incident, determination
from liandong.engine.runtime import DurableRuntime
from liandong.rulebook import RuleBook
from support.data import BUNDLED, DATA
from test_engine_speed_equivalence import documents, reference_combine


@pytest.fixture(scope="module")
def books(runtime: DurableRuntime) -> list[RuleBook]:
    return [RuleBook.load(BUNDLED, runtime), RuleBook.load(DATA / "rules", runtime)]


def test_kept_parts_answer_as_the_reference_whatever_the_order(books: list[RuleBook]) -> None:
    """A set of fired rules combined again, in another order, with repeats or unknown ids, from a
    store that already holds it, answers what the reference combine answers, for every document."""
    rng = random.Random(31)
    for doc in documents(books):
        prepared = Prepared(doc)
        ids = [r.id for r in doc.rules]
        sets = [tuple(rng.sample(ids, rng.randint(0, len(ids)))) for _ in range(60)]
        for n in range(600):
            fired = list(rng.choice(sets))
            rng.shuffle(fired)
            if rng.random() < 0.2:
                fired += fired[:1] + ["no-such-rule"]
            as_given = tuple(fired) if rng.random() < 0.8 else fired  # fire() gives tuples; any collection works
            incident = Incident(type=doc.incident_types[0], id=str(n), facts={"n": n} if n % 2 else {})
            facts = {"x": n}
            want = reference_combine(prepared, incident, facts, tuple(fired))
            assert combine(prepared, incident, facts, as_given) == want
            assert combine(prepared, incident, facts, as_given) == want  # now from the store
        assert len(prepared._parts) <= combine_module.PARTS_CACHE_SIZE


def test_parts_store_stays_bounded(books: list[RuleBook]) -> None:
    """Past its size the store of parts starts afresh rather than growing, and still answers alike."""
    doc = books[0].active("fire-linkage").document
    prepared = Prepared(doc)
    ids = [r.id for r in doc.rules]
    rng = random.Random(32)
    for _ in range(combine_module.PARTS_CACHE_SIZE + 10):
        fired = tuple(rng.sample(ids, rng.randint(0, len(ids))))
        assert prepared.parts(fired) == Prepared(doc).parts(fired)
    assert 0 < len(prepared._parts) <= combine_module.PARTS_CACHE_SIZE
    assert prepared.parts(("grade-I",)) is prepared.parts(("grade-I",))


def test_determination_builds_what_the_constructor_builds(books: list[RuleBook]) -> None:
    """result.determination takes exactly the class's fields, in order, skips no __post_init__, and
    the answers combine builds with it equal, field for field, those the constructor builds."""
    names = [f.name for f in dataclasses.fields(Determination)]
    assert list(inspect.signature(determination).parameters) == names
    assert not hasattr(Determination, "__post_init__")
    rng = random.Random(33)
    for doc in documents(books):
        prepared = Prepared(doc)
        ids = [r.id for r in doc.rules]
        for n in range(50):
            incident = Incident(type=doc.incident_types[0], id=str(n), facts={"n": n})
            got = combine(prepared, incident, {"x": n}, tuple(rng.sample(ids, rng.randint(0, len(ids)))))
            built = Determination(**vars(got))
            assert list(vars(got)) == names == list(vars(built))
            assert got == built and repr(got) == repr(built)
            with pytest.raises(dataclasses.FrozenInstanceError):
                got.applies = not got.applies  # type: ignore[misc]
