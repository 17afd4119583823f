"""``ControlRegisters``: the core's AXI4-Lite slave, generated from :data:`nsllm.isa.REGISTER_MAP`.

Each register of the map becomes a port of this component, named in lower case:

* RW registers are stored here and appear as outputs (``image``, ``w0``, ``prog_ops`` …);
* RO registers are inputs from the core (``status``, ``cycles``, ``port0_bytes`` …);
* WO registers are one-cycle strobes (``cache_flush``);
* CONST registers (BUILD_*) are the build's values, given at construction;
* CTRL and ISR follow Vitis ``ap_ctrl_hs``: a write of bit 0 while idle pulses ``start``; the
  ``done`` input sets ap_done/ap_ready (cleared when CTRL is read) and, if IER bit 0 is set, ISR
  bit 0; ``irq`` = ISR & GIE & IER.

Per-port registers of ports the build does not have read as 0 and ignore writes. An access to an
offset outside the map reads 0 and is ignored, answered OKAY (as Vitis kernels do).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nsllm.isa.registers import ADDRESS_BITS, REGISTER_MAP, Access, Register

from .axi import axil_signature

__all__ = ["ControlRegisters"]


def _present(reg: Register, weight_ports: int) -> bool:
    return not isinstance(reg.port, int) or reg.port < weight_ports


class ControlRegisters(wiring.Component):
    """The register map as hardware (see the module docstring).

    Parameters
    ----------
    constants : dict
        Value of every CONST register (``BUILD_*``), by name.
    weight_ports : int
        Weight ports of the build (per-port registers beyond them are absent).
    """

    def __init__(self, constants: dict[str, int], weight_ports: int):
        missing = [r.name for r in REGISTER_MAP if r.access == Access.CONST
                   and r.name not in constants]
        if missing:
            raise ValueError(f"no value for the build register(s) {', '.join(missing)}")
        self.constants = dict(constants)
        self.weight_ports = weight_ports
        members = {"s_axil": In(axil_signature()), "start": Out(1), "busy": In(1),
                   "done": In(1), "irq": Out(1)}
        for reg in REGISTER_MAP:
            if not _present(reg, weight_ports):
                continue
            name = reg.name.lower()
            if reg.access in (Access.RW,):
                members[name] = Out(reg.bits)
            elif reg.access == Access.RO:
                members[name] = In(reg.bits)
            elif reg.access == Access.WO:
                members[name] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        ax = self.s_axil
        done_flag = Signal()
        isr = Signal()
        gie, ier = self.gie, self.ier

        # writes: address and data taken together (one cycle), answered with B next cycle
        m.d.comb += [ax.awready.eq(~ax.bvalid & ax.wvalid), ax.wready.eq(~ax.bvalid & ax.awvalid),
                     ax.bresp.eq(0), ax.rresp.eq(0)]
        wr_fire = ax.awvalid & ax.wvalid & ~ax.bvalid
        with m.If(ax.bvalid & ax.bready):
            m.d.sync += ax.bvalid.eq(0)
        with m.If(wr_fire):
            m.d.sync += ax.bvalid.eq(1)
            with m.Switch(ax.awaddr):
                for reg in REGISTER_MAP:
                    if not _present(reg, self.weight_ports):
                        continue
                    port = getattr(self, reg.name.lower(), None)
                    for k, (_, off) in enumerate(reg.words):
                        with m.Case(off):
                            if reg.access == Access.CTRL:
                                m.d.comb += self.start.eq(ax.wdata[0] & ~self.busy)
                            elif reg.access == Access.TOGGLE:
                                m.d.sync += isr.eq(isr ^ ax.wdata[0])
                            elif reg.access == Access.RW:
                                m.d.sync += port[32 * k: 32 * (k + 1)].eq(ax.wdata[:min(
                                    32, reg.bits - 32 * k)])
                            elif reg.access == Access.WO:
                                m.d.comb += port.eq(1)
        m.d.comb += self.irq.eq(isr & gie[0] & ier[0])

        # reads: registered one cycle after the address is taken
        rd_pending = Signal()
        rd_addr = Signal(ADDRESS_BITS)
        m.d.comb += ax.arready.eq(~ax.rvalid & ~rd_pending)
        with m.If(ax.arvalid & ax.arready):
            m.d.sync += [rd_pending.eq(1), rd_addr.eq(ax.araddr)]
        with m.If(rd_pending):
            m.d.sync += [rd_pending.eq(0), ax.rvalid.eq(1), ax.rdata.eq(0)]
            with m.Switch(rd_addr):
                for reg in REGISTER_MAP:
                    if not _present(reg, self.weight_ports):
                        continue
                    for k, (_, off) in enumerate(reg.words):
                        with m.Case(off):
                            if reg.access == Access.CTRL:
                                busy = self.busy
                                m.d.sync += [ax.rdata.eq(Cat(busy, done_flag, ~busy, done_flag)),
                                             done_flag.eq(0)]
                            elif reg.access == Access.TOGGLE:
                                m.d.sync += ax.rdata.eq(isr)
                            elif reg.access == Access.CONST:
                                m.d.sync += ax.rdata.eq(Const(self.constants[reg.name], 32))
                            elif reg.access in (Access.RW, Access.RO):
                                port = getattr(self, reg.name.lower())
                                m.d.sync += ax.rdata.eq(port[32 * k: 32 * (k + 1)])
        with m.If(ax.rvalid & ax.rready):
            m.d.sync += ax.rvalid.eq(0)
        # last, so a done in the cycle CTRL is read is not lost
        with m.If(self.done):
            m.d.sync += [done_flag.eq(1), isr.eq(isr | ier[0])]
        return m
