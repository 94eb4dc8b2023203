# LLaRA++ — the two commands are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA ?=
ARGS ?=

.PHONY: run test lint install serve clean bench-ingest help

help:
	@echo "make run [DATA=folder|s3://bucket/prefix]   train the whole pipeline locally"
	@echo "make test                                   install and run the test suite"
	@echo "make lint                                   ruff"
	@echo "make bench-ingest                           ingest throughput benchmark"

$(PY):
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependency files change.
$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/llarapp pipeline run $(if $(DATA),--data $(DATA),) $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check llarapp pipelines components tests benchmarks

bench-ingest: $(STAMP)
	$(PY) benchmarks/ingest.py $(ARGS)

clean:
	rm -rf runs .pytest_cache .ruff_cache
