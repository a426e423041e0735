# Two commands do all set-up (see README): `make run` and `make test`.
# Both create .venv on first use, installing with the torch pin in constraints.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fedsimenv-installed
# The local CPU torch wheel lives here on the project's machines; pip looks there too when present.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
SCENARIO ?= tiny
AGENT ?= equal
ROUNDS ?= 10
SEED ?= 0
OUT ?= runs/$(SCENARIO)-$(AGENT)-seed$(SEED)

.PHONY: run test lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(FIND_LINKS) -c constraints.txt -e ".[dev,rl]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/fedsimenv run $(SCENARIO) --agent $(AGENT) --rounds $(ROUNDS) --seed $(SEED) --out $(OUT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
