# Two commands from a fresh clone: `make run` and `make test`. Everything else is set up on demand.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test venv validate rules-test typecheck clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (set PYTHON=...)" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# Until the gRPC service exists: check and test the bundled rules, then answer an example incident.
run: $(STAMP)
	$(BIN)/liandong rules validate rules
	$(BIN)/liandong rules test rules
	$(BIN)/liandong rules explain fire-linkage --fact deaths=3 --fact serious_injuries=12 --fact hazardous_materials=true

test: $(STAMP)
	$(BIN)/liandong rules validate rules
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest

validate: $(STAMP)
	$(BIN)/liandong rules validate rules

rules-test: $(STAMP)
	$(BIN)/liandong rules test rules

typecheck: $(STAMP)
	$(BIN)/python -m mypy

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache
