"""The bundled rule sets carry the text they cite: every citation resolves to a clause quoted in the
rule set's own sources/ excerpts, and nothing points outside the project (a user's clone has no ../shared)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from liandong.document.load import document_paths, load_document
from liandong.document.model import Citation, RuleSetDocument, Then
from support.data import ROOT

RULES = ROOT / "rules"
SOURCES = "sources"
ELISION = "……"
HEADING = re.compile(r"^(#{1,6}) +(.+?) *$")
DOCUMENT_PATHS = document_paths(RULES)[0]


@dataclass(frozen=True)
class Excerpt:
    """One cited document's excerpt: its title (the `# ` line) and each clause heading's text, subclauses included."""

    title: str
    path: Path
    clauses: dict[str, str]


def parse_excerpt(text: str, path: Path) -> Excerpt:
    """Split an excerpt into its title and clauses; text before the first clause heading is the excerpt's own note."""
    title = ""
    clauses: dict[str, list[str]] = {}
    open_headings: list[tuple[int, str]] = []  # the headings whose text the current line belongs to
    for line in text.splitlines():
        m = HEADING.match(line)
        if m and len(m.group(1)) == 1:
            assert not title, f"{path}: a second '# ' title line"
            title = m.group(2)
            continue
        if m:
            depth, heading = len(m.group(1)), m.group(2)
            assert heading not in clauses, f"{path}: clause heading {heading!r} appears twice"
            open_headings = [(d, h) for d, h in open_headings if d < depth] + [(depth, heading)]
            clauses[heading] = []
            continue
        for _, heading in open_headings:
            clauses[heading].append(line)
    assert title, f"{path}: no '# ' title line naming the document"
    return Excerpt(title, path, {h: "\n".join(lines) for h, lines in clauses.items()})


def excerpts_beside(document: Path) -> dict[str, Excerpt]:
    """The excerpts in the document's sources/ directory, by the title of the document each one quotes."""
    found: dict[str, Excerpt] = {}
    for path in sorted((document.parent / SOURCES).glob("*.md")):
        excerpt = parse_excerpt(path.read_text(encoding="utf-8"), path)
        assert excerpt.title not in found, f"{path}: {excerpt.title!r} is also quoted in {found[excerpt.title].path}"
        found[excerpt.title] = excerpt
    return found


def _flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


def unresolved(excerpts: dict[str, Excerpt], citation: Citation) -> list[str]:
    """Why the citation does not resolve (empty when it does).

    A clause is a clause heading of the cited document's excerpt, optionally followed by a space and
    words quoted from that clause, which must appear there verbatim (…… marks an elision). Several
    clauses are a list of citations, never one string joining them."""
    excerpt = excerpts.get(citation.document)
    if excerpt is None:
        return [f"no excerpt quotes the document {citation.document!r}"]
    head = heading(excerpt, citation.clause)
    if head is None:
        return [f"{citation.document}: no clause {citation.clause!r} in {excerpt.path.name}"]
    quote = citation.clause[len(head) :].strip()
    missing = [piece for piece in quote.split(ELISION) if _flat(piece) not in _flat(excerpt.clauses[head])]
    if missing:
        return [f"{citation.document} {head}: {missing} is not in the clause's text in {excerpt.path.name}"]
    return []


def heading(excerpt: Excerpt, clause: str) -> str | None:
    """The longest clause heading the cited clause starts with (alone or followed by a quote)."""
    heads = [h for h in excerpt.clauses if clause == h or clause.startswith(h + " ")]
    return max(heads, key=len) if heads else None


def resolved_clauses(excerpts: dict[str, Excerpt], citation: Citation) -> set[tuple[str, str]]:
    """The (document, clause heading) a resolving citation names, as a set to union."""
    return {(citation.document, str(heading(excerpts[citation.document], citation.clause)))}


def of(item: object) -> tuple[Citation, ...]:
    """An item's citations: several since documents may cite a list, one before that."""
    many = getattr(item, "citations", None)
    if many:
        return tuple(many)
    one = getattr(item, "citation", None)
    return (one,) if isinstance(one, Citation) else ()


def citations(doc: RuleSetDocument) -> Iterator[tuple[str, Citation]]:
    """Every citation of the document, with where it is written."""
    named: list[tuple[str, object]] = [(f"levels.{x.code}", x) for x in doc.levels]
    named += [(f"units.{x.id}", x) for x in doc.units]
    named += [(f"groups.{x.id}", x) for x in doc.groups]
    named += [(f"obligations.{x.id}", x) for x in doc.obligations]
    named += [(f"rules.{x.id}", x) for x in doc.rules]
    named += [(f"checks.{x.id}", x) for x in getattr(doc, "checks", ())]
    for where, item in named:
        for citation in of(item):
            yield where, citation


