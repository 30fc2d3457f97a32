"""Golden cases beside each rule document: loading them, running them, and a readable diff."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from liandong.document.load import FIXTURE_SUFFIX, display_path, document_paths
from liandong.document.model import RuleSetDocument
from liandong.document.shapes import ShapeReader
from liandong.document.source import LList, LMap, LScalar, SourceError, plain, read_file, read_yaml
from liandong.engine import deadlines
from liandong.engine.result import Determination, Incident
from liandong.errors import DeadlineUnknown, EvaluationError, Problem, RuleDocumentInvalid
from liandong.rulebook import RuleBook
from liandong.suggest import closest

LIST_KEYS = ("units", "groups", "obligations", "matched_rules", "assumed")
SCALAR_KEYS = ("applies", "level", "command_tier", "lead", "commanders")
MAP_KEYS = ("deadlines",)  # obligation id -> its deadline in words (Deadline.wording)
WANT_KEYS = SCALAR_KEYS + LIST_KEYS + tuple(f"{k}_{s}" for k in LIST_KEYS for s in ("include", "exclude")) + MAP_KEYS
CLOCK_KEYS = ("starts", "due", "next", "in_time")
UNKNOWN_DUE = "unknown"  # a `clocks.due` value: the due time is past the official calendar
ERROR_CODES = ("invalid_incident", "unknown_incident_type")


@dataclass(frozen=True)
class Case:
    note: str
    incident: Incident
    want: dict[str, object]
    want_error_code: str
    line: int
    # Due times of the answer's obligations from given start moments (rules/README.md, "Fixtures").
    clocks: dict[str, object] = field(default_factory=dict)
    # Where each `want` key's value was written (line, column), for errors about ids in it.
    at: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class FixtureFile:
    path: str
    ruleset: str
    version: str
    cases: tuple[Case, ...]
    # Malformed cases, located: they are left out and every other case still runs.
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class CaseResult:
    path: str
    ruleset: str
    version: str
    note: str
    line: int
    failures: tuple[str, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return not self.failures


def fixture_path(document_path: Path) -> Path:
    return document_path.with_name(document_path.name[: -len(".yaml")] + FIXTURE_SUFFIX)


def load_fixtures(path: Path) -> FixtureFile:
    """Read one fixtures file: the well-formed cases, and a located problem for each malformed one.
    RuleDocumentInvalid only when the file as a whole cannot be read (YAML syntax, top-level keys)."""
    shown = display_path(path)
    try:
        root = read_yaml(read_file(path, shown), shown)
    except SourceError as exc:
        raise RuleDocumentInvalid(exc.problems) from None
    p = ShapeReader(shown)
    top = p.mapping(root, "fixtures", ("ruleset", "version", "cases"), ("ruleset", "version", "cases"))
    cases: list[Case] = []
    notes: dict[str, int] = {}
    ruleset = version = ""
    if top is not None:
        ruleset = p.text(top.entries.get("ruleset"), "ruleset") or ""
        version = p.text(top.entries.get("version"), "version") or ""
        if p.problems:  # the file's own keys are wrong: no case can be trusted to the right version
            raise RuleDocumentInvalid(p.problems)
        for item in p.listing(top.entries.get("cases"), "cases"):
            before = len(p.problems)
            case = _case(p, item, notes)
            if case is not None and len(p.problems) == before:
                cases.append(case)
        if "cases" in top.entries and not cases and not p.problems:
            p.problem(top.entries["cases"], "cases is empty", key="cases")
    if top is None:
        raise RuleDocumentInvalid(p.problems)
    return FixtureFile(shown, ruleset, version, tuple(cases), tuple(p.problems))


def _case(p: ShapeReader, item: LMap | LList | LScalar, notes: dict[str, int]) -> Case | None:
    m = p.mapping(item, "case", ("note", "incident", "want", "want_error_code", "clocks"), ("note", "incident"))
    if m is None:
        return None
    note = p.text(m.entries.get("note"), "case note")
    if note is None:
        return None
    if note in notes:
        p.problem(m.entries["note"], f"duplicate case note '{note}' (first at line {notes[note]})", key="note")
    notes[note] = m.line
    where = f"case '{note}'"
    inc = p.mapping(m.entries.get("incident"), f"{where} incident", ("type", "facts", "id", "occurred_at"), ("type",))
    want_value = m.entries.get("want")
    want = p.mapping(want_value, f"{where} want", WANT_KEYS) if want_value is not None else None
    code = (
        p.text(m.entries.get("want_error_code"), f"{where} want_error_code") if "want_error_code" in m.entries else ""
    )
    if (want_value is None) == (not code):
        p.problem(m, f"{where} needs exactly one of 'want' and 'want_error_code'", key="want")
    if code and code not in ERROR_CODES:
        p.problem(
            m.entries["want_error_code"],
            f"{where} want_error_code '{code}' is not one of {', '.join(ERROR_CODES)}",
            key="want_error_code",
        )
    if inc is None:
        return None
    itype = p.text(inc.entries.get("type"), f"{where} incident type")
    facts_value = inc.entries.get("facts")
    facts = plain(facts_value) if facts_value is not None else {}
    if not isinstance(facts, dict):
        p.problem(inc, f"{where} incident facts must be a mapping", key="facts")
        return None
    occurred: dt.datetime | None = None
    if "occurred_at" in inc.entries:
        raw = inc.entries["occurred_at"]
        value = raw.value if isinstance(raw, LScalar) else None
        if isinstance(value, dt.datetime):
            occurred = value
        elif isinstance(value, dt.date):
            occurred = dt.datetime.combine(value, dt.time())
        else:
            p.problem(raw, f"{where} occurred_at must be a date or time", key="occurred_at")
    if itype is None:
        return None
    incident = Incident(
        type=itype, facts=facts, id=str(plain(inc.entries["id"])) if "id" in inc.entries else note, occurred_at=occurred
    )
    wanted = {k: plain(v) for k, v in want.entries.items()} if want is not None else {}
    clocks = _clocks(p, m.entries["clocks"], where) if "clocks" in m.entries else {}
    at = {k: (v.line, v.column) for k, v in want.entries.items()} if want is not None else {}
    return Case(note, incident, wanted, code or "", m.line, clocks, at)


def _moment(text: object) -> dt.datetime | None:
    """A moment with its offset (2026-09-30T15:00:00+08:00); None for anything else, naive times included."""
    if not isinstance(text, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.utcoffset() is not None else None


def _clocks(p: ShapeReader, value: LMap | LList | LScalar, where: str) -> dict[str, object]:
    """`clocks`: start moments, and the due times (or in-time verdicts) wanted of the answer's obligations."""
    m = p.mapping(value, f"{where} clocks", CLOCK_KEYS, ("starts",))
    if m is None:
        return {}
    out = {k: plain(v) for k, v in m.entries.items()}
    starts = out.get("starts")
    if not isinstance(starts, dict) or not starts:
        p.problem(m, f"{where} clocks.starts must map start events to moments", key="clocks.starts")
        return {}
    for event, at in starts.items():
        if event not in deadlines.START_EVENTS:
            p.problem(
                m.entries["starts"],
                f"{where} clocks.starts '{event}' is not one of {', '.join(deadlines.START_EVENTS)}",
                key="clocks.starts",
                suggestion=closest(str(event), deadlines.START_EVENTS),
            )
        if _moment(at) is None:
            p.problem(m.entries["starts"], f"{where} clocks.starts.{event} needs a time with its offset", key="starts")
    for key in ("due", "next", "in_time"):
        if key in out and not isinstance(out[key], dict):
            p.problem(m.entries[key], f"{where} clocks.{key} must map obligation ids", key=f"clocks.{key}")
    return out


