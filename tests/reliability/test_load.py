"""Faults and load against a real `liandong serve` process on 127.0.0.1: 64 concurrent callers while
the rules reload every second, and SIGTERM while calls are in flight."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path

import grpc

from liandong.engine.result import Incident
from liandong.engine.runtime import DurableRuntime
from liandong.rulebook import RuleBook
from liandong.v1 import admin_pb2, admin_pb2_grpc
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.data import DEMO_DIR
from support.messages import HeldStream, answers_of, batches, request
from support.metrics import metric, scrape
from support.processes import Serve, serving, wait_until
from support.rules import copy_demo, replace_once, write_atomically
from support.servers import ADMIN_TOKEN

CALLERS = 64
STREAM_CALLERS = 8  # of the 64, these send DetermineStream calls of STREAM_LENGTH requests
STREAM_LENGTH = 10
LOAD_SECONDS = 8.0  # the load phase lasts this long ...
MAX_CALLS_PER_CALLER = 5_000  # ... or until every caller made this many calls, whichever is first
RELOAD_EVERY = 1.0

# The demo rule set and a variant that answers differently for hazardous materials and grade IV;
# both are version 2024.1 (so both pass its fixtures) and differ in content hash.
VARIANT_B = [
    (
        "    then: {units: [chem], obligations: [turn_out]}\n",
        "    then: {units: [chem, police], obligations: [turn_out]}\n",
    ),
    (
        "    then: {level: IV, lead: brigade, command_tier: 大队}\n",
        "    then: {level: IV, lead: brigade, command_tier: 消防大队}\n",
    ),
]
FACTS = [
    {"deaths": d, "hazmat": h, "status": s}
    for d in (0, 2, 3, 9, 10, 50)
    for h in (False, True)
    for s in ("normal", "险情")
] + [{"level_m": 30.6}, {"level_m": 29.0, "warning_m": 28.5}, {"loss_yuan": 20_000_000.0}]


def variant_text(name: str) -> str:
    text = (DEMO_DIR / "2024.1.yaml").read_text(encoding="utf-8")
    if name == "B":
        for old, new in VARIANT_B:
            text = replace_once(text, old, new)
    return text


def summary(
    level: str, lead: str, tier: str, units: list[str], groups: list[str], obligations: list[str], rules: list[str]
) -> tuple[object, ...]:
    return (level, lead, tier, tuple(units), tuple(groups), tuple(obligations), tuple(rules))


def of_answer(a: pb.Determination) -> tuple[object, ...]:
    return summary(
        a.level.code,
        a.lead_agency.id,
        a.command_tier,
        [u.id for u in a.participating_units],
        [g.id for g in a.groups],
        [o.id for o in a.obligations],
        [r.id for r in a.matched_rules],
    )


def oracle(tmp_path: Path, runtime: DurableRuntime) -> dict[str, list[tuple[object, ...]]]:
    """For each variant's content hash, the answer to each of FACTS, worked out in process."""
    expected: dict[str, list[tuple[object, ...]]] = {}
    for name in ("A", "B"):
        rules = tmp_path / f"oracle-{name}"
        copy_demo(rules)
        (rules / "demo" / "2024.1.yaml").write_text(variant_text(name), encoding="utf-8")
        book = RuleBook.load(rules, runtime)
        answers = []
        for facts in FACTS:
            d = book.determine(Incident(type="demo", facts=dict(facts)))
            answers.append(
                summary(
                    d.level.code if d.level else "",
                    d.lead.id if d.lead else "",
                    d.command_tier,
                    [u.id for u in d.units],
                    [g.id for g in d.groups],
                    [o.id for o in d.obligations],
                    [r.id for r in d.matched_rules],
                )
            )
        expected[book.versions("demo")[0].document.content_hash] = answers
    assert len(expected) == 2
    a, b = expected.values()
    differ = sum(x != y for x, y in zip(a, b, strict=True))
    print(f"\nthe two variants answer {differ} of {len(FACTS)} incidents differently")
    assert differ >= 6  # the variants really answer differently
    return expected


class Results:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answers: Counter[str] = Counter()  # content hash -> answers seen
        self.calls = 0
        self.streams = 0
        self.errors: list[str] = []
        self.inconsistent: list[str] = []


