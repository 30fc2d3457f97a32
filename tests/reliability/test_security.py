"""Security: TLS and mutual TLS on the gRPC port, plaintext only on loopback unless allowed, the admin
token, rule paths that cannot leave the rules directory, YAML that constructs nothing, and logs and
metrics without incident facts."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import structlog.testing
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry

from liandong import cli
from liandong.client import Client
from liandong.document.load import load_tree
from liandong.engine.runtime import DurableRuntime
from liandong.errors import EngineFailure, RuleDocumentInvalid
from liandong.server import app, config
from liandong.server.app import Service, StartupError
from liandong.tls import channel_credentials
from liandong.v1 import admin_pb2, admin_pb2_grpc
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.certs import Certs
from support.data import DEMO_DIR
from support.messages import answers_of, batches, request
from support.metrics import scrape
from support.processes import serving, wait_until
from support.rules import copy_demo
from support.servers import ADMIN_TOKEN, LOOPBACK, make_config, running

TLS_TARGET_NAME = "localhost"


def reflected_services(channel: grpc.Channel) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)  # type: ignore[no-untyped-call]
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    return sorted(s.name for reply in replies for s in reply.list_services_response.service)


def determine_over(channel: grpc.Channel) -> str:
    return str(pb_grpc.ResponseServiceStub(channel).Determine(request("demo", {"deaths": 3}), timeout=10).level.code)  # type: ignore[no-untyped-call]


def refused(channel: grpc.Channel) -> grpc.StatusCode:
    """The code a call on this channel fails with (the test expects it to fail)."""
    with pytest.raises(grpc.RpcError) as caught:
        determine_over(channel)
    code: grpc.StatusCode = caught.value.code()
    return code


def tls_channel(port: int, ca: Path, cert: Path | None = None, key: Path | None = None) -> grpc.Channel:
    creds = channel_credentials(str(ca), str(cert or ""), str(key or ""))
    return grpc.secure_channel(f"{LOOPBACK}:{port}", creds)


# -- TLS -------------------------------------------------------------------------------------------
def test_tls_serves_only_clients_that_speak_tls_and_trust_the_ca(
    rules_dir: Path, runtime: DurableRuntime, certs: Certs
) -> None:
    """With --tls-cert/--tls-key a TLS client trusting the CA gets answers, health and reflection; plaintext and untrusting clients are refused."""
    with running(rules_dir, runtime, tls_cert=str(certs.server_cert), tls_key=str(certs.server_key)) as svc:
        with tls_channel(svc.port, certs.ca) as channel:
            assert determine_over(channel) == "III"
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)  # type: ignore[no-untyped-call]
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            assert "liandong.v1.ResponseService" in reflected_services(channel)
        with grpc.insecure_channel(f"{LOOPBACK}:{svc.port}") as plaintext:
            assert refused(plaintext) == grpc.StatusCode.UNAVAILABLE
        with tls_channel(svc.port, certs.rogue_ca) as untrusting:
            assert refused(untrusting) == grpc.StatusCode.UNAVAILABLE
        with Client(f"{LOOPBACK}:{svc.port}", credentials=channel_credentials(str(certs.ca)), retries=0) as client:
            assert client.determine("demo", {"deaths": 10}).level.code == "II"


def test_mutual_tls_requires_a_client_certificate_signed_by_the_client_ca(
    rules_dir: Path, runtime: DurableRuntime, certs: Certs
) -> None:
    """With --tls-client-ca only clients presenting a certificate signed by that CA are served."""
    with running(
        rules_dir, runtime, tls_cert=str(certs.server_cert), tls_key=str(certs.server_key), tls_client_ca=str(certs.ca)
    ) as svc:
        with tls_channel(svc.port, certs.ca, certs.client_cert, certs.client_key) as good:
            assert determine_over(good) == "III"
        with tls_channel(svc.port, certs.ca) as anonymous:
            assert refused(anonymous) == grpc.StatusCode.UNAVAILABLE
        with tls_channel(svc.port, certs.ca, certs.rogue_client_cert, certs.rogue_client_key) as rogue:
            assert refused(rogue) == grpc.StatusCode.UNAVAILABLE
        with grpc.insecure_channel(f"{LOOPBACK}:{svc.port}") as plaintext:
            assert refused(plaintext) == grpc.StatusCode.UNAVAILABLE
        assert (
            svc.registry.get_sample_value("liandong_rpc_requests_total", {"method": "Determine", "code": "OK"}) == 1
        )  # only the good client got through


@pytest.mark.parametrize(
    "which", ["missing certificate", "key of another certificate", "CA file that is not PEM", "encrypted key"]
)
def test_unusable_tls_files_stop_the_start(
    which: str, rules_dir: Path, runtime: DurableRuntime, certs: Certs, tmp_path: Path
) -> None:
    """A missing, mismatched or encrypted certificate, key or CA stops the start with a message naming the file, before anything listens."""
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("not a certificate\n", encoding="utf-8")
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(certs.server_key.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    flags = {
        "missing certificate": {"tls_cert": str(tmp_path / "nope.pem"), "tls_key": str(certs.server_key)},
        "key of another certificate": {"tls_cert": str(certs.server_cert), "tls_key": str(certs.client_key)},
        "CA file that is not PEM": {
            "tls_cert": str(certs.server_cert),
            "tls_key": str(certs.server_key),
            "tls_client_ca": str(not_pem),
        },
        "encrypted key": {"tls_cert": str(certs.server_cert), "tls_key": str(encrypted)},
    }[which]
    svc = Service(make_config(rules_dir, **flags), registry=CollectorRegistry(), runtime=runtime)
    with pytest.raises(StartupError) as caught:
        svc.start()
    named = {
        "missing certificate": "nope.pem",
        "key of another certificate": "client.key",
        "CA file that is not PEM": "ca.txt",
        "encrypted key": "encrypted.key is encrypted",
    }[which]
    assert named in str(caught.value)
    assert svc.port == 0  # nothing was bound


def test_serve_flags_and_variables_enable_tls_for_the_cli_client(tmp_path: Path, certs: Certs) -> None:
    """`liandong serve --tls-cert` with LIANDONG_TLS_KEY serves TLS, and `liandong determine --tls-ca` talks to it."""
    rules = tmp_path / "rules"
    copy_demo(rules)
    with serving(
        tmp_path,
        "--rules-dir",
        str(rules),
        "--tls-cert",
        str(certs.server_cert),
        env={"LIANDONG_TLS_KEY": str(certs.server_key)},
    ) as server:
        assert server.event("listening", tls="on") is not None
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "liandong.cli",
                "determine",
                "--type",
                "demo",
                "--fact",
                "deaths=3",
                "--target",
                server.target,
                "--tls-ca",
                str(certs.ca),
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        plain = subprocess.run(
            [
                sys.executable,
                "-m",
                "liandong.cli",
                "determine",
                "--type",
                "demo",
                "--fact",
                "deaths=3",
                "--target",
                server.target,
                "--timeout",
                "2",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode == 0, run.stderr
    assert '"code": "III"' in run.stdout
    assert plain.returncode == 1 and "UNAVAILABLE" in plain.stderr


# -- plaintext only on loopback ------------------------------------------------------------------------
@pytest.mark.parametrize("listen", ["0.0.0.0:50051", "[::]:50051", "192.0.2.10:50051", "dispatch.example:50051"])
def test_plaintext_on_a_non_loopback_address_is_refused(listen: str) -> None:
    """Without TLS, an address that is not loopback is a configuration error naming --allow-plaintext (nothing is bound)."""
    with pytest.raises(config.ConfigError) as caught:
        config.load({"listen": listen}, env={})
    assert "--allow-plaintext" in str(caught.value) and "LIANDONG_ALLOW_PLAINTEXT" in str(caught.value)
    assert config.load({"listen": listen, "allow_plaintext": True}, env={}).allow_plaintext
    assert config.load({"listen": listen}, env={"LIANDONG_ALLOW_PLAINTEXT": "true"}).allow_plaintext
    assert config.load({"listen": listen, "tls_cert": "c.pem", "tls_key": "k.pem"}, env={}).tls_cert == "c.pem"


@pytest.mark.parametrize("listen", ["127.0.0.1:50051", "127.0.0.2:0", "localhost:50051", "[::1]:50051"])
def test_plaintext_on_loopback_needs_nothing(listen: str) -> None:
    """Plaintext on a loopback address is the default and needs no flag."""
    cfg = config.load({"listen": listen}, env={})
    assert cfg.listen == listen and not cfg.allow_plaintext and not cfg.tls_cert


def test_serve_refuses_plaintext_on_a_public_address_before_binding(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`liandong serve --listen 0.0.0.0:PORT` without TLS exits 2 with the reason, and never reaches the server."""

    def must_not_run(*args: object, **kwargs: object) -> int:
        raise AssertionError("the server must not start")

    monkeypatch.setattr(app, "run", must_not_run)
    monkeypatch.delenv("LIANDONG_ALLOW_PLAINTEXT", raising=False)
    assert cli.main(["serve", "--listen", "0.0.0.0:50051", "--rules-dir", str(DEMO_DIR.parent)]) == 2
    assert "not a loopback address" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, needs",
    [
        ({"tls_cert": "c.pem"}, "go together"),
        ({"tls_key": "k.pem"}, "go together"),
        ({"tls_client_ca": "ca.pem"}, "needs --tls-cert"),
    ],
)
def test_incomplete_tls_settings_are_refused(flags: dict[str, str], needs: str) -> None:
    """A certificate without its key (or the reverse), or a client CA without a certificate, is a configuration error."""
    with pytest.raises(config.ConfigError) as caught:
        config.load(flags, env={})
    assert needs in str(caught.value)


