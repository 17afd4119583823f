"""Tokens per second of any model shape on any board: the cycle model at the board's memories.

An **estimate**. The core is the board build (:meth:`CoreParams.board` at the model's maxima:
the board's AXI width, vector 16, ``weight_ports`` ports, both packings) at the board's assumed
kernel clock. Each weight port sits on one of the board's memories (:func:`place_ports`); its
bandwidth is the least of the port (width × clock), the NoC master unit it enters by, and its
memory's share (the memory's sustained bandwidth split between the ports on it). The port's
memory answers after the assumed DRAM latency with at most the read bytes the NoC master unit can
hold in flight. :class:`~nsllm.perf.cycles.CycleModel` then runs one token's program with the
fired columns drawn at each layer's firing rate (:class:`~nsllm.perf.firing.FiringProfile`).

Beside it: the **DRAM roofline** — the board's peak bandwidth over all memories ÷ the bytes one
token fetches (the sparse weight columns and the tables) — and the fraction of it the projection
reaches. The projection never exceeds it: no memory can serve more than its peak, which
:func:`project` also enforces per memory (the image port's tables share a memory with weight
ports).

Every number in :data:`ASSUMPTIONS` is listed in the output with its source.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace

import numpy as np

from nsllm.hdl.core.params import CoreParams
from nsllm.host.program import program_outline
from nsllm.isa import Op
from nsllm.isa.layout import TABLE_ENTRY_BYTES, TABLE_OPS

from .cycles import CycleBreakdown, CycleModel, PortTiming
from .firing import FiringProfile

__all__ = ["ASSUMPTIONS", "Assumption", "PortPlacement", "Projection", "place_ports", "project",
           "sample_fired"]


@dataclass(frozen=True)
class Assumption:
    """One number the projection assumes: typical value, range, unit, where it comes from."""

    value: float
    low: float
    high: float
    unit: str
    source: str

    def as_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high, "unit": self.unit,
                "source": self.source}


#: What the projection assumes about the board's memory system (beyond the board's JSON).
ASSUMPTIONS = {
    "dram_latency_ns": Assumption(
        150.0, 100.0, 300.0, "ns",
        "assumption: no public figure for a VCK190 PL master's read latency through the NoC "
        "and DDRMC; PG313 ('Latency') splits it into structural and queuing latency, the "
        "latter dominating under load. Measure it with `nsllm bench --backend xrt`."),
    "read_bytes_in_flight": Assumption(
        2048.0, 2048.0, 2048.0, "bytes per port",
        "PG313 ('Read Reorder Buffer'): an NMU's RROB holds 64 entries of 32 bytes and a read "
        "burst reserves all of its entries before it is accepted"),
    "noc_read_bytes": Assumption(
        256.0, 64.0, 2048.0, "bytes",
        "assumption: the NMU serves a long AXI read as NoC transactions of at most this size, "
        "so the bytes in flight stream continuously (at 2048 only one 2 KiB piece would be in "
        "flight at a time)"),
    "nmu_gbytes_per_s": Assumption(
        16.0, 16.0, 16.0, "GB/s per port",
        "UG1076 (AI Engine tools, 'Introduction' to NoC profiling): the VC1902's NMUs are each "
        "capable of 16 GB/s per direction"),
    "dram_efficiency": Assumption(
        0.9, 0.8, 0.95, "fraction of peak",
        "assumption: long sequential read bursts on an otherwise idle controller (refresh and "
        "page changes take the rest)"),
}


#: Outstanding read transactions of a NoC master unit (PG313).
NMU_READS = 64
#: Blocks of a token's program the projection simulates (the rest repeat their mean).
SAMPLED_BLOCKS = 4


@dataclass(frozen=True)
class PortPlacement:
    """Where the ports sit and what each can move."""

    memories: tuple[str, ...]  #: memory of each weight port
    ctl_memory: str  #: memory of the image port (programs, tables)
    gbytes_per_s: tuple[float, ...]  #: sustained bandwidth of each weight port
    ctl_gbytes_per_s: float


def _memory_gbytes(board, name: str) -> float:
    return next(m["gbytes_per_s"] for m in board.memories if m["name"] == name)


def place_ports(board, weight_ports: int, clock_mhz: float | None = None,
                efficiency: float | None = None) -> PortPlacement:
    """Put ``weight_ports`` ports on the board's memories so the slowest port is as fast as
    possible (the column interleave gives every port the same bytes, so the slowest one sets the
    pace); ties go to more total bandwidth. The image port goes where most bandwidth is left."""
    clock = (clock_mhz or board.pl_clock_mhz) * 1e6
    eff = ASSUMPTIONS["dram_efficiency"].value if efficiency is None else efficiency
    cap = min(board.axi_port_bytes * clock / 1e9, ASSUMPTIONS["nmu_gbytes_per_s"].value)
    names = [m["name"] for m in board.memories]
    best = None
    for combo in itertools.combinations_with_replacement(names, weight_ports):
        share = {n: _memory_gbytes(board, n) * eff / combo.count(n) for n in set(combo)}
        bw = tuple(min(cap, share[n]) for n in combo)
        key = (len(bw) * min(bw), sum(bw))
        if best is None or key > best[0]:
            best = (key, combo, bw)
    _, combo, bw = best
    left = {n: _memory_gbytes(board, n) * eff - sum(b for c, b in zip(combo, bw, strict=True)
                                                    if c == n) for n in names}
    ctl = max(names, key=lambda n: (left[n], -names.index(n)))
    # the image port's short table bursts are served beside the weight ports; the per-memory
    # bound of project() charges their bytes to the memory
    return PortPlacement(tuple(combo), ctl, bw, min(cap, _memory_gbytes(board, ctl) * eff))


def sample_fired(program, rates: dict[str, float], seed: int = 0) -> dict[str, np.ndarray]:
    """Spiking inputs of every LINEAR drawn independently at its layer's rate."""
    rng = np.random.default_rng(seed)
    return {ins.name: np.flatnonzero(rng.random(ins.n) < rates[ins.name])
            for ins in program if ins.op == Op.LINEAR}


