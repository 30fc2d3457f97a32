# Two commands from a fresh clone: `make run` and `make test`. Everything else is set up on demand.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROTOS := $(wildcard proto/liandong/v1/*.proto)
GENERATED := $(PROTOS:proto/%.proto=service/%_pb2.py)

.PHONY: run example test venv proto docs validate rules-test typecheck clean bench

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (set PYTHON=...)" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
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
	$(BIN)/liandong rules validate rules
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports  # the layer contract in pyproject.toml
	$(BIN)/python -m mypy
	@bash tests/reliability/setup_tools.sh  # npm packages and prometheus for the client tests; never fails
	$(BIN)/python -m pytest

# Regenerate the tables of inputs in rules/README.md from the bundled documents.
docs: venv
	$(BIN)/python -m liandong.docs rules/README.md rules

# Benchmarks (not tests): bench-out/report.md and report.json; docs/performance.md is one such run.
# Installs the `bench` extra (zen-engine, py-spy, pyinstrument). BENCH_ARGS=--quick for a smoke run.
bench: venv
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python tests/bench/bench_run.py --out bench-out $(BENCH_ARGS)

validate: $(STAMP)
	$(BIN)/liandong rules validate rules

rules-test: venv
	$(BIN)/liandong rules test rules

typecheck: venv
	$(BIN)/python -m mypy

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache service/liandong/v1/*_pb2*.py service/liandong/v1/*_pb2.pyi
