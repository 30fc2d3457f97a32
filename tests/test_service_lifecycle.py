"""End to end: start-up, health transitions, reflection and graceful shutdown of the real server."""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry

from liandong.cli import EXIT_USAGE, main
from liandong.client import Client, ServiceError
from liandong.engine.runtime import DurableRuntime
from liandong.server.app import Service, StartupError
from liandong.server.reload import ReloadOutcome
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.messages import answers_of, batches, request
from support.metrics import sample
from support.processes import Serve, wait_until
from support.rules import copy_demo, edit
from support.servers import (
    ADMIN_SERVICE,
    ADMIN_TOKEN,
    HEALTH_SERVICE,
    LOOPBACK,
    NOT_SERVING,
    RESPONSE_SERVICE,
    SERVING,
    channel,
    health_status,
    make_config,
    running,
    target,
)
from support.status import details


# -- health ----------------------------------------------------------------------------------------------
def test_health_is_not_serving_until_rules_load(tmp_path: Path, runtime: DurableRuntime) -> None:
    """While the rules are still loading, health says NOT_SERVING and calls get UNAVAILABLE (retried by the client); once loaded, SERVING."""
    copy_demo(tmp_path)
    registry = CollectorRegistry()
    svc = Service(make_config(tmp_path, metrics_listen=""), registry=registry, runtime=runtime)
    loading, release = threading.Event(), threading.Event()
    real_reload = svc.state.reload

    def gated_reload(trigger: str) -> ReloadOutcome:
        loading.set()
        assert release.wait(15)
        return real_reload(trigger)

    svc.state.reload = gated_reload  # type: ignore[method-assign]
    starter = threading.Thread(target=svc.start, name="start")
    starter.start()
    try:
        assert loading.wait(15)
        with channel(target(svc)) as ch:
            assert health_status(ch) == NOT_SERVING
            assert health_status(ch, RESPONSE_SERVICE) == NOT_SERVING
            assert sample(registry, "liandong_serving") == 0
            stub = pb_grpc.ResponseServiceStub(ch)  # type: ignore[no-untyped-call]
            with pytest.raises(grpc.RpcError) as caught:
                stub.Determine(request("demo", {"deaths": 3}), timeout=5)
            assert details(caught.value).code == grpc.StatusCode.UNAVAILABLE
            assert "not loaded" in details(caught.value).message
            with Client(target(svc), timeout=5, retries=2, backoff=0.01) as client:
                with pytest.raises(ServiceError) as caught_client:
                    client.determine("demo", {"deaths": 3})
            assert caught_client.value.status_code == grpc.StatusCode.UNAVAILABLE
            # One raw call plus the client's first try and two retries.
            assert sample(registry, "liandong_rpc_requests_total", method="Determine", code="UNAVAILABLE") == 4
            release.set()
            starter.join(15)
            assert not starter.is_alive()
            assert health_status(ch) == SERVING
            assert health_status(ch, RESPONSE_SERVICE) == SERVING
            assert sample(registry, "liandong_serving") == 1
            assert stub.Determine(request("demo", {"deaths": 3}), timeout=5).level.code == "III"
    finally:
        release.set()
        starter.join(15)
        svc.stop(0)


def test_health_is_not_serving_while_draining(tmp_path: Path, runtime: DurableRuntime) -> None:
    """Service.stop turns health to NOT_SERVING for watchers before the server goes away, and the serving gauge to 0."""
    copy_demo(tmp_path)
    registry = CollectorRegistry()
    svc = Service(make_config(tmp_path, metrics_listen=""), registry=registry, runtime=runtime)
    svc.start()
    stopper = threading.Thread(target=svc.stop, args=(10,), name="stop")
    try:
        with channel(target(svc)) as ch:
            watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=""), timeout=20)  # type: ignore[no-untyped-call]
            seen: queue.Queue[int] = queue.Queue()

            def follow() -> None:
                try:
                    for update in watch:
                        seen.put(update.status)
                except grpc.RpcError:
                    pass

            follower = threading.Thread(target=follow, name="watch")
            follower.start()
            assert seen.get(timeout=10) == SERVING
            stopper.start()
            assert seen.get(timeout=10) == NOT_SERVING
            assert wait_until(lambda: sample(registry, "liandong_serving") == 0, 10)
            watch.cancel()  # the watch is itself an in-flight call: let the drain finish
            follower.join(10)
        stopper.join(15)
        assert not stopper.is_alive()
    finally:
        if stopper.is_alive() or not stopper.ident:
            svc.stop(0)


