"""Helpers for the reliability tests: servers on 127.0.0.1 only, bounded waits, metrics, certificates.

Servers either run in this process (`in_process`) or as `liandong serve` subprocesses (`Serve`), which
report their ports in their `listening` log line and are always killed by `stop()` in a finally.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from service_support import answers_of, batches, find_event, log_events, request, scrape, wait_until  # shared with the e2e tests

from liandong.engine.runtime import DurableRuntime
from liandong.server import config
from liandong.server.app import Service
from liandong.v1 import liandong_pb2 as pb

LOOPBACK = "127.0.0.1"
HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
ROOT = TESTS.parent
DEMO_DIR = TESTS / "data" / "rules" / "demo"
BUNDLED = ROOT / "rules"
ADMIN_TOKEN = "reliability-admin-token-5f0c2a9e"
SOAK_DECISIONS = 1_000_000  # decisions the soak (soak.py, test_soak.py) makes in one process


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (for tools that cannot take port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


# -- rules -----------------------------------------------------------------------------------------
def demo_rules(root: Path) -> Path:
    """A rules directory holding a copy of tests/data/rules/demo; returns the directory."""
    rules = root / "rules"
    shutil.copytree(DEMO_DIR, rules / "demo")
    return rules


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"expected {old!r} exactly once"
    return text.replace(old, new)


def write_atomically(path: Path, text: str) -> None:
    """Write a file the way a careful operator does: a temporary file, then rename over."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# -- in-process servers ----------------------------------------------------------------------------
def make_config(rules_dir: Path, **flags: object) -> config.Config:
    merged: dict[str, object] = {"listen": f"{LOOPBACK}:0", "metrics_listen": "", "rules_dir": str(rules_dir)}
    merged.update(flags)
    return config.load(merged, env={})


@contextlib.contextmanager
def in_process(rules_dir: Path, runtime: DurableRuntime, **flags: object) -> Iterator[Service]:
    """A started Service on a free loopback port, stopped when the block ends."""
    svc = Service(make_config(rules_dir, **flags), registry=CollectorRegistry(), runtime=runtime)
    svc.start()
    try:
        yield svc
    finally:
        svc.stop(0)


def sample(svc: Service, name: str, **labels: str) -> float:
    got = svc.registry.get_sample_value(name, labels)
    return float(got) if got is not None else 0.0


def bad_request_fields(error: grpc.RpcError) -> list[tuple[str, str]]:
    """(field, reason) of every google.rpc.BadRequest violation attached to a failed call."""
    status = rpc_status.from_call(error)
    out: list[tuple[str, str]] = []
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.extend((v.field, v.reason) for v in bad.field_violations)
    return out


# -- metrics ---------------------------------------------------------------------------------------
def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 when none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


# -- `liandong serve` in a subprocess --------------------------------------------------------------
class Serve:
    """`liandong serve` on 127.0.0.1 with JSON logs in a file. Always call stop() in a finally."""

    def __init__(self, workdir: Path, *args: str, env: Mapping[str, str] | None = None, metrics: bool = True) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"serve-{time.monotonic_ns()}.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("LIANDONG_")}
        environ["PYTHONUNBUFFERED"] = "1"
        environ.update(env or {})
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        argv = [sys.executable, "-m", "liandong.cli", "serve", "--listen", f"{LOOPBACK}:0", "--metrics-listen", f"{LOOPBACK}:0" if metrics else "", "--log-format", "json", *args]
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir, env=environ)
        self.port = 0
        self.metrics_port = 0

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def events(self) -> list[dict[str, object]]:
        return log_events(self.log())

    def event(self, name: str, **match: object) -> dict[str, object] | None:
        return find_event(self.events(), name, **match)

    def wait_event(self, name: str, timeout: float = 30.0, **match: object) -> dict[str, object]:
        assert wait_until(lambda: self.event(name, **match) is not None or self.proc.poll() is not None, timeout), f"no '{name}' within {timeout}s:\n{self.log()[-3000:]}"
        found = self.event(name, **match)
        assert found is not None, f"server exited ({self.proc.poll()}) before '{name}':\n{self.log()[-3000:]}"
        return found

    def wait_serving(self, timeout: float = 30.0) -> Serve:
        """Wait for `listening` and the start-up load of the rules; remembers the ports."""
        listening = self.wait_event("listening", timeout)
        self.port = int(str(listening["port"]))
        self.metrics_port = int(str(listening["metrics_port"]))
        self.wait_event("rules_reloaded", timeout, trigger="startup")
        return self

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def send_signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        """Kill the process if it still runs, and reap it."""
        try:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=15)
        finally:
            self._log.close()


@contextlib.contextmanager
def serving(workdir: Path, *args: str, env: Mapping[str, str] | None = None, metrics: bool = True) -> Iterator[Serve]:
    """A `liandong serve` subprocess that is serving; killed when the block ends, whatever happens."""
    server = Serve(workdir, *args, env=env, metrics=metrics)
    try:
        yield server.wait_serving()
    finally:
        server.stop()


# -- certificates ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Certs:
    """PEM files: a CA, a server certificate for 127.0.0.1/localhost, and client certificates."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_ca: Path  # an unrelated CA
    rogue_client_cert: Path  # a client certificate signed by the rogue CA
    rogue_client_key: Path


def make_certs(directory: Path) -> Certs:
    """Generate a small PKI for the tests (EC P-256, valid for a day)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return path

    def write_cert(cert: x509.Certificate, path: Path) -> Path:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def authority(common: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder().subject_name(name(common)).issuer_name(name(common)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cert, key

    def leaf(common: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], server: bool) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder().subject_name(name(common)).issuer_name(issuer[0].subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), critical=False)
        return builder.sign(issuer[1], hashes.SHA256()), key

    ca = authority("liandong test CA")
    rogue = authority("someone else's CA")
    server_cert, server_key = leaf("localhost", ca, server=True)
    client_cert, client_key = leaf("dispatch-client", ca, server=False)
    rogue_cert, rogue_key = leaf("dispatch-client", rogue, server=False)
    return Certs(
        ca=write_cert(ca[0], directory / "ca.pem"),
        server_cert=write_cert(server_cert, directory / "server.pem"),
        server_key=write_key(server_key, directory / "server.key"),
        client_cert=write_cert(client_cert, directory / "client.pem"),
        client_key=write_key(client_key, directory / "client.key"),
        rogue_ca=write_cert(rogue[0], directory / "rogue-ca.pem"),
        rogue_client_cert=write_cert(rogue_cert, directory / "rogue-client.pem"),
        rogue_client_key=write_key(rogue_key, directory / "rogue-client.key"),
    )