@dataclass
class Projection:
    """What :func:`project` estimates for one token (batch 1)."""

    model: str
    board: str
    clock_mhz: float
    weight_ports: int
    packing: str
    batch: int
    firing: FiringProfile
    firing_rate: float  #: fetched weight bytes ÷ dense weight bytes (the bytes-weighted rate)
    cycles_per_token: float
    tokens_per_s: float
    breakdown: CycleBreakdown
    weight_bytes: float  #: per token, sparse (fetched)
    dense_weight_bytes: float
    table_bytes: float
    roofline_tokens_per_s: float
    dense_roofline_tokens_per_s: float
    placement: PortPlacement
    memory_bound: str | None  #: the memory whose peak capped the cycle model, if any
    params: CoreParams
    config: object = None  #: the ModelConfig
    assumptions: dict[str, object] = field(default_factory=dict)

    @property
    def fetched_bytes(self) -> float:
        return self.weight_bytes + self.table_bytes

    @property
    def roofline_fraction(self) -> float:
        return self.tokens_per_s / self.roofline_tokens_per_s

    def limits(self) -> dict:
        """What bounds the projection: tokens/s if each weight port streamed its bytes at its
        bandwidth all the time; the same with each port also capped by the bytes it may have in
        flight over the DRAM latency; the share of cycles outside the weight streams."""
        lat = self.assumptions["dram_latency_ns"]["value"]
        in_flight = self.assumptions["read_bytes_in_flight"]["value"]
        pb = self.params.port_bytes
        per_port = [b * pb for b in self.breakdown.weight_beats]
        ports = min(g * 1e9 / b for g, b in zip(self.placement.gbytes_per_s, per_port,
                                                 strict=True) if b)
        cap = in_flight / lat if lat else math.inf  # GB/s (no latency: no cap)
        latency = min(min(g, cap) * 1e9 / b for g, b in zip(self.placement.gbytes_per_s,
                                                            per_port, strict=True) if b)
        weights = self.breakdown.linear.get("weights", 0.0)
        return {"ports_bandwidth_tokens_per_s": round(ports, 2),
                "in_flight_gbytes_per_s_per_port": round(cap, 2) if lat else None,
                "ports_with_latency_tokens_per_s": round(latency, 2),
                "non_weight_cycle_fraction": round(1 - weights / self.cycles_per_token, 4)}

    def as_dict(self) -> dict:
        b = self.breakdown
        return {
            "estimate": True,
            "model": self.model, "board": self.board, "clock_mhz": self.clock_mhz,
            "weight_ports": self.weight_ports, "packing": self.packing, "batch": self.batch,
            "firing_rate": round(self.firing_rate, 4), "firing": self.firing.as_dict(),
            "tokens_per_s": round(self.tokens_per_s, 2),
            "cycles_per_token": round(self.cycles_per_token),
            "cycles_breakdown": {
                "by_op": {k: round(v) for k, v in b.by_op.items()},
                "linear_phases": {k: round(v) for k, v in b.linear.items()},
                "overheads": {k: round(v) for k, v in b.overheads.items()},
            },
            "bytes_per_token": {"weights_sparse": round(self.weight_bytes),
                                "weights_dense": round(self.dense_weight_bytes),
                                "tables": round(self.table_bytes),
                                "fetched": round(self.fetched_bytes)},
            "roofline_tokens_per_s": round(self.roofline_tokens_per_s, 2),
            "roofline_fraction": round(self.roofline_fraction, 4),
            "dense_roofline_tokens_per_s": round(self.dense_roofline_tokens_per_s, 2),
            "memory_bound": self.memory_bound,
            "limits": self.limits(),
            "ports": [{"memory": m, "gbytes_per_s": round(g, 2)} for m, g in
                      zip(self.placement.memories, self.placement.gbytes_per_s, strict=True)],
            "image_port_memory": self.placement.ctl_memory,
            "assumptions": self.assumptions,
        }


