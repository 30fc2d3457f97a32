"""The load generator: a process of its own that calls a server and prints one JSON line of figures.

    python tests/bench/bench_loadgen.py unary --target 127.0.0.1:P --concurrency 8 --duration 5
    python tests/bench/bench_loadgen.py stream --target 127.0.0.1:P --count 10000

`unary`: N concurrent callers (asyncio tasks on grpc.aio channels) call Determine in a loop over a
pool of varied incidents, for a warm-up and then a measured window, bounded by --duration and
--max-calls. `stream`: one DetermineStream of --count incidents in messages of --batch-size. Every call has a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter

import grpc

from bench_common import GENERATORS, incident_pool, percentile
from liandong.client import Client
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc


def requests(ruleset: str, size: int, explain: bool = False) -> list[pb.DetermineRequest]:
    """`size` varied incidents of one rule set, or of every bundled one in turn (`all`)."""
    if ruleset == "all":
        pools = [incident_pool(r, -(-size // len(GENERATORS))) for r in GENERATORS]
        pool = [p[i] for i in range(len(pools[0])) for p in pools][:size]
    else:
        pool = incident_pool(ruleset, size)
    return [Client.request(t, facts, incident_id=f"bench-{i}", explain=explain) for i, (t, facts) in enumerate(pool)]


async def unary(args: argparse.Namespace) -> dict[str, object]:
    pool = requests(args.ruleset, 1000, args.explain)
    options = [("grpc.use_local_subchannel_pool", 1)]  # one connection per channel, so SO_REUSEPORT can spread them
    channels = [
        grpc.aio.insecure_channel(args.target, options=options)
        for _ in range(max(1, min(args.channels, args.concurrency)))
    ]
    stubs = [pb_grpc.ResponseServiceStub(c) for c in channels]
    latencies: list[float] = []
    codes: Counter[str] = Counter()
    measuring = False
    done = False
    calls = 0

    async def caller(i: int) -> None:
        nonlocal calls
        stub = stubs[i % len(stubs)]
        k = i * 7919
        while not done and calls < args.max_calls:
            req = pool[k % len(pool)]
            k += 1
            start = time.perf_counter()
            code = "OK"
            try:
                await stub.Determine(req, timeout=args.call_timeout)
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
            elapsed = time.perf_counter() - start
            if measuring:
                calls += 1
                codes[code] += 1
                if code == "OK":
                    latencies.append(elapsed)

    for c in channels:
        await asyncio.wait_for(c.channel_ready(), timeout=10)
    tasks = [asyncio.create_task(caller(i)) for i in range(args.concurrency)]
    # --start-at: several generator processes measure the same window (each warms up until then).
    await asyncio.sleep(max(args.warmup, args.start_at - time.time()) if args.start_at else args.warmup)
    measuring = True
    began = time.perf_counter()
    while time.perf_counter() - began < args.duration and calls < args.max_calls:
        await asyncio.sleep(0.05)
    window = time.perf_counter() - began
    measured_calls, measured_codes, measured_latencies = calls, dict(codes), sorted(latencies)
    done = True
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=args.call_timeout + 5)
    for c in channels:
        await c.close()
    ok = measured_codes.get("OK", 0)
    if args.latencies:  # for a runner that merges the latencies of several generator processes
        with open(args.latencies, "w", encoding="ascii") as f:
            json.dump(measured_latencies, f)
    return {
        "mode": "unary",
        "concurrency": args.concurrency,
        "channels": len(channels),
        "distinct_fact_sets": len({req.incident.facts.SerializeToString(deterministic=True) for req in pool}),
        "window_s": round(window, 3),
        "calls": measured_calls,
        "ok": ok,
        "failed": measured_calls - ok,
        "codes": measured_codes,
        "throughput_rps": round(ok / window, 1),
        "p50_ms": round(percentile(measured_latencies, 0.50) * 1e3, 3),
        "p99_ms": round(percentile(measured_latencies, 0.99) * 1e3, 3),
    }


def batches(reqs: list[pb.DetermineRequest], size: int) -> list[pb.DetermineStreamRequest]:
    return [pb.DetermineStreamRequest(requests=reqs[i : i + size]) for i in range(0, len(reqs), size)]


def stream(args: argparse.Namespace) -> dict[str, object]:
    reqs = requests(args.ruleset, args.count)
    messages = batches(reqs, args.batch_size)  # built before the clock starts, like the unary pool
    with grpc.insecure_channel(args.target, options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = pb_grpc.ResponseServiceStub(channel)
        # Warm up with a short stream, then time the full one.
        for _ in stub.DetermineStream(iter(batches(reqs[:200], args.batch_size)), timeout=args.call_timeout):
            pass
        start = time.perf_counter()
        answered = 0
        code = "OK"
        try:
            for _ in range(args.repeat):  # one stream after another, each within its own deadline
                if time.perf_counter() - start > args.max_seconds:
                    break
                for response in stub.DetermineStream(iter(messages), timeout=args.stream_timeout):
                    answered += len(response.determinations)
        except grpc.RpcError as exc:
            code = exc.code().name
        elapsed = time.perf_counter() - start
    return {
        "mode": "stream",
        "count": args.count,
        "streams": args.repeat,
        "batch_size": args.batch_size,
        "answered": answered,
        "code": code,
        "elapsed_s": round(elapsed, 3),
        "decisions_per_s": round(answered / elapsed, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["unary", "stream"])
    parser.add_argument("--target", required=True)
    parser.add_argument("--ruleset", default="fire-linkage", help="a bundled rule set, or `all` for each in turn")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--channels", type=int, default=8, help="client channels (connections), at most one per caller")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds (upper bound)")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--max-calls", type=int, default=200_000, help="measured calls (upper bound)")
    parser.add_argument("--call-timeout", type=float, default=10.0)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--start-at", type=float, default=0.0, help="unary: wall-clock time the window starts")
    parser.add_argument("--latencies", default="", help="unary: write the measured latencies (s) to this JSON file")
    parser.add_argument("--count", type=int, default=10_000, help="stream: incidents in the stream")
    parser.add_argument("--batch-size", type=int, default=100, help="stream: requests per DetermineStreamRequest")
    parser.add_argument("--repeat", type=int, default=1, help="stream: streams of --count, one after another")
    parser.add_argument(
        "--max-seconds", type=float, default=600.0, help="stream: start no further stream after this long"
    )
    parser.add_argument("--stream-timeout", type=float, default=120.0)
    args = parser.parse_args()
    result = asyncio.run(unary(args)) if args.mode == "unary" else stream(args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