def _clock_failures(det: Determination, clocks: dict[str, object]) -> list[str]:
    """Every way the answer's obligations fall due other than the case wants, one line each."""
    raw_starts = clocks.get("starts")
    assert isinstance(raw_starts, dict)
    starts = {str(e): m for e, at in raw_starts.items() if (m := _moment(at)) is not None}
    obligations = {o.id: o for o in det.obligations}
    failures: list[str] = []

    def first(oid: str) -> tuple[dt.datetime | None | str, str]:
        o = obligations.get(oid)
        if o is None:
            return None, f"clocks: obligation '{oid}' is not in the answer"
        try:
            return deadlines.first_due(o, starts), ""
        except DeadlineUnknown:
            return UNKNOWN_DUE, ""

    for section in ("due", "next", "in_time"):
        wanted = clocks.get(section) or {}
        assert isinstance(wanted, dict)
        for oid, expected in wanted.items():
            got, missing = first(str(oid))
            if missing:
                failures.append(missing)
                continue
            if section == "due":
                want = expected if expected in (None, UNKNOWN_DUE) else _moment(expected)
                if got != want:
                    failures.append(f"clocks.due.{oid}: want {expected}, got {_show(got)}")
            elif section == "next":
                series: list[str] = []
                current = got if isinstance(got, dt.datetime) else None
                wanted_list = expected if isinstance(expected, list) else [expected]
                while current is not None and len(series) < len(wanted_list):
                    current = deadlines.next_due(obligations[str(oid)], current)
                    if current is not None:
                        series.append(_show(current))
                if [_moment(w) for w in wanted_list] != [_moment(x) for x in series]:
                    failures.append(f"clocks.next.{oid}: want {wanted_list}, got {series}")
            else:
                if not isinstance(got, dt.datetime) or not isinstance(expected, dict):
                    failures.append(f"clocks.in_time.{oid}: no due time to meet (got {_show(got)})")
                    continue
                for at, verdict in expected.items():
                    moment = _moment(at)
                    if moment is None or deadlines.in_time(obligations[str(oid)], got, moment) is not verdict:
                        failures.append(f"clocks.in_time.{oid}: at {at} want {verdict} (due {_show(got)})")
    return failures


