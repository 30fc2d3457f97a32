"""`make bench`: every figure of docs/performance.md, measured in one run, written as
bench-out/report.json and bench-out/report.md.

    python tests/bench/bench_run.py [--out bench-out] [--quick]

Servers and load generators are separate processes on 127.0.0.1; every load is bounded in calls and
seconds. Speed is quoted as ratios against figures taken in the same run (the empty-handler
baseline server, zen-engine), because this machine is shared and noisy. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench_common import ADMIN_TOKEN, BENCH, LIANDONG, PYTHON, ROOT, RULES, env, free_port, rss_kib, stop, wait_serving

CONCURRENCY = (1, 8, 64)


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run_json(args: list[str], timeout: float) -> dict[str, Any]:
    """Run a bench script as its own process; its one JSON line."""
    result = subprocess.run([PYTHON, *args], capture_output=True, text=True, timeout=timeout, env=env(), cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"{args[0]} exited {result.returncode}: {result.stderr[-2000:]}")
    parsed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


def loadgen(target: str, *extra: str, timeout: float = 120) -> dict[str, Any]:
    return run_json([str(BENCH / "bench_loadgen.py"), *extra, "--target", target], timeout)


class Server:
    """A server process on a free loopback port: liandong (N workers), or a baseline."""

    def __init__(self, kind: str, workers: int = 1) -> None:
        self.kind, self.workers = kind, workers
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        if kind == "liandong":
            cmd = [
                LIANDONG,
                "serve",
                "--listen",
                self.target,
                "--metrics-listen",
                f"127.0.0.1:{free_port()}",
                "--rules-dir",
                str(RULES),
                "--admin-token",
                ADMIN_TOKEN,
                "--grace-seconds",
                "2",
                "--workers",
                str(workers),
            ]
        else:
            cmd = [PYTHON, str(BENCH / "bench_baseline_server.py"), "--listen", self.target] + (
                ["--canned"] if kind == "canned" else []
            )
        self.started = time.monotonic()
        # Decision logs are on (the default level), written to /dev/null: the cost of logging is in.
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(), cwd=ROOT)
        self.serving_after = wait_serving(self.target, 60, self.proc) - self.started

    def rss_kib(self) -> int:
        return rss_kib(self.proc.pid)

    def close(self) -> int | None:
        return stop(self.proc)


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for dist in ("grpcio", "protobuf", "durable-rules", "prometheus-client", "structlog", "zen-engine", "liandong"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, timeout=10
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--", "service"], capture_output=True, text=True, cwd=ROOT, timeout=10
            ).stdout.strip()
        )
    except OSError:
        commit, dirty = "", False
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "commit": commit + ("+uncommitted changes in service/" if dirty else ""),
    }


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "bench-out"))
    parser.add_argument(
        "--quick", action="store_true", help="shorter windows and 100 000 decisions for memory (a smoke run)"
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    window = "2" if args.quick else "4"
    began = time.monotonic()
    report: dict[str, Any] = {"machine": machine(), "quick": args.quick}

    log("engine, in process (and zen-engine)")
    report["engine"] = run_json([str(BENCH / "bench_engine.py"), "--seconds", "1" if args.quick else "3"], 300)

    log("start-up: process start to SERVING")
    starts: dict[str, list[float]] = {"workers_1": [], "workers_2": []}
    for _ in range(1 if args.quick else 3):
        for workers in (1, 2):
            s = Server("liandong", workers)
            starts[f"workers_{workers}"].append(round(s.serving_after, 3))
            s.close()
    report["start"] = {k: {"runs_s": v, "max_s": max(v)} for k, v in starts.items()}

    log("RPC: Determine under N callers, against the baselines")
    servers = {"baseline": Server("baseline"), "canned": Server("canned"), "liandong": Server("liandong")}
    liandong = servers["liandong"]
    rss_start = liandong.rss_kib()
    rpc: dict[str, Any] = {}
    try:
        for n in CONCURRENCY:
            row: dict[str, Any] = {}
            for name in ("baseline", "liandong", "canned"):
                row[name] = loadgen(servers[name].target, "unary", "--concurrency", str(n), "--duration", window)
            row["throughput_ratio"] = ratio(row["liandong"]["throughput_rps"], row["baseline"]["throughput_rps"])
            row["p99_ratio"] = ratio(row["liandong"]["p99_ms"], row["baseline"]["p99_ms"])
            row["throughput_ratio_vs_canned"] = ratio(
                row["liandong"]["throughput_rps"], row["canned"]["throughput_rps"]
            )
            row["p99_ratio_vs_canned"] = ratio(row["liandong"]["p99_ms"], row["canned"]["p99_ms"])
            rpc[f"n{n}"] = row
            log(f"  N={n}: throughput x{row['throughput_ratio']}, p99 x{row['p99_ratio']} of the empty handler")
        report["rpc"] = rpc

        log("bulk: DetermineStream with 10 000 incidents, 100 a message (and 1 a message, for comparison)")
        report["stream"] = {
            name: loadgen(servers[name].target, "stream", "--count", "10000", "--batch-size", "100")
            for name in ("baseline", "liandong")
        }
        report["stream"]["ratio"] = ratio(
            report["stream"]["liandong"]["decisions_per_s"], report["stream"]["baseline"]["decisions_per_s"]
        )
        report["stream_single"] = {
            name: loadgen(servers[name].target, "stream", "--count", "10000", "--batch-size", "1")
            for name in ("baseline", "liandong")
        }

        log("reload: every bundled rule set, idle and under load")
        report["reload"] = reload_figures(liandong, args.quick)
        decisions_served = (
            sum(r["liandong"]["calls"] for r in rpc.values()) + 2 * 10_200 + report["reload"]["under_load"]["calls"]
        )
        report["rpc_memory"] = {
            "rss_before_kib": rss_start,
            "rss_after_kib": liandong.rss_kib(),
            "decisions_at_least": decisions_served,
        }

        decisions = 100_000 if args.quick else 1_000_000
        log(
            f"memory: {decisions} decisions through the server (DetermineStream, every rule set), after the calls above"
        )
        warm = liandong.rss_kib()
        streamed = loadgen(
            liandong.target,
            "stream",
            "--ruleset",
            "all",
            "--count",
            "10000",
            "--repeat",
            str(decisions // 10_000),
            "--max-seconds",
            "900",
            timeout=1200,
        )
        report["server_memory"] = {
            "rss_before_kib": warm,
            "rss_after_kib": liandong.rss_kib(),
            "decisions": streamed["answered"],
            "seconds": streamed["elapsed_s"],
            "code": streamed["code"],
        }
    finally:
        for s in servers.values():
            s.close()

    log("scaling: 1 worker vs 2 workers (SO_REUSEPORT)")
    scaling: dict[str, Any] = {}
    for workers in (1, 2):
        s = Server("liandong", workers)
        try:
            scaling[f"workers_{workers}"] = {
                f"n{n}": loadgen(s.target, "unary", "--concurrency", str(n), "--channels", "8", "--duration", window)
                for n in (8, 64)
            }
        finally:
            s.close()
    for n in (8, 64):
        scaling[f"n{n}_ratio"] = ratio(
            scaling["workers_2"][f"n{n}"]["throughput_rps"], scaling["workers_1"][f"n{n}"]["throughput_rps"]
        )
    report["scaling"] = scaling

    log(f"memory: {decisions} decisions in process")
    report["memory"] = run_json(
        [str(BENCH / "bench_memory.py"), "--decisions", str(decisions), "--max-seconds", "420"], 600
    )

    report["targets"] = targets(report)
    report["elapsed_s"] = round(time.monotonic() - began, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    log(f"done in {report['elapsed_s']} s: {out / 'report.md'}")
    return 0


def reload_figures(server: Server, quick: bool) -> dict[str, Any]:
    import grpc

    from liandong.v1 import admin_pb2, admin_pb2_grpc

    metadata_ = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
    with grpc.insecure_channel(server.target) as channel:
        stub = admin_pb2_grpc.RulesAdminServiceStub(channel)

        def reload_once() -> tuple[float, bool]:
            start = time.perf_counter()
            reply = stub.Reload(admin_pb2.ReloadRequest(), metadata=metadata_, timeout=60)
            return time.perf_counter() - start, reply.ok

        idle = [reload_once() for _ in range(3)]
        seconds = 3 if quick else 6
        gen = subprocess.Popen(
            [
                PYTHON,
                str(BENCH / "bench_loadgen.py"),
                "unary",
                "--target",
                server.target,
                "--concurrency",
                "8",
                "--duration",
                str(seconds),
                "--warmup",
                "0.5",
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env(),
            cwd=ROOT,
        )
        under: list[tuple[float, bool]] = []
        try:
            time.sleep(1.5)  # the generator is up and calling
            deadline = time.monotonic() + seconds - 1
            while time.monotonic() < deadline and len(under) < 20:
                under.append(reload_once())
            stdout, _ = gen.communicate(timeout=120)
        finally:
            if gen.poll() is None:
                gen.kill()
                gen.wait(10)
        load = json.loads(stdout.strip().splitlines()[-1])
    return {
        "idle_s": [round(t, 3) for t, _ in idle],
        "idle_ok": all(ok for _, ok in idle),
        "under_load": {
            "reloads": len(under),
            "reload_s": [round(t, 3) for t, _ in under],
            "all_ok": all(ok for _, ok in under),
            "calls": load["calls"],
            "failed": load["failed"],
            "codes": load["codes"],
            "throughput_rps": load["throughput_rps"],
            "p99_ms": load["p99_ms"],
        },
    }


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for n in CONCURRENCY:
        row = r["rpc"][f"n{n}"]
        rows.append(
            {
                "target": f"Determine throughput >= 85% of the empty handler (N={n})",
                "measured": row["throughput_ratio"],
                "met": row["throughput_ratio"] >= 0.85,
            }
        )
        rows.append(
            {
                "target": f"Determine p99 <= 1.25x the empty handler's (N={n})",
                "measured": row["p99_ratio"],
                "met": row["p99_ratio"] <= 1.25,
            }
        )
    g = r["engine"]["grading"]
    rows.append(
        {
            "target": "engine >= 2x faster than zen-engine on the grading table (median)",
            "measured": g["speedup_median"],
            "met": g["speedup_median"] >= 2,
        }
    )
    s = r["stream"]["liandong"]["decisions_per_s"]
    rows.append({"target": "DetermineStream >= 10 000 decisions/s", "measured": s, "met": s >= 10_000})
    sm = r["server_memory"]
    growth_mb = (sm["rss_after_kib"] - sm["rss_before_kib"]) / 1024
    rows.append(
        {
            "target": f"server RSS growth < 10 MB over 1 000 000 decisions (over gRPC, {sm['decisions']} done)",
            "measured": round(growth_mb, 2),
            "met": growth_mb < 10 and sm["decisions"] >= 1_000_000,
        }
    )
    m = r["memory"]
    growth_mb = m["growth_kib"] / 1024
    rows.append(
        {
            "target": f"RSS growth < 10 MB over 1 000 000 decisions ({m['path']}, {m['decisions']} done)",
            "measured": round(growth_mb, 2),
            "met": growth_mb < 10 and m["decisions"] >= 1_000_000,
        }
    )
    failed = r["reload"]["under_load"]["failed"]
    rows.append(
        {
            "target": "zero failed calls during reloads under load",
            "measured": failed,
            "met": failed == 0 and r["reload"]["under_load"]["reloads"] > 0,
        }
    )
    worst = max(r["start"]["workers_1"]["max_s"], r["start"]["workers_2"]["max_s"])
    rows.append(
        {
            "target": "SERVING within 2 s of process start (worst run, 1 or 2 workers)",
            "measured": worst,
            "met": worst <= 2,
        }
    )
    return rows


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = ["# Liandong benchmark report", ""]
    if r["quick"]:
        lines += ["**Quick run (--quick): shorter windows, 100 000 decisions for memory. Not for publishing.**", ""]
    lines += [
        f"- date: {m['date']}, elapsed {r['elapsed_s']} s, commit {m['commit']}",
        f"- machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, load average at start {', '.join(f'{x:.2f}' for x in m['load_average_at_start'])}",
        f"- Python {m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        "- every server and load generator is its own process on 127.0.0.1; liandong serves with decision logs on (to /dev/null) and metrics on",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    lines += [f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |" for t in r["targets"]]
    lines += [
        "",
        "## 1. Engine, in process (µs per evaluation)",
        "",
        "| rule set | median | p99 | median, explain | p99, explain |",
        "|---|---|---|---|---|",
    ]
    for name, f in r["engine"]["rulesets"].items():
        lines.append(
            f"| {name} | {f['plain']['median_us']} | {f['plain']['p99_us']} | {f['explain']['median_us']} | {f['explain']['p99_us']} |"
        )
    g = r["engine"]["grading"]
    lines += [
        "",
        "The fire grading table (公安部2007, four grades, three criteria), the same table in both engines; answers agree on "
        f"{g['agree']} of {g['of']} incidents:",
        "",
        "| engine | median µs | p99 µs | mean µs |",
        "|---|---|---|---|",
        f"| Liandong (durable-rules, grade rules only) | {g['liandong']['median_us']} | {g['liandong']['p99_us']} | {g['liandong']['mean_us']} |",
        f"| zen-engine (decision table, first hit) | {g['zen_engine']['median_us']} | {g['zen_engine']['p99_us']} | {g['zen_engine']['mean_us']} |",
        "",
        f"Liandong is **{g['speedup_median']}x** faster by median ({g['speedup_mean']}x by mean).",
        "",
        "## 2. RPC: Determine under N concurrent callers",
        "",
        "Baseline: the same proto, server options and thread pool, handler returns an empty Determination. "
        "Canned: the same, returning one real fire answer (built once), to show what the answer's size alone costs.",
        "",
        "| N | server | throughput /s | p50 ms | p99 ms | failed |",
        "|---|---|---|---|---|---|",
    ]
    for n in CONCURRENCY:
        row = r["rpc"][f"n{n}"]
        for name in ("baseline", "canned", "liandong"):
            x = row[name]
            lines.append(f"| {n} | {name} | {x['throughput_rps']} | {x['p50_ms']} | {x['p99_ms']} | {x['failed']} |")
    lines += [
        "",
        "| N | throughput / empty | p99 / empty | throughput / canned | p99 / canned |",
        "|---|---|---|---|---|",
    ]
    for n in CONCURRENCY:
        row = r["rpc"][f"n{n}"]
        lines.append(
            f"| {n} | {row['throughput_ratio']} | {row['p99_ratio']} | {row['throughput_ratio_vs_canned']} | {row['p99_ratio_vs_canned']} |"
        )
    st = r["stream"]
    lines += [
        "",
        "## 3. Bulk: DetermineStream, 10 000 fire incidents",
        "",
        "| requests per message | server | decisions/s | seconds | answered | code |",
        "|---|---|---|---|---|---|",
    ]
    for label, key in (("100", "stream"), ("1", "stream_single")):
        for name in ("baseline", "liandong"):
            x = r[key][name]
            lines.append(
                f"| {label} | {name} | {x['decisions_per_s']} | {x['elapsed_s']} | {x['answered']} | {x['code']} |"
            )
    lines += [
        "",
        f"With 100 a message Liandong runs at {st['ratio']} of the empty handler's stream.",
        "",
        "## 4. Memory",
        "",
    ]
    mem = r["memory"]
    lines += [
        f"- {mem['path']}: {mem['decisions']} decisions in {mem['seconds']} s; RSS {mem['rss_before_kib']} KiB after warm-up, "
        f"{mem['rss_after_kib']} KiB after: growth **{mem['growth_kib'] / 1024:.2f} MB**",
        "- checkpoints (decisions: RSS KiB): "
        + ", ".join(f"{c['decisions']}: {c['rss_kib']}" for c in mem["checkpoints"]),
    ]
    sm = r["server_memory"]
    lines += [
        f"- the RPC server, measured after the calls of sections 2, 3 and 5: {sm['decisions']} decisions through DetermineStream (every rule set in turn) in {sm['seconds']} s ({sm['code']}); "
        f"RSS {sm['rss_before_kib']} KiB -> {sm['rss_after_kib']} KiB: growth **{(sm['rss_after_kib'] - sm['rss_before_kib']) / 1024:.2f} MB**",
    ]
    rm = r["rpc_memory"]
    lines += [
        f"- the RPC server itself over this run (at least {rm['decisions_at_least']} decisions over gRPC, first call included): "
        f"RSS {rm['rss_before_kib']} KiB -> {rm['rss_after_kib']} KiB ({(rm['rss_after_kib'] - rm['rss_before_kib']) / 1024:.2f} MB)",
        "",
        "## 5. Reload",
        "",
    ]
    rl = r["reload"]
    u = rl["under_load"]
    lines += [
        f"- reload of every bundled rule set (load, check, compile, run every fixture, swap), admin RPC, idle: {', '.join(map(str, rl['idle_s']))} s (ok: {rl['idle_ok']})",
        f"- under load (8 callers): {u['reloads']} reloads ({', '.join(map(str, u['reload_s']))} s, all ok: {u['all_ok']}); "
        f"{u['calls']} calls, **{u['failed']} failed** ({u['codes']}), {u['throughput_rps']} /s, p99 {u['p99_ms']} ms",
        "",
        "## 6. Start",
        "",
    ]
    for k, v in r["start"].items():
        lines.append(f"- {k.replace('_', ' ')}: process start to SERVING {', '.join(map(str, v['runs_s']))} s")
    sc = r["scaling"]
    lines += [
        "",
        "## Scaling out: --workers 1 vs 2 (8 client connections)",
        "",
        "| N | 1 worker /s | 2 workers /s | ratio | p99 ms 1 / 2 |",
        "|---|---|---|---|---|",
    ]
    for n in (8, 64):
        a, b = sc["workers_1"][f"n{n}"], sc["workers_2"][f"n{n}"]
        lines.append(
            f"| {n} | {a['throughput_rps']} | {b['throughput_rps']} | {sc[f'n{n}_ratio']} | {a['p99_ms']} / {b['p99_ms']} |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