# -- start-up failures --------------------------------------------------------------------------------------
def _break_document(root: Path) -> str:
    copy_demo(root)
    edit(
        root / "demo" / "2024.1.yaml",
        "then: {units: [chem], obligations: [turn_out]}",
        "then: {units: [chemm], obligations: [turn_out]}",
    )
    return "names unknown unit 'chemm' (did you mean 'chem'?)"


def _break_fixture(root: Path) -> str:
    copy_demo(root)
    edit(root / "demo" / "2024.1.fixtures.yaml", "want: {level: II}", "want: {level: I}")
    return "fixture 'exactly 10 deaths is II' failed"


def _empty(root: Path) -> str:
    return "no rule documents found"


def _missing(root: Path) -> str:
    root.rmdir()
    return "no such file or directory"


@pytest.mark.parametrize(
    "breaker",
    [_break_document, _break_fixture, _empty, _missing],
    ids=["invalid document", "failing fixture", "empty directory", "missing directory"],
)
def test_invalid_rules_dir_fails_start(tmp_path: Path, runtime: DurableRuntime, breaker: object) -> None:
    """A service whose rules directory cannot serve raises StartupError naming the located problem, and stops listening."""
    rules = tmp_path / "rules"
    rules.mkdir()
    words = breaker(rules)  # type: ignore[operator]
    svc = Service(make_config(rules, metrics_listen=f"{LOOPBACK}:0"), registry=CollectorRegistry(), runtime=runtime)
    try:
        with pytest.raises(StartupError) as caught:
            svc.start()
        assert words in str(caught.value)
        assert str(rules) in str(caught.value)
        assert svc.state.book is None
        with channel(target(svc)) as ch:
            with pytest.raises(grpc.RpcError) as refused:
                health_status(ch)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        svc.stop(0)


def test_address_in_use_fails_start(tmp_path: Path, runtime: DurableRuntime) -> None:
    """A second service on a port that is taken fails with StartupError naming the address."""
    copy_demo(tmp_path)
    with running(tmp_path, runtime, metrics_listen="") as first:
        taken = target(first)
        second = Service(
            make_config(tmp_path, listen=taken, metrics_listen=""), registry=CollectorRegistry(), runtime=runtime
        )
        try:
            with pytest.raises(StartupError) as caught:
                second.start()
            assert f"cannot listen on {taken}" in str(caught.value)
        finally:
            second.stop(0)
        with channel(taken) as ch:
            assert health_status(ch) == SERVING  # the first one is untouched


def test_serve_with_invalid_rules_dir_exits_nonzero(tmp_path: Path) -> None:
    """`liandong serve` with an invalid rules directory exits 1 and logs startup_failed with the located problem."""
    rules = tmp_path / "rules"
    rules.mkdir()
    words = _break_document(rules)
    proc = Serve(tmp_path, "--rules-dir", str(rules), metrics=False)
    try:
        assert proc.wait(timeout=30) == 1
        failed = proc.event("startup_failed")
        assert failed is not None, proc.log()
        assert words in str(failed["error"])
        assert "Traceback" not in proc.log()
    finally:
        proc.stop()


def test_serve_rejects_a_bad_setting_with_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """`liandong serve` with a malformed address exits 2 naming the flag and its environment variable, before listening."""
    assert main(["serve", "--listen", "no-port-here", "--metrics-listen", ""]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--listen / LIANDONG_LISTEN" in err and "'no-port-here' is not host:port" in err


# -- reflection --------------------------------------------------------------------------------------------------
def _reflect(
    address: str, *requests: reflection_pb2.ServerReflectionRequest
) -> list[reflection_pb2.ServerReflectionResponse]:
    with channel(address) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)  # type: ignore[no-untyped-call]
        return list(stub.ServerReflectionInfo(iter(requests), timeout=10))