def _show(value: object) -> str:
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


def _got(det: Determination) -> dict[str, object]:
    return {
        "applies": det.applies,
        "level": det.level.code if det.level else None,
        "command_tier": det.command_tier or None,
        "lead": det.lead.id if det.lead else None,
        "commanders": [{"role": c.role, "who": c.who} for c in det.commanders],
        "units": [u.id for u in det.units],
        "groups": [g.id for g in det.groups],
        "obligations": [o.id for o in det.obligations],
        "matched_rules": [r.id for r in det.matched_rules],
        "assumed": [a.input for a in det.assumed],
        "deadlines": {o.id: o.deadline.wording for o in det.obligations},
    }


def compare(want: dict[str, object], det: Determination) -> list[str]:
    """Every way the determination differs from what the case wants, one readable line each."""
    got = _got(det)
    failures: list[str] = []
    for key, expected in want.items():
        base, _, mode = key.rpartition("_") if key.endswith(("_include", "_exclude")) else (key, "", "")
        if base in LIST_KEYS:
            have = [str(x) for x in got[base]]  # type: ignore[attr-defined]
            wanted = [str(x) for x in expected] if isinstance(expected, list) else [str(expected)]
            missing = [x for x in wanted if x not in have]
            if mode == "exclude":
                present = [x for x in wanted if x in have]
                if present:
                    failures.append(f"{base}: should not include {present}")
                continue
            if missing:
                failures.append(f"{base}: missing {missing}")
            if not mode:
                extra = [x for x in have if x not in wanted]
                if extra:
                    failures.append(f"{base}: unexpected {extra}")
        elif base in MAP_KEYS:
            have_map = got[base]
            assert isinstance(have_map, dict)
            for oid, words in expected.items() if isinstance(expected, dict) else ():
                if have_map.get(oid) != words:
                    failures.append(f"{base}.{oid}: want {words!r}, got {have_map.get(oid)!r}")
        elif got[key] != expected:
            failures.append(f"{key}: want {expected!r}, got {got[key]!r}")
    return failures


def run_case(book: RuleBook, fixture: FixtureFile, case: Case) -> CaseResult:
    """Evaluate one case against the fixture's own version, with explain on (so traces are checked too)."""

    def result(*failures: str) -> CaseResult:
        return CaseResult(fixture.path, fixture.ruleset, fixture.version, case.note, case.line, failures)

    try:
        det = book.determine(case.incident, fixture.ruleset, fixture.version, explain=True)
    except EvaluationError as exc:
        if case.want_error_code == exc.code:
            return result()
        return result(f"error {exc.code}: {exc.message}")
    if case.want_error_code:
        return result(
            f"want error {case.want_error_code}, got an answer (level {det.level.code if det.level else None})"
        )
    return result(*compare(case.want, det), *(_clock_failures(det, case.clocks) if case.clocks else ()))