@pytest.mark.parametrize("path", DOCUMENT_PATHS, ids=[p.parent.name for p in DOCUMENT_PATHS])
def test_every_citation_resolves_to_a_quoted_clause(path: Path) -> None:
    """Each citation of a bundled document names a clause heading of an excerpt beside it, and any words it quotes are that clause's own."""
    doc = load_document(path)
    excerpts = excerpts_beside(path)
    problems = [f"{where}: {p}" for where, c in citations(doc) for p in unresolved(excerpts, c)]
    assert not problems, "\n".join(problems)
    assert sum(1 for _ in citations(doc)) >= len(doc.rules), "every rule cites a clause"


@pytest.mark.parametrize("path", DOCUMENT_PATHS, ids=[p.parent.name for p in DOCUMENT_PATHS])
def test_a_rule_cites_every_clause_its_obligations_come_from(path: Path) -> None:
    """A rule or level that imposes an obligation cites the clause the obligation cites: its answer names every clause its duties come from."""
    doc = load_document(path)
    excerpts = excerpts_beside(path)
    obligations = {o.id: o for o in doc.obligations}
    sources: list[tuple[str, object, Then]] = [
        (f"levels.{lv.code}", lv, lv.then) for lv in doc.levels if lv.then is not None
    ]
    sources += [(f"rules.{r.id}", r, r.then) for r in doc.rules]
    problems = []
    for where, item, then in sources:
        cited = set().union(*(resolved_clauses(excerpts, c) for c in of(item)))
        for oid in then.obligations:
            needed = set().union(*(resolved_clauses(excerpts, c) for c in of(obligations[oid])))
            if not needed & cited:
                problems.append(f"{where} imposes {oid} ({sorted(needed)}) but cites only {sorted(cited)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", DOCUMENT_PATHS, ids=[p.parent.name for p in DOCUMENT_PATHS])
def test_the_plan_itself_is_quoted_where_the_document_says(path: Path) -> None:
    """source.location names an excerpt beside the document, and that excerpt quotes source.plan."""
    doc = load_document(path)
    location = path.parent / doc.source.location.split()[0]
    assert location.is_file() and location.parent.name == SOURCES, f"{path}: source.location {doc.source.location!r}"
    assert parse_excerpt(location.read_text(encoding="utf-8"), location).title == doc.source.plan


@pytest.mark.parametrize("path", DOCUMENT_PATHS, ids=[p.parent.name for p in DOCUMENT_PATHS])
def test_nothing_points_outside_the_project(path: Path) -> None:
    """No bundled document, fixture file or excerpt mentions shared/ (the plan collection a user's clone does not have)."""
    files = [
        path,
        path.with_name(path.name.replace(".yaml", ".fixtures.yaml")),
        *sorted((path.parent / SOURCES).glob("*")),
    ]
    for file in files:
        if file.is_file():
            assert "shared/" not in file.read_text(encoding="utf-8"), f"{file} mentions shared/"


def test_a_citation_that_is_not_in_the_excerpt_does_not_resolve(tmp_path: Path) -> None:
    """An unknown clause, an unquoted document and words that are not the clause's own are each reported."""
    text = "# 某预案\n\nSource: a note, not a clause.\n\n## 第一条\n\n第一条本方案自发文之日起执行。\n### 第一条(一)\n\n(一)各村应在第一时间赶赴现场。\n"
    excerpts = {"某预案": parse_excerpt(text, tmp_path / "plan.md")}
    assert unresolved(excerpts, Citation("某预案", "第一条")) == []
    assert (
        unresolved(excerpts, Citation("某预案", "第一条 自发文之日起……第一时间赶赴现场")) == []
    )  # a heading's text holds its subclauses'
    assert (
        unresolved(excerpts, Citation("某预案", "第一条(一);第一条")) != []
    )  # several clauses are a list, not one string
    assert unresolved(excerpts, Citation("某预案", "第二条")) == ["某预案: no clause '第二条' in plan.md"]
    assert unresolved(excerpts, Citation("某预案", "第一条(一) 立即赶赴现场")) != []
    assert (
        unresolved(excerpts, Citation("某预案", "第一条 a note")) != []
    )  # the excerpt's own note is not the plan's text
    assert unresolved(excerpts, Citation("他预案", "第一条")) == ["no excerpt quotes the document '他预案'"]
