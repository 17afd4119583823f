"""The core's instruction set: per-token descriptor programs over an on-chip scratchpad.

The NSLLM core runs one program per token. Each instruction (a 64-byte descriptor in the model
image) reads and writes vectors in an on-chip *scratchpad* of activations (``ACT_BITS`` signed
entries, addressed by element) and may read tables and packed weight columns from DRAM. The
recurrent states live in the scratchpad and persist between tokens.

:func:`compile_program` turns a model into programs; :class:`Interpreter` executes them in NumPy
exactly as the hardware must (it is the sequencer's golden model, checked bit for bit against
:class:`nsllm.model.IntegerModel`), and counts the bytes it fetches.

Opcodes
-------
``EMBED``    dst[0:n] = table[token]                      (``param`` = row bytes)
``NORM``     dst = sat(rmsnorm(src_a) · w_mant >> shift_a)  (table: w_mant[n]; param = √d const)
``UNORM``    dst = rmsnorm(src_a)                          (param = √d const)
``LINEAR``   s = I-LIF(src_a · enc_mant >> shift_a; D, delta_q)   (table: enc_mant[n])
             src_b[0:n] = s   (a copy of the spike counts, for debug readback)
             acc = Σ_{j: s_j ≠ 0} s_j · W[:, j]   — only columns that spiked are fetched
             dst[0:m] = sat(acc · param >> shift_b)        (param = out_mant, int32)
``MLGRU``    f = lb + (1 − lb)·σ(src_b); i = silu(src_a)·(1 − f); dst = sat(f·dst + i)
             (table: lb[n], Q1.15)
``SILUGATE`` dst = sat(src_a · silu(src_b) >> ACT_FRAC)
``ADD``      dst = sat(src_a + src_b)
``CLEAR``    dst[0:n] = 0
``ARGMAX``   token = first index of max(src_a[0:n]); logits may be copied out by the host

Every table entry is a little-endian int32 and every table starts on a 64-byte boundary, so one
loader serves all of them. Shapes must be multiples of :data:`ALIGN` (scratchpad regions then
start on whole words of any vector width up to 16) and every run-time shift lies in
[1, :data:`MAX_SHIFT`].
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from ..model import numerics as nx
from ..model.integer import IntegerParams
from ..model.packing import bytes_per_column, pack_trits, unpack_trits


class Op(IntEnum):
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


#: Descriptor layout (little-endian, 64 bytes): opcode, D, shift_a, shift_b, delta_q, pad,
#: n, m, src_a, src_b, dst, param (int32), table_addr, weight_addr, col_stride, pad.
DESCRIPTOR = struct.Struct("<BBbbHHIIIIIiQQII")
DESCRIPTOR_BYTES = 64
assert DESCRIPTOR.size <= DESCRIPTOR_BYTES
ALIGN = 16  #: hidden, intermediate and vocabulary sizes must be multiples of this
TABLE_ALIGN = 64  #: byte alignment of every table (and the largest port width)
MAX_SHIFT = 63


class ProgramError(ValueError):
    """A model the instruction set cannot express; the message names the limit."""


@dataclass
class Instr:
    """One decoded descriptor (fields unused by an opcode are zero)."""

    op: Op
    n: int = 0
    m: int = 0
    src_a: int = 0
    src_b: int = 0
    dst: int = 0
    param: int = 0
    shift_a: int = 0
    shift_b: int = 0
    D: int = 0
    delta_q: int = 0
    table_addr: int = 0
    weight_addr: int = 0
    col_stride: int = 0
    name: str = ""  #: host-side label (layer name); not stored in the image

    def pack(self) -> bytes:
        raw = DESCRIPTOR.pack(self.op, self.D, self.shift_a, self.shift_b, self.delta_q, 0,
                              self.n, self.m, self.src_a, self.src_b, self.dst, self.param,
                              self.table_addr, self.weight_addr, self.col_stride, 0)
        return raw.ljust(DESCRIPTOR_BYTES, b"\0")

    @classmethod
    def unpack(cls, raw: bytes) -> Instr:
        (op, D, sa, sb, dq, _, n, m, a, b, dst, param, taddr, waddr, stride, _) = DESCRIPTOR.unpack(
            raw[: DESCRIPTOR.size])
        try:
            opcode = Op(op)
        except ValueError:
            raise ValueError(f"unknown opcode {op} in descriptor") from None
        return cls(opcode, n, m, a, b, dst, param, sa, sb, D, dq, taddr, waddr, stride)


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


def scratch_layout(cfg) -> ScratchLayout:
    d, inter = cfg.hidden_size, cfg.intermediate_size
    lay = ScratchLayout()
    for name, n in [("x", d), ("a", d), ("xn", d), ("i", d), ("f", d), ("g", d), ("gn", d),
                    ("o_in", d), ("y", d), ("gu", 2 * inter), ("z", inter), ("zn", inter),
                    ("logits", cfg.vocab_size),
                    ("spikes", max(d, inter))]:  # the last LINEAR's input spike counts
        lay.add(name, n)
    for li in range(cfg.num_layers):
        lay.add(f"h{li}", d)
    return lay


@dataclass
class CompiledModel:
    """Programs plus the DRAM data they reference (addresses relative to ``data``)."""

    reset: list[Instr]
    token: list[Instr]
    data: bytes
    scratch: ScratchLayout
    weight_bytes: int  #: bytes of packed weight columns in ``data``


def _align(buf: bytearray, to: int) -> None:
    buf.extend(b"\0" * (-len(buf) % to))


def program_outline(cfg, port_bytes: int, packing: str = "2bit") -> tuple[list[Instr],
                                                                         list[Instr]]:
    """The reset and per-token programs of a model shape, without DRAM addresses or constants.

    The token program runs the graph of :mod:`nsllm.model.graph`: embedding, per layer the MLGRU
    token mixer and the GLU channel mixer, then the final norm, LM head and argmax.
    :func:`compile_program` fills in the tables and weights; the performance model uses the
    outline alone (no weights needed, any size).
    """
    d, inter, vocab = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    for what, n in [("hidden size", d), ("intermediate size", inter), ("vocabulary", vocab)]:
        if n % ALIGN:
            raise ProgramError(f"the core needs a {what} that is a multiple of {ALIGN}, not {n}")
    if not 1 <= port_bytes <= TABLE_ALIGN:
        raise ProgramError(f"port_bytes must be in [1, {TABLE_ALIGN}], not {port_bytes}")
    lay = scratch_layout(cfg)
    sqrt_d = {n: nx.sqrt_d_const(n) for n in (d, inter, vocab)}

    def norm(src, dst, weight):
        return Instr(Op.NORM, n=d, src_a=src, dst=dst, param=sqrt_d[d], name=weight)

    def unorm(src, dst, name, n=d):
        return Instr(Op.UNORM, n=n, src_a=src, dst=dst, param=sqrt_d[n], name=name)

    def linear(name, src, dst):
        out_f, in_f = cfg.ternary_shape(name)
        stride = -(-bytes_per_column(out_f, packing) // port_bytes) * port_bytes
        return Instr(Op.LINEAR, n=in_f, m=out_f, src_a=src, src_b=lay["spikes"], dst=dst,
                     col_stride=stride, name=name)

    reset = [Instr(Op.CLEAR, n=d, dst=lay[f"h{li}"], name=f"layers.{li}.h")
             for li in range(cfg.num_layers)]
    prog = [Instr(Op.EMBED, n=d, dst=lay["x"], param=4 * d, name="embed")]
    for li in range(cfg.num_layers):
        p = f"layers.{li}"
        prog += [
            norm(lay["x"], lay["a"], f"{p}.attn_norm.weight"),
            unorm(lay["a"], lay["xn"], f"{p}.attn.unit_norm"),
            linear(f"{p}.attn.i_proj", lay["xn"], lay["i"]),
            linear(f"{p}.attn.f_proj", lay["xn"], lay["f"]),
            linear(f"{p}.attn.g_proj", lay["xn"], lay["g"]),
            Instr(Op.MLGRU, n=d, src_a=lay["i"], src_b=lay["f"], dst=lay[f"h{li}"],
                  name=f"{p}.mlgru"),
            norm(lay["g"], lay["gn"], f"{p}.attn.g_norm.weight"),
            Instr(Op.SILUGATE, n=d, src_a=lay["gn"], src_b=lay[f"h{li}"], dst=lay["o_in"],
                  name=f"{p}.attn.o_in"),
            unorm(lay["o_in"], lay["xn"], f"{p}.attn.o_unit_norm"),
            linear(f"{p}.attn.o_proj", lay["xn"], lay["y"]),
            Instr(Op.ADD, n=d, src_a=lay["x"], src_b=lay["y"], dst=lay["x"],
                  name=f"{p}.resid_attn"),
            norm(lay["x"], lay["a"], f"{p}.mlp_norm.weight"),
            unorm(lay["a"], lay["xn"], f"{p}.mlp.unit_norm"),
            linear(f"{p}.mlp.gate_proj", lay["xn"], lay["gu"]),
            # the first half of gate_proj's output is the gate, the second half "up"
            Instr(Op.SILUGATE, n=inter, src_a=lay["gu"] + inter, src_b=lay["gu"], dst=lay["z"],
                  name=f"{p}.mlp.z"),
            unorm(lay["z"], lay["zn"], f"{p}.mlp.z_unit_norm", inter),
            linear(f"{p}.mlp.down_proj", lay["zn"], lay["y"]),
            Instr(Op.ADD, n=d, src_a=lay["x"], src_b=lay["y"], dst=lay["x"],
                  name=f"{p}.resid_mlp"),
        ]
    prog += [
        norm(lay["x"], lay["a"], "norm.weight"),
        unorm(lay["a"], lay["xn"], "lm_head.unit_norm"),
        linear("lm_head", lay["xn"], lay["logits"]),
        Instr(Op.ARGMAX, n=vocab, src_a=lay["logits"], name="argmax"),
    ]
    return reset + [Instr(Op.END)], prog + [Instr(Op.END)]


def compile_program(params: IntegerParams, port_bytes: int, packing: str = "2bit",
                    base: int = 0) -> CompiledModel:
    """Compile a model into reset and per-token programs and their DRAM tables and weights.

    Weight columns are padded to whole ``port_bytes`` words so that each spiking column is one
    aligned burst. ``base`` is the DRAM address at which ``data`` will be placed.
    """
    cfg = params.config
    reset, prog = program_outline(cfg, port_bytes, packing)
    data = bytearray()
    weights = bytearray()
    linear_fixups = []

    def table(arr: np.ndarray) -> int:
        _align(data, TABLE_ALIGN)
        addr = base + len(data)
        data.extend(np.ascontiguousarray(arr, dtype="<i4").tobytes())
        _align(data, TABLE_ALIGN)
        return addr

    def shift(value: int, what: str) -> int:
        if not 1 <= value <= MAX_SHIFT:
            raise ProgramError(f"{what}: shift {value} is outside [1, {MAX_SHIFT}] (a multiplier "
                               "out of range: check the layer's norm weights, θ and β)")
        return value

    for ins in prog:
        if ins.op == Op.EMBED:
            ins.table_addr = table(params.embedding)
        elif ins.op == Op.NORM:
            mult = params.norms[ins.name]
            ins.shift_a, ins.table_addr = shift(mult.shift, ins.name), table(mult.mant)
        elif ins.op == Op.MLGRU:
            lb = params.lower_bounds[int(ins.name.split(".")[1])]
            ins.table_addr = table(np.zeros(ins.n) if lb is None else lb)
        elif ins.op == Op.LINEAR:
            lp = params.linears[ins.name]
            cols = pack_trits(lp.trits, packing)
            padded = np.zeros((ins.n, ins.col_stride), dtype=np.uint8)
            padded[:, : cols.shape[1]] = cols
            linear_fixups.append((ins, len(weights)))
            weights.extend(padded.tobytes())
            ins.param, ins.D, ins.delta_q = int(lp.out.mant[0]), lp.D, lp.delta_q
            ins.shift_a = shift(lp.enc_shift, ins.name)
            ins.shift_b = shift(lp.out.shift, ins.name)
            ins.table_addr = table(lp.enc.mant)
    # weights go last, aligned so that every column burst is word aligned
    _align(data, TABLE_ALIGN)
    weights_base = base + len(data)
    for ins, offset in linear_fixups:
        ins.weight_addr = weights_base + offset
    data.extend(weights)
    return CompiledModel(reset, prog, bytes(data), scratch_layout(cfg), len(weights))


@dataclass
class RunStats:
    """What one program run read from DRAM."""

    weight_bytes: int = 0  #: bytes of weight columns fetched (only columns that spiked)
    dense_weight_bytes: int = 0  #: what fetching every column would have cost
    table_bytes: int = 0  #: embedding row, norm/encoder/lower-bound tables
    spikes_nonzero: int = 0
    spikes_total: int = 0
    per_layer: dict[str, tuple[int, int]] = field(default_factory=dict)  #: name → (nz, total)

    @property
    def firing_rate(self) -> float:
        return self.spikes_nonzero / self.spikes_total if self.spikes_total else 0.0


class Interpreter:
    """Executes programs on a NumPy scratchpad, reading DRAM from a bytes-like memory.

    Parameters
    ----------
    memory : bytes or bytearray or np.ndarray
        Device memory from address ``base`` on (e.g. a model image built for ``base``).
    scratch_size : int
        Scratchpad entries.
    packing : str
        Packing of the weight columns.
    base : int
        DRAM address of ``memory[0]``.
    """

    def __init__(self, memory, scratch_size: int, packing: str = "2bit", base: int = 0):
        # indexed by absolute address
        self.mem = np.concatenate([np.zeros(base, dtype=np.uint8),
                                   np.frombuffer(bytes(memory), dtype=np.uint8)])
        self.scratch = np.zeros(scratch_size, dtype=np.int64)
        self.packing = packing
        self.token = 0
        self._columns: dict[int, np.ndarray] = {}  # weight_addr → unpacked (m, n) trits

    def _table(self, addr: int, n: int, stats: RunStats) -> np.ndarray:
        stats.table_bytes += 4 * n
        return self.mem[addr: addr + 4 * n].view("<i4").astype(np.int64)

    def _trits(self, ins: Instr) -> np.ndarray:
        if ins.weight_addr not in self._columns:
            raw = self.mem[ins.weight_addr: ins.weight_addr + ins.n * ins.col_stride]
            cols = raw.reshape(ins.n, ins.col_stride)[:, : bytes_per_column(ins.m, self.packing)]
            self._columns[ins.weight_addr] = unpack_trits(cols, ins.m, self.packing)
        return self._columns[ins.weight_addr]

    def run(self, program: list[Instr], token: int | None = None) -> RunStats:
        """Run until END; ``token`` is the input token register. Returns what was fetched."""
        if token is not None:
            self.token = int(token)
        s, stats = self.scratch, RunStats()
        for ins in program:
            a = s[ins.src_a: ins.src_a + ins.n]
            b = s[ins.src_b: ins.src_b + ins.n]
            if ins.op == Op.END:
                break
            if ins.op == Op.EMBED:
                row = ins.table_addr + self.token * ins.param
                stats.table_bytes += ins.param
                s[ins.dst: ins.dst + ins.n] = self.mem[row: row + 4 * ins.n].view("<i4")
            elif ins.op == Op.NORM:
                w = self._table(ins.table_addr, ins.n, stats)
                s[ins.dst: ins.dst + ins.n] = nx.saturate(
                    nx.shift_round(nx.rmsnorm_q(a) * w, ins.shift_a))
            elif ins.op == Op.UNORM:
                s[ins.dst: ins.dst + ins.n] = nx.rmsnorm_q(a)
            elif ins.op == Op.LINEAR:
                enc = self._table(ins.table_addr, ins.n, stats)
                counts = nx.spike_count(nx.shift_round(a * enc, ins.shift_a), ins.D, ins.delta_q)
                s[ins.src_b: ins.src_b + ins.n] = counts  # the debug copy of the spikes
                fired = np.flatnonzero(counts)
                trits = self._trits(ins)
                acc = trits[:, fired].astype(np.int64) @ counts[fired]
                s[ins.dst: ins.dst + ins.m] = nx.saturate(
                    nx.shift_round(acc * ins.param, ins.shift_b))
                stats.weight_bytes += fired.size * ins.col_stride
                stats.dense_weight_bytes += ins.n * ins.col_stride
                stats.spikes_nonzero += fired.size
                stats.spikes_total += ins.n
                stats.per_layer[ins.name] = (fired.size, ins.n)
            elif ins.op == Op.MLGRU:
                lb = self._table(ins.table_addr, ins.n, stats)
                f = lb + nx.shift_round((nx.GATE_ONE - lb) * nx.sigmoid_q(b), nx.GATE_FRAC)
                i = nx.shift_round(nx.silu_q(a) * (nx.GATE_ONE - f), nx.GATE_FRAC)
                h = s[ins.dst: ins.dst + ins.n]
                s[ins.dst: ins.dst + ins.n] = nx.saturate(nx.shift_round(f * h, nx.GATE_FRAC) + i)
            elif ins.op == Op.SILUGATE:
                s[ins.dst: ins.dst + ins.n] = nx.saturate(
                    nx.shift_round(a * nx.silu_q(b), nx.ACT_FRAC))
            elif ins.op == Op.ADD:
                s[ins.dst: ins.dst + ins.n] = nx.saturate(a + b)
            elif ins.op == Op.CLEAR:
                s[ins.dst: ins.dst + ins.n] = 0
            elif ins.op == Op.ARGMAX:
                self.token = int(np.argmax(a))
        return stats
