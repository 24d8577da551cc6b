# Works on a fresh machine with only python3, node/npm and make:
# .venv and the local Node 22 + fauxqs (node_modules) are created here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PIPELINE_SQS_ENDPOINT_URL ?= http://127.0.0.1:4566

.PHONY: install browser demo test lint unit integration bench bench-quick chaos clean

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	node_modules/.bin/node --version
	touch $@

demo: install
	$(BIN)/pipeline demo

# The Flower page test drives Debian's chromium (installed here when missing).
browser:
	command -v chromium >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

test: install browser
	$(BIN)/pytest

# Benchmarks (not tests): results/bench.md and results/bench.json.
bench: install
	$(BIN)/python -m bench

bench-quick: install
	$(BIN)/python -m bench --quick

# Chaos (not a test): 2,000 orders through kills, freezes, restarts, message loss and
# gateway faults, on SQLite and PostgreSQL, then a fuzz; results/chaos.md.
chaos: install
	$(BIN)/python -m bench.chaos

unit: install
	$(BIN)/pytest tests/unit

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) node_modules var .pytest_cache .mypy_cache .ruff_cache
