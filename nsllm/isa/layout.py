"""Build limits, alignment, the scratchpad layout, the weight ports' share of each layer, and
the checks every implementation applies to a descriptor before it runs it.

Weight ports
------------
A build has ``N`` weight ports (AXI4 read masters ``m_axi_w0`` … ``m_axi_w{N-1}``), each with
its own *weight region* (on the board: its own buffer in its own memory bank). Column ``j`` of a
LINEAR (the weights that input ``j`` drives) belongs to port :func:`column_port` ``= j mod N``
and sits in that port's region at ``weight + column_slot(j) · stride`` with
:func:`column_slot` ``= j div N``. Every region has the same layout (each layer at the same
offset, :func:`columns_per_port` slots of ``stride`` bytes), so one descriptor serves all ports.
Each port accumulates its own columns into its own accumulator bank; the banks are summed when
the layer's outputs are requantised. docs/hardware.md ("Weight ports") says why this column
interleave was chosen over row stripes.

Tables
------
Every table entry is a little-endian int32 and every table starts on a 64-byte boundary, so one
loader serves all of them; the units read: NORM, LINEAR and COUNT tables, the low 16 bits as a
signed mantissa (``MULT_BITS``); MLGRU tables, the low 16 bits as an unsigned Q1.15 lower bound;
EMBED rows, the whole int32 saturated to ``ACT_BITS``; SLA tables, the whole int32 of each head's
first channel as its decay shift (outside [1, ``SLA_MAX_DECAY_SHIFT``]: a datapath error).

SLA state
---------
A build with SLA has ``max_sla_layers`` state *slots* in the SLA unit's on-chip memory, each of
:attr:`BuildLimits.sla_slot_entries` 24-bit entries; an SLA layer's heads occupy the start of its
slot, head after head, row-major (``S_h[i, j]`` at ``(h·d_h + i)·d_h + j``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ErrorCode
from .opcodes import DESCRIPTOR_BYTES, Instr, Op

__all__ = ["ALIGN", "MAX_SHIFT", "MAX_WEIGHT_PORTS", "PACKING_CODES", "TABLE_ALIGN",
           "SLA_VECTORS", "TRITS_PER_BYTE", "BuildLimits", "Regions", "ScratchLayout",
           "check_column", "check_instr", "check_program", "column_port", "column_slot",
           "columns_per_port", "scratch_layout", "sla_head_problem"]

#: Vector lengths and scratchpad regions are multiples of this (``BuildLimits.align``: of the
#: build's vector width when that is larger).
ALIGN = 16
TABLE_ALIGN = 64  #: byte alignment of every table, program and region (the widest port word)
MAX_SHIFT = 63  #: run-time shifts lie in [1, MAX_SHIFT]
MAX_ROW_SHIFT = 31  #: EMBED's log2 row bytes
MAX_WEIGHT_PORTS = 4  #: the register map has W0..W3
PACKING_CODES = {"2bit": 1, "base3": 2}  #: BUILD_PACKINGS bits
TRITS_PER_BYTE = {"2bit": 4, "base3": 5}
TABLE_ENTRY_BYTES = 4  #: every table entry is a little-endian int32


@dataclass(frozen=True)
class BuildLimits:
    """What one core build supports (its generator parameters, as the BUILD_* registers say)."""

    port_bytes: int
    max_vocab: int
    max_hidden: int
    max_intermediate: int
    max_layers: int
    max_D: int
    scratch_entries: int
    acc_bits: int
    weight_ports: int = 1
    vector: int = 8
    packings: tuple[str, ...] = ("2bit",)
    max_ops: int = 1024
    max_sla_layers: int = 0  #: SLA state slots (0: the build runs MLGRU layers only)
    max_head_dim: int = 0  #: largest SLA head size d_h
    sla_lanes: int = 1  #: state entries the SLA unit updates per cycle

    @property
    def sla_slot_entries(self) -> int:
        """State entries of one slot: the largest layer's heads · d_h² = max_hidden · d_h."""
        return self.max_hidden * self.max_head_dim

    @property
    def align(self) -> int:
        """Vector lengths and scratchpad regions must be multiples of this."""
        return max(ALIGN, self.vector)

    @property
    def max_in(self) -> int:
        """Longest table (and LINEAR fan-in)."""
        return max(self.max_hidden, self.max_intermediate)

    @property
    def max_out(self) -> int:
        """Most LINEAR outputs (accumulator capacity)."""
        return max(2 * self.max_intermediate, self.max_vocab, self.max_hidden)

    def lanes(self, packing: str) -> int:
        """Trits (rows) per weight beat."""
        return TRITS_PER_BYTE[packing] * self.port_bytes

    @property
    def acc_words(self) -> int:
        """Accumulator words per bank (each word holds the rows of one beat, widest packing)."""
        return -(-self.max_out // min(self.lanes(p) for p in self.packings))

    @property
    def packing_bits(self) -> int:
        return sum(PACKING_CODES[p] for p in self.packings)

    @staticmethod
    def packings_from_bits(bits: int) -> tuple[str, ...]:
        return tuple(p for p, b in PACKING_CODES.items() if bits & b)


@dataclass(frozen=True)
class Regions:
    """Sizes of the memory regions a program may read (the IMAGE_BYTES, REGION_BYTES registers)."""

    image_bytes: int
    region_bytes: int


def column_port(j: int, ports: int) -> int:
    return j % ports


def column_slot(j: int, ports: int) -> int:
    return j // ports


def columns_per_port(n: int, ports: int) -> int:
    """Column slots of a layer with ``n`` inputs in each weight region."""
    return -(-n // ports)


@dataclass
class ScratchLayout:
    """Element addresses of the on-chip vectors (one scratchpad, ACT_BITS per entry)."""

    regions: dict[str, tuple[int, int]] = field(default_factory=dict)
    size: int = 0

    def add(self, name: str, n: int) -> int:
        self.regions[name] = (self.size, n)
        self.size += n
        return self.regions[name][0]

    def __getitem__(self, name: str) -> int:
        return self.regions[name][0]


#: Scratchpad vectors of an SLA layer (hidden size each): the q, k, v projections, their counts,
#: the pre-shifted read-out and the head-normed one.
SLA_VECTORS = ("q", "k", "v", "qc", "kc", "vc", "o", "on")


def scratch_layout(cfg, *, sla: bool | None = None) -> ScratchLayout:
    """The scratchpad of a model shape (``cfg``: hidden_size, intermediate_size, vocab_size,
    num_layers, and ``mixers()`` if it has SLA layers): the residual stream, projections, GLU
    vectors, logits, the spike copy of the last LINEAR's input, the SLA vectors (when the model
    has SLA layers, or ``sla`` says so), then every MLGRU layer's recurrent state ``h<layer>``
    (an SLA layer's state lives in the SLA unit's state memory)."""
    d, inter = cfg.hidden_size, cfg.intermediate_size
    mixers = cfg.mixers() if hasattr(cfg, "mixers") else ["mlgru"] * cfg.num_layers
    lay = ScratchLayout()
    for name, n in [("x", d), ("a", d), ("xn", d), ("i", d), ("f", d), ("g", d), ("gn", d),
                    ("o_in", d), ("y", d), ("gu", 2 * inter), ("z", inter), ("zn", inter),
                    ("logits", cfg.vocab_size), ("spikes", max(d, inter))]:
        lay.add(name, n)
    if sla or (sla is None and "sla" in mixers):
        for name in SLA_VECTORS:
            lay.add(name, d)
    for li, mixer in enumerate(mixers):
        if mixer == "mlgru":
            lay.add(f"h{li}", d)
    return lay


#: Scratchpad operands of each opcode: (field, length field).
SCRATCH_OPERANDS: dict[Op, tuple[tuple[str, str], ...]] = {
    Op.EMBED: (("dst", "n"),),
    Op.NORM: (("src_a", "n"), ("dst", "n")),
    Op.UNORM: (("src_a", "n"), ("dst", "n")),
    Op.LINEAR: (("src_a", "n"), ("src_b", "n"), ("dst", "m")),
    Op.MLGRU: (("src_a", "n"), ("src_b", "n"), ("dst", "n")),
    Op.SILUGATE: (("src_a", "n"), ("src_b", "n"), ("dst", "n")),
    Op.ADD: (("src_a", "n"), ("src_b", "n"), ("dst", "n")),
    Op.CLEAR: (("dst", "n"),),
    Op.ARGMAX: (("src_a", "n"),),
    Op.COUNT: (("src_a", "n"), ("dst", "n")),
    Op.SLA: (("src_a", "n"), ("src_b", "n"), ("src_c", "n"), ("dst", "n")),
    Op.SLACLEAR: (),
    Op.END: (),
}
#: Opcodes that read a table of n int32 entries from the image region.
TABLE_OPS = (Op.EMBED, Op.NORM, Op.LINEAR, Op.MLGRU, Op.COUNT, Op.SLA)


def _power_of_two(n: int) -> bool:
    return n > 0 and not n & (n - 1)


def sla_head_problem(head_dim: int) -> str | None:
    """Why the core's SLA unit cannot run heads of ``head_dim`` channels (None: it can, given a
    build with ``max_head_dim`` ≥ it): a head is a power of two of at least :data:`ALIGN`."""
    if not _power_of_two(head_dim) or head_dim < ALIGN:
        return (f"the core's SLA unit needs a head size that is a power of two of at least "
                f"{ALIGN}, not {head_dim}")
    return None


def sla_field_error(ins: Instr, build: BuildLimits) -> bool:
    """SLA's field rules: a state slot of the build, at most ``max_hidden`` channels in heads of
    a power-of-two size d_h = ``m`` with ``sla_lanes`` and the vector width dividing it, at most
    ``max_head_dim``, and ``m`` dividing ``n``."""
    m = ins.m
    return (ins.slot >= build.max_sla_layers or ins.n > build.max_hidden
            or not _power_of_two(m) or m > build.max_head_dim
            or m < build.sla_lanes or m < build.align or ins.n & (m - 1) != 0)


def _shift_ok(s: int) -> bool:
    return 1 <= s <= MAX_SHIFT


def check_instr(ins: Instr, build: BuildLimits, regions: Regions, token: int = 0) -> ErrorCode:
    """The first check ``ins`` fails before it runs (``ErrorCode.NONE`` if none), in the order
    the core applies them: packing, fields, scratchpad, token, table, weights."""
    op = ins.op
    if op == Op.END:
        return ErrorCode.NONE
    if op == Op.LINEAR:
        packing = "base3" if ins.base3 else "2bit"
        if packing not in build.packings:
            return ErrorCode.PACKING
        if (not 1 <= ins.D <= build.max_D or not _shift_ok(ins.shift_a)
                or not _shift_ok(ins.shift_b) or ins.n > build.max_in or ins.m > build.max_out):
            return ErrorCode.FIELD
    elif op == Op.NORM:
        if not _shift_ok(ins.shift_a) or ins.n > build.max_in:
            return ErrorCode.FIELD
    elif op in (Op.EMBED, Op.MLGRU):
        if ins.n > build.max_in or (op == Op.EMBED and ins.shift_b > MAX_ROW_SHIFT):
            return ErrorCode.FIELD
    elif op == Op.COUNT:  # the encoders of COUNT come with the SLA unit
        if (build.max_sla_layers == 0 or not 1 <= ins.D <= build.max_D
                or not _shift_ok(ins.shift_a) or ins.n > build.max_in):
            return ErrorCode.FIELD
    elif op == Op.SLA:
        if sla_field_error(ins, build):
            return ErrorCode.FIELD
    elif op == Op.SLACLEAR:
        if ins.slot >= build.max_sla_layers:
            return ErrorCode.FIELD
    for start_field, len_field in SCRATCH_OPERANDS[op]:
        start, n = getattr(ins, start_field), getattr(ins, len_field)
        if n == 0 or n % build.align or start % build.align or start + n > build.scratch_entries:
            return ErrorCode.SCRATCH
    if op == Op.EMBED and token >= ins.m:
        return ErrorCode.TOKEN
    if op in TABLE_OPS:
        start = ins.table + ((token << ins.shift_b) if op == Op.EMBED else 0)
        if ins.table % TABLE_ALIGN or start + TABLE_ENTRY_BYTES * ins.n > regions.image_bytes:
            return ErrorCode.TABLE
    if op == Op.LINEAR:
        pb = build.port_bytes
        per_byte = TRITS_PER_BYTE["base3" if ins.base3 else "2bit"]
        if (ins.weight % pb or ins.stride % pb or ins.stride == 0
                or ins.stride * per_byte < ins.m
                or ins.stride // pb > build.acc_words
                or ins.weight + ins.wsize > regions.region_bytes):
            return ErrorCode.WEIGHT
    return ErrorCode.NONE


def check_column(ins: Instr, j: int, ports: int) -> ErrorCode:
    """A spiking column's slot must lie inside the layer's ``wsize`` (checked when it fires)."""
    if (column_slot(j, ports) + 1) * ins.stride > ins.wsize:
        return ErrorCode.WEIGHT
    return ErrorCode.NONE


def check_program(offset: int, ops: int, build: BuildLimits, regions: Regions) -> ErrorCode:
    """PROG_OFFSET / PROG_OPS before the program is fetched."""
    if (ops == 0 or ops > build.max_ops or offset % TABLE_ALIGN
            or offset + DESCRIPTOR_BYTES * ops > regions.image_bytes):
        return ErrorCode.PROGRAM
    return ErrorCode.NONE