# -- the admin service ---------------------------------------------------------------------------------
def admin_call(port: int, metadata: list[tuple[str, str]] | None) -> grpc.StatusCode:
    with grpc.insecure_channel(f"{LOOPBACK}:{port}") as channel:
        stub = admin_pb2_grpc.RulesAdminServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            stub.GetReloadStatus(admin_pb2.GetReloadStatusRequest(), metadata=metadata, timeout=10)
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            return code
        return grpc.StatusCode.OK


def test_admin_service_is_off_by_default(rules_dir: Path, runtime: DurableRuntime) -> None:
    """Without --admin-token the admin service is not served (UNIMPLEMENTED) and reflection does not list it."""
    with running(rules_dir, runtime) as svc:
        assert admin_call(svc.port, [("authorization", f"Bearer {ADMIN_TOKEN}")]) == grpc.StatusCode.UNIMPLEMENTED
        with grpc.insecure_channel(f"{LOOPBACK}:{svc.port}") as channel:
            assert "liandong.v1.RulesAdminService" not in reflected_services(channel)


@pytest.mark.parametrize(
    "metadata, want",
    [
        (None, grpc.StatusCode.UNAUTHENTICATED),
        ([("authorization", "")], grpc.StatusCode.UNAUTHENTICATED),
        ([("authorization", "Bearer wrong-token-0000000000")], grpc.StatusCode.PERMISSION_DENIED),
        ([("authorization", f"Basic {ADMIN_TOKEN}")], grpc.StatusCode.PERMISSION_DENIED),
        ([("authorization", f"Bearer {ADMIN_TOKEN}x")], grpc.StatusCode.PERMISSION_DENIED),
        ([("authorization", f"Bearer {ADMIN_TOKEN[:-1]}")], grpc.StatusCode.PERMISSION_DENIED),
        ([("authorization", f"Bearer {ADMIN_TOKEN}")], grpc.StatusCode.OK),
        ([("authorization", f"bearer {ADMIN_TOKEN}")], grpc.StatusCode.OK),
    ],
    ids=[
        "no metadata",
        "empty",
        "wrong token",
        "wrong scheme",
        "token plus a character",
        "token minus a character",
        "right token",
        "scheme in lower case",
    ],
)
def test_admin_token_decides(
    metadata: list[tuple[str, str]] | None, want: grpc.StatusCode, admin_server: Service
) -> None:
    """With a token: no credentials UNAUTHENTICATED, wrong ones PERMISSION_DENIED, the right one OK."""
    assert admin_call(admin_server.port, metadata) == want


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory: pytest.TempPathFactory, runtime: DurableRuntime) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("admin")
    copy_demo(root / "rules")
    svc = Service(make_config(root / "rules", admin_token=ADMIN_TOKEN), registry=CollectorRegistry(), runtime=runtime)
    svc.start()
    try:
        yield svc
    finally:
        svc.stop(0)


