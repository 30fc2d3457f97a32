"""The `liandong` command: the rule-author tools (`liandong rules ...`).

Exit codes: 0 success; 1 a document is invalid or a fixture failed; 2 usage error;
3 the incident was refused (invalid facts, unknown incident type, rule set or version).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from liandong.document.load import document_paths, load_tree
from liandong.engine.result import Incident
from liandong.engine.runtime import DurableRuntime
from liandong.errors import EvaluationError, InvalidIncident, RuleDocumentInvalid
from liandong.fixtures import fixture_path, run_fixture_file
from liandong.render import inputs_markdown, to_json, to_text
from liandong.rulebook import RuleBook

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


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        docs = load_tree(Path(args.path))
    except RuleDocumentInvalid as exc:
        _problems(exc)
        print(f"{len(exc.problems)} problem(s) found", file=sys.stderr)
        return EXIT_FAILED
    for doc in docs:
        print(f"ok  {doc.path}  {doc.ruleset} {doc.version}  {len(doc.rules)} rules  sha256 {doc.content_hash[:12]}")
    return EXIT_OK


def cmd_test(args: argparse.Namespace) -> int:
    root = Path(args.path)
    try:
        book = RuleBook.load(root, DurableRuntime())
    except RuleDocumentInvalid as exc:
        _problems(exc)
        return EXIT_FAILED
    paths, _ = document_paths(root)
    passed = failed = 0
    for doc_path in paths:
        fixtures = fixture_path(doc_path)
        if not fixtures.exists():
            print(f"warning: {doc_path} has no fixtures ({fixtures.name})", file=sys.stderr)
            continue
        try:
            results = run_fixture_file(book, fixtures)
        except RuleDocumentInvalid as exc:
            _problems(exc)
            failed += 1
            continue
        for r in results:
            if r.passed:
                passed += 1
                if args.verbose:
                    print(f"PASS {r.path}:{r.line}: {r.note}")
                continue
            failed += 1
            print(f"FAIL {r.path}:{r.line}: {r.note}")
            for line in r.failures:
                print(f"     {line}")
    print(f"{passed} passed, {failed} failed")
    return EXIT_OK if failed == 0 and passed > 0 else EXIT_FAILED


def cmd_explain(args: argparse.Namespace) -> int:
    facts = dict(parse_fact(f) for f in args.fact)
    try:
        book = RuleBook.load(Path(args.rules_dir), DurableRuntime())
    except RuleDocumentInvalid as exc:
        _problems(exc)
        return EXIT_FAILED
    try:
        versions = book.versions(args.ruleset)
        incident_type = args.type or versions[-1].document.incident_types[0]
        det = book.determine(Incident(type=incident_type, facts=facts, id="cli"), args.ruleset, args.version or "", explain=True)
    except InvalidIncident as exc:
        print(f"error: incident refused by rule set '{exc.ruleset}':", file=sys.stderr)
        for v in exc.violations:
            print(f"  {v.field}: {v.description}", file=sys.stderr)
        return EXIT_REFUSED
    except EvaluationError as exc:
        hint = f" (did you mean '{exc.suggestion}'?)" if exc.suggestion else ""
        print(f"error: {exc.message}{hint}", file=sys.stderr)
        return EXIT_REFUSED
    print(to_json(det) if args.json else to_text(det, explain=True))
    return EXIT_OK


def cmd_inputs(args: argparse.Namespace) -> int:
    try:
        book = RuleBook.load(Path(args.rules_dir), DurableRuntime())
        names = [args.ruleset] if args.ruleset else list(book.rulesets())
        tables = [inputs_markdown(book.versions(name)[-1].document) for name in names]
    except RuleDocumentInvalid as exc:
        _problems(exc)
        return EXIT_FAILED
    except EvaluationError as exc:
        hint = f" (did you mean '{exc.suggestion}'?)" if exc.suggestion else ""
        print(f"error: {exc.message}{hint}", file=sys.stderr)
        return EXIT_REFUSED
    print("\n\n".join(tables))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liandong", description="Emergency-plan rules engine.")
    sub = parser.add_subparsers(dest="command", required=True)
    rules = sub.add_parser("rules", help="check, test and explain rule documents")
    rsub = rules.add_subparsers(dest="rules_command", required=True)

    validate = rsub.add_parser("validate", help="check documents and report every problem")
    validate.add_argument("path", nargs="?", default="rules", help="a document or a directory (default: rules)")
    validate.set_defaults(func=cmd_validate)

    test = rsub.add_parser("test", help="run every fixture beside the documents")
    test.add_argument("path", nargs="?", default="rules", help="a document or a directory (default: rules)")
    test.add_argument("-v", "--verbose", action="store_true", help="list passing cases too")
    test.set_defaults(func=cmd_test)

    explain = rsub.add_parser("explain", help="evaluate an incident and show why")
    explain.add_argument("ruleset", help="rule set id, e.g. fire-linkage")
    explain.add_argument("--fact", action="append", default=[], metavar="NAME=VALUE", help="a fact; repeat for more (values read as JSON, else text)")
    explain.add_argument("--type", default="", help="incident type (default: the rule set's first)")
    explain.add_argument("--version", default="", help="pin a version (default: the one in force today)")
    explain.add_argument("--rules-dir", default="rules", help="where the documents are (default: rules)")
    explain.add_argument("--json", action="store_true", help="print the determination as JSON")
    explain.set_defaults(func=cmd_explain)

    inputs = rsub.add_parser("inputs", help="list what a caller sends, as Markdown tables (latest version)")
    inputs.add_argument("ruleset", nargs="?", default="", help="one rule set (default: all)")
    inputs.add_argument("--rules-dir", default="rules", help="where the documents are (default: rules)")
    inputs.set_defaults(func=cmd_inputs)
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
