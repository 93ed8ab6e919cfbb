# A newcomer needs two commands: `make run` (serves the quickstart) and `make test` (runs the suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench status clean docker

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/kthena-router --config-dir examples/quickstart --simulate

status: $(STAMP)
	$(BIN)/kthena-router status --config-dir examples/quickstart

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check kthena_router tests

bench: $(STAMP)
	@echo "No benchmark is defined yet; see bench/README.md."

docker:
	docker build -t kthena-router:dev .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
