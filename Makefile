# Two commands from a fresh clone: `make run` and `make test`. Everything else is set up on demand.
# CPython 3.11 to 3.13: the newest found on the PATH is used (tools/python.sh says how it looks);
# PYTHON=python3.12 or PYTHON=/path/to/python overrides it, VENV=.venv-3.12 keeps a venv apart.
PYTHON ?=
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
INTERPRETER := $(VENV)/.interpreter
# The engine is built from the pinned durable-rules sdist with Liandong's patch (docs/engine.md).
ENGINE := tools/engine_wheel.py tools/durable-rules-2.0.28.patch
PROTOS := $(wildcard proto/liandong/v1/*.proto)
GENERATED := $(PROTOS:proto/%.proto=service/%_pb2.py)

.PHONY: run example test venv proto docs validate rules-test typecheck clean bench deploy-files FORCE

# The interpreter is picked on every run. The file naming it is rewritten only when it changes, and
# then the venv is made again from scratch: a venv cannot change its interpreter in place.
$(INTERPRETER): FORCE
	@py=$$(tools/python.sh $(PYTHON)) || exit 2; \
	id=$$("$$py" -c 'import os, platform, sys; print("Python", platform.python_version(), os.path.realpath(sys.executable))'); \
	if [ "$$(cat $@ 2>/dev/null)" != "$$id" ]; then \
	  if [ -e $(VENV) ] && [ ! -f $(VENV)/pyvenv.cfg ]; then echo "error: $(VENV) exists and is not a venv" >&2; exit 2; fi; \
	  echo "set-up: $(VENV) with $$id"; \
	  rm -rf $(VENV) && "$$py" -m venv $(VENV) && echo "$$id" > $@; \
	fi

# The engine wheel first (compiled once per interpreter, then taken from the user's cache), so that
# installing the project finds durable-rules==2.0.28 already satisfied by the patched build.
$(STAMP): pyproject.toml $(ENGINE) $(INTERPRETER)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/python tools/engine_wheel.py --install >/dev/null  # its log names the wheel
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Generated protobuf code comes from the build, never from the repository.
service/liandong/v1/%_pb2.py: proto/liandong/v1/%.proto $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I proto --python_out=service --pyi_out=service --grpc_python_out=service $<

proto: $(GENERATED)

venv: $(STAMP) $(GENERATED)

# Serve the bundled rules on 127.0.0.1:50051, metrics on http://127.0.0.1:9464/metrics.
# Flags and LIANDONG_* variables: `liandong serve --help`. Extra flags: make run ARGS='--log-format console'.
run: venv
	$(BIN)/liandong rules validate rules
	exec $(BIN)/liandong serve --rules-dir rules $(ARGS)

# The example incident of the README, answered in-process (no server needed).
example: venv
	$(BIN)/liandong rules explain fire-linkage --fact deaths=3 --fact serious_injuries=12 --fact hazardous_materials=true

test: venv
	@echo "make test: $$(cat $(INTERPRETER)) (venv $(VENV))"
	$(BIN)/liandong rules validate rules
	$(BIN)/liandong rules test --coverage --fail-under 100 rules  # every bundled set: 100% rule and boundary coverage
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports  # the layer contract in pyproject.toml
	$(BIN)/python -m mypy
	@bash tests/reliability/setup_tools.sh  # npm packages and prometheus for the client tests; never fails
	$(BIN)/python tools/deploy_files.py --check
	@bash tools/browser.sh  # headless Chromium and a Chinese font for the browser tests; never fails
	$(BIN)/python -m pytest
	@echo "make test: passed on $$(cat $(INTERPRETER))"

# Regenerate the tables of inputs in rules/README.md from the bundled documents.
docs: venv
	$(BIN)/python -m liandong.docs rules/README.md rules

# Benchmarks (not tests): bench-out/report.md and report.json; docs/performance.md is one such run.
# Installs the `bench` extra (zen-engine, py-spy, pyinstrument). BENCH_ARGS=--quick for a smoke run
# (about 2 minutes on a quiet machine; the full run about 12); BENCH_ARGS="--serve-args '--max-workers 2'"
# passes flags to every `liandong serve`. One lever, side by side: tests/bench/bench_before_after.sh A [B].
bench: venv
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python tests/bench/bench_run.py --out bench-out $(BENCH_ARGS)
	PYTHONPATH=tests/bench $(BIN)/python tests/bench/bench_incidents.py --out bench-out $(BENCH_ARGS)  # docs/incidents.md, "Measured"

# The deploy files made from others (rules ConfigMap and volume items from rules/, the PrometheusRule
# from deploy/prometheus/liandong-rules.yml): run after adding a rule file; `make test` checks them.
deploy-files: $(STAMP)
	$(BIN)/python tools/deploy_files.py

validate: $(STAMP)
	$(BIN)/liandong rules validate rules

rules-test: venv
	$(BIN)/liandong rules test --coverage rules

typecheck: venv
	$(BIN)/python -m mypy

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache service/liandong/v1/*_pb2*.py service/liandong/v1/*_pb2.pyi
