"""Loading rule documents from files and directories, with the checks that span documents."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from liandong.document.check import check
from liandong.document.model import RuleSetDocument
from liandong.document.parse import Parser
from liandong.document.source import SourceError, plain, read_file, read_yaml
from liandong.errors import Problem, RuleDocumentInvalid

DOCUMENT_SUFFIX = ".yaml"
FIXTURE_SUFFIX = ".fixtures.yaml"
MAX_DOCUMENTS = 1000


def display_path(path: Path) -> str:
    """The path as a rule author would type it: relative to the working directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def content_hash(data: object) -> str:
    """sha256 of the canonical JSON form: formatting and comments do not change it."""
    canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def parse_document(data: bytes, path: str) -> RuleSetDocument:
    """Parse and check one document's bytes; raise RuleDocumentInvalid with every problem."""
    try:
        root = read_yaml(data, path)
    except SourceError as exc:
        raise RuleDocumentInvalid(exc.problems) from None
    parser = Parser(path)
    doc = parser.document(root)
    problems = list(parser.problems)
    if doc is not None:
        doc, more = check(doc)
        problems.extend(more)
    if problems or doc is None:
        raise RuleDocumentInvalid(
            sorted(problems, key=lambda p: (p.line, p.column)) or [Problem(path, 1, 1, "document could not be read")]
        )
    raw = plain(root)
    return dataclasses.replace(doc, content_hash=content_hash(raw), raw=raw)


def load_document(path: Path) -> RuleSetDocument:
    """Load one document file, checking that its ruleset and version match where it lives."""
    shown = display_path(path)
    try:
        data = read_file(path, shown)
    except SourceError as exc:
        raise RuleDocumentInvalid(exc.problems) from None
    doc = parse_document(data, shown)
    problems = []
    if doc.ruleset != path.parent.name:
        problems.append(
            Problem(
                shown,
                1,
                1,
                f"ruleset '{doc.ruleset}' does not match its directory '{path.parent.name}'",
                key="ruleset",
                ruleset=doc.ruleset,
            )
        )
    expected = path.name[: -len(DOCUMENT_SUFFIX)]
    if doc.version != expected:
        problems.append(
            Problem(
                shown,
                1,
                1,
                f"version '{doc.version}' does not match its file name '{path.name}'",
                key="version",
                ruleset=doc.ruleset,
            )
        )
    if problems:
        raise RuleDocumentInvalid(problems)
    return doc


def document_paths(root: Path) -> tuple[list[Path], list[Problem]]:
    """Every rule document below root (fixtures excluded), and problems with the tree itself."""
    problems: list[Problem] = []
    if root.is_file():
        return [root], problems
    if not root.is_dir():
        return [], [Problem(display_path(root), 0, 0, "no such file or directory")]
    real_root = root.resolve()
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for link in [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            problems.append(
                Problem(
                    display_path(Path(dirpath) / link),
                    0,
                    0,
                    "symbolic link to a directory is not followed; put the documents in the rules directory",
                )
            )
            dirnames.remove(link)
        for name in sorted(filenames):
            if not name.endswith(DOCUMENT_SUFFIX) or name.endswith(FIXTURE_SUFFIX) or name.startswith("."):
                continue
            path = Path(dirpath) / name
            if not path.resolve().is_relative_to(real_root):
                problems.append(Problem(display_path(path), 0, 0, "points outside the rules directory; refusing it"))
                continue
            found.append(path)
    if len(found) > MAX_DOCUMENTS:
        problems.append(Problem(display_path(root), 0, 0, f"{len(found)} documents; the limit is {MAX_DOCUMENTS}"))
    return found, problems


def hidden_paths(root: Path) -> list[str]:
    """Directories and *.yaml files below root that are not loaded because their names start
    with '.' (editors' and version control's own files live there); callers say so in their log."""
    if not root.is_dir():
        return []
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        out.extend(display_path(Path(dirpath) / d) for d in sorted(dirnames) if d.startswith("."))
        out.extend(
            display_path(Path(dirpath) / f)
            for f in sorted(filenames)
            if f.startswith(".") and f.endswith(DOCUMENT_SUFFIX)
        )
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    return out


def load_each(root: Path) -> tuple[list[RuleSetDocument], list[Problem]]:
    """Every document below root, each loaded on its own, and every problem found loading them and
    checking them together: one broken document hides nothing about the others."""
    paths, problems = document_paths(root)
    docs: list[RuleSetDocument] = []
    for path in paths:
        try:
            docs.append(load_document(path))
        except RuleDocumentInvalid as exc:
            problems.extend(exc.problems)
        except OSError as exc:
            problems.append(Problem(display_path(path), 0, 0, f"cannot read: {exc.strerror}"))
    problems.extend(collisions(docs))
    if not paths and not problems:
        problems.append(Problem(display_path(root), 0, 0, "no rule documents found (expected RULESET/VERSION.yaml)"))
    return docs, problems


def load_tree(root: Path) -> list[RuleSetDocument]:
    """Every document below root, checked alone and together; RuleDocumentInvalid lists all problems."""
    docs, problems = load_each(root)
    if problems:
        raise RuleDocumentInvalid(problems)
    return docs


def collisions(docs: list[RuleSetDocument]) -> list[Problem]:
    """Two documents of one rule set with the same version, or in force from the same day."""
    problems: list[Problem] = []
    seen_version: dict[tuple[str, str], RuleSetDocument] = {}
    seen_from: dict[tuple[str, object], RuleSetDocument] = {}
    for doc in docs:
        first = seen_version.setdefault((doc.ruleset, doc.version), doc)
        if first is not doc:
            problems.append(
                Problem(
                    doc.path,
                    1,
                    1,
                    f"rule set '{doc.ruleset}' version '{doc.version}' is also defined in {first.path}",
                    key="version",
                    ruleset=doc.ruleset,
                )
            )
            continue
        first = seen_from.setdefault((doc.ruleset, doc.effective_from), doc)
        if first is not doc:
            problems.append(
                Problem(
                    doc.path,
                    1,
                    1,
                    f"rule set '{doc.ruleset}' versions '{first.version}' and '{doc.version}' both take effect on {doc.effective_from}; which is in force would be ambiguous",
                    key="effective_from",
                    ruleset=doc.ruleset,
                )
            )
    return problems
