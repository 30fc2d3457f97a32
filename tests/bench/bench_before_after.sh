#!/usr/bin/env bash
# One lever, side by side in one run: `liandong serve` of commit A against commit B (default: the
# working tree), both beside the two empty servers (thread pool and asyncio), all four up at once.
# Each round calls every server at N = 1 / 8 / 64 and streams 10 000 fire incidents, A and B in
# alternating order; then the in-process stages of each side. The summary prints medians over the
# rounds as ratios to the faster empty server of the same round, and B / A.
#
#   tests/bench/bench_before_after.sh A [B] > bench-out/before_after.jsonl
#   ROUNDS=3 DURATION=3 A_ARGS='' B_ARGS='--max-workers 2' tests/bench/bench_before_after.sh HEAD
#   .venv/bin/python tests/bench/bench_summarize.py bench-out/before_after.jsonl   # (also printed to stderr at the end)
#
# A and B are any git revisions, or WORKTREE for the working tree. A_ARGS / B_ARGS: extra flags for
# that side's `liandong serve` (to compare a flag on one commit, give the same revision twice).
# Each revision's own rules/ and service/ are used (its protobuf code generated from its proto/).
# Bounded: ROUNDS x (3 loads x 4 servers x DURATION s + 4 streams); every server is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
A="${1:?usage: bench_before_after.sh A [B]}"
B="${2:-WORKTREE}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-3}"
py="$PWD/.venv/bin/python"
liandong="$PWD/.venv/bin/liandong"
bench="$PWD/tests/bench"
pids=()
trees=()
results=$(mktemp)
emit() { echo "$1"; echo "$1" >>"$results"; }  # stdout, and a copy for the summary at the end
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for t in "${trees[@]}"; do git worktree remove --force "$t" >/dev/null 2>&1 || true; done
  rm -f "$results"
}
trap cleanup EXIT
port() { $py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The source tree of a revision: the working tree, or a detached worktree with its protobuf code built.
tree_of() {
  if [ "$1" = WORKTREE ]; then echo "$PWD"; return; fi
  local t
  t=$(mktemp -d)
  git worktree add -q --detach "$t" "$1"
  (cd "$t" && "$py" -m grpc_tools.protoc -I proto --python_out=service --pyi_out=service --grpc_python_out=service proto/liandong/v1/*.proto)
  echo "$t"
}
tA=$(tree_of "$A"); [ "$tA" = "$PWD" ] || trees+=("$tA")
tB=$(tree_of "$B"); [ "$tB" = "$PWD" ] || trees+=("$tB")

declare -A target
start_liandong() {  # side tree args
  local p; p=$(port)
  # shellcheck disable=SC2086  # the side's extra flags are split on purpose
  PYTHONPATH="$2/service:$bench" "$liandong" serve --listen "127.0.0.1:$p" --metrics-listen "127.0.0.1:0" \
    --rules-dir "$2/rules" $3 >/dev/null 2>&1 &
  pids+=($!)
  target[$1]="127.0.0.1:$p"
}
start_empty() {  # name script
  local p; p=$(port)
  PYTHONPATH="$PWD/service:$bench" "$py" "$bench/$2" --listen "127.0.0.1:$p" >/dev/null 2>&1 &
  pids+=($!)
  target[$1]="127.0.0.1:$p"
}
start_empty baseline bench_baseline_server.py
start_empty baseline_aio bench_baseline_aio_server.py
start_liandong A "$tA" "${A_ARGS:-}"
start_liandong B "$tB" "${B_ARGS:-}"
export PYTHONPATH="$PWD/service:$bench"
for name in baseline baseline_aio A B; do
  "$py" -c "from bench_common import wait_serving; wait_serving('${target[$name]}', 90)"
done
for side in A B; do
  t=$([ "$side" = A ] && echo "$tA" || echo "$tB")
  emit "{\"side\": \"$side\", \"rev\": \"$([ "$side" = A ] && echo "$A" || echo "$B")\", \"commit\": \"$(git -C "$t" rev-parse --short HEAD)$([ "$t" = "$PWD" ] && [ -n "$(git status --porcelain -- service)" ] && echo '+changes')\", \"args\": \"$([ "$side" = A ] && echo "${A_ARGS:-}" || echo "${B_ARGS:-}")\"}"
done

for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="baseline baseline_aio A B"; else order="B A baseline_aio baseline"; fi
  echo "[before-after] round $round of $ROUNDS: $order" >&2
  for n in 1 8 64; do
    for name in $order; do
      r=$("$py" "$bench/bench_loadgen.py" unary --target "${target[$name]}" --concurrency "$n" --duration "$DURATION")
      emit "{\"round\": $round, \"n\": $n, \"server\": \"$name\", \"result\": $r}"
    done
  done
  for name in $order; do
    r=$("$py" "$bench/bench_loadgen.py" stream --target "${target[$name]}" --count 10000)
    emit "{\"round\": $round, \"stream\": true, \"server\": \"$name\", \"result\": $r}"
  done
done
# In process, each side's own code (a side whose code lacks what bench_stages.py calls is skipped).
for side in A B; do
  t=$([ "$side" = A ] && echo "$tA" || echo "$tB")
  if r=$(PYTHONPATH="$t/service:$bench" "$py" "$bench/bench_stages.py" --seconds 2 2>/dev/null); then
    emit "{\"side\": \"$side\", \"stages\": $r}"
  else
    echo "[before-after] stages of side $side skipped (bench_stages.py failed on its code)" >&2
  fi
done
echo "[before-after] summary (tests/bench/bench_summarize.py):" >&2
"$py" "$bench/bench_summarize.py" "$results" >&2
