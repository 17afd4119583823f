"""TEST FIXTURE — a stand-in for ``NSLLMCore`` with the same top-level ports and register map.

It is *not* the NSLLM core: it exists so the host runtime, the Verilator harness and
``SimDevice`` can be tested on a small design that builds in seconds. On ``ap_start`` it reads
``TOKEN_IN`` bytes starting at ``PROG_ADDR`` over the AXI4 read master (INCR bursts of at most
``burst_beats`` beats, split at 4 KiB boundaries, up to ``max_outstanding`` bursts in flight) and
reports:

* ``TOKEN_OUT``      — the sum of those bytes (mod 2**32);
* ``WEIGHT_BYTES``   — the number of bytes summed (``TOKEN_IN``);
* ``BUS_BYTES``      — bytes transferred over the bus (whole beats);
* ``SPIKES_NONZERO`` / ``SPIKES_TOTAL`` — non-zero bytes among them / the bytes summed;
* ``CYCLES``         — cycles from start to done;
* ``STATUS``         — pc = beats received, opcode = low nibble of the last beat, busy, error 2
  when a read answered with a non-OKAY ``rresp``;
* ``SCRATCH_DATA``   — ``-SCRATCH_ADDR`` (so a readback window has known contents).

``TOKEN_IN`` bit 31 set makes it hang: busy forever, no bus traffic (to test timeouts); bit 30
set makes it break the AXI rule of not crossing 4 KiB in a burst (to test the harness's checks).
``PROG_ADDR`` must be aligned to ``port_bytes``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nsllm.hdl.core import axi_read_signature, axil_signature
from nsllm.host.device import Reg

STANDIN_BUILD = {  # BUILD_* register values of the stand-in (a pretend core build)
    "BUILD_SCRATCH": 8192, "BUILD_MAX_D": 15, "BUILD_ACC_BITS": 16, "BUILD_MAX_VOCAB": 256,
    "BUILD_MAX_HIDDEN": 128, "BUILD_MAX_INTER": 512, "BUILD_MAX_LAYERS": 4,
    "BUILD_MAX_OPS": 128,
}


class StandInCore(wiring.Component):
    """Byte-summing stand-in with the NSLLM core's ports (test fixture, see module docstring).

    Parameters
    ----------
    port_bytes : int
        AXI data width in bytes (power of two).
    burst_beats : int
        Longest burst it issues.
    max_outstanding : int
        Bursts in flight at most.
    build : dict, optional
        BUILD_* register values (defaults: :data:`STANDIN_BUILD`).
    """

    def __init__(self, port_bytes: int = 8, burst_beats: int = 16, max_outstanding: int = 4,
                 build: dict | None = None):
        self.port_bytes = port_bytes
        self.burst_beats = burst_beats
        self.max_outstanding = max_outstanding
        self.build = {**STANDIN_BUILD, **(build or {})}
        super().__init__({
            "s_axil": In(axil_signature()),
            "m_axi": Out(axi_read_signature(port_bytes)),
            "irq": Out(1),
        })

    def elaborate(self, platform):  # noqa: C901 — one small FSM, read top to bottom
        m = Module()
        pb = self.port_bytes
        lg = (pb - 1).bit_length()
        ax, axi = self.s_axil, self.m_axi

        busy, done, gie, ier, isr = (Signal(name=n) for n in ("busy", "done", "gie", "ier", "isr"))
        hang = Signal()
        cross_4k = Signal()  # misbehave on purpose: bursts ignore 4 KiB boundaries
        error = Signal(4)
        prog_addr = Signal(64)
        prog_ops = Signal(32)  # stored and read back only; the stand-in has no program cache
        token_in, token_out = Signal(32), Signal(32)
        cycles = Signal(64)
        summed, bus_bytes, nonzero = Signal(32), Signal(32), Signal(32)
        pc, opcode = Signal(16), Signal(4)
        scratch_addr = Signal(32)
        acc = Signal(32)
        cur_addr = Signal(64)
        beats_left = Signal(32)  # beats still to request
        bytes_left = Signal(32)  # bytes still to sum
        outstanding = Signal(range(self.max_outstanding + 1))
        start = Signal()

        # ---- AXI-Lite slave: a write needs address and data together; a read answers next cycle
        wr_fire = ax.awvalid & ax.wvalid & ~ax.bvalid
        m.d.comb += [ax.awready.eq(wr_fire), ax.wready.eq(wr_fire), ax.bresp.eq(0),
                     ax.rresp.eq(0), ax.arready.eq(~ax.rvalid),
                     self.irq.eq(gie & ier & isr)]
        with m.If(ax.bvalid & ax.bready):
            m.d.sync += ax.bvalid.eq(0)
        with m.If(wr_fire):
            m.d.sync += ax.bvalid.eq(1)
            with m.Switch(ax.awaddr):
                with m.Case(Reg.CTRL):
                    m.d.comb += start.eq(ax.wdata[0] & ~busy)
                with m.Case(Reg.GIE):
                    m.d.sync += gie.eq(ax.wdata[0])
                with m.Case(Reg.IER):
                    m.d.sync += ier.eq(ax.wdata[0])
                with m.Case(Reg.ISR):
                    m.d.sync += isr.eq(isr ^ ax.wdata[0])
                with m.Case(Reg.PROG_ADDR_LO):
                    m.d.sync += prog_addr[:32].eq(ax.wdata)
                with m.Case(Reg.PROG_ADDR_HI):
                    m.d.sync += prog_addr[32:].eq(ax.wdata)
                with m.Case(Reg.TOKEN_IN):
                    m.d.sync += token_in.eq(ax.wdata)
                with m.Case(Reg.PROG_OPS):
                    m.d.sync += prog_ops.eq(ax.wdata)
                with m.Case(Reg.SCRATCH_ADDR):
                    m.d.sync += scratch_addr.eq(ax.wdata)
        regs = {
            Reg.CTRL: Cat(busy, done, ~busy, done), Reg.GIE: gie, Reg.IER: ier, Reg.ISR: isr,
            Reg.PROG_ADDR_LO: prog_addr[:32], Reg.PROG_ADDR_HI: prog_addr[32:],
            Reg.TOKEN_IN: token_in, Reg.TOKEN_OUT: token_out, Reg.PROG_OPS: prog_ops,
            Reg.CYCLES_LO: cycles[:32], Reg.CYCLES_HI: cycles[32:],
            Reg.WEIGHT_BYTES: summed, Reg.BUS_BYTES: bus_bytes,
            Reg.SPIKES_NONZERO: nonzero, Reg.SPIKES_TOTAL: summed,
            Reg.STATUS: Cat(pc, opcode, Const(0, 4), busy, Const(0, 3), error),
            Reg.SCRATCH_ADDR: scratch_addr, Reg.SCRATCH_DATA: (-scratch_addr)[:32],
            Reg.BUILD_PORT_BYTES: Const(pb, 32),
            **{Reg[k]: Const(v, 32) for k, v in self.build.items()},
        }
        with m.If(ax.rvalid & ax.rready):
            m.d.sync += ax.rvalid.eq(0)
        with m.If(ax.arvalid & ax.arready):
            m.d.sync += [ax.rvalid.eq(1), ax.rdata.eq(0)]
            with m.Switch(ax.araddr):
                for off, value in regs.items():
                    with m.Case(off):
                        m.d.sync += ax.rdata.eq(value)
                        if off == Reg.CTRL:  # ap_done / ap_ready clear on read
                            m.d.sync += done.eq(0)

        # ---- the run: request bursts, sum the bytes, finish when every burst has returned
        beats_to_4k = Signal(14)
        burst = Signal(9)
        capped = Mux(beats_left < self.burst_beats, beats_left, self.burst_beats)
        m.d.comb += [
            beats_to_4k.eq((4096 - cur_addr[:12]) >> lg),
            burst.eq(Mux((beats_to_4k < capped) & ~cross_4k, beats_to_4k, capped)),
            axi.araddr.eq(cur_addr), axi.arlen.eq(burst - 1), axi.arsize.eq(lg),
            axi.arburst.eq(1),
            axi.arvalid.eq(busy & ~hang & (beats_left != 0)
                           & (outstanding < self.max_outstanding)),
            axi.rready.eq(busy),
        ]
        ar_fire = axi.arvalid & axi.arready
        r_fire = axi.rvalid & axi.rready
        with m.If(ar_fire):
            m.d.sync += [cur_addr.eq(cur_addr + (burst << lg)), beats_left.eq(beats_left - burst)]
        m.d.sync += outstanding.eq(outstanding + ar_fire - (r_fire & axi.rlast))

        lane_sum = Const(0, 32)
        lane_nz = Const(0, 32)
        for k in range(pb):
            byte = axi.rdata[8 * k: 8 * k + 8]
            take = bytes_left > k
            lane_sum = lane_sum + Mux(take, byte, 0)
            lane_nz = lane_nz + (take & (byte != 0))
        with m.If(r_fire):
            m.d.sync += [
                acc.eq(acc + lane_sum), nonzero.eq(nonzero + lane_nz),
                bytes_left.eq(Mux(bytes_left > pb, bytes_left - pb, 0)),
                bus_bytes.eq(bus_bytes + pb), pc.eq(pc + 1), opcode.eq(axi.rdata[:4]),
            ]
            with m.If(axi.rresp != 0):
                m.d.sync += error.eq(2)

        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(~hang & (beats_left == 0) & (outstanding == 0) & ~ar_fire):
                m.d.sync += [busy.eq(0), done.eq(1), token_out.eq(acc),
                             isr.eq(isr | ier)]
        with m.If(start):
            n = token_in[:30]
            m.d.sync += [
                busy.eq(1), done.eq(0), hang.eq(token_in[31]), cross_4k.eq(token_in[30]),
                error.eq(0),
                cur_addr.eq(Cat(Const(0, lg), prog_addr[lg:])),
                beats_left.eq(Mux(token_in[31], 0, (n + pb - 1) >> lg)),
                bytes_left.eq(n), summed.eq(Mux(token_in[31], 0, n)),
                acc.eq(0), nonzero.eq(0), bus_bytes.eq(0), pc.eq(0), opcode.eq(0),
                cycles.eq(0),
            ]
        return m
