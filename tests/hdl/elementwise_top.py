"""One simulation toplevel holding every elementwise unit, so cocotb builds it once per simulator.

Verilator spends most of a cocotb run compiling C++; six separate toplevels cost six builds.
:class:`ElementwiseTestTop` forwards each unit's ports under a prefix (``rmsnorm__i_stream__…``,
``gate__o_stream__…``); the testbenches of every unit run against this one build. The units are
the registry's ``sim`` builds, so they are exactly what ``nsllm verilog`` emits.
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from nsllm.hdl import registry

#: port prefix → registry name
UNITS = {
    "rmsnorm": "RMSNormUnit",
    "scale": "ChannelScale",
    "mlgru": "MLGRUStateUnit",
    "gate": "SiluGateUnit",
    "residual": "ResidualAdder",
    "argmax": "Argmax",
}
TOP_NAME = "ElementwiseTestTop"


class ElementwiseTestTop(wiring.Component):
    """Every elementwise unit side by side, each unit's interface forwarded under its prefix."""

    def __init__(self):
        self.units = {prefix: registry.build(name, "sim") for prefix, name in UNITS.items()}
        super().__init__({prefix: Out(unit.signature) for prefix, unit in self.units.items()})

    def elaborate(self, platform):
        m = Module()
        for prefix, unit in self.units.items():
            m.submodules[prefix] = unit
            wiring.connect(m, wiring.flipped(getattr(self, prefix)), unit)
        return m
