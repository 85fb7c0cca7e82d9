# `make run` and `make test` work on a fresh machine with Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-slow test-all lint fmt proto bench bench-cluster clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Start nats-server (JetStream), a gateway and a worker; data under ./.engram
run: $(STAMP)
	$(BIN)/engram dev

## The default suite (unit + integration on a real nats-server); < 10 min. Two
## pytest processes (pytest-xdist), each with its own nats-server: the tests
## mostly wait on servers, so two halve the time on two cores (9.0 -> 4.4 min)
test: $(STAMP)
	$(BIN)/pytest -m "not slow" -n 2

## Slow tests (crash and scale); CI runs them too
test-slow: $(STAMP)
	$(BIN)/pytest -m slow || [ $$? -eq 5 ]

test-all: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	MYPYPATH=ops/bench $(BIN)/mypy -m bench -m profile_fold -m quality -m snapshot_stall -m cluster

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Regenerate libs/engram_proto/v1 (messages, .pyi, gRPC stubs) from proto/engram/v1
proto: $(STAMP)
	$(BIN)/python -m engram_proto.generate
	$(BIN)/python -m engram_proto.fields

## Benchmarks against raw usearch and raw JetStream, then the cluster part (not a test)
bench: $(STAMP)
	$(BIN)/python ops/bench/bench.py
	$(BIN)/python ops/bench/cluster.py

## The cluster part alone (issue 15: placement, cold start, failover, R3 ingest; ~25 min on 2 cores)
bench-cluster: $(STAMP)
	$(BIN)/python ops/bench/cluster.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