def test_admin_token_never_appears_in_logs_or_metrics(tmp_path: Path) -> None:
    """The token (and a wrong one presented) appear nowhere in the JSON logs or /metrics, through start, denials and a reload."""
    wrong = "Wr0ng-T0ken-Pr3sented-By-A-Caller"
    copy_demo(tmp_path / "rules")
    with serving(tmp_path, "--rules-dir", str(tmp_path / "rules"), env={"LIANDONG_ADMIN_TOKEN": ADMIN_TOKEN}) as server:
        assert admin_call(server.port, [("authorization", f"Bearer {wrong}")]) == grpc.StatusCode.PERMISSION_DENIED
        assert admin_call(server.port, None) == grpc.StatusCode.UNAUTHENTICATED
        with grpc.insecure_channel(server.target) as channel:
            reply = admin_pb2_grpc.RulesAdminServiceStub(channel).Reload(
                admin_pb2.ReloadRequest(), metadata=[("authorization", f"Bearer {ADMIN_TOKEN}")], timeout=30
            )  # type: ignore[no-untyped-call]
        assert reply.ok
        server.wait_event("rules_reloaded", trigger="admin")
        metrics = scrape(server.metrics_port)
        log = server.log()
    assert server.event("admin_denied") is not None and server.event("listening") is not None
    for secret in (ADMIN_TOKEN, wrong):
        assert secret not in log
        assert secret not in metrics


