"""The `liandong` command: rule-author tools (`liandong rules ...`), the service (`liandong serve`)
and its command-line client (`liandong determine`, `liandong rulesets`).

Exit codes: 0 success; 1 a document is invalid or a fixture failed; 2 usage error;
3 the incident was refused (invalid facts, unknown incident type, rule set or version).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from liandong import coverage, shadow
from liandong.document.analysis import analyse, unaccepted
from liandong.document.diff import NotComparable, diff
from liandong.document.load import (
    DOCUMENT_SUFFIX,
    display_path,
    document_paths,
    hidden_paths,
    load_each,
    load_tree,
    parse_document,
)
from liandong.document.model import RuleSetDocument
from liandong.engine.result import Incident
from liandong.engine.runtime import DurableRuntime
from liandong.errors import EvaluationError, InvalidIncident, LiandongError, Problem, RuleDocumentInvalid
from liandong.fixtures import CaseResult, check_fixture, fixture_path, load_fixtures, run_all
from liandong.render import inputs_markdown, to_json, to_text
from liandong.rulebook import RuleBook

if TYPE_CHECKING:
    import grpc

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3


class UsageError(Exception):
    """A command line that cannot be carried out as written."""


def parse_fact(text: str) -> tuple[str, object]:
    """`name=value`; the value is read as JSON (3, 2.5, true, "x"), nan/inf as numbers, else as text."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"--fact '{text}' is not NAME=VALUE")
    special = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}
    try:
        value: object = special[raw.lower()] if raw.lower() in special else json.loads(raw)
    except ValueError:
        value = raw
    return name.strip(), value


def _problems(exc: RuleDocumentInvalid) -> None:
    for problem in exc.problems:
        print(problem, file=sys.stderr)


def _root(args: argparse.Namespace) -> Path:
    """The document or directory a rules command works on: PATH, else --rules-dir; exit 2 if missing."""
    root = Path(getattr(args, "path", None) or args.rules_dir)
    if not root.exists():
        raise UsageError(f"{root}: no such file or directory")
    return root


def _fixture_problems(docs: Sequence[RuleSetDocument]) -> list[Problem]:
    """Each document's fixtures checked against it (shape and ids), without running them."""
    problems: list[Problem] = []
    for doc in docs:
        path = fixture_path(Path(doc.path))
        if not path.exists():
            continue
        try:
            fixture = load_fixtures(path)
        except RuleDocumentInvalid as exc:
            problems.extend(exc.problems)
            continue
        problems.extend(fixture.problems)
        problems.extend(p for found in check_fixture(doc, fixture).values() for p in found)
    return problems


def cmd_validate(args: argparse.Namespace) -> int:
    root = _root(args)
    for hidden in hidden_paths(root):
        print(f"note: {hidden} is not loaded: names starting with '.' are skipped", file=sys.stderr)
    # Every document on its own, so that one broken document does not hide the problems of the
    # others, nor their fixtures' and the analysis' findings: one pass reports everything.
    docs, problems = load_each(root)
    problems.extend(_fixture_problems(docs))
    findings = [f for doc in docs for f in unaccepted(analyse(doc))]
    for problem in problems:
        print(problem, file=sys.stderr)
    for finding in findings:
        print(finding, file=sys.stderr)
    for doc in docs:
        print(f"ok  {doc.path}  {doc.ruleset} {doc.version}  {len(doc.rules)} rules  sha256 {doc.content_hash[:12]}")
    if problems or findings:
        print(f"{len(problems) + len(findings)} problem(s) found", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    root = _root(args)
    try:
        docs = load_tree(root)
    except RuleDocumentInvalid as exc:
        _problems(exc)
        print(f"{len(exc.problems)} problem(s) found", file=sys.stderr)
        return EXIT_FAILED
    findings = {doc.path: analyse(doc) for doc in docs}
    open_findings = [f for found in findings.values() for f in unaccepted(found)]
    if args.json:
        out = [
            {
                "path": doc.path,
                "ruleset": doc.ruleset,
                "version": doc.version,
                "findings": [
                    {
                        "kind": f.kind,
                        "id": f.id,
                        "message": f.message,
                        "line": f.pos.line,
                        "column": f.pos.column,
                        "accepted": f.accepted or None,
                    }
                    for f in findings[doc.path]
                ],
            }
            for doc in docs
        ]
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        for doc in docs:
            found = findings[doc.path]
            for f in found:
                print(f)
            accepted = len(found) - len(unaccepted(found))
            print(f"{doc.path}: {len(unaccepted(found))} finding(s), {accepted} accepted")
    return EXIT_FAILED if open_findings else EXIT_OK


def _select(results: Sequence[CaseResult], pattern: str) -> list[CaseResult]:
    return [r for r in results if re.search(pattern, r.note)] if pattern else list(results)


def _junit(results: Sequence[CaseResult], problems: Sequence[Problem]) -> str:
    suite = ET.Element(
        "testsuite",
        name="liandong rules test",
        tests=str(len(results) + len(problems)),
        failures=str(sum(not r.passed for r in results)),
        errors=str(len(problems)),
    )
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=f"{r.ruleset}.{r.version}", name=r.note, file=r.path)
        case.set("line", str(r.line))
        if not r.passed:
            ET.SubElement(case, "failure", message=r.failures[0]).text = "\n".join(r.failures)
    for p in problems:
        case = ET.SubElement(suite, "testcase", classname=p.path, name=f"{p.path}:{p.line}:{p.column}")
        ET.SubElement(case, "error", message=p.message).text = str(p)
    return ET.tostring(suite, encoding="unicode")


