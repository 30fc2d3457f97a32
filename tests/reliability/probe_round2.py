"""The second round's probes, run by hand against a `liandong serve` process (not a test: it prints
figures and asserts nothing about time). docs/reliability.md's round-two table is one run of it:

    .venv/bin/python tests/reliability/probe_round2.py

Every loop is bounded in count and time; the server binds 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import grpc

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]

from liandong.v1 import admin_pb2, admin_pb2_grpc  # noqa: E402
from liandong.v1 import liandong_pb2 as pb  # noqa: E402
from liandong.v1 import liandong_pb2_grpc as pb_grpc  # noqa: E402

ROOT = HERE.parent.parent
TOKEN = "probe-admin-token-0123456789"
EXPECTED = {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "RESOURCE_EXHAUSTED"}
TIME_LIMIT = 120.0  # seconds per probe
rng = random.Random(20261202)


class Server:
    def __init__(self, rules: Path, log: Path) -> None:
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIANDONG_")}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "liandong.cli",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "",
                "--rules-dir",
                str(rules),
                "--admin-token",
                TOKEN,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.events("rules_reloaded"):
            time.sleep(0.1)
        self.port = int(self.events("listening")[0]["port"])

    def events(self, name: str, **match: object) -> list[dict[str, object]]:
        out = []
        for line in self.log_path.read_bytes().split(b"\n"):
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if isinstance(e, dict) and e.get("event") == name and all(e.get(k) == v for k, v in match.items()):
                out.append(e)
        return out

    def threads(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self._log.close()


def outcome(fn: object) -> str:
    try:
        fn()  # type: ignore[operator]
        return "OK"
    except grpc.RpcError as exc:
        return str(exc.code().name)


def tally(name: str, codes: Counter[str]) -> tuple[str, int, int, int]:
    tried = sum(codes.values())
    failed = sum(n for c, n in codes.items() if c not in EXPECTED and c != "DEADLINE_EXCEEDED")
    lost = codes.get("DEADLINE_EXCEEDED", 0)
    print(f"{name}: tried {tried}, codes {dict(codes)}")
    return name, tried, failed, lost


def bad_request() -> pb.DetermineRequest:
    req = pb.DetermineRequest()
    req.incident.type = rng.choice(["fire", "demo", "flood", "x" * rng.choice([1, 128, 129, 5000])])
    req.incident.id = "i" * rng.choice([0, 10, 256, 257, 100_000])
    req.incident.facts.update({"deaths": rng.choice([0, 3, 10, -1])})
    kind = rng.randrange(6)
    if kind == 0:
        req.incident.occurred_at.seconds = rng.choice(
            [
                253402271999,
                253402272000,
                253402300799,
                253402300800,
                -62135596800,
                -62135596801,
                2**62,
                -(2**62),
                rng.randrange(-(10**11), 3 * 10**11),
            ]
        )
    elif kind == 1:
        req.incident.occurred_at.seconds = 1735689600
        req.incident.occurred_at.nanos = rng.choice([-1, 10**9, 999_999_999, 0, -(2**31), 2**31 - 1])
    elif kind == 2:
        req.ruleset = "r" * rng.choice([0, 128, 129, 10_000])
        req.version = "v" * rng.choice([0, 128, 129])
    elif kind == 3:
        req.incident.facts.update({"f" * rng.choice([128, 129, 50_000]): 1})
    return req


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="liandong-probe-"))
    rules = work / "rules"
    shutil.copytree(ROOT / "rules", rules)
    shutil.copytree(ROOT / "tests" / "data" / "rules" / "demo", rules / "demo")
    server = Server(rules, work / "serve.log")
    rows = []
    try:
        target = f"127.0.0.1:{server.port}"
        with grpc.insecure_channel(target) as ch:
            stub = pb_grpc.ResponseServiceStub(ch)  # type: ignore[no-untyped-call]
            raw = ch.unary_unary(
                "/liandong.v1.ResponseService/Determine", request_serializer=None, response_deserializer=None
            )

            # 1. bad requests: occurred_at, free strings
            codes: Counter[str] = Counter()
            stop = time.monotonic() + TIME_LIMIT
            for _ in range(4210):
                if time.monotonic() > stop:
                    break
                req = bad_request()
                codes[outcome(lambda req=req: stub.Determine(req, timeout=10))] += 1
            rows.append(tally("bad requests (occurred_at, long strings)", codes))

            # 2. random and bit-flipped messages
            valid = pb.DetermineRequest()
            valid.incident.type = "fire"
            valid.incident.id = "probe"
            valid.incident.facts.update({"deaths": 3, "serious_injuries": 12})
            valid.incident.occurred_at.seconds = 1735689600
            good = valid.SerializeToString()
            codes = Counter()
            for n in range(4000):
                if n < 2000:
                    data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
                else:
                    flipped = bytearray(good)
                    for _ in range(rng.randrange(1, 4)):
                        i = rng.randrange(len(flipped) * 8)
                        flipped[i // 8] ^= 1 << (i % 8)
                    data = bytes(flipped)
                codes[outcome(lambda data=data: raw(data, timeout=10))] += 1
            rows.append(tally("random and bit-flipped messages", codes))

            # 3. random types and versions
            types = ["fire", "flood", "demo", "mass_incident", "", "火灾", "fire ", "x" * 200]
            versions = ["", "2024.1", "2025.1", "0", "../../etc/passwd", "v" * 200]
            rulesets = ["", "fire-linkage", "demo", "nope", "r" * 200]
            codes = Counter()
            stop = time.monotonic() + TIME_LIMIT
            for _ in range(10_000):
                if time.monotonic() > stop:
                    break
                req = pb.DetermineRequest(ruleset=rng.choice(rulesets), version=rng.choice(versions))
                req.incident.type = rng.choice(types)
                req.incident.facts.update({"deaths": rng.randrange(0, 40)})
                codes[outcome(lambda req=req: stub.Determine(req, timeout=10))] += 1
            rows.append(tally("random types and versions", codes))

            # 4. refused admin calls
            admin = admin_pb2_grpc.RulesAdminServiceStub(ch)  # type: ignore[no-untyped-call]
            before = len(server.events("admin_denied"))
            codes = Counter()
            for n in range(2000):
                codes[
                    outcome(
                        lambda n=n: admin.GetReloadStatus(
                            admin_pb2.GetReloadStatusRequest(),
                            metadata=(("authorization", f"Bearer wrong{n}"),),
                            timeout=10,
                        )
                    )
                ] += 1
            lines = len(server.events("admin_denied")) - before
            print(f"admin refusals: {dict(codes)}, admin_denied lines written: {lines}")
            rows.append(
                (
                    f"admin refusals in a loop (lines written: {lines})",
                    sum(codes.values()),
                    sum(n for c, n in codes.items() if c != "PERMISSION_DENIED"),
                    0,
                )
            )

            # 5. 40 SIGHUPs in 2 s, nothing changed; then one change
            def median_ms(n: int) -> float:
                times = []
                for _ in range(n):
                    t = time.perf_counter()
                    stub.Determine(valid, timeout=10)
                    times.append((time.perf_counter() - t) * 1000)
                return statistics.median(times)

            quiet = median_ms(200)
            threads_before = server.threads()
            peak = threads_before
            during: list[float] = []
            for _ in range(40):
                server.proc.send_signal(signal.SIGHUP)
                during.append(median_ms(5))
                peak = max(peak, server.threads())
                time.sleep(0.05)  # a burst spread over 2 s, as the tester sent it (a probe, not a test)
            time.sleep(1)
            ran = len(server.events("rules_reloaded", trigger="signal"))
            skipped = len(server.events("rules_reload_skipped", trigger="signal"))
            print(
                f"SIGHUP burst: 40 signals, {ran} reloads run, {skipped} skipped; threads {threads_before} -> peak {peak}; "
                f"Determine median {quiet:.2f} ms quiet, {statistics.median(during):.2f} ms during the burst"
            )
            rows.append(
                (
                    f"40 SIGHUPs in 2 s, nothing changed ({ran} reloads, {skipped} skipped, threads {threads_before}->{peak}, median {quiet:.1f}->{statistics.median(during):.1f} ms)",
                    40,
                    ran,
                    0,
                )
            )
            doc = rules / "demo" / "2024.1.yaml"
            text = doc.read_text(encoding="utf-8")
            delays = []
            for n in range(5):
                doc.write_text(text.replace("title: 测试预案", f"title: 测试预案{n}"), encoding="utf-8")
                t = time.monotonic()
                server.proc.send_signal(signal.SIGHUP)
                while (
                    len(server.events("rules_reloaded", trigger="signal")) < ran + n + 1 and time.monotonic() - t < 30
                ):
                    time.sleep(0.01)
                delays.append(time.monotonic() - t)
            print(f"SIGHUP after a change: active after {min(delays):.2f}-{max(delays):.2f} s")
            rows.append(
                (
                    f"SIGHUP after a change (active after {min(delays):.2f}-{max(delays):.2f} s)",
                    5,
                    sum(1 for d in delays if d >= 30),
                    0,
                )
            )
    finally:
        server.stop()
    print("\n| probe | tried | failed | lost |\n|---|---|---|---|")
    for name, tried, failed, lost in rows:
        print(f"| {name} | {tried} | {failed} | {lost} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
