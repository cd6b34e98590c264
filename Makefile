# One command to run the app, one to run the tests; both create .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
# pytest-xdist workers (auto: one per CPU); tests that share a server or the browser share one.
WORKERS ?= auto
PYTEST_ARGS := -q -rs -n $(WORKERS) --dist loadgroup

.PHONY: run test test-fast coverage soak lint format venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=python3"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

run: venv
	$(BIN)/flask --app wsgi run --host $(HOST) --port $(PORT)

# Style, spelling and types: ruff, ruff format, codespell, mypy (strict for app/core).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/codespell
	$(BIN)/mypy

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# axe-core for the browser tests' accessibility checks (needs npm; the e2e tests say so without it).
AXE := tests/e2e/node_modules/axe-core/axe.min.js

$(AXE): tests/e2e/package.json tests/e2e/package-lock.json
	command -v npm >/dev/null 2>&1 && npm ci --prefix tests/e2e --no-audit --no-fund --silent || echo "npm not found: the e2e accessibility checks will fail"

# The README's test command, what CI runs: the linters and every test (unit, web, model,
# records, deploy, e2e; the soak tests at their small size) under coverage, side by side:
# the tests leave about a sixth of 2 cores idle while they wait on servers and the browser.
test: venv $(AXE)
	$(MAKE) --no-print-directory --output-sync=line -j2 lint coverage

# Every test under coverage.py, gunicorn's workers included; fails below fail_under of app/.
coverage: venv $(AXE)
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report

# Unit and web tests only, for the edit-test loop.
test-fast: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS) tests/unit tests/web

# The soak tests at full size, one after the other: 2,000 requests with a worker killed,
# 1,100 watching a worker's memory.
soak: venv
	SOAK_SCALE=1 $(BIN)/python -m pytest -q -rs -m soak

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache test-artifacts *.egg-info tests/e2e/node_modules .coverage .coverage.*
