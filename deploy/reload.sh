#!/usr/bin/env sh
# Reload the rules on every Liandong replica: SIGHUP to PID 1 (`liandong serve`, or the
# supervisor with --workers, which forwards it to each worker). Each replica checks the new rules
# and runs every fixture before swapping them in; a set that fails keeps the old one serving.
#   deploy/reload.sh [namespace]
set -eu
ns="${1:-default}"
for pod in $(kubectl -n "$ns" get pods -l app.kubernetes.io/name=liandong -o jsonpath='{.items[*].metadata.name}'); do
  echo "reload $pod"
  kubectl -n "$ns" exec "$pod" -c liandong -- kill -HUP 1
done
echo "check: liandong_ruleset_active_info and liandong_reloads_total{outcome=\"failure\"} on each replica"
