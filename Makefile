# Everything a fresh machine needs comes from here. `make demo` and `make test` set up .venv first.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.rootshift-installed
# the CPU wheel of torch first, so nothing pulls a multi-GB CUDA build
TORCH   := torch==2.13.0
PYTEST_ARGS ?=

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH) numpy
	$(BIN)/pip install -q -e '.[test,bench]'
	@command -v iverilog >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && apt-get install -y -qq iverilog >/dev/null) || echo "note: iverilog not installed (Icarus co-simulation tests will be skipped)"; }
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/rootshift flow --data digits --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/accuracy.py
	$(BIN)/python bench/qat_step.py

clean:
	rm -rf runs build sim_build .pytest_cache
