# A newcomer needs two commands: `make run` (serves the quickstart) and `make test` (runs the suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-scheduling bench-overhead bench-idle soak status clean docker

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

bench: bench-scheduling

# Scheduling quality against round-robin and vllm-router (bench/README.md). QUICK=1: under 3 minutes.
# Refuses to start on a busy machine: 1-minute load average above BENCH_MAX_LOAD.
BENCH_MAX_LOAD ?= 0.7
BENCH_PEERS := bench/.venv-peers

bench-idle:
	@awk -v max=$(BENCH_MAX_LOAD) '{ if ($$1 > max) { printf "bench-scheduling: the machine is busy (load average %s > %s); not starting.\n", $$1, max; exit 1 } }' /proc/loadavg

bench-scheduling: bench-idle $(STAMP)
	test -f $(VENV)/.bench-installed -a $(VENV)/.bench-installed -nt pyproject.toml || \
		{ $(BIN)/python -m pip install --quiet -e '.[test,bench]' && touch $(VENV)/.bench-installed; }
	test -x $(BENCH_PEERS)/bin/vllm-router || \
		{ $(PYTHON) -m venv $(BENCH_PEERS) && $(BENCH_PEERS)/bin/python -m pip install --quiet vllm-router; } || \
		echo "vllm-router could not be installed: its runs will be skipped"
	$(BIN)/python -m bench.scheduling --max-load 1000 $(if $(filter 1,$(QUICK)),--quick)

# Proxy overhead against nginx, vllm-router and sglang-router, one core each (bench/README.md); QUICK=1: ~3 min.
bench-overhead: bench-idle $(STAMP)
	command -v wrk >/dev/null && command -v nginx >/dev/null || \
		{ apt-get update -qq && RUNLEVEL=1 apt-get install -y -qq --no-install-recommends wrk nginx-light >/dev/null; } || \
		echo "wrk/nginx could not be installed"
	test -x $(BENCH_PEERS)/bin/vllm-router || \
		{ $(PYTHON) -m venv $(BENCH_PEERS) && $(BENCH_PEERS)/bin/python -m pip install --quiet vllm-router; } || \
		echo "vllm-router could not be installed: its runs will be skipped"
	$(BENCH_PEERS)/bin/python -c "import sglang_router" 2>/dev/null || \
		$(BENCH_PEERS)/bin/python -m pip install --quiet sglang-router || \
		echo "sglang-router could not be installed: its runs will be skipped"
	$(BIN)/python -m bench.overhead --max-load 1000 $(if $(filter 1,$(QUICK)),--quick)

# Long mixed load with endpoints restarting and config churning (bench/README.md). SOAK_MINUTES=10 in CI size.
SOAK_MINUTES ?= 30
soak: $(STAMP)
	$(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES)

docker:
	docker build -t kthena-router:dev .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
