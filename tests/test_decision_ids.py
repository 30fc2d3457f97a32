"""Decision ids stay random RFC 4122 version-4 UUID strings, unique, and never shared across a fork."""

from __future__ import annotations

import os
import re
import threading
import uuid

from liandong.server import decision_ids
from liandong.server.decision_ids import decision_id

FORM = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_ids_have_the_form_of_uuid4() -> None:
    """Every id is what str(uuid.uuid4()) writes: version 4, RFC 4122 variant, lower-case 8-4-4-4-12."""
    for _ in range(5 * decision_ids.BATCH + 3):  # across several refills
        text = decision_id()
        assert FORM.match(text), text
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_ids_are_unique_and_use_every_random_bit() -> None:
    """200 000 ids are all different, and each of the 122 random bits takes both values."""
    ids = [decision_id() for _ in range(200_000)]
    assert len(set(ids)) == len(ids)
    seen_one = 0
    seen_zero = 0
    mask = (1 << 128) - 1
    for text in ids[:2000]:
        n = uuid.UUID(text).int
        seen_one |= n
        seen_zero |= ~n & mask
    fixed = (0xF000 << 64) | (0xC000 << 48)
    assert seen_one & seen_zero == mask & ~fixed


def test_threads_never_get_the_same_id() -> None:
    """Ids taken by four threads at once, across refills, are all different."""
    got: list[list[str]] = [[] for _ in range(4)]

    def take(out: list[str]) -> None:
        for _ in range(20_000):
            out.append(decision_id())

    threads = [threading.Thread(target=take, args=(out,)) for out in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for out in got for i in out]
    assert len(set(every)) == len(every) == 80_000


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    """A child forked while the parent holds unused ids starts with none and makes its own."""
    decision_id()  # the parent now holds BATCH - 1 unused ids
    assert decision_ids._pending
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether it inherited ids, and the ids it makes
        try:
            os.close(read)
            inherited = len(decision_ids._pending)
            line = f"{inherited} " + " ".join(decision_id() for _ in range(300))
            os.write(write, line.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        inherited, *child = f.read().decode().split()
    os.waitpid(pid, 0)
    parent = [decision_id() for _ in range(300)]
    assert inherited == "0"
    assert len(child) == 300
    assert not set(child) & set(parent)
