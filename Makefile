# Two commands do all set-up (see README): `make run` and `make test`.
# Both create .venv on first use, installing with the torch pin in constraints.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fedsimenv-installed
# The local CPU torch wheel lives here on the project's machines; pip looks there too when present.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
# The main job: the analytic optimal agent against the baselines on the same seeds.
SCENARIO ?= default
AGENTS ?= optimal,equal,uniform-pruning,greedy-channel,proportional-fair
SEEDS ?= 3
OUT ?= runs/compare-$(SCENARIO)

.PHONY: run test test-slow lint venv clean bench-env

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(FIND_LINKS) -c constraints.txt -e ".[dev,rl]"
	touch $(STAMP)

# --resume: running `make run` again continues an interrupted comparison (finished runs are reused).
run: $(STAMP)
	$(BIN)/fedsimenv compare $(SCENARIO) --agents $(AGENTS) --seeds $(SEEDS) --out $(OUT) --resume

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

# The long learning-quality tests that `make test` deselects (marked slow in tests/).
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

# The benchmark's own environment for the Flower peer (bench/fedavg_round.py): flwr[simulation] and Ray,
# never installed into .venv. The constraints file keeps torch the pinned CPU wheel here too.
BENCH_VENV ?= .venv-bench
bench-env: $(BENCH_VENV)/.bench-installed

$(BENCH_VENV)/.bench-installed: pyproject.toml constraints.txt bench/requirements-flower.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet $(FIND_LINKS) -c constraints.txt -e . -r bench/requirements-flower.txt
	$(BENCH_VENV)/bin/python -c "import flwr, ray, torch; print('flwr', flwr.__version__, 'ray', ray.__version__, 'torch', torch.__version__)"
	touch $@

clean:
	rm -rf $(VENV) $(BENCH_VENV) runs .pytest_cache .mypy_cache .ruff_cache
