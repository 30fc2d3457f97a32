"""Decision ids: random RFC 4122 version-4 UUIDs, as `str(uuid.uuid4())` writes them.

`uuid.uuid4()` reads 16 bytes from the kernel and builds a UUID object for every call; here the
random bytes are read for 256 ids at once (os.urandom, as uuid4 does) and formatted in one pass,
and a call takes one from the list. A forked child starts with an empty list, so it can never hand
out ids its parent also holds.
"""

from __future__ import annotations

import os

BATCH = 256
# Version 4 in the top nibble of the 7th byte, variant 10xx in the top bits of the 9th (RFC 4122 4.4).
_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_SET = (0x4000 << 64) | (0x8000 << 48)

_pending: list[str] = []


def _fill() -> None:
    data = os.urandom(16 * BATCH)
    ids = []
    for i in range(0, len(data), 16):
        h = "%032x" % (int.from_bytes(data[i : i + 16]) & _CLEAR | _SET)
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    _pending.extend(ids)


def decision_id() -> str:
    """A new random version-4 UUID string (lower-case hex, 8-4-4-4-12)."""
    while True:
        try:
            return _pending.pop()  # atomic: threads never get the same id
        except IndexError:
            _fill()


os.register_at_fork(after_in_child=_pending.clear)
