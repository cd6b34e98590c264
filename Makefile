# One command to run the app, one to run the tests; both create .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test test-fast lint format venv clean

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

# Every test: unit, web, model, deploy, e2e (the README's test command).
test: lint
	$(BIN)/python -m pytest -q -rs

# Unit and web tests only, for the edit-test loop.
test-fast: venv
	$(BIN)/python -m pytest -q -rs tests/unit tests/web

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache test-artifacts *.egg-info
