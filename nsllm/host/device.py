"""The ``Device`` protocol: one host API for the simulated core and the board.

Every back end — :class:`~nsllm.sim.verilator_device.SimDevice` (the generated RTL in
Verilator), :class:`ModelDevice` (the sequencer's NumPy golden model behind the same register
map), and later an ``XrtDevice`` on the VCK190 — offers the same six calls, so the runtime
(:mod:`nsllm.host.runtime`) is written once:

``write(addr, data)`` / ``read(addr, n)``   device DRAM (bulk, no bus cycles)
``reg_write(off, value)`` / ``reg_read(off)``   the core's AXI4-Lite registers (:class:`Reg`)
``start()``                                 ap_start (fails if a run is in progress)
``wait(timeout)``                           until ap_done; :class:`DeviceTimeout` on expiry

A timeout names the core's status registers (:class:`CoreStatus`) and how to raise the limit;
bus or core errors raise :class:`DeviceError`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol, runtime_checkable

import numpy as np

from .image import BuildLimits
from .program import DESCRIPTOR_BYTES, Instr, Interpreter, Op

__all__ = [
    "CoreStatus", "Device", "DeviceError", "DeviceTimeout", "ModelDevice", "Reg",
    "read_status", "timeout_error",
]


class Reg(IntEnum):
    """Byte offsets of the core's 32-bit registers (docs/runtime.md; Vitis ap_ctrl_hs at 0x00)."""

    CTRL = 0x00  #: bit0 ap_start, bit1 ap_done (clear on read), bit2 ap_idle, bit3 ap_ready
    GIE = 0x04
    IER = 0x08
    ISR = 0x0C
    PROG_ADDR_LO = 0x10
    PROG_ADDR_HI = 0x14
    TOKEN_IN = 0x18
    TOKEN_OUT = 0x1C
    CYCLES_LO = 0x20
    CYCLES_HI = 0x24
    WEIGHT_BYTES = 0x28
    BUS_BYTES = 0x2C
    SPIKES_NONZERO = 0x30
    SPIKES_TOTAL = 0x34
    STATUS = 0x38  #: 15:0 pc, 19:16 opcode, 24 busy, 31:28 error
    SCRATCH_ADDR = 0x3C
    SCRATCH_DATA = 0x40
    BUILD_PORT_BYTES = 0x44
    BUILD_SCRATCH = 0x48
    BUILD_MAX_D = 0x4C
    BUILD_ACC_BITS = 0x50
    BUILD_MAX_VOCAB = 0x54
    BUILD_MAX_HIDDEN = 0x58
    BUILD_MAX_INTER = 0x5C
    BUILD_MAX_LAYERS = 0x60
    PROG_OPS = 0x64  #: descriptors in the program at PROG_ADDR (the core caches the program)
    BUILD_MAX_OPS = 0x68  #: program cache capacity, descriptors
    CACHE_FLUSH = 0x6C  #: any write forgets the cached program (after rewriting programs in DRAM)


CTRL_START, CTRL_DONE, CTRL_IDLE, CTRL_READY = 1, 2, 4, 8
#: STATUS error codes (bits 31:28)
ERROR_CODES = {0: "none", 1: "unknown opcode", 2: "AXI read error",
               3: "bad program (PROG_OPS 0 or above BUILD_MAX_OPS, or no END)"}
ERR_OPCODE, ERR_AXI, ERR_PROGRAM = 1, 2, 3


class DeviceError(RuntimeError):
    """The bus or the core reported an error; the message names it and what to check."""


class DeviceTimeout(DeviceError, TimeoutError):
    """A run did not finish within its budget; the message holds the core's status registers."""

    def __init__(self, message: str, status: CoreStatus | None = None):
        super().__init__(message)
        self.status = status


@runtime_checkable
class Device(Protocol):
    """A core plus its DRAM, simulated or real (see the module docstring)."""

    def write(self, addr: int, data: bytes) -> None:
        """Copy ``data`` into device DRAM at byte address ``addr``."""

    def read(self, addr: int, n: int) -> bytes:
        """Read ``n`` bytes of device DRAM at ``addr``."""

    def reg_write(self, offset: int, value: int) -> None:
        """Write a 32-bit register (:class:`Reg`) over AXI4-Lite."""

    def reg_read(self, offset: int) -> int:
        """Read a 32-bit register over AXI4-Lite (reading CTRL clears ap_done)."""

    def start(self) -> None:
        """Set ap_start; raise :class:`DeviceError` when the core is still running."""

    def wait(self, timeout: float | None = None) -> None:
        """Return when the run has finished (ap_done); raise :class:`DeviceTimeout` after
        ``timeout`` seconds (``None``: the device's default)."""