def _model(params: CoreParams, placement: PortPlacement, clock: float, latency_ns: float,
           in_flight: float) -> CycleModel:
    peak = params.port_bytes * clock / 1e9
    latency = latency_ns * 1e-9 * clock

    def timing(gbytes):
        return PortTiming(latency=latency, max_outstanding=NMU_READS,
                          beat_cycles=max(1.0, peak / gbytes), in_flight_bytes=int(in_flight),
                          piece_bytes=int(ASSUMPTIONS["noc_read_bytes"].value))

    return CycleModel(params, timing(placement.ctl_gbytes_per_s),
                      [timing(g) for g in placement.gbytes_per_s])


def project(cfg, board, firing: FiringProfile, *, weight_ports: int | None = None,
            packing: str = "base3", batch: int = 1, clock_mhz: float | None = None,
            latency_ns: float | None = None, seed: int = 0,
            params: CoreParams | None = None) -> Projection:
    """Estimated batch-1 decode speed of the model shape ``cfg`` on ``board``.

    Parameters
    ----------
    cfg : ModelConfig
    board : nsllm.boards.Board
    firing : FiringProfile
        Per-layer rates (measured or given).
    weight_ports : int, optional
        Default: one per memory of the board.
    packing : str
    batch : int
        Sequences per step; only 1 exists in the core (the parameter is kept for the batched
        core of ARCHITECTURE §4).
    clock_mhz, latency_ns : float, optional
        Override the board's clock and the assumed DRAM latency.
    params : CoreParams, optional
        Override the board build.
    """
    if batch != 1:
        raise ValueError(f"the core decodes one sequence at a time (batch 1); batch {batch} "
                         "needs the batched core of ARCHITECTURE §4, not built yet")
    n_ports = weight_ports or len(board.memories)
    clock = (clock_mhz or board.pl_clock_mhz) * 1e6
    if params is None:
        params = CoreParams.for_model(cfg, port_bytes=board.axi_port_bytes, vector=16,
                                      weight_ports=n_ports, packings=("2bit", "base3"),
                                      max_D=15)
    placement = place_ports(board, n_ports, clock / 1e6)
    lat_ns = ASSUMPTIONS["dram_latency_ns"].value if latency_ns is None else latency_ns
    in_flight = ASSUMPTIONS["read_bytes_in_flight"].value
    _, full = program_outline(cfg, params.port_bytes, packing, n_ports)
    model = _model(params, placement, clock, lat_ns, in_flight)
    rates = firing.rates_for(full)
    # one token of the full program: the blocks are alike, so up to SAMPLED_BLOCKS are
    # simulated and the mean of the blocks after the first stands for each further block
    layers = cfg.num_layers
    short = replace(cfg, num_layers=min(SAMPLED_BLOCKS, layers))
    _, prog = program_outline(short, params.port_bytes, packing, n_ports)
    short_rates = {ins.name: rates[ins.name] if ins.name in rates else firing.rate(ins.name)
                   for ins in prog if ins.op == Op.LINEAR}
    fired_short = sample_fired(prog, short_rates, seed)
    bd = model.program(prog, fired_short)
    cycles = bd.cycles
    by_op, linear_ph, over = dict(bd.by_op), dict(bd.linear), dict(bd.overheads)
    weight_beats = list(bd.weight_beats)
    if layers > short.num_layers:  # each further block costs the mean sampled block
        extra = layers - short.num_layers
        rows = bd.instructions
        sampled = range(1, short.num_layers)
        w = extra / len(sampled)  # weight of each sampled block in the extrapolation
        for li in sampled:
            at = [k for k, r in enumerate(rows) if r.name.startswith(f"layers.{li}.")]
            block = rows[at[0]: at[-1] + 1]
            period = rows[at[-1] + 1].taken - block[0].taken
            cycles += w * period
            busy = 0.0
            for r in block:
                by_op[r.op] = by_op.get(r.op, 0.0) + w * (r.done - r.taken)
                busy += r.done - r.taken
                for k, v in r.phases.items():
                    linear_ph[k] += w * v
            key = "dispatch and table wait, further blocks"
            over[key] = over.get(key, 0.0) + w * (period - busy)
            for ins in prog:
                if ins.op == Op.LINEAR and ins.name.startswith(f"layers.{li}."):
                    for j in fired_short[ins.name]:
                        weight_beats[int(j) % n_ports] += w * (ins.stride // params.port_bytes)
    dense = sum(ins.n * ins.stride for ins in full if ins.op == Op.LINEAR)
    weight = sum(weight_beats) * params.port_bytes
    tables = sum(TABLE_ENTRY_BYTES * ins.n for ins in full if ins.op in TABLE_OPS)
    # no memory serves more than its peak: the ports on it and the image port's tables
    bound = None
    per_memory: dict[str, float] = {}
    for k, mem in enumerate(placement.memories):
        per_memory[mem] = per_memory.get(mem, 0.0) + weight_beats[k] * params.port_bytes
    per_memory[placement.ctl_memory] = per_memory.get(placement.ctl_memory, 0.0) + tables
    for mem, nbytes in per_memory.items():
        floor = nbytes / (_memory_gbytes(board, mem) * 1e9) * clock
        if floor > cycles:
            cycles, bound = floor, mem
    peak = board.bandwidth_gbytes * 1e9
    total = weight + tables
    assumptions = {
        "clock_mhz": {"value": clock / 1e6, "source": board_clock_note(board, clock_mhz)},
        "port_bytes": {"value": params.port_bytes, "source": f"{board.name}.json axi_port_bytes"},
        "memories": {"value": {m["name"]: m["gbytes_per_s"] for m in board.memories},
                     "unit": "GB/s peak", "source": f"{board.name}.json"},
        **{k: v.as_dict() for k, v in ASSUMPTIONS.items()},
        **({"dram_latency_ns": {**ASSUMPTIONS["dram_latency_ns"].as_dict(), "value": lat_ns,
                                "source": "given (--latency-ns)"}}
           if latency_ns is not None else {}),
        "dram_latency_cycles": {"value": round(lat_ns * 1e-9 * clock, 1),
                                "source": "dram_latency_ns at the clock"},
        "reads_in_flight_per_port": {
            "value": NMU_READS, "source": "PG313 (NMU): up to 64 outstanding reads; the bytes "
                                          "in flight bind first"},
        "fired_columns": {"value": "drawn independently per column at each layer's rate "
                                   f"(seed {seed}); {SAMPLED_BLOCKS} blocks simulated, the "
                                   "mean of blocks 2… repeated for the others"},
        "host_overhead": {"value": 0, "source": "not modelled: the host's start/wait/TOKEN_OUT "
                                                "per token adds to this (measure with nsllm "
                                                "bench --backend xrt)"},
        "batch": {"value": batch, "source": "the core is batch-1"},
    }
    return Projection(
        model=cfg.name, board=board.name, clock_mhz=clock / 1e6, weight_ports=n_ports,
        packing=packing, batch=batch, firing=firing,
        firing_rate=weight / dense if dense else 0.0, cycles_per_token=cycles,
        tokens_per_s=clock / cycles,
        breakdown=CycleBreakdown(cycles=cycles, by_op=by_op, overheads=over, linear=linear_ph,
                                 weight_beats=weight_beats, table_beats=bd.table_beats,
                                 port_bytes=params.port_bytes),
        weight_bytes=weight, dense_weight_bytes=dense, table_bytes=tables,
        roofline_tokens_per_s=peak / total, dense_roofline_tokens_per_s=peak / (dense + tables),
        placement=placement, memory_bound=bound, params=params, config=cfg,
        assumptions=assumptions)


def board_clock_note(board, clock_mhz) -> str:
    if clock_mhz:
        return "given"
    return f"{board.name}.json pl_clock_mhz: assumed kernel clock, not a timing-closure result"
