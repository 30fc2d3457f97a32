"""Building rules directories for servers under test, and editing the documents in them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import yaml

from support.data import BUNDLED, DEMO_DIR

# A rule set whose only rule needs a death: an incident without one gets "no rule applies".
QUIET_DOCUMENT = """\
ruleset: quiet
version: "2024.1"
title: 无事预案
source: {plan: 无事预案, location: tests}
effective_from: 2024-01-01
incident_types: [quiet]
boundary: civil-code
inputs:
  deaths: {type: integer, min: 0, default: 0, meaning: 死亡人数}
levels:
  - {code: I, name: 一级, rank: 1}
units:
  - {id: office, name: 办公室, duties: 值守, citation: 第一条}
groups: []
obligations: []
rules:
  - id: any-death
    title: 有人死亡
    citation: 第二条
    when: {deaths: {gt: 0}}
    then: {level: I, lead: office}
"""


def rules_tree(root: Path, *names: str) -> Path:
    """root as a rules directory holding the named rule sets: "demo" (tests/data), "quiet"
    (QUIET_DOCUMENT) or a bundled one (rules/NAME). Returns root."""
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        if name == "demo":
            copy_demo(root)
        elif name == "quiet":
            write_quiet(root)
        else:
            copy_bundled(root, name)
    return root


def copy_demo(dest_root: Path, name: str = "demo") -> Path:
    """Copy tests/data/rules/demo under dest_root/NAME, renaming the rule set when NAME differs."""
    copied = dest_root / name
    shutil.copytree(DEMO_DIR, copied)
    if name != "demo":
        for path in copied.glob("*.yaml"):
            path.write_text(
                path.read_text(encoding="utf-8").replace("ruleset: demo\n", f"ruleset: {name}\n"), encoding="utf-8"
            )
    return copied


def copy_bundled(dest_root: Path, name: str) -> Path:
    """Copy one bundled rule set (rules/NAME) under dest_root/NAME."""
    copied = dest_root / name
    shutil.copytree(BUNDLED / name, copied)
    return copied


def write_quiet(dest_root: Path) -> Path:
    """Write the `quiet` rule set (type quiet) under dest_root/quiet."""
    path = dest_root / "quiet" / "2024.1.yaml"
    path.parent.mkdir()
    path.write_text(QUIET_DOCUMENT, encoding="utf-8")
    return path


def replace_once(text: str, old: str, new: str) -> str:
    """text with old replaced by new; old must occur exactly once."""
    assert text.count(old) == 1, f"expected {old!r} exactly once"
    return text.replace(old, new)


def edit(path: Path, old: str, new: str) -> None:
    """Replace exactly one occurrence of old in a file (the test data must contain it)."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{path} should contain {old!r} exactly once"
    path.write_text(text.replace(old, new), encoding="utf-8")


def write_atomically(path: Path, text: str) -> None:
    """Write a file the way a careful operator does: a temporary file, then rename over."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def canonical_hash(path: Path) -> str:
    """sha256 of a document's canonical JSON form, computed independently of the service.

    A deliberate oracle copy of what document/load.py computes: a test that called the service's
    own function would check it against itself.
    """
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