def check_fixture(doc: RuleSetDocument, fixture: FixtureFile) -> dict[str, list[Problem]]:
    """Every case's references checked against its document (level codes, unit, group, obligation,
    rule and input ids, the incident type), located at the value written; keyed by case note."""
    known: dict[str, set[str]] = {
        "units": {u.id for u in doc.units},
        "groups": {g.id for g in doc.groups},
        "obligations": {o.id for o in doc.obligations},
        "matched_rules": {r.id for r in doc.rules},
        "assumed": {i.name for i in doc.inputs},
    }
    known["lead"] = known["units"]
    known["level"] = {lv.code for lv in doc.levels}
    out: dict[str, list[Problem]] = {}
    for case in fixture.cases:
        found: list[Problem] = []

        def bad(
            key: str, message: str, choices: set[str], wrong: str, case: Case = case, found: list[Problem] = found
        ) -> None:
            line, column = case.at.get(key, (case.line, 1))
            found.append(
                Problem(
                    fixture.path,
                    line,
                    column,
                    f"case '{case.note}' {message}",
                    key=key,
                    ruleset=fixture.ruleset,
                    suggestion=closest(wrong, choices),
                )
            )

        if case.want_error_code != "unknown_incident_type" and case.incident.type not in doc.incident_types:
            bad(
                "type",
                f"incident type '{case.incident.type}' is not one of {', '.join(doc.incident_types)}",
                set(doc.incident_types),
                case.incident.type,
            )
        if not case.want_error_code:
            for name in case.incident.facts:
                if doc.input(str(name)) is None:
                    bad("facts", f"sends unknown input '{name}'", known["assumed"], str(name))
        for key, value in case.want.items():
            base = key.rpartition("_")[0] if key.endswith(("_include", "_exclude")) else key
            if base not in known or value is None:
                continue
            values = value if isinstance(value, list) else [value]
            kind = {"matched_rules": "rule", "assumed": "input", "level": "level code", "lead": "unit"}.get(
                base, base[:-1]
            )
            for v in values:
                if str(v) not in known[base]:
                    bad(key, f"want {key} names unknown {kind} '{v}'", known[base], str(v))
        if found:
            out[case.note] = found
    return out


def run_fixture_file(book: RuleBook, path: Path) -> tuple[list[CaseResult], list[Problem]]:
    """Run every well-formed case of one file (a case naming an id its document does not have fails,
    with the located problem); the malformed ones come back as located problems instead."""
    fixture = load_fixtures(path)
    try:
        versions = book.versions(fixture.ruleset)
    except EvaluationError:
        versions = ()
    compiled = next((c for c in versions if c.document.version == fixture.version), None)
    if compiled is None:
        raise RuleDocumentInvalid(
            [
                Problem(
                    fixture.path,
                    1,
                    1,
                    f"fixtures name rule set '{fixture.ruleset}' version '{fixture.version}', which is not loaded",
                    key="version",
                )
            ]
        )
    bad = check_fixture(compiled.document, fixture)
    results = []
    for case in fixture.cases:
        got = run_case(book, fixture, case)
        if case.note in bad:  # an id the document lacks fails the case even where the comparison passes
            got = dataclasses.replace(got, failures=got.failures + tuple(str(p) for p in bad[case.note]))
        results.append(got)
    return results, list(fixture.problems)


@dataclass(frozen=True)
class FixtureRun:
    """Every case beside every document below a root, run against a rule book."""

    results: tuple[CaseResult, ...]
    problems: tuple[Problem, ...]  # unreadable fixture files
    missing: tuple[str, ...]  # documents without fixtures

    @property
    def passed(self) -> int:
        return sum(1 for r in self.results if r.passed)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if not r.passed) + len(self.problems)


def run_all(book: RuleBook, root: Path) -> FixtureRun:
    paths, _ = document_paths(root)
    results: list[CaseResult] = []
    problems: list[Problem] = []
    missing: list[str] = []
    real_root = (root if root.is_dir() else root.parent).resolve()
    for doc_path in paths:
        fixtures = fixture_path(doc_path)
        if not fixtures.exists():
            missing.append(display_path(doc_path))
            continue
        if not fixtures.resolve().is_relative_to(real_root):  # a symlink must not make us read (and quote) other files
            problems.append(Problem(display_path(fixtures), 0, 0, "points outside the rules directory; refusing it"))
            continue
        try:
            ran, bad = run_fixture_file(book, fixtures)
            results.extend(ran)
            problems.extend(bad)
        except RuleDocumentInvalid as exc:
            problems.extend(exc.problems)
    return FixtureRun(tuple(results), tuple(problems), tuple(missing))