def test_64_callers_while_rules_reload_every_second(tmp_path: Path, runtime: DurableRuntime) -> None:
    """64 concurrent callers for a bounded time while the rules swap every second: zero non-OK answers, each consistent with the version it names, none lost."""
    expected = oracle(tmp_path, runtime)
    rules = tmp_path / "rules"
    copy_demo(rules)
    document = rules / "demo" / "2024.1.yaml"
    results = Results()
    stop = threading.Event()
    reloads: list[bool] = []
    reload_errors: list[str] = []

    with serving(tmp_path, "--rules-dir", str(rules), "--admin-token", ADMIN_TOKEN) as server:

        def caller(index: int) -> None:
            with grpc.insecure_channel(server.target) as channel:
                stub = pb_grpc.ResponseServiceStub(channel)  # type: ignore[no-untyped-call]
                for n in range(MAX_CALLS_PER_CALLER):
                    if stop.is_set():
                        return
                    picks = [
                        (index + n * 7 + k) % len(FACTS) for k in range(STREAM_LENGTH if index < STREAM_CALLERS else 1)
                    ]
                    try:
                        if index < STREAM_CALLERS:
                            answers = list(
                                answers_of(
                                    stub.DetermineStream(
                                        batches([request("demo", FACTS[i]) for i in picks]), timeout=30
                                    )
                                )
                            )
                        else:
                            answers = [stub.Determine(request("demo", FACTS[picks[0]]), timeout=30)]
                    except grpc.RpcError as error:
                        with results.lock:
                            results.errors.append(f"{error.code().name}: {error.details()}")
                        continue
                    with results.lock:
                        results.calls += 1
                        results.streams += index < STREAM_CALLERS
                        if len(answers) != len(picks):
                            results.inconsistent.append(f"stream of {len(picks)} got {len(answers)} answers")
                        if len({a.content_hash for a in answers}) != 1:
                            results.inconsistent.append("one stream answered from two snapshots")
                        for i, a in zip(picks, answers, strict=True):
                            results.answers[a.content_hash] += 1
                            want = expected.get(a.content_hash)
                            if want is None or want[i] != of_answer(a) or a.version != "2024.1":
                                results.inconsistent.append(f"{a.content_hash[:12]} {FACTS[i]}: {of_answer(a)}")

        def reloader() -> None:
            with grpc.insecure_channel(server.target) as channel:
                admin = admin_pb2_grpc.RulesAdminServiceStub(channel)  # type: ignore[no-untyped-call]
                for n in range(1, 1_000):  # bounded; stopped with the callers
                    if stop.wait(RELOAD_EVERY):
                        return
                    write_atomically(document, variant_text("B" if n % 2 else "A"))
                    reply = admin.Reload(
                        admin_pb2.ReloadRequest(), metadata=[("authorization", f"Bearer {ADMIN_TOKEN}")], timeout=30
                    )
                    reloads.append(reply.ok)
                    reload_errors.extend(reply.errors)

        threads = [threading.Thread(target=caller, args=(i,), name=f"caller-{i}", daemon=True) for i in range(CALLERS)]
        threads.append(threading.Thread(target=reloader, name="reloader", daemon=True))
        started = time.monotonic()
        for t in threads:
            t.start()
        try:
            stop.wait(LOAD_SECONDS)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        elapsed = time.monotonic() - started
        assert not any(t.is_alive() for t in threads)
        # A stream is counted once grpc has terminated it, which can be just after its caller has the status.
        wait_until(lambda: metric(scrape(server.metrics_port), "liandong_rpc_requests_total") >= results.calls, 10)
        page = scrape(server.metrics_port)

    answers = sum(results.answers.values())
    print(
        f"\nload figures: {CALLERS} callers for {elapsed:.1f}s: {results.calls} calls ({results.streams} streams), {answers} answers, "
        f"{len(reloads)} reloads, answers per version {dict((h[:12], n) for h, n in results.answers.items())}, {answers / elapsed:.0f} answers/s"
    )
    assert results.errors == []
    assert results.inconsistent == []
    assert len(reloads) >= 4 and all(reloads), reload_errors
    assert len(results.answers) == 2 and all(
        n > 0 for n in results.answers.values()
    )  # both versions answered during the run
    assert metric(page, "liandong_decisions_total") == answers  # every decision made reached its caller, none more
    assert metric(page, "liandong_rpc_requests_total", method="Reload", code="OK") == len(
        reloads
    )  # admin calls are counted too
    assert metric(page, "liandong_rpc_requests_total", code="OK") == results.calls + len(reloads)
    assert metric(page, "liandong_rpc_requests_total") == results.calls + len(reloads)  # no call ended any other way
    assert metric(page, "liandong_reloads_total", outcome="success", trigger="admin") == len(reloads)


