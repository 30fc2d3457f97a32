#!/usr/bin/env bash
# Before/after figures for docs/performance.md: the engine and Determine/DetermineStream of an older
# commit (default: the one before the performance changes) against the working tree, in one run,
# each against the same empty-handler baseline. Bounded like bench_run.py (4 s windows).
#   tests/bench/bench_before_after.sh [REV] > bench-out/before_after.jsonl
set -euo pipefail
cd "$(dirname "$0")/../.."
rev="${1:-7bbbcc3}"
py=.venv/bin/python
tree=$(mktemp -d)
trap 'git worktree remove --force "$tree" >/dev/null 2>&1 || true; kill $(jobs -p) 2>/dev/null || true' EXIT
git worktree add -q --detach "$tree" "$rev"
cp service/liandong/v1/*_pb2*.py* "$tree/service/liandong/v1/"
port() { $py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
for side in before after; do
  if [ "$side" = before ]; then src="$tree/service"; else src="$PWD/service"; fi
  export PYTHONPATH="$src:$PWD/tests/bench"
  echo "{\"side\": \"$side\", \"engine\": $($py tests/bench/bench_engine.py --seconds 3)}"
  p=$(port); .venv/bin/liandong serve --listen 127.0.0.1:$p --metrics-listen 127.0.0.1:0 --rules-dir rules 2>/dev/null & pid=$!
  b=$(port); $py tests/bench/bench_baseline_server.py --listen 127.0.0.1:$b & bpid=$!
  $py -c "from bench_common import wait_serving; wait_serving('127.0.0.1:$p', 60); wait_serving('127.0.0.1:$b', 60)"
  for n in 1 8 64; do
    echo "{\"side\": \"$side\", \"n\": $n, \"baseline\": $($py tests/bench/bench_loadgen.py unary --target 127.0.0.1:$b --concurrency $n --duration 4), \"liandong\": $($py tests/bench/bench_loadgen.py unary --target 127.0.0.1:$p --concurrency $n --duration 4)}"
  done
  echo "{\"side\": \"$side\", \"stream\": $($py tests/bench/bench_loadgen.py stream --target 127.0.0.1:$p --count 10000)}"
  kill -TERM $pid $bpid; wait $pid $bpid || true
done
