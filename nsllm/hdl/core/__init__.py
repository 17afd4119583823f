"""The NSLLM core: a composition of units, one file each.

* :mod:`~nsllm.hdl.core.params` — :class:`CoreParams`, the generator parameters;
* :mod:`~nsllm.hdl.core.control` — ``ControlRegisters``, generated from :mod:`nsllm.isa`;
* :mod:`~nsllm.hdl.core.sequencer` — program cache, descriptor checks, dispatch;
* :mod:`~nsllm.hdl.core.axi` — bus signatures, ``BurstSplitter``, ``ReadArbiter``;
* :mod:`~nsllm.hdl.core.tables` — ``TableLoader``;
* :mod:`~nsllm.hdl.core.vector` — ``VectorUnit`` (lanes of the elementwise units);
* :mod:`~nsllm.hdl.core.linear`, :mod:`~nsllm.hdl.core.streamer` — the spiking linear chain;
* :mod:`~nsllm.hdl.core.top` — :class:`NSLLMCore`, the wiring.
"""

from .axi import axi_read_signature, axil_signature
from .params import CoreParams
from .top import NSLLMCore, axi_port_names, ternary_paths

__all__ = ["CoreParams", "NSLLMCore", "axi_port_names", "axi_read_signature", "axil_signature",
           "ternary_paths"]


def _registry():
    """The core and its units for :mod:`nsllm.hdl.registry` (sim: the shipped model's build,
    board: the VCK190 build of :meth:`CoreParams.board`)."""
    from ..registry import ComponentSpec
    from .axi import BurstSplitter, ReadArbiter
    from .control import ControlRegisters
    from .linear import LINEAR_OPS, LinearUnit, Requantizer
    from .sequencer import Sequencer
    from .streamer import WeightStreamer
    from .tables import TableLoader
    from .vector import VECTOR_OPS, VectorUnit

    def both(make, **kw):
        return {"sim": lambda: make(CoreParams.sim(), **kw),
                "board": lambda: make(CoreParams.board(), **kw)}

    def control(p):
        from nsllm.isa.registers import build_register_values

        return ControlRegisters(build_register_values(p.build_limits()), p.weight_ports)

    def sequencer(p):
        return Sequencer(p.build_limits(), {"vector": VECTOR_OPS, "linear": LINEAR_OPS})

    def requantizer(p):
        return Requantizer(p.vector, p.weight_ports, p.acc_bits)

    specs = [
        ("NSLLMCore", NSLLMCore, "the whole core: registers, sequencer, vector unit, spiking "
                                 "linear chain, AXI ports"),
        ("ControlRegisters", control, "AXI4-Lite register map generated from nsllm.isa"),
        ("Sequencer", sequencer, "program cache, descriptor checks, table prefetch, dispatch"),
        ("TableLoader", lambda p: TableLoader(p.port_bytes, p.vector, p.table_bank_words),
         "int32 tables into a two-bank table memory"),
        ("BurstSplitter", lambda p: BurstSplitter(p.port_bytes),
         "read requests → AXI4 bursts (≤ 256 beats, no 4 KiB crossing)"),
        ("ReadArbiter", lambda p: ReadArbiter(p.port_bytes, 2), "read clients on one port"),
        ("VectorUnit", VectorUnit, "elementwise instructions: lanes of the pipelined units"),
        ("LinearUnit", LinearUnit, "the spiking linear chain (encoders → queue → streamers → "
                                   "banks → requantiser)"),
        ("WeightStreamer", WeightStreamer, "one weight port's column bursts, trit decoding"),
        ("Requantizer", requantizer, "Σ of the banks × θβ, shift, saturate"),
    ]
    registry = {name: ComponentSpec(name, summary=summary, **both(make))
                for name, make, summary in specs}
    from .sla import SLAUnit

    registry["SLAUnit"] = ComponentSpec(
        "SLAUnit", sim=lambda: SLAUnit(CoreParams.sim()),
        board=lambda: SLAUnit(CoreParams.board(sla=True)),
        summary="SLA state unit: per-slot state memory, one row word per cycle, masked "
                "shift-adds")
    return registry


COMPONENTS = _registry()
