"""``NSLLMCore``: the whole spiking LM, wired from the units of :mod:`nsllm.hdl.core`.

::

    s_axil ─► ControlRegisters ─► Sequencer ──{Op: unit}──► VectorUnit ──┐
                                    │   │                   LinearUnit ───┤ Scratchpad
                                    │   │                   SLAUnit ──────┤ (SharedMemory)
    m_axi_ctl ◄─ BurstSplitter ◄─ ReadArbiter ◄─ program loader
                                        ◄─ TableLoader ─► table memory (SharedMemory, 2 banks)
    m_axi_w<k> ◄─ BurstSplitter ◄─ LinearUnit.ports[k] (WeightStreamer k)

The core is wiring: every piece of arithmetic is in a unit (see the unit modules), every
contract in :mod:`nsllm.isa`. Ports: the AXI4-Lite slave ``s_axil`` (the register map of
:data:`nsllm.isa.REGISTER_MAP`), the image port ``m_axi_ctl`` (programs and tables), one weight
port ``m_axi_w<k>`` per weight region (AXI4 read masters with 64-bit addresses), and ``irq``.
The SLA unit (and its state memory) is built when ``CoreParams.max_sla_layers`` > 0.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, ResetInserter, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nsllm.isa.registers import build_register_values
from nsllm.model import numerics as nx

from ..shared_memory import SharedMemory
from .axi import BurstSplitter, ReadArbiter, axi_read_signature, axil_signature
from .control import ControlRegisters
from .linear import LINEAR_OPS, LinearUnit
from .params import CoreParams
from .sequencer import Sequencer
from .sla import SLA_OPS, SLAUnit
from .tables import TableLoader, table_word
from .vector import VECTOR_OPS, VectorUnit, act_word

__all__ = ["NSLLMCore", "axi_port_names"]


def axi_port_names(weight_ports: int) -> list[str]:
    """The core's AXI4 read masters: the image port, then one per weight region."""
    return ["m_axi_ctl", *(f"m_axi_w{k}" for k in range(weight_ports))]


def ternary_paths(params) -> list[str]:
    """Instance paths of the core's ternary path, which must hold no multiplier and no DSP
    (ARCHITECTURE §4; checked by Yosys in tests/hdl/test_synth.py and bench/resources.py): the
    weight streamers with their trit unpackers, the accumulator banks, the spike encoders
    (their membrane scales excepted: the elementwise positive control), the non-zero queue and
    its route FIFO; with an SLA unit, the whole unit — its state lanes (the kᵀv update and the
    q·S read terms as masked shift-adds, the decay as shift-subtract), the read-out accumulators
    and pre-shift, and the state memory's addressing."""
    paths = [f"nsllm_core.linear.streamer{k}" for k in range(params.weight_ports)]
    paths += [f"nsllm_core.linear.bank{k}" for k in range(params.weight_ports)]
    paths += [f"nsllm_core.linear.encoders.encoder{k}" for k in range(params.vector)]
    paths += ["nsllm_core.linear.queue", "nsllm_core.linear.route0"]
    if params.max_sla_layers:
        paths += ["nsllm_core.sla", "nsllm_core.sla.lanes"]
    return paths


