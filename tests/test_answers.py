"""Answers joined from pre-serialized pieces are the very bytes protobuf writes for the same message."""

from __future__ import annotations

import random

import pytest

from liandong.engine.result import Incident
from liandong.engine.runtime import DurableRuntime
from liandong.rulebook import RuleBook
from liandong.server import answers
from liandong.server.answers import AnswerCodec
from liandong.v1 import liandong_pb2 as pb
from support.data import BUNDLED, FIRE_FLAGS

INCIDENTS_PER_RULESET = 600


def _facts(ruleset: str, rng: random.Random) -> dict[str, object]:
    """Facts spread over every level and situation of the bundled rule sets, each value in range."""
    if ruleset == "fire-linkage":
        facts: dict[str, object] = {
            "deaths": rng.choice([0, 1, 3, 9, 10, 29, 30, 45]),
            "serious_injuries": rng.choice([0, 9, 10, 49, 50, 99, 100, 130]),
            "direct_loss_yuan": float(rng.choice([0, 9.9e6, 1e7, 5e7, 1e8, 2e8])),
        }
        for flag in FIRE_FLAGS:
            if rng.random() < 0.5:
                facts[flag] = rng.random() < 0.7
        return facts
    if ruleset == "flood-control":
        facts = {
            "flood_magnitude": rng.choice(["none", "general", "considerable", "major", "extraordinary"]),
            "dike_status": rng.choice(["normal", "danger", "major_danger", "breach"]),
            "dike_section": rng.choice(["important", "general", "tributary"]),
            "rain_24h_mm": float(rng.choice([0, 50, 100, 250])),
        }
        if rng.random() < 0.6:
            facts["water_level_m"] = round(rng.uniform(450.0, 455.5), 2)
        if rng.random() < 0.4:
            facts["reservoir_size"] = rng.choice(["small", "medium", "large"])
            facts["reservoir_status"] = rng.choice(["normal", "danger", "severe_danger", "collapse"])
        return facts
    facts = {"participants": rng.choice([0, 49, 50, 99, 100, 101, 499, 500, 5000])}
    if rng.random() < 0.5:
        facts["local_forces_can_control"] = rng.random() < 0.5
    if rng.random() < 0.3:
        facts["violent_crime"] = True
    return facts


@pytest.fixture(scope="module")
def book(runtime: DurableRuntime) -> RuleBook:
    return RuleBook.load(BUNDLED, runtime)


@pytest.mark.parametrize("ruleset", ["fire-linkage", "flood-control", "township-mass-incident"])
def test_wire_is_byte_identical_to_the_message(book: RuleBook, ruleset: str) -> None:
    """For hundreds of varied incidents of each bundled rule set, the joined answer equals SerializeToString of the built message, byte for byte."""
    compiled = book.active(ruleset)
    codec = AnswerCodec(compiled)
    incident_type = compiled.document.incident_types[0]
    rng = random.Random(ruleset)
    shapes = set()
    for i in range(INCIDENTS_PER_RULESET):
        det = book.determine(Incident(type=incident_type, facts=_facts(ruleset, rng), id=f"case-{i}" if i % 5 else ""))
        decision_id = f"decision-{i}"
        wire = codec.wire(det, decision_id)
        assert wire == codec.message(det, decision_id, False).SerializeToString(), f"incident {i}: {det.matched_rules}"
        parsed = pb.Determination.FromString(wire)
        assert (parsed.decision_id, parsed.incident_id, parsed.ruleset, parsed.content_hash) == (
            decision_id,
            det.incident_id,
            ruleset,
            det.content_hash,
        )
        assert [u.id for u in parsed.participating_units] == [u.id for u in det.units]
        shapes.add((det.level.code if det.level else None, len(det.obligations), len(det.groups)))
    assert len(shapes) >= 3, "the incidents must reach several levels and shapes of answer"


def test_obligations_owed_by_participants_name_this_answers_units(book: RuleBook) -> None:
    """An obligation owed by every participating (member) unit names exactly the answer's (member) units, in the joined bytes too."""
    compiled = book.active("fire-linkage")
    owed = {o.id: o.by_members for o in compiled.document.obligations if o.by_participants or o.by_members}
    assert owed, "fire-linkage has obligations owed by every participating member unit"
    codec = AnswerCodec(compiled)
    small = book.determine(Incident(type="fire", facts={"deaths": 0, "serious_injuries": 0, "direct_loss_yuan": 0.0}))
    large = book.determine(
        Incident(
            type="fire",
            facts={"deaths": 3, "serious_injuries": 12, "hazardous_materials": True, "power_involved": True},
        )
    )
    for det in (small, large):
        parsed = pb.Determination.FromString(codec.wire(det, "d"))
        units = [u.id for u in parsed.participating_units]
        members = [u.id for u in parsed.participating_units if u.member]
        for o in parsed.obligations:
            if o.id in owed:
                assert [w.id for w in o.who] == (members if owed[o.id] else units)
    assert len(large.units) > len(small.units)
    assert len([u for u in large.units if u.member]) < len(large.units), "the large fire has units that are not members"


def test_stream_response_holds_the_answers_in_order(book: RuleBook) -> None:
    """A stream response joined from serialized answers parses to those answers in the same order, an empty one to no answers."""
    codec = AnswerCodec(book.active("township-mass-incident"))
    dets = [
        book.determine(Incident(type="mass_incident", facts={"participants": n}, id=f"m{n}")) for n in (0, 60, 150, 600)
    ]
    wires = [codec.wire(d, f"d{i}") for i, d in enumerate(dets)]
    parsed = pb.DetermineStreamResponse.FromString(answers.stream_response(wires))
    assert [d.SerializeToString() for d in parsed.determinations] == wires
    assert [d.incident_id for d in parsed.determinations] == ["m0", "m60", "m150", "m600"]
    assert pb.DetermineStreamResponse.FromString(answers.stream_response([])).determinations == []


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16_383, 16_384, 2_000_000])
def test_lengths_are_written_as_protobuf_varints(size: int) -> None:
    """Lengths around each varint boundary frame an answer exactly as protobuf frames a repeated field."""
    payload = pb.Determination(summary="x" * size).SerializeToString()
    joined = answers.stream_response([payload])
    assert (
        joined == pb.DetermineStreamResponse(determinations=[pb.Determination.FromString(payload)]).SerializeToString()
    )
