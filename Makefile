# twinledger — every command the README names is a target here, and CI runs `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install demo test test-unit test-integration lint typecheck bench soak kafka-start kafka-stop clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-18s %s\n", $$1, $$2}'

# The ledger's hot modules compiled with mypyc and the Avro codec's C parts (setup.py,
# docs/performance.md): built after the venv, and again whenever one of their sources
# changes, so `make test` always tests what ships. Where they cannot compile, their
# Python code runs.
COMPILED := $(VENV)/.compiled
LEDGER_SRC := $(wildcard streams/ledger/*.py) $(wildcard streams/codec/*.c) setup.py

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	TWINLEDGER_PURE_PYTHON=1 $(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

$(COMPILED): $(LEDGER_SRC) | $(STAMP)
	$(PY) -m pip install -q --no-deps -e .
	@touch $(COMPILED)

install: $(STAMP) $(COMPILED) ## create .venv with twinledger and its test tools installed, compile the ledger

demo: install ## run the whole pipeline on the bundled sample (local Kafka + chDB) and report
	$(VENV)/bin/twinledger demo

test: install ## run every test: unit, then integration on a real local Kafka and chDB
	$(PY) -m pytest tests/unit -q
	$(PY) -m pytest tests/integration -q

test-unit: install ## unit tests only (no broker, no database)
	$(PY) -m pytest tests/unit -q

test-integration: install ## integration tests only (starts the local broker if needed)
	$(PY) -m pytest tests/integration -q

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check streams sinks tests bench

typecheck: $(STAMP) ## mypy (disallow_untyped_defs on streams/ and sinks/)
	$(VENV)/bin/mypy streams sinks

bench: install ## benchmarks, printed as JSON
	$(PY) bench/run.py

soak: install ## soak: 200k year-old events, 1k accounts, a broker restart; live state = fold, verify (not in `make test`)
	$(PY) bench/soak.py $(SOAK_ARGS)

kafka-start: $(STAMP) ## start the local Kafka broker (KRaft, loopback)
	ops/kafka/kafka.sh start

kafka-stop: ## stop the local Kafka broker this checkout started
	ops/kafka/kafka.sh stop

.PHONY: kafka-compat
kafka-compat: $(STAMP) ## check the installed Kafka clients against the pinned broker and 3.9.2, each on its own port
	$(PY) ops/kafka/client_compat.py --kafka-version $$(sed -n 's:.*<kafka.version>\([^<]*\)</kafka.version>.*:\1:p' ops/kafka/pom.xml)
	$(PY) ops/kafka/client_compat.py --kafka-version 3.9.2

clean: ## remove runtime data (.data) and caches, keep .venv and downloaded jars
	-ops/kafka/kafka.sh stop
	rm -rf .data .pytest_cache .mypy_cache .ruff_cache .hypothesis
