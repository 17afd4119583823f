"""The compiler from a model to descriptor programs, and the interpreter that runs them.

The instruction set, the descriptor layout, the build limits and the checks are
:mod:`nsllm.isa` (read :mod:`nsllm.isa.opcodes` first). :func:`compile_program` turns a model
into a reset program and a per-token program, their tables (the image region's data) and the
weight regions of the ``N`` weight ports; :class:`Interpreter` executes programs in NumPy
exactly as the core must — each instruction is the numerics kernel of the same name in
:mod:`nsllm.model.numerics`, the same kernels the integer golden model runs — applies the
descriptor checks of :func:`nsllm.isa.check_instr` with the same error codes, and counts the
bytes it fetches per port.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..isa import (
    ALIGN,
    MAX_SHIFT,
    TABLE_ALIGN,
    BuildLimits,
    ErrorCode,
    Instr,
    Op,
    Regions,
    ScratchLayout,
    check_instr,
    columns_per_port,
    scratch_layout,
)
from ..isa.layout import TABLE_ENTRY_BYTES, check_column, sla_head_problem
from ..isa.opcodes import FLAG_BASE3, FLAG_UNSIGNED
from ..model import numerics as nx
from ..model.integer import IntegerParams
from ..model.packing import bytes_per_column, pack_trits, unpack_trits

__all__ = ["CompiledModel", "CoreFault", "Interpreter", "ProgramError", "RunStats",
           "compile_program", "embed_row_shift", "program_outline"]


class ProgramError(ValueError):
    """A model the instruction set cannot express; the message names the limit."""


class CoreFault(Exception):
    """A program stopped with an error code (the interpreter's twin of STATUS.error)."""

    def __init__(self, code: ErrorCode, pc: int, opcode: int):
        super().__init__(f"{ErrorCode(code).name} at descriptor {pc} (opcode {opcode})")
        self.code, self.pc, self.opcode = ErrorCode(code), pc, opcode


def embed_row_shift(hidden: int) -> int:
    """log2 of the bytes of one embedding row: int32 entries, padded to a power of two (≥ 64),
    so the row address is ``table + (token << shift)`` — a shift, not a multiply."""
    return (max(TABLE_ALIGN, TABLE_ENTRY_BYTES * hidden) - 1).bit_length()


def _stride(out_f: int, packing: str, port_bytes: int) -> int:
    return -(-bytes_per_column(out_f, packing) // port_bytes) * port_bytes


def program_outline(cfg, port_bytes: int, packing: str = "2bit", weight_ports: int = 1
                    ) -> tuple[list[Instr], list[Instr]]:
    """The reset and per-token programs of a model shape, without tables or weights.

    The token program runs the graph of :mod:`nsllm.model.graph`: embedding, per layer the token
    mixer (MLGRU, or SLA: the q, k, v, g projections, COUNT of q, k, v, one SLA instruction, one
    NORM per head, the SiLU gate) and the GLU channel mixer, then the final norm, LM head and
    argmax. LINEAR descriptors carry their strides and per-region sizes (``weight`` offsets are
    filled in by :func:`compile_program`, which also adds tables and constants). The reset
    program clears every MLGRU layer's h and every SLA layer's state slot. The performance model
    uses the outline alone (no weights needed, any size).
    """
    d, inter, vocab = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    mixers = cfg.mixers() if hasattr(cfg, "mixers") else ["mlgru"] * cfg.num_layers
    unknown = set(mixers) - {"mlgru", "sla"}
    if unknown:
        raise ProgramError(f"the core runs MLGRU and SLA token mixers; this model has "
                           f"{', '.join(sorted(unknown))} layers")
    sla_layers = [li for li, mx in enumerate(mixers) if mx == "sla"]
    for li in sla_layers:
        if problem := sla_head_problem(cfg.sla_params(li).head_dim):
            raise ProgramError(f"layers.{li}: {problem}")
    for what, n in [("hidden size", d), ("intermediate size", inter), ("vocabulary", vocab)]:
        if n % ALIGN:
            raise ProgramError(f"the core needs a {what} that is a multiple of {ALIGN}, not {n}")
    if port_bytes < 1 or port_bytes > TABLE_ALIGN or port_bytes & (port_bytes - 1):
        raise ProgramError(f"port_bytes must be a power of two in [1, {TABLE_ALIGN}], not "
                           f"{port_bytes}")
    if weight_ports < 1:
        raise ProgramError(f"weight_ports must be at least 1, not {weight_ports}")
    lay = scratch_layout(cfg)
    sqrt_d = {n: nx.sqrt_d_const(n) for n in (d, inter, vocab)}
    flags = FLAG_BASE3 if packing == "base3" else 0

    def norm(src, dst, weight):
        return Instr(Op.NORM, n=d, src_a=src, dst=dst, param=sqrt_d[d], name=weight)

    def unorm(src, dst, name, n=d):
        return Instr(Op.UNORM, n=n, src_a=src, dst=dst, param=sqrt_d[n], name=name)

    def linear(name, src, dst):
        out_f, in_f = cfg.ternary_shape(name)
        stride = _stride(out_f, packing, port_bytes)
        return Instr(Op.LINEAR, n=in_f, m=out_f, src_a=src, src_b=lay["spikes"], dst=dst,
                     stride=stride, wsize=columns_per_port(in_f, weight_ports) * stride,
                     flags=flags, name=name)

    slot = {li: s for s, li in enumerate(sla_layers)}
    reset = [Instr(Op.SLACLEAR, slot=slot[li], name=f"layers.{li}.sla.state") if li in slot
             else Instr(Op.CLEAR, n=d, dst=lay[f"h{li}"], name=f"layers.{li}.h")
             for li in range(cfg.num_layers)]

    def mlgru_mixer(li, p):
        return [
            linear(f"{p}.attn.i_proj", lay["xn"], lay["i"]),
            linear(f"{p}.attn.f_proj", lay["xn"], lay["f"]),
            linear(f"{p}.attn.g_proj", lay["xn"], lay["g"]),
            Instr(Op.MLGRU, n=d, src_a=lay["i"], src_b=lay["f"], dst=lay[f"h{li}"],
                  name=f"{p}.mlgru"),
            norm(lay["g"], lay["gn"], f"{p}.attn.g_norm.weight"),
            Instr(Op.SILUGATE, n=d, src_a=lay["gn"], src_b=lay[f"h{li}"], dst=lay["o_in"],
                  name=f"{p}.attn.o_in"),
        ]

    def sla_mixer(li, p):
        dh = cfg.sla_params(li).head_dim
        ops = [linear(f"{p}.attn.{c}_proj", lay["xn"], lay[c]) for c in ("q", "k", "v")]
        ops.append(linear(f"{p}.attn.g_proj", lay["xn"], lay["g"]))
        ops += [Instr(Op.COUNT, n=d, src_a=lay[c], dst=lay[f"{c}c"],
                      flags=FLAG_UNSIGNED if c != "v" else 0, name=f"{p}.sla.{c}")
                for c in ("q", "k", "v")]
        ops.append(Instr(Op.SLA, n=d, m=dh, src_a=lay["qc"], src_b=lay["kc"], src_c=lay["vc"],
                         dst=lay["o"], slot=slot[li], name=f"{p}.sla"))
        # the head norm: one NORM per head (rmsnorm over d_h, then its slice of o_norm.weight)
        ops += [Instr(Op.NORM, n=dh, src_a=lay["o"] + h * dh, dst=lay["on"] + h * dh,
                      param=nx.sqrt_d_const(dh), name=f"{p}.attn.o_norm.weight[{h}]")
                for h in range(d // dh)]
        ops.append(Instr(Op.SILUGATE, n=d, src_a=lay["on"], src_b=lay["g"], dst=lay["o_in"],
                         name=f"{p}.attn.o_in"))
        return ops

    prog = [Instr(Op.EMBED, n=d, m=vocab, dst=lay["x"], shift_b=embed_row_shift(d),
                  name="embed")]
    for li in range(cfg.num_layers):
        p = f"layers.{li}"
        prog += [
            norm(lay["x"], lay["a"], f"{p}.attn_norm.weight"),
            unorm(lay["a"], lay["xn"], f"{p}.attn.unit_norm"),
            *(sla_mixer(li, p) if li in slot else mlgru_mixer(li, p)),
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


def _head_slice(name: str) -> tuple[str, int | None]:
    """``"layers.1.attn.o_norm.weight[2]"`` → (the norm weight, head 2); no index: (name, None)."""
    if name.endswith("]"):
        weight, head = name[:-1].split("[")
        return weight, int(head)
    return name, None


@dataclass
class CompiledModel:
    """Programs, the image region's tables and the weight regions."""

    reset: list[Instr]
    token: list[Instr]
    tables: bytes  #: placed at ``tables_offset`` of the image region
    tables_offset: int
    regions: list[bytes]  #: one weight region per port, identical layouts
    scratch: ScratchLayout
    weight_bytes: int  #: bytes of packed weight columns in all regions (slots used)


def _align(buf: bytearray, to: int) -> None:
    buf.extend(b"\0" * (-len(buf) % to))


def compile_program(params: IntegerParams, port_bytes: int, packing: str = "2bit",
                    weight_ports: int = 1, tables_offset: int = 0) -> CompiledModel:
    """Compile a model into programs, tables and weight regions.

    Tables are placed from byte ``tables_offset`` of the image region (descriptors hold offsets
    into it). Weight column ``j`` of every LINEAR goes to region ``j mod weight_ports``, slot
    ``j div weight_ports``; a slot is the packed column padded to whole ``port_bytes`` words,
    so each spiking column is one aligned burst.
    """
    cfg = params.config
    reset, prog = program_outline(cfg, port_bytes, packing, weight_ports)
    if tables_offset % TABLE_ALIGN:
        raise ProgramError(f"tables_offset must be a multiple of {TABLE_ALIGN}")
    data = bytearray()
    regions = [bytearray() for _ in range(weight_ports)]
    used = 0

    def table(arr: np.ndarray) -> int:
        _align(data, TABLE_ALIGN)
        offset = tables_offset + len(data)
        data.extend(np.ascontiguousarray(arr, dtype="<i4").tobytes())
        _align(data, TABLE_ALIGN)
        return offset

    def shift(value: int, what: str) -> int:
        if not 1 <= value <= MAX_SHIFT:
            raise ProgramError(f"{what}: shift {value} is outside [1, {MAX_SHIFT}] (a multiplier "
                               "out of range: check the layer's norm weights, θ and β)")
        return value

    for ins in prog:
        if ins.op == Op.EMBED:
            rows = np.zeros((cfg.vocab_size, (1 << ins.shift_b) // TABLE_ENTRY_BYTES), np.int64)
            rows[:, :ins.n] = params.embedding
            ins.table = table(rows)
        elif ins.op == Op.NORM:
            weight, head = _head_slice(ins.name)
            mult = params.norms[weight]
            mant = mult.mant if head is None else mult.mant[head * ins.n:(head + 1) * ins.n]
            ins.shift_a, ins.table = shift(mult.shift, ins.name), table(mant)
        elif ins.op == Op.COUNT:
            li, which = int(ins.name.split(".")[1]), ins.name.rsplit(".", 1)[1]
            cp = params.sla[li].counts[which]
            ins.D, ins.delta_q = cp.D, cp.delta_q
            ins.shift_a, ins.table = shift(cp.enc_shift, ins.name), table(cp.enc.mant)
        elif ins.op == Op.SLA:
            sp = params.sla[int(ins.name.split(".")[1])]
            ins.table = table(np.repeat(sp.shifts, sp.head_dim))  # each channel: its head's b
        elif ins.op == Op.MLGRU:
            lb = params.lower_bounds[int(ins.name.split(".")[1])]
            ins.table = table(np.zeros(ins.n) if lb is None else lb)
        elif ins.op == Op.LINEAR:
            lp = params.linears[ins.name]
            cols = pack_trits(lp.trits, packing)
            slots = columns_per_port(ins.n, weight_ports)
            ins.weight = len(regions[0])
            for k, region in enumerate(regions):
                block = np.zeros((slots, ins.stride), dtype=np.uint8)
                mine = cols[k::weight_ports]
                block[: mine.shape[0], : cols.shape[1]] = mine
                region.extend(block.tobytes())
                used += mine.shape[0] * ins.stride
            ins.param, ins.D, ins.delta_q = int(lp.out.mant[0]), lp.D, lp.delta_q
            ins.shift_a = shift(lp.enc_shift, ins.name)
            ins.shift_b = shift(lp.out.shift, ins.name)
            ins.table = table(lp.enc.mant)
    for region in regions:
        _align(region, TABLE_ALIGN)
    return CompiledModel(reset, prog, bytes(data), tables_offset, [bytes(r) for r in regions],
                         scratch_layout(cfg), used)


@dataclass
class RunStats:
    """What one program run read."""

    weight_bytes: int = 0  #: bytes of weight columns fetched (only columns that spiked)
    dense_weight_bytes: int = 0  #: what fetching every column would have cost
    table_bytes: int = 0  #: embedding row, norm/encoder/lower-bound tables
    spikes_nonzero: int = 0
    spikes_total: int = 0
    port_bytes: list[int] = field(default_factory=list)  #: weight bytes per weight port
    per_layer: dict[str, tuple[int, int]] = field(default_factory=dict)  #: name → (nz, total)
    fired: dict[str, np.ndarray] = field(default_factory=dict)  #: name → indices that spiked

    @property
    def firing_rate(self) -> float:
        return self.spikes_nonzero / self.spikes_total if self.spikes_total else 0.0


class Interpreter:
    """Executes programs in NumPy over an image region and weight regions.

    Parameters
    ----------
    image : bytes-like
        The image region (tables at the offsets the descriptors hold).
    regions : list of bytes-like
        The weight regions, one per weight port.
    build : BuildLimits
        The core build being modelled (scratchpad size, maxima, packings, ports): the same
        descriptor checks as the core.
    """

    def __init__(self, image, regions, build: BuildLimits):
        self.image = np.frombuffer(bytes(image), dtype=np.uint8)
        self.regions = [np.frombuffer(bytes(r), dtype=np.uint8) for r in regions]
        if len(self.regions) != build.weight_ports:
            raise ValueError(f"{len(self.regions)} weight regions for a build with "
                             f"{build.weight_ports} weight ports")
        self.build = build
        self.bounds = Regions(self.image.size, min((r.size for r in self.regions), default=0))
        self.scratch = np.zeros(build.scratch_entries, dtype=np.int64)
        #: the SLA unit's state memory: one row of entries per slot
        self.sla_state = np.zeros((build.max_sla_layers, build.sla_slot_entries), dtype=np.int64)
        self.token = 0
        self._columns: dict[tuple[int, int, int], np.ndarray] = {}  # unpacked (m, n) trits

    def _table(self, ins: Instr, stats: RunStats, offset: int | None = None) -> np.ndarray:
        """The instruction's table as the core reads it (nsllm.isa.layout, "Tables")."""
        start = ins.table if offset is None else offset
        stats.table_bytes += TABLE_ENTRY_BYTES * ins.n
        raw = self.image[start: start + TABLE_ENTRY_BYTES * ins.n].view("<i4").astype(np.int64)
        if ins.op in (Op.NORM, Op.LINEAR, Op.COUNT):  # signed MULT_BITS mantissas
            return (raw & 0xFFFF) - ((raw & 0x8000) << 1)
        if ins.op == Op.MLGRU:  # unsigned Q1.15 lower bounds
            return raw & 0xFFFF
        return raw

    def _trits(self, ins: Instr) -> np.ndarray:
        """The layer's (m, n) trits, gathered from the weight regions (cached per layer)."""
        key = (ins.weight, ins.n, ins.stride)
        if key not in self._columns:
            packing = "base3" if ins.base3 else "2bit"
            ports = len(self.regions)
            nbytes = bytes_per_column(ins.m, packing)
            cols = np.zeros((ins.n, nbytes), dtype=np.uint8)
            slots = columns_per_port(ins.n, ports)
            for k, region in enumerate(self.regions):
                raw = region[ins.weight: ins.weight + slots * ins.stride].reshape(slots, -1)
                mine = cols[k::ports]
                mine[:] = raw[: mine.shape[0], :nbytes]
            self._columns[key] = unpack_trits(cols, ins.m, packing)
        return self._columns[key]

    def run(self, program: list[Instr], token: int | None = None) -> RunStats:
        """Run until END; ``token`` is TOKEN_IN. Returns what was fetched.

        Raises :class:`CoreFault` (code, pc) where the core would stop with an error.
        """
        if token is not None:
            self.token = int(token)
        s, stats = self.scratch, RunStats(port_bytes=[0] * len(self.regions))
        ports = len(self.regions)
        for pc, ins in enumerate(program):
            code = check_instr(ins, self.build, self.bounds, self.token)
            if code:
                raise CoreFault(code, pc, int(ins.op))
            if ins.op == Op.END:
                return stats
            a = s[ins.src_a: ins.src_a + ins.n]
            b = s[ins.src_b: ins.src_b + ins.n]
            out = slice(ins.dst, ins.dst + ins.n)
            if ins.op == Op.EMBED:
                row = self._table(ins, stats, ins.table + (self.token << ins.shift_b))
                s[out] = nx.saturate(row)
            elif ins.op == Op.NORM:
                s[out] = nx.norm_q(a, self._table(ins, stats), ins.shift_a, ins.param)
            elif ins.op == Op.UNORM:
                s[out] = nx.rmsnorm_q(a, ins.param)
            elif ins.op == Op.LINEAR:
                counts = nx.encode_q(a, self._table(ins, stats), ins.shift_a, ins.D, ins.delta_q)
                s[ins.src_b: ins.src_b + ins.n] = counts  # the debug copy of the spikes
                fired = np.flatnonzero(counts)
                for j in fired:
                    if check_column(ins, int(j), ports):
                        raise CoreFault(ErrorCode.WEIGHT, pc, int(ins.op))
                acc = self._trits(ins)[:, fired].astype(np.int64) @ counts[fired]
                s[ins.dst: ins.dst + ins.m] = nx.requant_q(acc, ins.param, ins.shift_b)
                per_port = np.bincount(fired % ports, minlength=ports) * ins.stride
                for k in range(ports):
                    stats.port_bytes[k] += int(per_port[k])
                stats.weight_bytes += fired.size * ins.stride
                stats.dense_weight_bytes += ins.n * ins.stride
                stats.spikes_nonzero += fired.size
                stats.spikes_total += ins.n
                stats.per_layer[ins.name] = (fired.size, ins.n)
                stats.fired[ins.name or f"pc{pc}"] = fired
            elif ins.op == Op.MLGRU:
                s[out] = nx.mlgru_q(a, b, self._table(ins, stats), s[out])
            elif ins.op == Op.SILUGATE:
                s[out] = nx.silu_gate_q(a, b)
            elif ins.op == Op.ADD:
                s[out] = nx.add_q(a, b)
            elif ins.op == Op.CLEAR:
                s[out] = 0
            elif ins.op == Op.ARGMAX:
                self.token = nx.argmax_q(a)
            elif ins.op == Op.COUNT:
                s[out] = nx.encode_q(a, self._table(ins, stats), ins.shift_a, ins.D,
                                     ins.delta_q, unsigned=ins.unsigned)
            elif ins.op == Op.SLA:
                self._sla(ins, pc, stats)
            elif ins.op == Op.SLACLEAR:
                self.sla_state[ins.slot] = 0
        raise CoreFault(ErrorCode.PROGRAM, len(program), 0)  # ran off the end: no END

    def _sla(self, ins: Instr, pc: int, stats: RunStats) -> None:
        """The SLA instruction (:func:`nsllm.model.numerics.sla_q`) on its state slot; counts or
        decay shifts outside the unit's ranges stop the run as the core does (DATAPATH)."""
        s, n, dh = self.scratch, ins.n, ins.m
        q, k, v = (s[start: start + n] for start in (ins.src_a, ins.src_b, ins.src_c))
        shifts = self._table(ins, stats)[::dh]
        top = nx.SLA_MAX_COUNT
        if (np.any((q < 0) | (q > top) | (k < 0) | (k > top) | (np.abs(v) > top))
                or np.any((shifts < 1) | (shifts > nx.SLA_MAX_DECAY_SHIFT))):
            raise CoreFault(ErrorCode.DATAPATH, pc, int(ins.op))
        state = self.sla_state[ins.slot, : n * dh].reshape(n // dh, dh, dh)
        new, o = nx.sla_q(state, q, k, v, shifts)
        self.sla_state[ins.slot, : n * dh] = new.reshape(-1)
        s[ins.dst: ins.dst + n] = o