def _run_tests(args: argparse.Namespace, root: Path) -> int:
    try:
        book = RuleBook.load(root, DurableRuntime())
    except RuleDocumentInvalid as exc:
        _problems(exc)
        return EXIT_FAILED
    run = run_all(book, root)
    results = _select(run.results, args.run)
    problems = list(run.problems) + [
        Problem(path, 0, 0, f"has no fixtures (expected {fixture_path(Path(path)).name} beside it)")
        for path in run.missing
    ]
    reports = coverage.for_documents(book, document_paths(root)[0]) if args.coverage else []
    below = [c for c in reports if min(c.rule_percent, c.boundary_percent) < args.fail_under]
    passed = sum(r.passed for r in results)
    failed = len(results) - passed + len(problems)
    if args.junit:
        Path(args.junit).write_text(_junit(results, problems), encoding="utf-8")
    if args.json:
        out: dict[str, object] = {
            "passed": passed,
            "failed": failed,
            "cases": [
                {"path": r.path, "line": r.line, "note": r.note, "passed": r.passed, "failures": list(r.failures)}
                for r in results
            ],
            "problems": [str(p) for p in problems],
        }
        if args.coverage:
            out["coverage"] = [c.to_json() for c in reports]
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        for problem in problems:
            print(problem, file=sys.stderr)
        for r in results:
            if r.passed:
                if args.verbose:
                    print(f"PASS {r.path}:{r.line}: {r.note}")
                continue
            print(f"FAIL {r.path}:{r.line}: {r.note}")
            for line in r.failures:
                print(f"     {line}")
        for report in reports:
            print(report.text())
        print(f"{passed} passed, {failed} failed")
        for report in below:
            print(f"coverage of {report.path} is below {args.fail_under:g}%", file=sys.stderr)
    if args.run and not results:
        print(f"error: no case matches --run {args.run!r}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if failed == 0 and passed > 0 and not below else EXIT_FAILED


def _mtimes(root: Path) -> dict[str, float]:
    files = [root] if root.is_file() else [p for p in root.rglob("*.yaml") if p.is_file()]
    return {str(p): p.stat().st_mtime_ns for p in files}


def watch(
    root: Path,
    once: Callable[[], int],
    sleep: Callable[[float], None] = time.sleep,
    runs: int | None = None,
    poll: float = 0.5,
) -> int:
    """Run, then run again each time a document or fixture below root changes (Ctrl-C ends it);
    `runs` bounds the number of runs (for tests)."""
    code = once()
    done = 1
    seen = _mtimes(root)
    try:
        while runs is None or done < runs:
            sleep(poll)
            now = _mtimes(root)
            if now != seen:
                seen = now
                print("-- change seen; running again --", file=sys.stderr)
                code = once()
                done += 1
    except KeyboardInterrupt:
        pass
    return code


def cmd_test(args: argparse.Namespace) -> int:
    root = _root(args)
    if args.watch:
        return watch(root, lambda: _run_tests(args, root))
    return _run_tests(args, root)


def _documents(spec: str, rules_dir: Path) -> RuleSetDocument:
    """A document given as a path or as RULESET@VERSION in the rules directory."""
    path = Path(spec)
    if not path.exists() and "@" in spec:
        ruleset, _, version = spec.partition("@")
        path = rules_dir / ruleset / f"{version}{DOCUMENT_SUFFIX}"
        if not path.exists():
            raise UsageError(f"{spec}: no document {path} (looked in rules directory {rules_dir})")
    if not path.is_file():
        raise UsageError(f"{spec}: no such file")
    return parse_document(path.read_bytes(), display_path(path))


def cmd_diff(args: argparse.Namespace) -> int:
    rules_dir = Path(args.rules_dir)
    try:
        old = _documents(args.old, rules_dir)
        new = _documents(args.new, rules_dir)
    except RuleDocumentInvalid as exc:
        _problems(exc)
        return EXIT_FAILED
    try:
        changes = diff(old, new)
    except NotComparable as exc:
        raise UsageError(f"cannot compare {old.path} and {new.path}: {exc}") from None
    if args.json:
        print(json.dumps([c.to_json() for c in changes], ensure_ascii=False, indent=2))
    else:
        for change in changes:
            print(f"- {change.describe()}")
        print(f"{len(changes)} change(s) between {old.path} and {new.path}")
    return EXIT_FAILED if changes else EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    rules_dir = Path(args.rules_dir)
    if not rules_dir.exists():
        raise UsageError(f"{rules_dir}: no such rules directory")
    try:
        book = RuleBook.load(rules_dir, DurableRuntime())
    except RuleDocumentInvalid as exc:
        _problems(exc)
        return EXIT_FAILED
    from_store = bool(args.store or args.data_dir)
    if from_store == bool(args.incidents):
        raise UsageError(
            "replay reads a JSON-lines file of incidents or the incident store (--store or --data-dir), one of them"
        )
    incidents: list[Incident | shadow.Recorded]
    if from_store:
        incidents = _recorded_incidents(args.store, args.data_dir)
    else:
        try:
            with open(args.incidents, encoding="utf-8") if args.incidents != "-" else sys.stdin as stream:
                incidents = list(shadow.read_jsonl(stream))
        except OSError as exc:
            raise UsageError(f"{args.incidents}: {exc.strerror}") from None
        except shadow.BadLine as exc:
            raise UsageError(f"{args.incidents}: {exc}") from None
    try:
        result = shadow.replay(book, incidents, args.against, ruleset=args.ruleset, base=args.base)
    except EvaluationError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_REFUSED
    if args.json:
        print(
            json.dumps(
                {
                    "compared": result.compared,
                    "changed": result.changed,
                    "differences": [d.to_json() for d in result.differences],
                    "skipped": list(result.skipped),
                },
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        for d in result.differences:
            print(f"{d.incident}  {d.ruleset} {d.old_version} -> {d.new_version}  rules: {' '.join(d.rules) or '-'}")
            print(f"    old: {d.old}")
            print(f"    new: {d.new}")
        for line in result.skipped:
            print(f"skipped {line}", file=sys.stderr)
        print(f"{result.changed} of {result.compared} answers would change")
    return EXIT_FAILED if result.changed else EXIT_OK


def _recorded_incidents(store: str, data_dir: str) -> list[Incident | shadow.Recorded]:
    """Every incident in the store (--store URL, or the SQLite file under --data-dir), read, never created."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError

    from liandong.store.recorded import StoreIncidents
    from liandong.store.sql import SQLITE_FILE, SqlStore

    if store and data_dir:
        raise UsageError("give --store or --data-dir, not both")
    url = store or f"sqlite:///{(Path(data_dir) / SQLITE_FILE).resolve()}"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UsageError(f"--store {store}: not a database URL (sqlite:///PATH or postgresql://...)") from None
    if parsed.get_backend_name() == "sqlite" and not (parsed.database and Path(parsed.database).is_file()):
        raise UsageError(f"{parsed.database or url}: no incident store there")
    try:
        opened = SqlStore(url)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        return list(StoreIncidents(opened)())
    except LiandongError as exc:
        raise UsageError(f"incident store: {exc.message}") from None
    finally:
        opened.close()


def _not_loaded(exc: EvaluationError, rules_dir: str) -> str:
    hint = f" (did you mean '{exc.suggestion}'?)" if exc.suggestion else ""
    return f"error: {exc.message}{hint}; looked in --rules-dir {rules_dir}"


def cmd_explain(args: argparse.Namespace) -> int:
    facts = dict(parse_fact(f) for f in args.fact)
    _root(args)
    try:
        book = RuleBook.load(Path(args.rules_dir), DurableRuntime())
    except RuleDocumentInvalid as exc:
        _problems(exc)
        return EXIT_FAILED
    try:
        versions = book.versions(args.ruleset)
        incident_type = args.type or versions[-1].document.incident_types[0]
        det = book.determine(
            Incident(type=incident_type, facts=facts, id="cli"), args.ruleset, args.version or "", explain=True
        )
    except InvalidIncident as exc:
        print(f"error: incident refused by rule set '{exc.ruleset}':", file=sys.stderr)
        for v in exc.violations:
            print(f"  {v.field}: {v.description}" if v.field else f"  {v.description}", file=sys.stderr)
        return EXIT_REFUSED
    except EvaluationError as exc:
        print(_not_loaded(exc, args.rules_dir), file=sys.stderr)
        return EXIT_REFUSED
    print(to_json(det) if args.json else to_text(det, explain=True))
    return EXIT_OK


def cmd_inputs(args: argparse.Namespace) -> int:
    _root(args)
    try:
        book = RuleBook.load(Path(args.rules_dir), DurableRuntime())
        names = [args.ruleset] if args.ruleset else list(book.rulesets())
        tables = [inputs_markdown(book.versions(name)[-1].document) for name in names]
    except RuleDocumentInvalid as exc:
        _problems(exc)
        return EXIT_FAILED
    except EvaluationError as exc:
        print(_not_loaded(exc, args.rules_dir), file=sys.stderr)
        return EXIT_REFUSED
    print("\n\n".join(tables))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    # Imported here so the rule-author commands work without loading gRPC.
    from liandong.server import app, config, logs

    flags = {name: getattr(args, name) for name in config.HELP}
    try:
        cfg = config.load(flags, env=os.environ)
    except config.ConfigError as exc:
        raise UsageError(str(exc)) from None
    logs.configure(cfg.log_level, cfg.log_format)
    if cfg.workers > 1:
        from liandong.server import workers

        return workers.supervise(cfg)
    return app.run(cfg)


def _credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """TLS credentials from --tls-ca/--tls-cert/--tls-key, or None for plaintext."""
    if not (args.tls_ca or args.tls_cert or args.tls_key):
        return None
    from liandong.tls import TLSError, channel_credentials

    try:
        return channel_credentials(args.tls_ca, args.tls_cert, args.tls_key)
    except TLSError as exc:
        raise UsageError(str(exc)) from None


def _add_connection_flags(parser: argparse.ArgumentParser, target: str) -> None:
    """How a client command reaches the service: address, deadline, TLS."""
    parser.add_argument("--target", default=target, help=f"server address (default {target})")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per call")
    parser.add_argument("--tls-ca", default="", help="connect over TLS, trusting this PEM CA file")
    parser.add_argument("--tls-cert", default="", help="PEM client certificate (mutual TLS)")
    parser.add_argument("--tls-key", default="", help="PEM key of --tls-cert")


def _client_error(exc: LiandongError) -> int:
    if isinstance(exc, InvalidIncident) and exc.violations:
        print("error: incident refused:", file=sys.stderr)
        for v in exc.violations:
            print(f"  {v.field}: {v.description}" if v.field else f"  {v.description}", file=sys.stderr)
    else:
        print(f"error: {exc.message}", file=sys.stderr)
    return EXIT_REFUSED if isinstance(exc, EvaluationError) else EXIT_FAILED


def cmd_determine(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToJson

    from liandong.client import Client, determination_from_proto

    facts = dict(parse_fact(f) for f in args.fact)
    try:
        with Client(args.target, timeout=args.timeout, credentials=_credentials(args)) as client:
            msg = client.determine(
                args.type, facts, ruleset=args.ruleset, version=args.version, explain=args.explain, incident_id=args.id
            )
    except LiandongError as exc:
        return _client_error(exc)
    if args.json:
        print(MessageToJson(msg, ensure_ascii=False, indent=2))
    else:
        print(f"decision   {msg.decision_id}")
        print(to_text(determination_from_proto(msg), explain=args.explain))
    return EXIT_OK


def cmd_rulesets(args: argparse.Namespace) -> int:
    from liandong.client import Client

    try:
        with Client(args.target, timeout=args.timeout, credentials=_credentials(args)) as client:
            summaries = client.list_rulesets()
    except LiandongError as exc:
        return _client_error(exc)
    for s in summaries:
        print(f"{s.id}  types: {', '.join(s.incident_types)}  active: {s.active_version or '(none in force)'}")
        for v in s.versions:
            until = f" until {v.effective_until}" if v.effective_until else ""
            mark = "*" if v.active else " "
            print(f"  {mark} {v.version}  from {v.effective_from}{until}  sha256 {v.content_hash[:12]}  {v.title}")
    return EXIT_OK


def _incident_client(args: argparse.Namespace) -> Any:
    from liandong.client import Client

    token = args.token or os.environ.get("LIANDONG_TOKEN", "")
    return Client(args.target, timeout=args.timeout, credentials=_credentials(args), token=token)


def _state_text(state: Any) -> str:
    from liandong.v1 import incidents_pb2 as ipb

    command = state.command_level
    held = f" (override by {command.set_by}: {command.reason})" if command.overridden else ""
    lines = [
        f"incident   {state.incident_id}  {ipb.IncidentStatus.Name(state.status).removeprefix('INCIDENT_STATUS_').lower()}  version {state.version}",
        f"rule set   {state.ruleset} {state.ruleset_version}",
        f"rules      {state.rules_level.name or '-'}",
        f"command    {command.level.name or '-'}{held}  [{ipb.LevelChange.Name(state.change).removeprefix('LEVEL_CHANGE_').lower()}]",
    ]
    if state.units_added:
        lines.append("added      " + ", ".join(u.name for u in state.units_added))
    if state.units_dropped:
        lines.append("dropped    " + ", ".join(u.name for u in state.units_dropped))
    for o in state.obligations:
        st = ipb.TrackedObligation.State.Name(o.state).removeprefix("STATE_").lower()
        due = f" due {o.due_at.ToJsonString()}" if o.HasField("due_at") else ""
        lines.append(f"  [{st}] {o.id}{due}  {o.text}")
    return "\n".join(lines)


def cmd_incident(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToJson

    from liandong.v1 import incidents_pb2 as ipb

    def show(msg: Any, text: Callable[[Any], str] | None = None) -> None:
        if args.json or text is None:
            print(MessageToJson(msg, ensure_ascii=False, indent=2))
        else:
            print(text(msg))

    try:
        with _incident_client(args) as client:
            action = args.incident_command
            if action == "report":
                facts = dict(parse_fact(f) for f in args.fact)
                facts.update({name: None for name in args.remove})
                show(
                    client.report(
                        args.id, facts, incident_type=args.type, reporter=args.reporter, ruleset=args.ruleset
                    ),
                    _state_text,
                )
            elif action == "get":
                show(client.get_incident(args.id))
            elif action == "list":
                req = ipb.ListIncidentsRequest(
                    type=args.type,
                    level_at_least=args.level_at_least,
                    page_size=args.page_size,
                    page_token=args.page_token,
                )
                if args.status:
                    req.status = ipb.IncidentStatus.Value("INCIDENT_STATUS_" + args.status.upper())  # type: ignore[assignment]
                show(client.list_incidents(req))
            elif action == "watch":
                for count, event in enumerate(
                    client.watch(args.after, incident_id=args.id, timeout=args.for_seconds), 1
                ):
                    print(MessageToJson(event, ensure_ascii=False, indent=None), flush=True)
                    if args.count and count >= args.count:
                        break
            elif action == "ack":
                show(client.acknowledge(args.id, args.obligation, args.unit, args.note), _state_text)
            elif action == "close":
                show(client.close_incident(args.id, by=args.by, reason=args.reason), _state_text)
            elif action == "set-level":
                show(client.set_command_level(args.id, args.level, by=args.by, reason=args.reason), _state_text)
    except LiandongError as exc:
        return _client_error(exc)
    return EXIT_OK


def _add_incident_parser(sub: Any, target: str) -> None:
    incident = sub.add_parser("incident", help="follow incidents on a running service (IncidentService)")
    isub = incident.add_subparsers(dest="incident_command", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = isub.add_parser(name, help=text)
        _add_connection_flags(p, target)
        p.add_argument("--token", default="", help="bearer token (default: $LIANDONG_TOKEN)")
        p.add_argument("--json", action="store_true", help="print the answer as JSON")
        p.set_defaults(func=cmd_incident)
        return p

    report = command("report", "open an incident or report new facts about it")
    report.add_argument("id", help="incident id")
    report.add_argument("--type", default="", help="incident type (first report only)")
    report.add_argument("--fact", action="append", default=[], metavar="NAME=VALUE", help="a fact; repeat for more")
    report.add_argument("--remove", action="append", default=[], metavar="NAME", help="a fact no longer true")
    report.add_argument("--reporter", default="", help="who reports")
    report.add_argument("--ruleset", default="", help="rule set (first report only)")
    get = command("get", "an incident with its whole history")
    get.add_argument("id")
    listing = command("list", "incidents, filtered and paged")
    listing.add_argument("--status", choices=("open", "closed"), default="")
    listing.add_argument("--type", default="")
    listing.add_argument("--level-at-least", default="", help="a level code")
    listing.add_argument("--page-size", type=int, default=50)
    listing.add_argument("--page-token", default="")
    watch = command("watch", "print events as JSON lines, from after a sequence number")
    watch.add_argument("--after", type=int, default=0, help="the last sequence seen (default 0: all)")
    watch.add_argument("--id", default="", help="one incident only")
    watch.add_argument("--count", type=int, default=0, help="stop after this many events")
    watch.add_argument("--for-seconds", type=float, default=None, help="stop after this long")
    ack = command("ack", "acknowledge an obligation as met by a unit")
    ack.add_argument("id")
    ack.add_argument("obligation")
    ack.add_argument("--unit", required=True)
    ack.add_argument("--note", default="")
    close = command("close", "stand the incident down (响应终止)")
    close.add_argument("id")
    close.add_argument("--by", required=True)
    close.add_argument("--reason", default="")
    level = command("set-level", "a commander's override of the command level")
    level.add_argument("id")
    level.add_argument("level", help="a level code of the incident's rule set")
    level.add_argument("--by", required=True)
    level.add_argument("--reason", default="", help="required to go below the rules' level")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liandong", description="Emergency-plan rules engine.")
    sub = parser.add_subparsers(dest="command", required=True)
    rules = sub.add_parser("rules", help="check, test and explain rule documents")
    rsub = rules.add_subparsers(dest="rules_command", required=True)

    def where(p: argparse.ArgumentParser) -> None:
        p.add_argument("path", nargs="?", default="", help="a document or a directory (default: --rules-dir)")
        p.add_argument("--rules-dir", default="rules", help="where the documents are (default: rules)")

    validate = rsub.add_parser(
        "validate", help="check documents and their fixtures, with the analysis; report every problem"
    )
    where(validate)
    validate.set_defaults(func=cmd_validate)

    check = rsub.add_parser("check", help="find gaps, overlaps, masked rules and unused catalogue entries")
    where(check)
    check.add_argument("--json", action="store_true", help="print the findings as JSON")
    check.set_defaults(func=cmd_check)

    test = rsub.add_parser("test", help="run every fixture beside the documents")
    where(test)
    test.add_argument("-v", "--verbose", action="store_true", help="list passing cases too")
    test.add_argument("-k", "--run", default="", metavar="REGEX", help="run only the cases whose note matches")
    test.add_argument("--coverage", action="store_true", help="report rule and boundary coverage")
    test.add_argument(
        "--fail-under", type=float, default=0.0, metavar="PCT", help="with --coverage: fail below this percentage"
    )
    test.add_argument("--json", action="store_true", help="print the results (and coverage) as JSON")
    test.add_argument("--junit", default="", metavar="FILE", help="also write the results as JUnit XML")
    test.add_argument("--watch", action="store_true", help="run again whenever a document or fixture changes")
    test.set_defaults(func=cmd_test)

    differ = rsub.add_parser("diff", help="what answers change between two documents (exit 1 if any)")
    differ.add_argument("old", help="a document path, or RULESET@VERSION in --rules-dir")
    differ.add_argument("new", help="a document path, or RULESET@VERSION in --rules-dir")
    differ.add_argument("--rules-dir", default="rules", help="where RULESET@VERSION is looked up (default: rules)")
    differ.add_argument("--json", action="store_true", help="print the changes as JSON")
    differ.set_defaults(func=cmd_diff)

    explain = rsub.add_parser("explain", help="evaluate an incident and show why")
    explain.add_argument("ruleset", help="rule set id, e.g. fire-linkage")
    explain.add_argument(
        "--fact",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a fact; repeat for more (values read as JSON, else text)",
    )
    explain.add_argument("--type", default="", help="incident type (default: the rule set's first)")
    explain.add_argument("--version", default="", help="pin a version (default: the one in force today)")
    explain.add_argument("--rules-dir", default="rules", help="where the documents are (default: rules)")
    explain.add_argument("--json", action="store_true", help="print the determination as JSON")
    explain.set_defaults(func=cmd_explain)

    inputs = rsub.add_parser("inputs", help="list what a caller sends, as Markdown tables (latest version)")
    inputs.add_argument("ruleset", nargs="?", default="", help="one rule set (default: all)")
    inputs.add_argument("--rules-dir", default="rules", help="where the documents are (default: rules)")
    inputs.set_defaults(func=cmd_inputs)

    from liandong.server.config import HELP, Config, env_name

    defaults = Config()
    serve = sub.add_parser(
        "serve",
        help="serve the rules over gRPC",
        description="Serve rule sets over gRPC (liandong.v1.ResponseService) with health, reflection and Prometheus metrics. "
        "Every flag can also be set by its LIANDONG_* environment variable; a flag wins. "
        "SIGHUP reloads the rules; SIGTERM drains and exits 0.",
    )
    for name, text in HELP.items():
        default = getattr(defaults, name)
        flag = "--" + name.replace("_", "-")
        shown = "(set)" if name == "admin_token" and default else default
        if isinstance(default, bool):
            serve.add_argument(
                flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{text} [{env_name(name)}; default {str(default).lower()}]",
            )
        else:
            serve.add_argument(flag, dest=name, default=None, help=f"{text} [{env_name(name)}; default {shown!s}]")
    serve.set_defaults(func=cmd_serve)

    determine = sub.add_parser("determine", help="ask a running service what the plan requires for an incident")
    determine.add_argument("--type", required=True, help="incident type, e.g. fire")
    determine.add_argument("--fact", action="append", default=[], metavar="NAME=VALUE", help="a fact; repeat for more")
    determine.add_argument("--id", default="", help="incident id")
    determine.add_argument("--ruleset", default="", help="rule set (needed when several claim the type)")
    determine.add_argument("--version", default="", help="pin a version")
    determine.add_argument("--explain", action="store_true", help="show each rule's conditions with the values")
    determine.add_argument("--json", action="store_true", help="print the answer as JSON")
    _add_connection_flags(determine, defaults.listen)
    determine.set_defaults(func=cmd_determine)

    replayer = sub.add_parser(
        "replay", help="answer recorded incidents under a candidate version: the answers that would change"
    )
    replayer.add_argument(
        "incidents",
        nargs="?",
        default="",
        help="a JSON-lines file of incidents ({id, type, facts, occurred_at}); - for stdin; or use --store/--data-dir",
    )
    replayer.add_argument(
        "--store",
        default="",
        metavar="URL",
        help="replay the incident store (sqlite:///PATH or postgresql://...): each incident's merged facts, against the version it was judged under",
    )
    replayer.add_argument(
        "--data-dir", default="", metavar="DIR", help="replay the SQLite incident store under DIR (as serve --data-dir)"
    )
    replayer.add_argument("--against", required=True, metavar="VERSION", help="the candidate version")
    replayer.add_argument("--base", default="", metavar="VERSION", help="compare with this version (default: in force)")
    replayer.add_argument("--ruleset", default="", help="the rule set (default: the one claiming each incident's type)")
    replayer.add_argument("--rules-dir", default="rules", help="where the documents are (default: rules)")
    replayer.add_argument("--json", action="store_true", help="print the table as JSON")
    replayer.set_defaults(func=cmd_replay)

    rulesets = sub.add_parser("rulesets", help="list the rule sets a running service has loaded")
    _add_connection_flags(rulesets, defaults.listen)
    rulesets.set_defaults(func=cmd_rulesets)
    _add_incident_parser(sub, defaults.listen)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return code


if __name__ == "__main__":
    sys.exit(main())
