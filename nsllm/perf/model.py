"""Analytic cycle model of :class:`nsllm.hdl.core.NSLLMCore`.

Counts what the core's state machine does per instruction — descriptor dispatch, table bursts
(latency + beats), vector passes (``vector`` elements per cycle plus pipeline drain), the weight
phase of each LINEAR (one beat per fetched word, i.e. spiking columns × words per column), and
requantisation — from a model image and the per-layer spike counts of one token
(:class:`nsllm.host.program.RunStats`). ``bench/core_speed.py`` compares it with simulation.

It also projects tokens/s for any preset at a board's clock, bandwidth and port width.
"""

from __future__ import annotations

from dataclasses import dataclass

from nsllm.host.program import program_outline
from nsllm.isa import Op

#: Fixed per-instruction overhead of the sequencer (FETCH, DISPATCH, NEXT states).
DISPATCH_CYCLES = 3
#: A vector pass costs n/vector cycles plus this (pipeline fill/drain and the state change).
VECTOR_OVERHEAD = 3


@dataclass
class CycleEstimate:
    cycles: int
    bus_beats: int  #: beats on the read port (tables, weights, programs)
    weight_beats: int
    by_op: dict[str, int]

    @property
    def efficiency(self) -> float:
        """Fraction of cycles the read port moves data: bus beats / cycles."""
        return self.bus_beats / self.cycles if self.cycles else 0.0


def estimate_cycles(program, fired: dict[str, int], port_bytes: int, vector: int,
                    latency: int = 1, program_cached: bool = True) -> CycleEstimate:
    """Cycles of one token program.

    Parameters
    ----------
    program : list of Instr
        ``image.token``, or :func:`nsllm.host.program.program_outline` of a shape.
    fired : dict
        Spiking inputs of each LINEAR by layer name, for this token (from
        ``RunStats.per_layer`` of the interpreter, or a firing rate times the fan-in).
    port_bytes, vector : int
        The build's read-port width and vector width.
    latency : int
        Cycles from an accepted read request to its first beat.
    program_cached : bool
        The token program is already in the core's program cache (every token but the first).
    """
    pb, E = port_bytes, vector
    lanes = 4 * pb
    q = max(1, pb // 4)
    by_op: dict[str, int] = {}
    bus = weight = 0
    total = 0
    if not program_cached:
        beats = len(program) * max(1, 64 // pb)
        total += 2 + latency + beats
        bus += beats

    def table(n):
        nonlocal bus
        beats = -(-n // q)
        bus += beats
        return 3 + latency + beats

    for ins in program:
        c = DISPATCH_CYCLES
        if ins.op in (Op.EMBED, Op.MLGRU):
            c += table(ins.n) + ins.n // E + VECTOR_OVERHEAD
        elif ins.op in (Op.NORM, Op.UNORM):
            if ins.op == Op.NORM:
                c += table(ins.n)
            c += 2 * (ins.n // E + VECTOR_OVERHEAD) + 3
        elif ins.op == Op.LINEAR:
            nz = fired[ins.name]
            wpc = ins.stride // pb
            beats = nz * wpc
            bus += beats
            weight += beats
            c += table(ins.n) + -(-ins.m // lanes) + max(beats, nz + ins.n // E) + latency + 4
            c += ins.m // E + 2
        elif ins.op in (Op.ADD, Op.SILUGATE, Op.CLEAR, Op.ARGMAX):
            c += ins.n // E + VECTOR_OVERHEAD
        by_op[ins.op.name] = by_op.get(ins.op.name, 0) + c
        total += c
    return CycleEstimate(total, bus, weight, by_op)


def fired_from_stats(stats) -> dict[str, int]:
    """``fired`` for :func:`estimate_cycles` from an interpreter run."""
    return {name: nz for name, (nz, _) in stats.per_layer.items()}


@dataclass
class Projection:
    model: str
    firing_rate: float
    cycles_per_token: int
    tokens_per_s: float
    weight_bytes_per_token: int
    dense_weight_bytes_per_token: int
    bandwidth_bound_tokens_per_s: float  #: DRAM roofline at the fetched bytes
    efficiency: float


def project(cfg, board, firing_rate: float, vector: int = 16, latency: int = 64,
            ports: int = 1) -> Projection:
    """Estimated decode speed of a model shape on a board (an estimate, not a measurement).

    Every LINEAR fetches ``firing_rate`` of its columns. The core runs at the board's assumed
    kernel clock with ``ports`` read ports of the board's AXI width, each serving an equal share
    of the weight stream (the roofline line uses the board's total DRAM bandwidth).
    """
    pb = board.axi_port_bytes
    _, program = program_outline(cfg, pb)
    fired = {ins.name: round(firing_rate * ins.n) for ins in program if ins.op == Op.LINEAR}
    est = estimate_cycles(program, fired, pb, vector, latency)
    weight_bytes = est.weight_beats * pb
    dense = sum(ins.n * ins.stride for ins in program if ins.op == Op.LINEAR)
    # with several ports the weight beats split across them; the rest stays serial
    cycles = est.cycles - est.weight_beats + -(-est.weight_beats // ports)
    clock = board.pl_clock_mhz * 1e6
    return Projection(
        model=cfg.name, firing_rate=firing_rate, cycles_per_token=cycles,
        tokens_per_s=clock / cycles, weight_bytes_per_token=weight_bytes,
        dense_weight_bytes_per_token=dense,
        bandwidth_bound_tokens_per_s=board.bandwidth_gbytes * 1e9 / max(weight_bytes, 1),
        efficiency=est.bus_beats / cycles)