# -- rule paths stay inside the rules directory; YAML builds no objects -----------------------------------
@pytest.mark.parametrize(
    "ruleset, version",
    [
        ("../../../etc/passwd", ""),
        ("demo", "../../2024.1"),
        ("/etc", ""),
        ("demo/../demo", ""),
        ("demo", "2024.1/../../../x"),
    ],
)
def test_rule_set_names_are_never_paths(ruleset: str, version: str, admin_server: Service) -> None:
    """A rule set or version that looks like a path is just an unknown name: NOT_FOUND."""
    with grpc.insecure_channel(f"{LOOPBACK}:{admin_server.port}") as channel:
        stub = pb_grpc.ResponseServiceStub(channel)  # type: ignore[no-untyped-call]
        from liandong.v1 import liandong_pb2 as pb

        for call in (
            lambda: stub.GetRuleSet(pb.GetRuleSetRequest(ruleset=ruleset, version=version), timeout=10),
            lambda: stub.Determine(request("demo", {"deaths": 3}, ruleset=ruleset, version=version), timeout=10),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_fixtures_file_linked_from_outside_is_not_read(tmp_path: Path, runtime: DurableRuntime) -> None:
    """A fixtures symlink pointing outside the rules directory is refused by name; the file it points at is never read or quoted."""
    rules = tmp_path / "rules"
    copy_demo(rules)
    secret = tmp_path / "outside" / "secret.yaml"
    secret.parent.mkdir()
    secret.write_text("root_password: hunter2-SECRET\n", encoding="utf-8")
    (rules / "demo" / "2024.1.fixtures.yaml").unlink()
    (rules / "demo" / "2024.1.fixtures.yaml").symlink_to(secret)
    svc = Service(make_config(rules), registry=CollectorRegistry(), runtime=runtime)
    with pytest.raises(StartupError) as caught:
        svc.start()
    assert "2024.1.fixtures.yaml:0:0: points outside the rules directory" in str(caught.value)
    assert "root_password" not in str(caught.value) and "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system",
        "!!python/object/apply:subprocess.check_call",
        "!!python/object/new:pathlib.Path",
        "!!python/name:os.system",
        "scalar !!python/name:os.system",
    ],
)
@pytest.mark.parametrize("where", ["document", "fixtures"])
def test_yaml_constructs_no_objects(tag: str, where: str, tmp_path: Path) -> None:
    """A Python tag in a document or a fixtures file is refused by name, and whatever it asks for never runs."""
    marker = tmp_path / "was-run"
    if tag.startswith("scalar "):
        payload = f"{tag.removeprefix('scalar ')} '{marker}'"
    else:
        payload = f"{tag} [['touch', '{marker}']]" if "apply" in tag else f"{tag} ['{marker}']"
    rules = tmp_path / "rules"
    copy_demo(rules)
    target = rules / "demo" / ("2024.1.yaml" if where == "document" else "2024.1.fixtures.yaml")
    text = target.read_text(encoding="utf-8")
    key = "title: 测试预案\n" if where == "document" else "cases:\n"
    text = text.replace(key, f"injected: {payload}\n" + key, 1)
    target.write_text(text, encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "liandong.cli", "rules", "test", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 1
    assert (
        "unsupported tag tag:yaml.org,2002:python/" in run.stderr
        or "could not determine a constructor for the tag 'tag:yaml.org,2002:python/" in run.stderr
    ), run.stderr
    assert not marker.exists()
    if where == "document":
        with pytest.raises(RuleDocumentInvalid):
            load_tree(rules)
        assert not marker.exists()


# -- no incident facts in logs or metrics -------------------------------------------------------------
MARKER = "机密-MARKER-7f3a9c"


def send_marked_incidents(target: str) -> None:
    """Answered, explained, streamed and refused incidents, each carrying the marker in its facts."""
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.ResponseServiceStub(channel)  # type: ignore[no-untyped-call]
        assert stub.Determine(request("demo", {"deaths": 3, "note": MARKER[:20]}), timeout=10).level.code == "III"
        assert (
            stub.Determine(request("demo", {"deaths": 10, "note": MARKER[:20]}, explain=True), timeout=10).level.code
            == "II"
        )
        assert (
            len(
                list(
                    answers_of(stub.DetermineStream(batches([request("demo", {"note": MARKER[:20]})] * 3), timeout=10))
                )
            )
            == 3
        )
        for facts in ({"status": MARKER}, {MARKER: 1}, {"note": MARKER * 10}, {"deaths": MARKER}):
            with pytest.raises(grpc.RpcError) as caught:
                stub.Determine(request("demo", facts), timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("log_facts", [False, True], ids=["default", "--log-facts"])
def test_facts_stay_out_of_logs_unless_enabled_and_out_of_metrics_always(log_facts: bool, tmp_path: Path) -> None:
    """By default no fact value appears in the logs; with --log-facts the decision lines carry them; /metrics never does."""
    copy_demo(tmp_path / "rules")
    args = ["--rules-dir", str(tmp_path / "rules")] + (["--log-facts"] if log_facts else [])
    with serving(tmp_path, *args) as server:
        send_marked_incidents(server.target)
        assert wait_until(lambda: sum(e.get("event") == "decision" for e in server.events()) >= 5, 30)
        metrics = scrape(server.metrics_port)
        log = server.log()
    decisions = [e for e in server.events() if e.get("event") == "decision"]
    assert len(decisions) == 5  # 2 answers + 3 in the stream; refusals are not decisions
    assert MARKER[:20] not in metrics and MARKER not in metrics
    if log_facts:
        assert all(e["facts"]["note"] == MARKER[:20] for e in decisions)  # type: ignore[index]
        assert MARKER * 10 not in log  # refused facts are never logged, even then
    else:
        assert MARKER[:20] not in log and "facts" not in " ".join(str(e.keys()) for e in decisions)


def test_engine_failure_is_logged_without_facts(
    rules_dir: Path, runtime: DurableRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An engine failure whose message quotes the incident ends INTERNAL with a generic message and an engine_failure log line without the facts."""

    def broken(name: str, fact: dict[str, object]) -> tuple[str, ...]:
        raise EngineFailure(f"durable-rules failed evaluating '{name}': {fact}") from ValueError(str(fact))

    with running(rules_dir, runtime) as svc:
        monkeypatch.setattr(runtime, "fire", broken)
        with structlog.testing.capture_logs() as logs, grpc.insecure_channel(f"{LOOPBACK}:{svc.port}") as channel:
            with pytest.raises(grpc.RpcError) as caught:
                pb_grpc.ResponseServiceStub(channel).Determine(request("demo", {"note": MARKER[:20]}), timeout=10)  # type: ignore[no-untyped-call]
        monkeypatch.undo()
        with grpc.insecure_channel(f"{LOOPBACK}:{svc.port}") as channel:
            assert determine_over(channel) == "III"  # the fault was per call: the service goes on
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert MARKER[:20] not in (caught.value.details() or "")
    failures = [e for e in logs if e["event"] == "engine_failure"]
    assert len(failures) == 1 and failures[0]["method"] == "Determine" and failures[0]["cause"] == "ValueError"
    assert MARKER[:20] not in repr(logs)