@dataclass(frozen=True)
class CoreStatus:
    """A snapshot of the control and status registers, decoded."""

    ctrl: int
    status: int
    cycles: int

    @property
    def pc(self) -> int:
        return self.status & 0xFFFF

    @property
    def opcode(self) -> int:
        return (self.status >> 16) & 0xF

    @property
    def busy(self) -> bool:
        return bool(self.status >> 24 & 1)

    @property
    def error(self) -> int:
        return self.status >> 28 & 0xF

    def describe(self) -> str:
        try:
            op = Op(self.opcode).name
        except ValueError:
            op = "?"
        flags = " ".join(f"{name}={int(bool(self.ctrl & bit))}" for name, bit in
                         [("ap_start", CTRL_START), ("ap_done", CTRL_DONE),
                          ("ap_idle", CTRL_IDLE), ("ap_ready", CTRL_READY)])
        return (f"CTRL={self.ctrl:#x} ({flags}); STATUS={self.status:#010x} (pc={self.pc} "
                f"opcode={self.opcode} {op} busy={int(self.busy)} error={self.error} "
                f"{ERROR_CODES.get(self.error, 'unknown')}); CYCLES={self.cycles}")


def read_status(device: Device) -> CoreStatus:
    """Read CTRL, STATUS and CYCLES (note: reading CTRL clears a pending ap_done)."""
    return CoreStatus(
        ctrl=device.reg_read(Reg.CTRL), status=device.reg_read(Reg.STATUS),
        cycles=device.reg_read(Reg.CYCLES_LO) | device.reg_read(Reg.CYCLES_HI) << 32)


def timeout_error(device: Device, budget: str) -> DeviceTimeout:
    """A :class:`DeviceTimeout` for a run that exceeded ``budget`` (e.g. "2.0 s"), with status."""
    try:
        status = read_status(device)
        text = status.describe()
    except DeviceError as exc:  # a dead register bus must not hide the timeout itself
        status, text = None, f"status registers unreadable: {exc}"
    return DeviceTimeout(
        f"the core did not finish within {budget}; {text}. If the run is just long, raise the "
        "limit (wait(timeout=..., max_cycles=...), or --timeout on the command line); if pc "
        "stays put the core is hung at that descriptor.", status)


