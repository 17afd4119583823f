"""Opcodes and the 64-byte descriptor: one field table, from which everything else is derived.

The core runs one *program* per token: a list of descriptors, each one instruction over the
on-chip scratchpad (entries of ``ACT_BITS`` signed bits, addressed by element). Tables (norm
weights, encoder multipliers, lower bounds, the embedding) live in the *image* region of device
memory and weight columns in the *weight* regions, one per weight port; descriptors hold byte
offsets into those regions, never absolute addresses, so an image runs wherever the host (or
XRT) places its buffers.

Instructions
------------
========== ===============================================================================
``END``    stop; ap_done
``EMBED``  ``dst[0:n] = table_row(token)``: row ``token`` at ``table + (token << shift_b)``;
           ``m`` = vocabulary (TOKEN_IN ≥ m is :attr:`ErrorCode.TOKEN`)
``NORM``   ``dst = sat(shift_round(rmsnorm(src_a) · table, shift_a))``; ``param`` = √d const
``UNORM``  ``dst = rmsnorm(src_a)``; ``param`` = √d const
``LINEAR`` ``s = I-LIF(shift_round(src_a · table, shift_a); D, delta_q)`` (encoder mantissas in
           the table); ``src_b[0:n] = s`` (a copy, for debug readback);
           ``acc = Σ_{j: s_j ≠ 0} s_j · W[:, j]`` — only the columns of inputs that spiked are
           fetched; ``dst[0:m] = sat(shift_round(acc · param, shift_b))``. Column ``j`` lives in
           weight region ``j mod N`` (N weight ports) at ``weight + (j div N) · stride``;
           ``wsize`` = bytes of this layer in each region; ``flags`` bit 0: base3 packing
``MLGRU``  ``f = lb + (1 − lb)·σ(src_b)``; ``i = silu(src_a)·(1 − f)``;
           ``dst = sat(f·dst + i)`` (table: lb, Q1.15)
``SILUGATE`` ``dst = sat(src_a · silu(src_b) >> ACT_FRAC)``
``ADD``    ``dst = sat(src_a + src_b)``
``CLEAR``  ``dst[0:n] = 0``
``ARGMAX`` TOKEN_OUT = first index of ``max(src_a[0:n])``
``COUNT``  ``dst = I-LIF(shift_round(src_a · table, shift_a); D, delta_q)``: the LINEAR's
           encoder alone, counts written as activations; ``flags`` bit 1: unsigned counts
           (``clip(round(u − δ), 0, D)``: SLA's q and k), else signed (SLA's v); builds with
           an SLA unit only (elsewhere a FIELD error)
``SLA``    spike-based linear attention, one layer: per head h of ``m`` (d_h) channels, with
           q, k, v the counts at ``src_a``, ``src_b``, ``src_c`` and the layer's state S_h in
           on-chip state slot ``slot``: ``S_h ← S_h − shift_round(S_h, b_h) + ((k_i·v_j) << 10)``
           (``b_h``: table entry ``h·m``; the table holds the decay shift of each channel's
           head), ``o_j = Σ_i q_i·S_h[i, j]``, ``dst = shift_round(o, e_h)`` with ``e_h`` from the
           bit length of the head's largest |o| (``numerics.sla_q``); ``n`` channels in all
``SLACLEAR`` state slot ``slot`` = 0 (the reset program)
========== ===============================================================================

Any other opcode byte stops the core with :attr:`~nsllm.isa.errors.ErrorCode.OPCODE` — on the
RTL, in the interpreter and in ``ModelDevice`` alike (the opcode is all 8 bits of byte 0).
The arithmetic of every instruction is the numerics kernel of the same name in
:mod:`nsllm.model.numerics`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum

__all__ = ["DESCRIPTOR_BITS", "DESCRIPTOR_BYTES", "DESCRIPTOR_FIELDS", "FLAG_BASE3",
           "FLAG_UNSIGNED", "Field", "Instr", "Op", "UnknownOpcode"]


class Op(IntEnum):
    """Opcodes (byte 0 of a descriptor)."""

    END = 0
    EMBED = 1
    NORM = 2
    UNORM = 3
    LINEAR = 4
    MLGRU = 5
    SILUGATE = 6
    ADD = 7
    CLEAR = 8
    ARGMAX = 9
    COUNT = 10
    SLA = 11
    SLACLEAR = 12


DESCRIPTOR_BYTES = 64
DESCRIPTOR_BITS = 8 * DESCRIPTOR_BYTES
FLAG_BASE3 = 1  #: ``flags`` bit 0: the LINEAR's columns are base-3 packed (5 trits per byte)
FLAG_UNSIGNED = 2  #: ``flags`` bit 1: COUNT encodes unsigned counts (negative potentials → 0)


@dataclass(frozen=True)
class Field:
    """One descriptor field: ``bits`` wide, at the bit offset that the fields before it give."""

    name: str
    bits: int
    signed: bool = False
    doc: str = ""

    @property
    def reserved(self) -> bool:
        return self.name.startswith("_")


#: The descriptor, least significant bit (byte 0) first. Reserved fields start with ``_`` and
#: are zero in every image; the remaining bits up to :data:`DESCRIPTOR_BITS` are reserved too.
DESCRIPTOR_FIELDS: tuple[Field, ...] = (
    Field("op", 8, doc="opcode (Op)"),
    Field("D", 8, doc="LINEAR, COUNT: largest spike count"),
    Field("shift_a", 8, doc="NORM: weight shift; LINEAR, COUNT: encoder shift"),
    Field("shift_b", 8, doc="LINEAR: output shift; EMBED: log2 of the row bytes"),
    Field("delta_q", 16, doc="LINEAR, COUNT: sparsification shift δ (U_FRAC fixed point)"),
    Field("flags", 8, doc="LINEAR: bit 0 base3 packing; COUNT: bit 1 unsigned counts"),
    Field("_pad0", 8),
    Field("n", 32, doc="elements (LINEAR: input columns; SLA: channels of all heads)"),
    Field("m", 32, doc="LINEAR: outputs; EMBED: vocabulary; SLA: head size d_h"),
    Field("src_a", 32, doc="scratchpad entry of the first operand (SLA: q counts)"),
    Field("src_b", 32, doc="scratchpad entry of the second operand (LINEAR: spike copy; SLA: k "
                           "counts)"),
    Field("dst", 32, doc="scratchpad entry of the result"),
    Field("param", 32, signed=True, doc="NORM/UNORM: √d constant; LINEAR: output mantissa"),
    Field("table", 32, doc="byte offset of the instruction's table in the image region"),
    Field("weight", 32, doc="LINEAR: byte offset of the layer in every weight region"),
    Field("stride", 32, doc="LINEAR: bytes per column slot (whole port words)"),
    Field("wsize", 32, doc="LINEAR: bytes of the layer in each weight region"),
    Field("src_c", 32, doc="scratchpad entry of the third operand (SLA: v counts)"),
    Field("slot", 16, doc="SLA, SLACLEAR: on-chip state slot of the layer"),
)

_OFFSETS: dict[str, int] = {}
_bit = 0
for _f in DESCRIPTOR_FIELDS:
    _OFFSETS[_f.name] = _bit
    _bit += _f.bits
assert _bit <= DESCRIPTOR_BITS
del _bit, _f


def field_offset(name: str) -> int:
    """Bit offset of a descriptor field (byte 0 bit 0 is offset 0)."""
    return _OFFSETS[name]


def descriptor_markdown_table() -> str:
    """The descriptor's fields as the Markdown table of docs/formats.md (kept equal by
    tests/test_docs.py)."""
    rows = ["| byte | field | bits | meaning |", "| --- | --- | --- | --- |"]
    for f in DESCRIPTOR_FIELDS:
        if not f.reserved:
            bits = f"{f.bits} signed" if f.signed else str(f.bits)
            rows.append(f"| {_OFFSETS[f.name] // 8} | {f.name} | {bits} | {f.doc} |")
    return "\n".join(rows)


class UnknownOpcode(ValueError):
    """A descriptor whose opcode byte is not an :class:`Op`."""

    def __init__(self, opcode: int):
        super().__init__(f"unknown opcode {opcode} in descriptor")
        self.opcode = opcode


@dataclass
class Instr:
    """One decoded descriptor (fields an opcode does not use are zero).

    The attributes are exactly the non-reserved :data:`DESCRIPTOR_FIELDS`, plus ``name``, a
    host-side label (the layer and unit, e.g. ``layers.2.attn.o_proj``) not stored in the image.
    """

    op: Op
    D: int = 0
    shift_a: int = 0
    shift_b: int = 0
    delta_q: int = 0
    flags: int = 0
    n: int = 0
    m: int = 0
    src_a: int = 0
    src_b: int = 0
    dst: int = 0
    param: int = 0
    table: int = 0
    weight: int = 0
    stride: int = 0
    wsize: int = 0
    src_c: int = 0
    slot: int = 0
    name: str = ""

    def pack(self) -> bytes:
        """The 64-byte little-endian descriptor (raises ``ValueError`` for a field that does not
        fit its width)."""
        word = 0
        for f in DESCRIPTOR_FIELDS:
            if f.reserved:
                continue
            value = int(getattr(self, f.name))
            lo, hi = (-(1 << (f.bits - 1)), (1 << (f.bits - 1)) - 1) if f.signed else (
                0, (1 << f.bits) - 1)
            if not lo <= value <= hi:
                raise ValueError(f"descriptor field {f.name}={value} does not fit {f.bits} "
                                 f"{'signed' if f.signed else 'unsigned'} bits "
                                 f"({self.name or self.op})")
            word |= (value & ((1 << f.bits) - 1)) << _OFFSETS[f.name]
        return word.to_bytes(DESCRIPTOR_BYTES, "little")

    @classmethod
    def unpack(cls, raw: bytes) -> Instr:
        """Decode 64 bytes; :class:`UnknownOpcode` when byte 0 is not an opcode."""
        if len(raw) < DESCRIPTOR_BYTES:
            raise ValueError(f"a descriptor is {DESCRIPTOR_BYTES} bytes, not {len(raw)}")
        word = int.from_bytes(bytes(raw[:DESCRIPTOR_BYTES]), "little")
        values = {}
        for f in DESCRIPTOR_FIELDS:
            if f.reserved:
                continue
            v = (word >> _OFFSETS[f.name]) & ((1 << f.bits) - 1)
            if f.signed and v >> (f.bits - 1):
                v -= 1 << f.bits
            values[f.name] = v
        try:
            values["op"] = Op(values["op"])
        except ValueError:
            raise UnknownOpcode(values["op"]) from None
        return cls(**values)

    @property
    def base3(self) -> bool:
        return bool(self.flags & FLAG_BASE3)

    @property
    def unsigned(self) -> bool:
        return bool(self.flags & FLAG_UNSIGNED)


# The dataclass and the field table must name the same fields (one definition, checked here).
assert [f.name for f in fields(Instr) if f.name != "name"] == [
    f.name for f in DESCRIPTOR_FIELDS if not f.reserved], "Instr and DESCRIPTOR_FIELDS disagree"
