"""``nsllm estimate``: tokens/s, the DRAM roofline, watts and tokens/J of a model on a board.

Joins the projection (:mod:`nsllm.perf.projection`), the resources of the board build
(:mod:`nsllm.perf.resources`), the activity measured in Verilator (:mod:`nsllm.perf.activity`)
and the power model (:mod:`nsllm.perf.power`). Everything it returns is an **estimate**; the
published figures it is printed beside (:data:`PUBLISHED`) are measurements of other systems.
"""

from __future__ import annotations

from dataclasses import dataclass

from nsllm.isa import Op
from nsllm.isa.layout import TABLE_ENTRY_BYTES, TABLE_OPS
from nsllm.model import numerics as nx

from .activity import Activity, events
from .power import (
    COEFFICIENTS,
    MemoryAccesses,
    PowerEstimate,
    PowerInputs,
    dram_kind,
    estimate_power,
)
from .projection import Projection, project
from .resources import ResourceReport

__all__ = ["PUBLISHED", "Estimate", "estimate", "memory_accesses", "power_inputs"]

#: Published figures (ANCHORS.md): tokens/s, watts (None: not published), what and where.
PUBLISHED = [
    ("NSLLM (1.5B, VCK190)", 161.8, 13.849,
     "National Science Review 13(4):nwaf551, 2025; 13.849 W dynamic"),
    ("NVIDIA A800 (NSLLM's baseline)", 73.5, None,
     "same paper: NSLLM 2.2× its throughput, 19.8× its energy efficiency"),
    ("MatMul-free LM FPGA (1.3B)", 23.8, 13.0, "arXiv 2406.02528"),
    ("TerEffic (2.7B, HBM)", 727.0, 46.0, "TerEffic"),
]
#: DRAM row sizes for the row-activation term (a 64-bit DDR4 rank of x8 devices: 8 KiB;
#: an LPDDR4 x16 channel: 2 KiB).
ROW_BYTES = {"ddr4": 8192, "lpddr4": 2048}


