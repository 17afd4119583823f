"""Amaranth components of the spiking datapath, and their Verilog generation.

Every component is an Amaranth 0.5 ``wiring.Component`` with ``amaranth.lib.stream`` ports
(``i_stream`` in, ``o_stream`` out), parameterised from the numerics contract
(:mod:`nsllm.model.numerics`). :mod:`nsllm.hdl.registry` lists them with a small ("sim") and a
board-size parameterisation and writes their Verilog (``nsllm verilog --out DIR``).

* :mod:`~nsllm.hdl.trits` — packed weight words → trit lanes.
* :mod:`~nsllm.hdl.accumulator` — the multiplier-free ternary accumulator array.
* :mod:`~nsllm.hdl.spike` — membrane scaling, the I-LIF spike encoder, spike-train emitter and
  the fired-input index filter.
* :mod:`~nsllm.hdl.norm`, :mod:`~nsllm.hdl.mlgru`, :mod:`~nsllm.hdl.gate`,
  :mod:`~nsllm.hdl.argmax` — the elementwise units.
"""

from .registry import ComponentSpec, build, components, write_all, write_verilog

__all__ = ["ComponentSpec", "build", "components", "write_all", "write_verilog"]