class ModelDevice:
    """A :class:`Device` whose core is the sequencer's golden model (:class:`Interpreter`).

    It keeps the register map of the real core, executes the descriptor program at PROG_ADDR
    in NumPy on :meth:`start`, and fills TOKEN_OUT and the counters like the core does, so the
    runtime and the generator can be tested without RTL. CYCLES holds an *estimate*: bus bytes
    divided by the port width (the memory-bound ideal), not a measurement.

    Parameters
    ----------
    build : BuildLimits
        The core build this device pretends to be (answers the BUILD_* registers).
    mem_bytes : int
        DRAM size.
    packing : str
        Weight packing the pretend build decodes.
    max_ops : int
        Program cache capacity in descriptors (BUILD_MAX_OPS).
    """

    name = "model"

    def __init__(self, build: BuildLimits, mem_bytes: int = 1 << 24, packing: str = "2bit",
                 max_ops: int = 1024):
        if mem_bytes <= 0:
            raise ValueError(f"mem_bytes must be positive, not {mem_bytes}")
        self.build = build
        self.packing = packing
        self.mem = bytearray(mem_bytes)
        self.scratch = np.zeros(build.scratch_entries, dtype=np.int64)  # persists across runs
        self.regs = {r: 0 for r in Reg}
        self.regs.update({
            Reg.BUILD_PORT_BYTES: build.port_bytes, Reg.BUILD_SCRATCH: build.scratch_entries,
            Reg.BUILD_MAX_D: build.max_D, Reg.BUILD_ACC_BITS: build.acc_bits,
            Reg.BUILD_MAX_VOCAB: build.max_vocab, Reg.BUILD_MAX_HIDDEN: build.max_hidden,
            Reg.BUILD_MAX_INTER: build.max_intermediate, Reg.BUILD_MAX_LAYERS: build.max_layers,
            Reg.BUILD_MAX_OPS: max_ops,
        })
        self.ctrl_done = False
        self._interpreter: Interpreter | None = None

    def _check_range(self, addr: int, n: int) -> None:
        if addr < 0 or n < 0 or addr + n > len(self.mem):
            raise DeviceError(f"DRAM access [{addr:#x}, {addr + n:#x}) is outside the device's "
                              f"{len(self.mem)} bytes; create the device with a larger mem_bytes")

    def write(self, addr: int, data: bytes) -> None:
        self._check_range(addr, len(data))
        self.mem[addr: addr + len(data)] = data
        self._interpreter = None  # its copy of DRAM and its unpacked weights are stale

    def read(self, addr: int, n: int) -> bytes:
        self._check_range(addr, n)
        return bytes(self.mem[addr: addr + n])

    def reg_write(self, offset: int, value: int) -> None:
        value &= 0xFFFFFFFF
        if offset == Reg.CTRL:
            if value & CTRL_START:
                self._run()
        elif offset == Reg.ISR:
            self.regs[Reg.ISR] ^= value & 1
        elif offset == Reg.CACHE_FLUSH:
            pass  # this model reads the program from DRAM on every start: nothing is cached
        elif offset in (Reg.GIE, Reg.IER, Reg.PROG_ADDR_LO, Reg.PROG_ADDR_HI, Reg.PROG_OPS,
                        Reg.TOKEN_IN, Reg.SCRATCH_ADDR):
            self.regs[Reg(offset)] = value
        # writes to read-only registers are ignored, as on the core

    def reg_read(self, offset: int) -> int:
        if offset == Reg.CTRL:
            value = CTRL_IDLE | (CTRL_DONE | CTRL_READY if self.ctrl_done else 0)
            self.ctrl_done = False
            return value
        if offset == Reg.SCRATCH_DATA:
            addr = self.regs[Reg.SCRATCH_ADDR]
            value = int(self.scratch[addr]) if addr < self.scratch.size else 0
            return value & 0xFFFFFFFF
        try:
            return self.regs[Reg(offset)]
        except ValueError:
            return 0

    def start(self) -> None:
        self.reg_write(Reg.CTRL, CTRL_START)

    def wait(self, timeout: float | None = None) -> None:
        """Runs complete inside :meth:`start`; nothing to wait for."""

    def _program(self, addr: int, n_ops: int) -> list[Instr]:
        """The PROG_OPS descriptors at PROG_ADDR, decoded and checked like the sequencer does."""
        if not 0 < n_ops <= self.regs[Reg.BUILD_MAX_OPS]:
            raise _CoreFault(ERR_PROGRAM, 0, 0)
        if addr + n_ops * DESCRIPTOR_BYTES > len(self.mem):
            raise _CoreFault(ERR_AXI, 0, 0)  # a read beyond DRAM: the core sees SLVERR
        ops = []
        for k in range(n_ops):
            raw = bytes(self.mem[addr + k * DESCRIPTOR_BYTES: addr + (k + 1) * DESCRIPTOR_BYTES])
            try:
                ins = Instr.unpack(raw)
            except ValueError:
                raise _CoreFault(ERR_OPCODE, k, raw[0] & 0xF) from None
            ops.append(ins)
            if ins.op == Op.END:
                return ops
        raise _CoreFault(ERR_PROGRAM, n_ops, 0)  # ran off the end: no END

    def _run(self) -> None:
        t0 = time.perf_counter()
        prog_addr = self.regs[Reg.PROG_ADDR_LO] | self.regs[Reg.PROG_ADDR_HI] << 32
        status = 0
        try:
            program = self._program(prog_addr, self.regs[Reg.PROG_OPS])
            if self._interpreter is None:
                self._interpreter = Interpreter(self.mem, self.build.scratch_entries, self.packing)
                self._interpreter.scratch = self.scratch
            interp = self._interpreter
            stats = interp.run(program, token=self.regs[Reg.TOKEN_IN])
            bus = len(program) * DESCRIPTOR_BYTES + stats.table_bytes + stats.weight_bytes
            self.regs.update({
                Reg.TOKEN_OUT: interp.token, Reg.WEIGHT_BYTES: stats.weight_bytes,
                Reg.BUS_BYTES: bus, Reg.SPIKES_NONZERO: stats.spikes_nonzero,
                Reg.SPIKES_TOTAL: stats.spikes_total,
            })
            cycles = -(-bus // self.build.port_bytes)
            status = (len(program) - 1) & 0xFFFF
        except _CoreFault as fault:
            cycles = 0
            status = fault.pc & 0xFFFF | fault.opcode << 16 | fault.code << 28
        self.regs[Reg.CYCLES_LO] = cycles & 0xFFFFFFFF
        self.regs[Reg.CYCLES_HI] = cycles >> 32
        self.regs[Reg.STATUS] = status
        self.ctrl_done = True
        self.regs[Reg.ISR] |= self.regs[Reg.IER] & 1
        self.seconds = time.perf_counter() - t0


class _CoreFault(Exception):
    def __init__(self, code: int, pc: int, opcode: int):
        super().__init__(code, pc, opcode)
        self.code, self.pc, self.opcode = code, pc, opcode