def new_call_code(target: str) -> grpc.StatusCode:
    """How a call from a new caller ends."""
    with grpc.insecure_channel(target) as fresh:
        try:
            pb_grpc.ResponseServiceStub(fresh).Determine(request("demo", {"deaths": 3}), timeout=10)  # type: ignore[no-untyped-call]
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            return code
    return grpc.StatusCode.OK


def test_sigterm_under_load_completes_calls_in_flight_and_exits_0(tmp_path: Path) -> None:
    """SIGTERM during load: streams in flight get every answer, new calls are refused without being evaluated, exit 0."""
    rules = tmp_path / "rules"
    copy_demo(rules)
    codes: Counter[str] = Counter()
    stop = threading.Event()
    lock = threading.Lock()
    server = Serve(tmp_path, "--rules-dir", str(rules), "--grace-seconds", "30", "--log-level", "info", metrics=False)
    try:
        server.wait_serving()
        channel = grpc.insecure_channel(server.target)
        held = [HeldStream(pb_grpc.ResponseServiceStub(channel)) for _ in range(4)]  # type: ignore[no-untyped-call]
        for h in held:
            h.send(request("demo", {"deaths": 3}))
        assert wait_until(lambda: all(len(h.answers) == 1 for h in held), 30)

        def load() -> None:
            with grpc.insecure_channel(server.target) as own:
                stub = pb_grpc.ResponseServiceStub(own)  # type: ignore[no-untyped-call]
                for n in range(5_000):
                    if stop.is_set():
                        return
                    try:
                        code = (
                            "OK"
                            if stub.Determine(request("demo", {"deaths": n % 40}), timeout=10).version == "2024.1"
                            else "WRONG"
                        )
                    except grpc.RpcError as error:
                        code = error.code().name
                    with lock:
                        codes[code] += 1
                    if code == "UNAVAILABLE":
                        time.sleep(0.02)

        loaders = [threading.Thread(target=load, daemon=True) for _ in range(8)]
        for t in loaders:
            t.start()
        try:
            assert wait_until(lambda: codes["OK"] >= 200, 60)
            server.send_signal(signal.SIGTERM)
            server.wait_event("draining", 30)
            probes: list[grpc.StatusCode] = []
            assert wait_until(
                lambda: probes.append(new_call_code(server.target)) or probes[-1] == grpc.StatusCode.UNAVAILABLE, 30
            )  # new callers are turned away
            with lock:
                codes["OK"] += probes.count(
                    grpc.StatusCode.OK
                )  # (a probe that got in before the port closed was answered)
            for h in held:  # the streams that were in flight carry on through the drain
                for deaths in (0, 3, 10, 2, 9):
                    h.send(request("demo", {"deaths": deaths}))
                h.finish()
            assert all(h.done.wait(60) for h in held)
        finally:
            stop.set()
            for t in loaders:
                t.join(30)
            for h in held:
                h.finish()
            channel.close()
        exit_code = server.proc.wait(timeout=60)
    finally:
        server.stop()
    decided = sum(e.get("event") == "decision" for e in server.events())
    print(f"\nsigterm figures: unary calls by code {dict(codes)}; 4 streams x 6 answers; {decided} decisions logged")
    assert exit_code == 0
    assert server.event("stopped") is not None
    for h in held:
        assert h.error is None, h.error
        assert [a.level.code for a in h.answers] == ["III", "IV", "III", "II", "IV", "III"]
    # Answered, or refused: UNAVAILABLE once the port closed; CANCELLED by gRPC itself for a call that
    # reached the port in the instant the drain began and that no handler had picked up yet.
    assert set(codes) <= {"OK", "UNAVAILABLE", "CANCELLED"}, codes
    assert codes["OK"] >= 200
    assert decided == codes["OK"] + sum(
        len(h.answers) for h in held
    )  # a refused call was never evaluated: retrying it is safe