def memory_accesses(program, params, weight_beats: list[float], kinds: dict[str, str]
                    ) -> list[tuple[str, float, int, str]]:
    """(memory, accesses per token, width in bits, BRAM/URAM) of the on-chip memories, from
    one token's program and weight beats: every access the units make (vector passes read
    src_a, src_b, dst and the table each cycle and write dst; LINEAR reads src_a and its table,
    writes the spike copy and dst; each weight beat is a read-modify-write of its bank;
    requantisation reads every bank once per ``vector`` outputs; table loads write a word per
    beat)."""
    E, q = params.vector, params.port_bytes // TABLE_ENTRY_BYTES
    scratch_r = scratch_w = table_r = table_w = requant = 0.0
    for ins in program:
        if ins.op == Op.END:
            continue
        if ins.op in TABLE_OPS:
            table_w += -(-ins.n // q)
        words = ins.n // E
        if ins.op == Op.LINEAR:
            scratch_r += words
            table_r += words
            scratch_w += words + ins.m // E
            requant += ins.m // E
        else:
            passes = 2 if ins.op in (Op.NORM, Op.UNORM) else 1
            if ins.op != Op.CLEAR:
                scratch_r += 3 * passes * words
                table_r += passes * words
            scratch_w += words
    N = params.weight_ports
    bank_bits = params.lanes * params.acc_bits
    return [("accumulator banks", 2 * sum(weight_beats) + N * requant, bank_bits,
             kinds.get("weight path", "URAM")),
            ("scratchpad reads", scratch_r, E * nx.ACT_BITS, kinds.get("scratchpad", "BRAM")),
            ("scratchpad writes", scratch_w, E * nx.ACT_BITS, kinds.get("scratchpad", "BRAM")),
            ("table reads", table_r, E * 32, kinds.get("tables", "BRAM")),
            ("table writes", table_w, params.port_bytes * 8, kinds.get("tables", "BRAM"))]


def _kind(res: dict[str, float]) -> str:
    return "URAM" if res.get("URAM", 0) > 0 else "BRAM"


def _rows_opened(program, rates: dict[str, float], row_bytes: int) -> float:
    """64-byte bursts that open a DRAM row ÷ 64-byte bursts read, over one token: a layer's
    columns are read in address order, so a row opens once if any of its columns fired."""
    opened = fetched = 0.0
    for ins in program:
        if ins.op != Op.LINEAR:
            continue
        r = rates[ins.name]
        cols = max(1.0, row_bytes / ins.stride)
        rows = ins.n * ins.stride / row_bytes
        opened += rows * (1 - (1 - r) ** cols)
        fetched += r * ins.n * ins.stride / 64
    return opened / fetched if fetched else 0.0


def power_inputs(proj: Projection, board, resources: ResourceReport, activity: Activity
                 ) -> PowerInputs:
    """The power model's inputs for a projection: events per cycle from its breakdown, bytes
    per second per memory, accesses per second per on-chip memory."""
    from nsllm.host.program import program_outline

    params = proj.params
    _, program = program_outline(proj.config, params.port_bytes, proj.packing,
                                 proj.weight_ports)
    ev = events(program, proj.breakdown, params.weight_ports)
    tps = proj.tokens_per_s
    groups = resources.groups
    kinds = {g: _kind(r) for g, r in groups.items()}
    mems = [MemoryAccesses(name, n * tps, width, kind)
            for name, n, width, kind in memory_accesses(program, params,
                                                        proj.breakdown.weight_beats, kinds)]
    per_memory: dict[str, float] = {}
    for k, mem in enumerate(proj.placement.memories):
        per_memory[mem] = per_memory.get(mem, 0.0) + \
            proj.breakdown.weight_beats[k] * params.port_bytes * tps
    per_memory[proj.placement.ctl_memory] = per_memory.get(proj.placement.ctl_memory, 0.0) + \
        proj.table_bytes * tps
    dram = {m["name"]: dram_kind(m) for m in board.memories}
    rates = proj.firing.rates_for(program)
    opened = {name: _rows_opened(program, rates, ROW_BYTES[kind]) for name, kind in dram.items()}
    vector_busy = ev["vector busy"]
    linear_words = sum((ins.n + ins.m) // params.vector for ins in program
                       if ins.op == Op.LINEAR)
    duty = {"vector unit": vector_busy,
            "linear unit": min(1.0, linear_words / proj.breakdown.cycles)}
    return PowerInputs(clock_hz=proj.clock_mhz * 1e6, resources=groups,
                       toggle_rate=activity.at(ev), dsp_duty=duty, memories=mems,
                       dram_bytes_per_s={k: per_memory.get(k, 0.0) for k in dram},
                       dram_kinds=dram, row_open_fraction=opened,
                       activity_source=activity.source)


@dataclass
class Estimate:
    """A projection with its power estimate."""

    projection: Projection
    power: PowerEstimate
    inputs: PowerInputs
    resources: ResourceReport
    activity: Activity

    @property
    def tokens_per_joule(self) -> dict[str, float]:
        """tokens/s ÷ dynamic watts (high watts give the low tokens/J)."""
        t = self.projection.tokens_per_s
        return {"low": t / self.power.dynamic("high"), "typical": t / self.power.dynamic(),
                "high": t / self.power.dynamic("low")}

    def as_dict(self) -> dict:
        d = self.projection.as_dict()
        pw = self.power.as_dict()
        tpj = self.tokens_per_joule
        d.update({
            "watts": {**pw["dynamic"], "kind": "dynamic (without static power and DRAM "
                                               "background; the NSLLM paper's 13.849 W is "
                                               "dynamic)"},
            "watts_total": pw["total"],
            "power_breakdown": pw["breakdown"],
            "tokens_per_joule": {k: round(v, 3) for k, v in tpj.items()},
            "tokens_per_joule_total": round(self.projection.tokens_per_s
                                            / self.power.total(), 3),
            "resources": self.resources.as_dict(),
            "activity": self.activity.as_dict(),
            "published": [{"system": s, "tokens_per_s": t, "watts": w,
                           "tokens_per_joule": round(t / w, 2) if w else None, "source": src}
                          for s, t, w, src in PUBLISHED],
        })
        d["assumptions"]["power_coefficients"] = {k: v.as_dict()
                                                  for k, v in COEFFICIENTS.items()}
        return d


def estimate(cfg, board, firing, resources: ResourceReport, activity: Activity, **kwargs
             ) -> Estimate:
    """Projection and power of ``cfg`` on ``board`` (``kwargs``: :func:`project`'s)."""
    proj = project(cfg, board, firing, **kwargs)
    inputs = power_inputs(proj, board, resources, activity)
    return Estimate(proj, estimate_power(inputs), inputs, resources, activity)
