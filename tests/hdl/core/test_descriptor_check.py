"""``descriptor_error`` — the RTL twin of ``nsllm.isa.check_instr`` — equal to it on a table of
edge-case descriptors (one line per case, with the code each must give) and on a few thousand
random ones whose fields are drawn around every limit. The Amaranth expression is evaluated in
amaranth.sim with the descriptor on a signal, exactly as the sequencer elaborates it."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, Value

from nsllm.hdl.core import CoreParams
from nsllm.hdl.core.sequencer import DESCRIPTOR, descriptor_error
from nsllm.isa import ErrorCode, Instr, Op, Regions, check_instr

from .sim import simulate

E = ErrorCode

#: A micro build (8-byte port, 2bit only) and a board-like one (64-byte ports, both packings).
MICRO = CoreParams(port_bytes=8, vector=4, max_vocab=64, max_hidden=32, max_intermediate=64,
                   max_layers=1).build_limits()
BOARD = CoreParams(port_bytes=64, vector=16, weight_ports=3, packings=("2bit", "base3"),
                   max_vocab=32000, max_hidden=2048, max_intermediate=5632,
                   max_layers=24).build_limits()
#: A micro build with an SLA unit (two state slots, heads up to 16, 4 lanes).
SLA = CoreParams(port_bytes=8, vector=4, max_vocab=64, max_hidden=32, max_intermediate=64,
                 max_layers=2, max_sla_layers=2, max_head_dim=16, sla_lanes=4).build_limits()
BUILDS = {"micro": MICRO, "board": BOARD, "sla": SLA}


def rtl_codes(build, cases):
    """``descriptor_error`` of each ``(instr or raw int, image_bytes, region_bytes, token)``."""
    m = Module()
    d = Signal(DESCRIPTOR)
    image, region, token = Signal(32), Signal(32), Signal(32)
    err = Signal(4)
    m.d.comb += err.eq(descriptor_error(d, build, image, region, token))
    got = []

    async def tb(ctx):
        for ins, image_bytes, region_bytes, tok in cases:
            raw = ins if isinstance(ins, int) else int.from_bytes(ins.pack(), "little")
            ctx.set(Value.cast(d), raw)
            ctx.set(image, image_bytes)
            ctx.set(region, region_bytes)
            ctx.set(token, tok)
            got.append(ctx.get(err))

    simulate(m, tb, clock=False)
    return got


def golden_codes(build, cases):
    return [int(check_instr(ins, build, Regions(image_bytes, region_bytes), tok))
            for ins, image_bytes, region_bytes, tok in cases]


# --- the table of edge cases ----------------------------------------------------------------
IMG, REG = 1 << 20, 1 << 16  # region sizes of the table's cases
S = MICRO.scratch_entries  # 704


def lin(**kw):
    """A LINEAR that passes every check of the micro build, changed by ``kw``."""
    f = dict(op=Op.LINEAR, D=15, shift_a=20, shift_b=12, n=32, m=64, src_a=0, src_b=32,
             dst=64, table=64, weight=0, stride=16, wsize=512)
    f.update(kw)
    return Instr(**f)


def ins(op, **kw):
    f = dict(op=op, n=32, src_a=0, src_b=32, dst=64, table=64, shift_a=8, m=64)
    f.update(kw)
    return Instr(**f)


# one line per case: build, descriptor, image_bytes, region_bytes, token, the code it must give
CASES = [
    ("micro", Instr(op=Op.END, n=5, D=99), IMG, REG, 0, E.NONE),  # END checks nothing
    ("micro", lin(), IMG, REG, 0, E.NONE),
    ("micro", lin(flags=1), IMG, REG, 0, E.PACKING),  # base3 on a 2bit-only build
    ("micro", lin(flags=1, D=0), IMG, REG, 0, E.PACKING),  # packing first
    ("micro", lin(flags=2), IMG, REG, 0, E.NONE),  # only bit 0 is the packing
    ("board", lin(flags=1, stride=64, m=320), IMG, REG, 0, E.NONE),
    ("board", lin(flags=1, stride=64, m=336), IMG, REG, 0, E.WEIGHT),  # 5 rows per byte
    ("board", lin(stride=64, m=256), IMG, REG, 0, E.NONE),
    ("board", lin(stride=64, m=272), IMG, REG, 0, E.WEIGHT),  # 4 rows per byte
    ("micro", lin(D=0), IMG, REG, 0, E.FIELD),
    ("micro", lin(D=MICRO.max_D), IMG, REG, 0, E.NONE),
    ("micro", lin(D=MICRO.max_D + 1), IMG, REG, 0, E.FIELD),
    ("micro", lin(shift_a=0), IMG, REG, 0, E.FIELD),
    ("micro", lin(shift_a=63, shift_b=63), IMG, REG, 0, E.NONE),
    ("micro", lin(shift_a=64), IMG, REG, 0, E.FIELD),
    ("micro", lin(shift_b=0), IMG, REG, 0, E.FIELD),
    ("micro", lin(shift_b=255), IMG, REG, 0, E.FIELD),
    ("micro", lin(n=MICRO.max_in), IMG, REG, 0, E.NONE),
    ("micro", lin(n=MICRO.max_in + 16), IMG, REG, 0, E.FIELD),
    ("micro", lin(m=MICRO.max_out + 16, stride=64), IMG, REG, 0, E.FIELD),
    ("micro", lin(n=0), IMG, REG, 0, E.SCRATCH),
    ("micro", lin(n=24), IMG, REG, 0, E.SCRATCH),  # not a multiple of ALIGN
    ("micro", lin(src_a=8), IMG, REG, 0, E.SCRATCH),
    ("micro", lin(src_b=S - 16), IMG, REG, 0, E.SCRATCH),  # src_b + n > scratch
    ("micro", lin(src_b=S - 32), IMG, REG, 0, E.NONE),
    ("micro", lin(dst=S - 64), IMG, REG, 0, E.NONE),
    ("micro", lin(dst=S - 48), IMG, REG, 0, E.SCRATCH),  # dst's length is m
    ("micro", lin(dst=(1 << 32) - 16), IMG, REG, 0, E.SCRATCH),  # no 32-bit wrap-around
    ("micro", lin(table=32), IMG, REG, 0, E.TABLE),  # tables are 64-byte aligned
    ("micro", lin(table=IMG - 128), IMG, REG, 0, E.NONE),  # 32 entries · 4 bytes fit exactly
    ("micro", lin(table=IMG - 64), IMG, REG, 0, E.TABLE),
    ("micro", lin(table=(1 << 32) - 64), 1 << 31, REG, 0, E.TABLE),
    ("micro", lin(weight=4), IMG, REG, 0, E.WEIGHT),  # not a port word
    ("micro", lin(stride=12), IMG, REG, 0, E.WEIGHT),
    ("micro", lin(stride=0), IMG, REG, 0, E.WEIGHT),
    ("micro", lin(stride=8, m=64), IMG, REG, 0, E.WEIGHT),  # 32 rows < m
    ("micro", lin(stride=32, m=128), IMG, REG, 0, E.NONE),  # 4 words = acc_words
    ("micro", lin(stride=40, m=128), IMG, REG, 0, E.WEIGHT),  # 5 words > acc_words
    ("micro", lin(weight=REG - 512), IMG, REG, 0, E.NONE),
    ("micro", lin(weight=REG - 504), IMG, REG, 0, E.WEIGHT),
    ("micro", lin(weight=(1 << 32) - 8, wsize=16), IMG, (1 << 32) - 1, 0, E.WEIGHT),
    ("micro", ins(Op.NORM), IMG, REG, 0, E.NONE),
    ("micro", ins(Op.NORM, shift_a=0), IMG, REG, 0, E.FIELD),
    ("micro", ins(Op.NORM, shift_a=64), IMG, REG, 0, E.FIELD),
    ("micro", ins(Op.NORM, n=MICRO.max_in + 16), IMG, REG, 0, E.FIELD),
    ("micro", ins(Op.NORM, dst=S - 16), IMG, REG, 0, E.SCRATCH),
    ("micro", ins(Op.NORM, table=IMG - 64), IMG, REG, 0, E.TABLE),
    ("micro", ins(Op.UNORM, shift_a=0, table=1), IMG, REG, 0, E.NONE),  # no shift, no table
    ("micro", ins(Op.UNORM, src_a=S), IMG, REG, 0, E.SCRATCH),
    ("micro", ins(Op.EMBED, m=64, shift_b=7), IMG, REG, 63, E.NONE),
    ("micro", ins(Op.EMBED, m=64, shift_b=7), IMG, REG, 64, E.TOKEN),
    ("micro", ins(Op.EMBED, m=0), IMG, REG, 0, E.TOKEN),
    ("micro", ins(Op.EMBED, m=64, shift_b=32), IMG, REG, 0, E.FIELD),
    ("micro", ins(Op.EMBED, m=64, shift_b=31), IMG, REG, 0, E.NONE),
    ("micro", ins(Op.EMBED, m=64, shift_b=31), IMG, REG, 1, E.TABLE),  # row 1 at 2 GiB
    ("micro", ins(Op.EMBED, m=64, shift_b=7, table=IMG - 63 * 128 - 128), IMG, REG, 63, E.NONE),
    ("micro", ins(Op.EMBED, m=64, shift_b=7, table=IMG - 63 * 128 - 64), IMG, REG, 63, E.TABLE),
    ("micro", ins(Op.EMBED, m=64, n=MICRO.max_in + 16), IMG, REG, 0, E.FIELD),
    ("micro", ins(Op.EMBED, dst=8), IMG, REG, 99, E.SCRATCH),  # scratch before token
    ("micro", ins(Op.MLGRU), IMG, REG, 0, E.NONE),
    ("micro", ins(Op.MLGRU, n=MICRO.max_in + 16), IMG, REG, 0, E.FIELD),
    ("micro", ins(Op.MLGRU, src_b=1), IMG, REG, 0, E.SCRATCH),
    ("micro", ins(Op.MLGRU, table=100), IMG, REG, 0, E.TABLE),
    ("micro", ins(Op.SILUGATE, table=1), IMG, REG, 0, E.NONE),  # no table
    ("micro", ins(Op.SILUGATE, src_b=S - 16), IMG, REG, 0, E.SCRATCH),
    ("micro", ins(Op.ADD, n=S + 16, src_a=0, src_b=0, dst=0), IMG, REG, 0, E.SCRATCH),
    ("micro", ins(Op.ADD, n=MICRO.max_in + 16, src_a=0, src_b=0, dst=0), IMG, REG, 0, E.NONE),
    ("micro", ins(Op.CLEAR, src_a=3, src_b=3), IMG, REG, 0, E.NONE),  # dst only
    ("micro", ins(Op.CLEAR, dst=S), IMG, REG, 0, E.SCRATCH),
    ("micro", ins(Op.ARGMAX, dst=3), IMG, REG, 0, E.NONE),  # src_a only
    ("micro", ins(Op.ARGMAX, n=0), IMG, REG, 0, E.SCRATCH),
    ("micro", ins(Op.NORM), 0, REG, 0, E.TABLE),  # IMAGE_BYTES 0
]


@pytest.mark.parametrize("build", list(BUILDS))
def test_edge_cases_equal_check_instr(build):
    rows = [c for c in CASES if c[0] == build]
    cases = [(ins_, image, region, tok) for _, ins_, image, region, tok, _ in rows]
    want = [int(code) for *_, code in rows]
    assert golden_codes(BUILDS[build], cases) == want  # the table says what each case tests
    got = rtl_codes(BUILDS[build], cases)
    bad = [(rows[k][1], ErrorCode(g), ErrorCode(w)) for k, (g, w) in enumerate(
        zip(got, want, strict=True)) if g != w]
    assert not bad, f"descriptor_error differs from check_instr: {bad[:5]}"


def test_unknown_opcodes_pass_every_check():
    """descriptor_error leaves unknown opcodes to the sequencer (ErrorCode.OPCODE there): with
    no opcode matched, none of the checks fires, whatever the other fields hold."""
    raws = [op | (0xFF << 8) | (1 << 40) for op in (len(Op), 0x18, 0x84, 255)]  # D 255, flags 1
    assert rtl_codes(MICRO, [(r, 0, 0, 999) for r in raws]) == [0] * len(raws)


# --- random descriptors around every limit ----------------------------------------------------
def random_cases(build, rng, count):
    """Descriptors that pass every check, then have each field replaced with probability 1/4
    by a value at, just inside or just outside a limit (or a uniform one), with region sizes
    and tokens drawn the same way — so every check is reached and fails now and then."""
    pb, s_end, mx = build.port_bytes, build.scratch_entries, (1 << 32) - 1
    lengths = [0, 16, 32, 48, 64, 24, 1, build.max_in, build.max_in + 16, build.max_out,
               build.max_out + 16, s_end, s_end - 16, mx - 15]
    starts = [0, 16, 32, 64, 8, s_end - 64, s_end - 32, s_end - 16, s_end, mx - 15]
    shifts = [0, 1, 2, 20, 31, 32, 63, 64, 255]
    offsets = [0, 64, 128, 32, 4, 4096, (1 << 20) - 128, (1 << 20) - 64, mx - 63]
    words = [0, pb, 2 * pb, pb // 2 or 1, build.acc_words * pb, (build.acc_words + 1) * pb,
             pb * 5 + 3, 1 << 16, mx - pb + 1]
    pools = {"D": [0, 1, build.max_D, build.max_D + 1, 255], "shift_a": shifts,
             "shift_b": shifts, "flags": [0, 1, 2, 3, 255], "n": lengths,
             "m": lengths + [4 * pb, 5 * pb, 4 * pb + 16, 5 * pb + 16, 4, 8, 12], "src_a": starts,
             "src_b": starts, "dst": starts, "table": offsets, "weight": words + offsets,
             "stride": words, "wsize": words + [1 << 20, mx], "src_c": starts,
             "slot": [0, 1, build.max_sla_layers, build.max_sla_layers + 1, 0xFFFF]}
    widths = {"D": 255, "shift_a": 255, "shift_b": 255, "flags": 255, "slot": 0xFFFF}
    cases = []
    for _ in range(count):
        op = Op(int(rng.integers(len(Op))))
        packing = str(rng.choice(build.packings))
        rows = (4 if packing == "2bit" else 5) * pb
        f = dict(op=op, D=build.max_D, shift_a=12, shift_b=7, delta_q=int(rng.integers(1 << 16)),
                 flags=int(packing == "base3"), n=32,
                 m={Op.LINEAR: rows, Op.SLA: 16}.get(op, 64), src_c=96, slot=0,
                 src_a=0, src_b=32, dst=64, param=int(rng.integers(-(1 << 31), 1 << 31)),
                 table=128, weight=pb * 4, stride=pb, wsize=pb * 64)
        for name, pool in pools.items():
            if rng.random() < 0.25:
                f[name] = (int(rng.choice(pool)) if rng.random() < 0.8
                           else int(rng.integers(0, widths.get(name, mx) + 1)))
        image = int(rng.choice([1 << 20, 1 << 20, 0, 1 << 12, 1 << 16, mx]))
        region = int(rng.choice([1 << 16, 1 << 16, 0, pb * 68, pb * 67, mx]))
        token = int(rng.choice([0, 1, 63, 64, 65, 1 << 16]))
        cases.append((Instr(**f), image, region, token))
    return cases


def check_random(build, seed, count):
    cases = random_cases(build, np.random.default_rng(seed), count)
    want = golden_codes(build, cases)
    got = rtl_codes(build, cases)
    bad = [(cases[k], ErrorCode(g), ErrorCode(w))
           for k, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    assert not bad, f"{len(bad)} of {count} differ, first: {bad[0]}"
    return Counter(ErrorCode(w) for w in want)


@pytest.mark.parametrize("build,seed", [("micro", 1), ("board", 2), ("sla", 3)])
def test_random_descriptors_equal_check_instr(build, seed):
    codes = check_random(BUILDS[build], seed, 3000)
    # the generator reaches every outcome a descriptor check can have
    wanted = {E.NONE, E.FIELD, E.SCRATCH, E.TOKEN, E.TABLE, E.WEIGHT}
    if build == "micro":
        wanted.add(E.PACKING)
    assert wanted <= set(codes), codes


@pytest.mark.slow
@pytest.mark.parametrize("build", list(BUILDS))
def test_many_random_descriptors_equal_check_instr(build):
    check_random(BUILDS[build], 100, 20_000)
