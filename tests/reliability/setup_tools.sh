#!/usr/bin/env bash
# Installs what the independent-client tests (tests/reliability/test_clients.py) need from outside
# PyPI: the Node.js gRPC packages (npm registry, into tests/reliability/node/node_modules, which git
# ignores) and Debian's `prometheus` package (prometheus and promtool).
#
# Run by `make test`. It never fails the build: when a registry cannot be reached, or apt-get cannot
# be used (not root, not Debian), it says so and the tests that need the tool skip with the reason.
set -u
cd "$(dirname "$0")"
say() { echo "setup_tools: $*" >&2; }

# -- Node.js packages --------------------------------------------------------------------------------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  say "node/npm not found: the Node.js client test will be skipped"
elif [ -f node/node_modules/.package-lock.json ] && [ node/node_modules/.package-lock.json -nt node/package-lock.json ]; then
  : # installed, and the lock file has not changed since
else
  if (cd node && timeout 180 npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>npm-install.log); then
    rm -f node/npm-install.log
  else
    say "npm ci failed (see tests/reliability/node/npm-install.log): the Node.js client test will be skipped"
  fi
fi

# -- Prometheus (Debian package) ------------------------------------------------------------------------
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  : # already there
elif [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  say "prometheus is not installed and apt-get cannot be used here: the Prometheus tests will be skipped"
else
  # Never start the packaged service while installing (Docker images already say so in policy-rc.d).
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  if ! { timeout 180 apt-get update -qq >/dev/null 2>&1 &&
         DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1; }; then
    say "apt-get install prometheus failed: the Prometheus tests will be skipped"
  fi
  if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
  # Should a system service have started anyway (a policy-rc.d that allows it), stop it: the tests
  # run their own server, with their own config, on a port of their own on 127.0.0.1.
  if command -v service >/dev/null 2>&1; then service prometheus stop >/dev/null 2>&1 || true; fi
fi
exit 0
