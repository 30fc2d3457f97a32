"""incident_from_proto's faster conversion gives exactly what the plain conversion gave."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

from liandong.engine import descriptor
from liandong.engine.result import Incident
from liandong.fixtures import load_fixtures
from liandong.server import bounds, convert, status
from liandong.v1 import liandong_pb2 as pb
from support.data import BUNDLED, DATA
from support.messages import request


def reference_value(value: object) -> object:
    """value_from_proto as it was written before: one WhichOneof test after another."""
    kind = value.WhichOneof("kind")  # type: ignore[attr-defined]
    if kind == "number_value":
        return value.number_value  # type: ignore[attr-defined]
    if kind == "string_value":
        return value.string_value  # type: ignore[attr-defined]
    if kind == "bool_value":
        return value.bool_value  # type: ignore[attr-defined]
    if kind == "struct_value":
        return {k: reference_value(v) for k, v in value.struct_value.fields.items()}  # type: ignore[attr-defined]
    if kind == "list_value":
        return [reference_value(v) for v in value.list_value.values]  # type: ignore[attr-defined]
    if kind == "null_value":
        return None
    return descriptor.NO_VALUE


def reference_incident(msg: pb.Incident) -> Incident:
    """incident_from_proto as it was written before: the plain conversion and Incident(...)."""
    bounds.check_text("incident.id", msg.id, bounds.MAX_ID_CHARS)
    bounds.check_text("incident.type", msg.type)
    facts = {k: reference_value(v) for k, v in msg.facts.fields.items()}
    for name in facts:
        if len(name) > bounds.MAX_NAME_CHARS:
            raise bounds.too_long(f"incident.facts.{name[:32]}…", name, bounds.MAX_NAME_CHARS)
    occurred = bounds.to_datetime("incident.occurred_at", msg.occurred_at) if msg.HasField("occurred_at") else None
    return Incident(type=msg.type, facts=facts, id=msg.id, occurred_at=occurred)


def same(a: object, b: object) -> bool:
    """Equal and of the same types all the way down, dict order included; NaN and -0.0 told apart by repr."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return repr(a) == repr(b)
    return a is b or a == b


def same_incident(a: Incident, b: Incident) -> bool:
    return (
        list(vars(a)) == list(vars(b))
        and same(a.facts, b.facts)
        and (a.type, a.id, a.occurred_at) == (b.type, b.id, b.occurred_at)
        and hash(a.occurred_at) == hash(b.occurred_at)
    )


def fixture_incidents() -> list[pb.Incident]:
    msgs = []
    for path in sorted([*BUNDLED.glob("*/*.fixtures.yaml"), *DATA.glob("**/*.fixtures.yaml")]):
        try:
            cases = load_fixtures(path).cases
        except Exception:  # a deliberately broken fixtures file among the test data
            continue
        for case in cases:
            msg = request(case.incident.type, case.incident.facts, incident_id=case.incident.id).incident
            if case.incident.occurred_at is not None:
                msg.occurred_at.FromDatetime(case.incident.occurred_at)
            msgs.append(msg)
    return msgs


def random_value(rng: random.Random, depth: int) -> object:
    choice = rng.randrange(9 if depth < 3 else 6)
    if choice == 0:
        return float(rng.randint(-(10**6), 10**6))  # int-valued doubles stay floats
    if choice == 1:
        return rng.choice((0.5, -0.0, 1e300, 2.0**53 + 2, math.inf, -math.inf, math.nan, rng.uniform(-1e9, 1e9)))
    if choice == 2:
        return rng.choice(("", "是", "fire", "x" * 300))
    if choice == 3:
        return rng.random() < 0.5
    if choice == 4:
        return None
    if choice == 5:
        return rng.randint(0, 10**15)  # Struct.update turns ints into doubles
    if choice == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {f"k{i}": random_value(rng, depth + 1) for i in range(rng.randrange(4))}


def test_every_fixture_incident_converts_as_before() -> None:
    """Every fixture case of the bundled and test rule sets gives the same Incident, types and order included."""
    msgs = fixture_incidents()
    assert len(msgs) > 200
    for msg in msgs:
        assert same_incident(convert.incident_from_proto(msg), reference_incident(msg)), msg


def test_generated_facts_convert_as_before() -> None:
    """20 000 generated fact sets (numbers, strings, bools, nulls, lists, structs, values without a kind) convert as before."""
    rng = random.Random(19)
    for i in range(20_000):
        msg = pb.Incident(type="fire", id=f"g{i}")
        msg.facts.update({f"f{j}": random_value(rng, 0) for j in range(rng.randrange(12))})
        if rng.random() < 0.1:
            msg.facts.fields["no_kind"].SetInParent()  # a Value with no kind at all
        if rng.random() < 0.3:
            msg.occurred_at.seconds = rng.randint(0, 4_000_000_000)
        new = convert.incident_from_proto(msg)
        assert same_incident(new, reference_incident(msg)), msg
        if "no_kind" in msg.facts.fields:
            assert new.facts["no_kind"] is descriptor.NO_VALUE


def test_a_long_fact_name_is_refused_as_before() -> None:
    """A fact name over the limit is refused with the same status, naming the first long name."""
    msg = pb.Incident(type="fire")
    msg.facts.update({"ok": 1, "a" * (bounds.MAX_NAME_CHARS + 1): 2, "b" * (bounds.MAX_NAME_CHARS + 5): 3})
    with pytest.raises(status.Refusal) as new:
        convert.incident_from_proto(msg)
    with pytest.raises(status.Refusal) as old:
        reference_incident(msg)
    assert new.value.status == old.value.status


def test_the_incident_built_has_exactly_the_class_fields() -> None:
    """incident_from_proto sets every field of Incident, in its order, and Incident has nothing to run after init."""
    got = convert.incident_from_proto(request("fire", {"deaths": 1}).incident)
    assert list(vars(got)) == [f.name for f in dataclasses.fields(Incident)]
    assert not hasattr(Incident, "__post_init__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.id = "x"  # type: ignore[misc]
