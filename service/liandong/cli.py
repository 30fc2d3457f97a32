"""The `liandong` command: rule-author tools (`liandong rules ...`), the service (`liandong serve`)
and its command-line client (`liandong determine`, `liandong rulesets`).

Exit codes: 0 success; 1 a document is invalid or a fixture failed; 2 usage error;
3 the incident was refused (invalid facts, unknown incident type, rule set or version).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from liandong.document.load import hidden_paths, load_tree
from liandong.engine.result import Incident
from liandong.engine.runtime import DurableRuntime
from liandong.errors import EvaluationError, InvalidIncident, LiandongError, RuleDocumentInvalid
from liandong.fixtures import run_all
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


def cmd_validate(args: argparse.Namespace) -> int:
    for hidden in hidden_paths(Path(args.path)):
        print(f"note: {hidden} is not loaded: names starting with '.' are skipped", file=sys.stderr)
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
    run = run_all(book, root)
    for path in run.missing:
        print(f"warning: {path} has no fixtures", file=sys.stderr)
    for problem in run.problems:
        print(problem, file=sys.stderr)
    for r in run.results:
        if r.passed:
            if args.verbose:
                print(f"PASS {r.path}:{r.line}: {r.note}")
            continue
        print(f"FAIL {r.path}:{r.line}: {r.note}")
        for line in r.failures:
            print(f"     {line}")
    print(f"{run.passed} passed, {run.failed} failed")
    return EXIT_OK if run.failed == 0 and run.passed > 0 else EXIT_FAILED


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
        det = book.determine(
            Incident(type=incident_type, facts=facts, id="cli"), args.ruleset, args.version or "", explain=True
        )
    except InvalidIncident as exc:
        print(f"error: incident refused by rule set '{exc.ruleset}':", file=sys.stderr)
        for v in exc.violations:
            print(f"  {v.field}: {v.description}" if v.field else f"  {v.description}", file=sys.stderr)
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

    validate = rsub.add_parser("validate", help="check documents and report every problem")
    validate.add_argument("path", nargs="?", default="rules", help="a document or a directory (default: rules)")
    validate.set_defaults(func=cmd_validate)

    test = rsub.add_parser("test", help="run every fixture beside the documents")
    test.add_argument("path", nargs="?", default="rules", help="a document or a directory (default: rules)")
    test.add_argument("-v", "--verbose", action="store_true", help="list passing cases too")
    test.set_defaults(func=cmd_test)

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
