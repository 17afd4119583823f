"""TEST FIXTURE — a stand-in for ``NSLLMCore`` with the same register map and image port.

It is *not* the NSLLM core: it exists so the host runtime, the simulation harnesses and
``SimDevice`` can be tested on a small design that builds in seconds. Its registers are the
core's own ``ControlRegisters`` (generated from :data:`nsllm.isa.REGISTER_MAP`). On ``ap_start``
it reads ``TOKEN_IN`` bytes starting at IMAGE + PROG_OFFSET over its AXI4 read master
``m_axi_ctl`` (INCR bursts of at most ``burst_beats`` beats, split at 4 KiB boundaries, up to
``max_outstanding`` bursts in flight) and reports:

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
The start address must be aligned to ``port_bytes``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nsllm.hdl.core import axi_read_signature, axil_signature
from nsllm.hdl.core.control import ControlRegisters
from nsllm.isa import BuildLimits
from nsllm.isa.registers import build_register_values

#: The pretend core build the stand-in reports in its BUILD_* registers.
STANDIN_BUILD = BuildLimits(port_bytes=8, max_vocab=256, max_hidden=128, max_intermediate=512,
                            max_layers=4, max_D=15, scratch_entries=8192, acc_bits=16,
                            weight_ports=1, vector=8, packings=("2bit",), max_ops=128)


class StandInCore(wiring.Component):
    """Byte-summing stand-in with the NSLLM core's registers (test fixture, see module doc).

    Parameters
    ----------
    port_bytes : int
        AXI data width in bytes (power of two).
    burst_beats : int
        Longest burst it issues.
    max_outstanding : int
        Bursts in flight at most.
    """

    def __init__(self, port_bytes: int = 8, burst_beats: int = 16, max_outstanding: int = 4):
        self.port_bytes = port_bytes
        self.burst_beats = burst_beats
        self.max_outstanding = max_outstanding
        self.build = BuildLimits(**{**vars(STANDIN_BUILD), "port_bytes": port_bytes})
        super().__init__({
            "s_axil": In(axil_signature()),
            "m_axi_ctl": Out(axi_read_signature(port_bytes)),
            "irq": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        pb = self.port_bytes
        lg = (pb - 1).bit_length()
        axi = self.m_axi_ctl
        m.submodules.control = ctl = ControlRegisters(build_register_values(self.build),
                                                      self.build.weight_ports)
        wiring.connect(m, wiring.flipped(self.s_axil), ctl.s_axil)

        busy, hang, cross_4k, done = Signal(), Signal(), Signal(), Signal()
        error = Signal(4)
        cycles = Signal(64)
        acc, summed, bus_bytes, nonzero = Signal(32), Signal(32), Signal(32), Signal(32)
        pc, opcode = Signal(16), Signal(8)
        cur_addr = Signal(64)
        beats_left = Signal(32)  # beats still to request
        bytes_left = Signal(32)  # bytes still to sum
        outstanding = Signal(range(self.max_outstanding + 1))
        m.d.comb += [
            self.irq.eq(ctl.irq), ctl.busy.eq(busy), ctl.done.eq(done),
            ctl.token_out.eq(acc), ctl.weight_bytes.eq(summed), ctl.bus_bytes.eq(bus_bytes),
            ctl.spikes_nonzero.eq(nonzero), ctl.spikes_total.eq(summed), ctl.cycles.eq(cycles),
            ctl.status.eq(Cat(pc, opcode, busy, Const(0, 3), error)),
            ctl.scratch_data.eq((-ctl.scratch_addr)[:32]),
        ]

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

        m.d.comb += done.eq(busy & ~hang & (beats_left == 0) & (outstanding == 0) & ~ar_fire)
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(done):
                m.d.sync += busy.eq(0)
        token_in = ctl.token_in
        with m.If(ctl.start):
            n = token_in[:30]
            start = ctl.image + ctl.prog_offset
            m.d.sync += [
                busy.eq(1), hang.eq(token_in[31]), cross_4k.eq(token_in[30]), error.eq(0),
                cur_addr.eq(Cat(Const(0, lg), start[lg:])),
                beats_left.eq(Mux(token_in[31], 0, (n + pb - 1) >> lg)),
                bytes_left.eq(n), summed.eq(Mux(token_in[31], 0, n)),
                acc.eq(0), nonzero.eq(0), bus_bytes.eq(0), pc.eq(0), opcode.eq(0),
                cycles.eq(0),
            ]
        return m