class NSLLMCore(wiring.Component):
    """The NSLLM core (see the module docstring).

    Parameters
    ----------
    params : CoreParams

    Attributes
    ----------
    dispatch : dict
        The sequencer's dispatch table, ``{unit: opcodes}``.
    """

    def __init__(self, params: CoreParams | None = None):
        self.params = params = CoreParams() if params is None else params
        self.dispatch = {"vector": VECTOR_OPS, "linear": LINEAR_OPS}
        if params.max_sla_layers:
            self.dispatch["sla"] = SLA_OPS
        members = {"s_axil": In(axil_signature()), "irq": Out(1)}
        for name in axi_port_names(params.weight_ports):
            members[name] = Out(axi_read_signature(params.port_bytes))
        super().__init__(members)

    def elaborate(self, platform):  # noqa: C901 — the wiring diagram, unit by unit
        m = Module()
        p = self.params
        E, N, pb = p.vector, p.weight_ports, p.port_bytes
        lg_e = (E - 1).bit_length()
        build = p.build_limits()

        m.submodules.control = ctl = ControlRegisters(build_register_values(build), N)
        m.submodules.sequencer = seq = Sequencer(build, self.dispatch, unit_error_bits=5)
        sla_built = "sla" in self.dispatch
        wiring.connect(m, wiring.flipped(self.s_axil), ctl.s_axil)
        start = ctl.start
        m.d.comb += [
            self.irq.eq(ctl.irq), seq.start.eq(start), ctl.busy.eq(seq.busy),
            ctl.done.eq(seq.done), seq.image.eq(ctl.image), seq.image_bytes.eq(ctl.image_bytes),
            seq.region_bytes.eq(ctl.region_bytes), seq.prog_offset.eq(ctl.prog_offset),
            seq.prog_ops.eq(ctl.prog_ops), seq.token_in.eq(ctl.token_in),
            seq.cache_flush.eq(ctl.cache_flush), ctl.status.eq(seq.status),
            ctl.error_info.eq(seq.error_info),
        ]

        # ---- memories: scratchpad and the two-bank table memory, explicitly arbitrated
        sla_r = (["sla_q"], ["sla_k"], ["sla_v"]) if sla_built else ([], [], [])
        scratch = SharedMemory(act_word(E), p.scratch_words,
                               read_ports=[["vec_a", "lin_a", *sla_r[0], "debug"],
                                           ["vec_b", *sla_r[1]], ["vec_c", *sla_r[2]]],
                               write_clients=["vec", "lin_out", "lin_spikes",
                                              *(["sla"] if sla_built else [])],
                               background=["debug"])
        tables = SharedMemory(table_word(E), 2 * p.table_bank_words,
                              read_ports=[["vector", "linear", *(["sla"] if sla_built else [])]],
                              write_clients=["loader"])
        # their conflict flags are sticky per run: reset at every start
        m.submodules.scratch = ResetInserter(start)(scratch)
        m.submodules.tables = ResetInserter(start)(tables)

        # ---- the image port: program loader and table loader share it
        m.submodules.ctl_port = ctl_port = BurstSplitter(pb)
        m.submodules.ctl_arbiter = arb = ReadArbiter(pb, 2)
        wiring.connect(m, ctl_port.axi, wiring.flipped(self.m_axi_ctl))
        wiring.connect(m, arb.o_req, ctl_port.i_req)
        wiring.connect(m, ctl_port.o_data, arb.i_data)
        wiring.connect(m, seq.prog, arb.clients[0])
        loader = TableLoader(pb, E, p.table_bank_words)
        m.submodules.table_loader = ResetInserter(start)(loader)
        wiring.connect(m, loader.read, arb.clients[1])
        wiring.connect(m, seq.table_cmd, loader.cmd)
        wiring.connect(m, loader.table, tables.w_loader)
        m.d.comb += seq.table_busy.eq(loader.busy)

        # ---- the units of the dispatch table
        vector = VectorUnit(p)
        linear = LinearUnit(p)
        m.submodules.vector = vector
        m.submodules.linear = ResetInserter(start)(linear)  # its error flags are per run
        # the last elaboration's units, for testbenches that look inside
        self.units = {"control": ctl, "sequencer": seq, "vector": vector, "linear": linear,
                      "table_loader": loader, "scratch": scratch, "tables": tables}
        wiring.connect(m, seq.vector_cmd, vector.cmd)
        wiring.connect(m, seq.linear_cmd, linear.cmd)
        m.d.comb += [seq.vector_done.eq(vector.done), seq.linear_done.eq(linear.done),
                     vector.clear_errors.eq(start)]
        sla_error = Const(0, 1)
        if sla_built:
            sla = SLAUnit(p)
            m.submodules.sla = ResetInserter(start)(sla)  # its error flag is per run
            self.units["sla"] = sla
            wiring.connect(m, seq.sla_cmd, sla.cmd)
            m.d.comb += seq.sla_done.eq(sla.done)
            for client, port in [(sla.r_q, scratch.r_sla_q), (sla.r_k, scratch.r_sla_k),
                                 (sla.r_v, scratch.r_sla_v), (sla.w, scratch.w_sla),
                                 (sla.t, tables.r_sla)]:
                wiring.connect(m, client, port)
            sla_error = sla.error
        for client, port in [(vector.r_a, scratch.r_vec_a), (vector.r_b, scratch.r_vec_b),
                             (vector.r_c, scratch.r_vec_c), (vector.w, scratch.w_vec),
                             (vector.t, tables.r_vector), (linear.r_a, scratch.r_lin_a),
                             (linear.w_out, scratch.w_lin_out),
                             (linear.w_spikes, scratch.w_lin_spikes),
                             (linear.t, tables.r_linear)]:
            wiring.connect(m, client, port)

        # ---- the weight ports
        port_beats = []
        for k in range(N):
            split = BurstSplitter(pb)
            m.submodules[f"w{k}_port"] = split
            wiring.connect(m, split.axi, wiring.flipped(getattr(self, f"m_axi_w{k}")))
            wiring.connect(m, linear.ports[k].req, split.i_req)
            wiring.connect(m, split.o_data, linear.ports[k].data)
            m.d.comb += linear.bases[k].eq(getattr(ctl, f"w{k}"))
            port_beats.append(linear.port_beats[k])

        m.d.comb += [
            # ERROR_INFO: trit code, accumulator, encoder (LINEAR's or COUNT's), memory
            # conflict, SLA operand
            seq.unit_errors.eq(Cat(linear.errors[:2], linear.errors[2] | vector.error,
                                   scratch.conflict | tables.conflict, sla_error)),
            seq.axi_error.eq(loader.error | linear.axi_error),
            seq.weight_error.eq(linear.weight_error),
            ctl.token_out.eq(vector.token_out),
        ]

        # ---- counters of the last run
        counters = {name: Signal(32, name=name) for name in (
            "weight_bytes", "bus_bytes", "spikes_nonzero", "spikes_total", "weight_cycles")}
        cycles = Signal(64)
        per_port = [Signal(32, name=f"port{k}_bytes") for k in range(N)]
        ctl_beat = self.m_axi_ctl.rvalid & self.m_axi_ctl.rready
        beats = Cat(ctl_beat, *port_beats)
        n_beats = sum(beats[i] for i in range(len(beats)))
        n_weight = sum(port_beats[i] for i in range(N))
        with m.If(start):
            m.d.sync += [cycles.eq(0), *(c.eq(0) for c in counters.values()),
                         *(c.eq(0) for c in per_port)]
        with m.Elif(seq.busy):
            m.d.sync += [
                cycles.eq(cycles + 1),
                counters["bus_bytes"].eq(counters["bus_bytes"] + n_beats * pb),
                counters["weight_bytes"].eq(counters["weight_bytes"] + n_weight * pb),
                counters["weight_cycles"].eq(counters["weight_cycles"]
                                             + Cat(*port_beats).any()),
                counters["spikes_nonzero"].eq(counters["spikes_nonzero"]
                                              + linear.spikes_nonzero),
                counters["spikes_total"].eq(counters["spikes_total"] + linear.spikes_total),
                *(c.eq(c + port_beats[k] * pb) for k, c in enumerate(per_port)),
            ]
        m.d.comb += [ctl.cycles.eq(cycles), *(getattr(ctl, n).eq(c) for n, c in counters.items()),
                     *(getattr(ctl, f"port{k}_bytes").eq(c) for k, c in enumerate(per_port))]

        # ---- the scratchpad readback window (SCRATCH_ADDR / SCRATCH_DATA), while idle
        dbg = scratch.r_debug
        lane = Signal(range(max(E, 2)))
        m.d.comb += [dbg.addr.eq(ctl.scratch_addr >> lg_e), dbg.en.eq(1)]
        m.d.sync += lane.eq(ctl.scratch_addr[:lg_e] if lg_e else 0)
        value = Signal(signed(nx.ACT_BITS))
        with m.Switch(lane):
            for i in range(E):
                with m.Case(i):
                    m.d.comb += value.eq(dbg.data[i])
        data32 = Signal(32)
        m.d.sync += data32.eq(value)  # sign-extended
        m.d.comb += ctl.scratch_data.eq(data32)
        return m
