#!/usr/bin/env sh
# Reload the rules on every Liandong replica: SIGHUP to PID 1 (`liandong serve`, or the supervisor
# with --workers, which forwards it to each worker), sent with the shell's builtin `kill` (a slim
# image has no kill binary, but has /bin/sh). Each replica checks the new rules and runs every
# fixture before swapping them in; a set that fails keeps the old one serving.
#   deploy/reload.sh [namespace]
# With an admin token, the admin RPC does the same per pod and answers with the outcome:
# liandong.v1.RulesAdminService/Reload on each pod IP (docs/operations.md).
set -eu
ns="${1:-default}"
for pod in $(kubectl -n "$ns" get pods -l app.kubernetes.io/name=liandong -o jsonpath='{.items[*].metadata.name}'); do
  echo "reload $pod"
  kubectl -n "$ns" exec "$pod" -c liandong -- sh -c 'kill -HUP 1'
done
echo "check: liandong_rules_directory_unapplied is 0 and liandong_ruleset_active_info shows the new content hash on each replica"
