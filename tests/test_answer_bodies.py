"""Answers whose ids are written directly and whose bodies are kept per combine's tuples stay protobuf's bytes."""

from __future__ import annotations

import dataclasses
import random

import pytest

from liandong.engine.result import Incident
from liandong.engine.runtime import DurableRuntime
from liandong.rulebook import RuleBook
from liandong.server import answers
from liandong.server.answers import AnswerCodec
from liandong.server.decision_ids import decision_id
from support.data import BUNDLED, FIRE_FLAGS

IDS = ["", "a", "火" * 42, "火" * 43, "x" * 127, "x" * 128, "é" * 9000, "f0\u2028\U0001f525"]


@pytest.fixture(scope="module")
def book(runtime: DurableRuntime) -> RuleBook:
    return RuleBook.load(BUNDLED, runtime)


def _fire(rng: random.Random) -> dict[str, object]:
    facts: dict[str, object] = {
        "deaths": rng.choice([0, 0, 0, 1, 3, 10]),  # mostly small fires: their answers differ most
        "serious_injuries": rng.choice([0, 0, 5, 10]),
        "direct_loss_yuan": float(rng.choice([0, 1e6, 9e6, 1e7])),
    }
    for flag in FIRE_FLAGS:
        facts[flag] = rng.random() < 0.5
    return facts


def test_ids_of_every_length_and_script_are_written_as_protobuf_writes_them(book: RuleBook) -> None:
    """Empty, ASCII, CJK, astral and long incident ids (one- and two-byte lengths), with uuid decision ids, give protobuf's bytes."""
    compiled = book.active("fire-linkage")
    codec = AnswerCodec(compiled)
    rng = random.Random(3)
    for n in range(200):
        incident = Incident(type="fire", facts=_fire(rng), id=IDS[n % len(IDS)])
        det = book.determine(incident)
        for did in (decision_id(), "", "d" * 200):
            assert codec.wire(det, did) == codec.message(det, did, False).SerializeToString()


def test_a_kept_body_is_only_used_for_the_same_tuples(book: RuleBook) -> None:
    """Answers with equal but new tuples, with other answers' tuples, and past the cache's bound stay protobuf's bytes."""
    codec = AnswerCodec(book.active("fire-linkage"))
    rng = random.Random(5)
    dets = [book.determine(Incident(type="fire", facts=_fire(rng), id=f"i{n}")) for n in range(60)]
    assert len({id(d.obligations) for d in dets}) > 10, "the answers must differ in their obligations"
    for det in dets:  # fill with combine's own tuples
        codec.wire(det, "d")
    for n in range(answers.BODY_CACHE_SIZE + 50):
        det = dets[n % len(dets)]
        other = dets[(n * 7 + 1) % len(dets)]
        variants = [
            dataclasses.replace(
                det, units=tuple(list(det.units)), groups=tuple(list(det.groups))
            ),  # equal, new objects
            dataclasses.replace(det, obligations=other.obligations),  # mixed answers' tuples
            det,
        ]
        for v in variants:
            assert codec.wire(v, "d") == codec.message(v, "d", False).SerializeToString()
        assert len(codec._bodies) <= answers.BODY_CACHE_SIZE