def test_reflection_lists_services_and_describes_them(tmp_path: Path, runtime: DurableRuntime) -> None:
    """Reflection lists the response, health and reflection services (admin only when configured) and serves their descriptors."""
    copy_demo(tmp_path)
    with running(tmp_path, runtime, metrics_listen="") as svc:
        listed, described = _reflect(
            target(svc),
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=RESPONSE_SERVICE),
        )
        names = {s.name for s in listed.list_services_response.service}
        assert {RESPONSE_SERVICE, HEALTH_SERVICE, "grpc.reflection.v1alpha.ServerReflection"} <= names
        assert ADMIN_SERVICE not in names
        files = [
            descriptor_pb2.FileDescriptorProto.FromString(raw)
            for raw in described.file_descriptor_response.file_descriptor_proto
        ]
        proto = next(f for f in files if f.name == "liandong/v1/liandong.proto")
        (service,) = [s for s in proto.service if s.name == "ResponseService"]
        assert {m.name for m in service.method} == {"Determine", "DetermineStream", "ListRuleSets", "GetRuleSet"}
        stream = next(m for m in service.method if m.name == "DetermineStream")
        assert stream.client_streaming and stream.server_streaming
    with running(tmp_path, runtime, metrics_listen="", admin_token=ADMIN_TOKEN) as svc:
        (listed,) = _reflect(target(svc), reflection_pb2.ServerReflectionRequest(list_services=""))
        assert ADMIN_SERVICE in {s.name for s in listed.list_services_response.service}


# -- graceful shutdown -----------------------------------------------------------------------------------------
def test_sigterm_drains_in_flight_stream_and_exits_zero(tmp_path: Path) -> None:
    """SIGTERM while a DetermineStream is in flight: health turns NOT_SERVING, the stream still gets every answer, and the process exits 0."""
    rules = tmp_path / "rules"
    rules.mkdir()
    copy_demo(rules)
    proc = Serve(tmp_path, env={"LIANDONG_RULES_DIR": str(rules), "LIANDONG_GRACE_SECONDS": "15"}, metrics=False)
    try:
        proc.wait_serving()
        with channel(proc.target) as ch:
            stub = pb_grpc.ResponseServiceStub(ch)  # type: ignore[no-untyped-call]
            release = threading.Event()

            def incidents() -> Iterator[pb.DetermineRequest]:
                for n in range(60):
                    yield request("demo", {"deaths": n % 12}, incident_id=f"n{n}")
                release.wait(20)
                for n in range(60, 120):
                    yield request("demo", {"deaths": n % 12}, incident_id=f"n{n}")

            answers: list[str] = []
            outcome: list[object] = []
            call = stub.DetermineStream(batches(incidents()), timeout=40)  # one request per message

            def consume() -> None:
                try:
                    for answer in answers_of(call):
                        answers.append(answer.incident_id)
                    outcome.append(call.code())
                except grpc.RpcError as exc:
                    outcome.append(exc)

            consumer = threading.Thread(target=consume, name="consume")
            consumer.start()
            watch = health_pb2_grpc.HealthStub(ch).Watch(
                health_pb2.HealthCheckRequest(service=RESPONSE_SERVICE), timeout=40
            )  # type: ignore[no-untyped-call]
            try:
                assert next(watch).status == SERVING
                assert wait_until(lambda: len(answers) >= 60, 20), f"only {len(answers)} answers before SIGTERM"
                proc.send_signal(signal.SIGTERM)
                assert next(watch).status == NOT_SERVING  # draining, with the stream still open
            finally:
                watch.cancel()
                release.set()
            consumer.join(30)
            assert not consumer.is_alive()
            assert outcome == [grpc.StatusCode.OK], outcome
            assert answers == [f"n{n}" for n in range(120)]
        assert proc.wait(timeout=30) == 0
        events = [e["event"] for e in proc.events()]
        assert events.index("signal") < events.index("draining") < events.index("stopped")
        assert proc.event("signal", signal="SIGTERM") is not None
    finally:
        proc.stop()
