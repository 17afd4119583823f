"""The ``Device`` protocol: one host API for the simulated core and the board.

Every back end — :class:`~nsllm.sim.verilator_device.SimDevice` (the generated RTL in
Verilator or Icarus), :class:`ModelDevice` (the interpreter behind the same register map), and
``XrtDevice`` on the VCK190 (:mod:`nsllm.boards.xrt`) — offers the same seven calls, so the
runtime (:mod:`nsllm.host.runtime`) is written once:

``alloc(nbytes, arg)``                      a buffer for kernel argument ``arg`` (``image``,
                                            ``weights0`` …; on the board: in that argument's
                                            memory bank); returns its device address
``write(addr, data)`` / ``read(addr, n)``   device memory (bulk, no bus cycles)
``reg_write(off, value)`` / ``reg_read(off)``   the core's AXI4-Lite registers (:class:`Reg`)
``start()``                                 ap_start (fails if a run is in progress)
``wait(timeout)``                           until ap_done; :class:`DeviceTimeout` on expiry

A timeout names the core's status registers (:class:`CoreStatus`) and how to raise the limit;
bus or core errors raise :class:`DeviceError`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..isa import (
    CTRL_DONE,
    CTRL_IDLE,
    CTRL_READY,
    CTRL_START,
    DESCRIPTOR_BYTES,
    ERROR_DOCS,
    MAX_WEIGHT_PORTS,
    BuildLimits,
    ErrorCode,
    Instr,
    Op,
    Reg,
    Regions,
    UnknownOpcode,
)
from ..isa.layout import check_program
from ..isa.registers import REGISTER_MAP, Access, build_register_values
from .program import CoreFault, Interpreter

__all__ = [
    "CTRL_DONE", "CTRL_IDLE", "CTRL_READY", "CTRL_START", "CoreStatus", "Device", "DeviceError",
    "DeviceTimeout", "FlatAllocator", "ModelDevice", "Reg", "read_status",
    "timeout_error",
]


class DeviceError(RuntimeError):
    """The bus or the core reported an error; the message names it and what to check."""


class DeviceTimeout(DeviceError, TimeoutError):
    """A run did not finish within its budget; the message holds the core's status registers."""

    def __init__(self, message: str, status: CoreStatus | None = None):
        super().__init__(message)
        self.status = status


class Device(Protocol):
    """A core plus its memory, simulated or real (see the module docstring)."""

    def alloc(self, nbytes: int, arg: str) -> int:
        """A buffer of ``nbytes`` for kernel argument ``arg``; returns its device address."""

    def write(self, addr: int, data: bytes) -> None:
        """Copy ``data`` into device memory at byte address ``addr``."""

    def read(self, addr: int, n: int) -> bytes:
        """Read ``n`` bytes of device memory at ``addr``."""

    def reg_write(self, offset: int, value: int) -> None:
        """Write a 32-bit register (:class:`Reg`) over AXI4-Lite."""

    def reg_read(self, offset: int) -> int:
        """Read a 32-bit register over AXI4-Lite (reading CTRL clears ap_done)."""

    def start(self) -> None:
        """Set ap_start; raise :class:`DeviceError` when the core is still running."""

    def wait(self, timeout: float | None = None) -> None:
        """Return when the run has finished (ap_done); raise :class:`DeviceTimeout` after
        ``timeout`` seconds (``None``: the device's default)."""


class FlatAllocator:
    """Buffers in one flat memory (the simulated DRAM): 4 KiB aligned, from ``start`` up.

    There is one buffer per kernel argument, as on the board: allocating again for the same
    argument replaces its buffer (in place when the new size fits)."""

    ALIGN = 4096

    def __init__(self, mem_bytes: int, start: int = 0x1000):
        self.mem_bytes = mem_bytes
        self.next = start
        self.buffers: dict[str, tuple[int, int]] = {}  # arg → (address, bytes)

    def alloc(self, nbytes: int, arg: str) -> int:
        if nbytes < 0:
            raise ValueError(f"buffer size must be ≥ 0, not {nbytes}")
        if arg in self.buffers and nbytes <= self.buffers[arg][1]:
            return self.buffers[arg][0]
        addr = self.next + (-self.next % self.ALIGN)
        if addr + nbytes > self.mem_bytes:
            raise DeviceError(f"no room for the {nbytes}-byte buffer {arg!r}: the device has "
                              f"{self.mem_bytes} bytes and {addr} are in use; create the device "
                              "with a larger mem_bytes")
        self.next = addr + max(nbytes, 1)
        self.buffers[arg] = (addr, nbytes)
        return addr


@dataclass(frozen=True)
class CoreStatus:
    """A snapshot of the control and status registers, decoded."""

    ctrl: int
    status: int
    cycles: int
    error_info: int = 0

    @property
    def pc(self) -> int:
        return self.status & 0xFFFF

    @property
    def opcode(self) -> int:
        return (self.status >> 16) & 0xFF

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
        try:
            what = ERROR_DOCS[ErrorCode(self.error)]
        except ValueError:
            what = "unknown error code"
        info = f" ERROR_INFO={self.error_info:#x}" if self.error_info else ""
        return (f"CTRL={self.ctrl:#x} ({flags}); STATUS={self.status:#010x} (pc={self.pc} "
                f"opcode={self.opcode} {op} busy={int(self.busy)} error={self.error}: {what})"
                f"{info}; CYCLES={self.cycles}")


def read_status(device: Device) -> CoreStatus:
    """Read CTRL, STATUS, ERROR_INFO and CYCLES (note: reading CTRL clears a pending ap_done)."""
    return CoreStatus(
        ctrl=device.reg_read(Reg.CTRL), status=device.reg_read(Reg.STATUS),
        cycles=device.reg_read(Reg.CYCLES_LO) | device.reg_read(Reg.CYCLES_HI) << 32,
        error_info=device.reg_read(Reg.ERROR_INFO))


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


_WRITABLE = {off for reg in REGISTER_MAP if reg.access in (Access.RW,) for _, off in reg.words
             if reg.port is None or reg.port == "ctl" or reg.port < MAX_WEIGHT_PORTS}


class ModelDevice:
    """A :class:`Device` whose core is the interpreter (:class:`~nsllm.host.program.Interpreter`).

    It keeps the register map of the real core, executes the program at PROG_OFFSET of the image
    region in NumPy on :meth:`start` — with the same descriptor checks and error codes as the
    core — and fills TOKEN_OUT and the counters like the core does, so the runtime and the
    generator can be tested without RTL. CYCLES holds an *estimate*: the busiest port's bytes
    divided by the port width (the memory-bound ideal), not a measurement.

    Parameters
    ----------
    build : BuildLimits
        The core build this device pretends to be (answers the BUILD_* registers).
    mem_bytes : int
        Device memory size.
    """

    name = "model"

    def __init__(self, build: BuildLimits, mem_bytes: int = 1 << 24):
        if mem_bytes <= 0:
            raise ValueError(f"mem_bytes must be positive, not {mem_bytes}")
        self.build = build
        self.mem = bytearray(mem_bytes)
        self._alloc = FlatAllocator(mem_bytes)
        self.scratch = np.zeros(build.scratch_entries, dtype=np.int64)  # persists across runs
        self.sla_state = np.zeros((build.max_sla_layers, build.sla_slot_entries), dtype=np.int64)
        self.regs = {r: 0 for r in Reg}
        for name, value in build_register_values(build).items():
            self.regs[Reg[name]] = value
        self.ctrl_done = False
        self._interpreter: Interpreter | None = None
        self._key = None
        self.seconds = 0.0

    def _check_range(self, addr: int, n: int) -> None:
        if addr < 0 or n < 0 or addr + n > len(self.mem):
            raise DeviceError(f"device memory access [{addr:#x}, {addr + n:#x}) is outside the "
                              f"device's {len(self.mem)} bytes; create the device with a larger "
                              "mem_bytes")

    def alloc(self, nbytes: int, arg: str) -> int:
        return self._alloc.alloc(nbytes, arg)

    def write(self, addr: int, data: bytes) -> None:
        self._check_range(addr, len(data))
        self.mem[addr: addr + len(data)] = data
        self._interpreter = None  # its copy of memory and its unpacked weights are stale

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
        elif offset in _WRITABLE:
            self.regs[Reg(offset)] = value
        # writes to read-only registers and CACHE_FLUSH (no cache here) change nothing

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

    def _addr(self, name: str) -> int:
        return self.regs[Reg[f"{name}_LO"]] | self.regs[Reg[f"{name}_HI"]] << 32

    def _views(self) -> tuple[bytes, list[bytes]]:
        """The image region and the weight regions as the registers place them."""
        image_bytes, region_bytes = self.regs[Reg.IMAGE_BYTES], self.regs[Reg.REGION_BYTES]
        spans = [(self._addr("IMAGE"), image_bytes)] + [
            (self._addr(f"W{k}"), region_bytes) for k in range(self.build.weight_ports)]
        if any(a + n > len(self.mem) for a, n in spans):
            raise CoreFault(ErrorCode.AXI, 0, 0)  # reads beyond memory: the core sees SLVERR
        return (bytes(self.mem[spans[0][0]: spans[0][0] + image_bytes]),
                [bytes(self.mem[a: a + n]) for a, n in spans[1:]])

    def _program(self, image: bytes) -> list[Instr]:
        """The PROG_OPS descriptors at PROG_OFFSET, decoded and checked like the sequencer."""
        offset, n_ops = self.regs[Reg.PROG_OFFSET], self.regs[Reg.PROG_OPS]
        if check_program(offset, n_ops, self.build, Regions(len(image), 0)):
            raise CoreFault(ErrorCode.PROGRAM, 0, 0)
        ops = []
        for k in range(n_ops):
            raw = image[offset + k * DESCRIPTOR_BYTES: offset + (k + 1) * DESCRIPTOR_BYTES]
            try:
                ins = Instr.unpack(raw)
            except UnknownOpcode as e:
                # the core decodes descriptor k only when it reaches it: earlier ones have run
                ops.append(e)
                return ops
            ops.append(ins)
            if ins.op == Op.END:
                return ops
        return ops  # no END: the interpreter stops with PROGRAM at pc = n_ops

    def _run(self) -> None:
        t0 = time.perf_counter()
        status = 0
        try:
            image, regions = self._views()
            program = self._program(image)
            key = (self._addr("IMAGE"), tuple(self._addr(f"W{k}") for k in
                                              range(self.build.weight_ports)),
                   len(image), self.regs[Reg.REGION_BYTES])
            if self._interpreter is None or self._key != key:
                self._interpreter = Interpreter(image, regions, self.build)
                self._interpreter.scratch = self.scratch
                self._interpreter.sla_state = self.sla_state  # on-chip: survives new images
                self._key = key
            interp = self._interpreter
            runnable = [ins for ins in program if isinstance(ins, Instr)]
            try:
                stats = interp.run(runnable, token=self.regs[Reg.TOKEN_IN])
            except CoreFault as fault:
                if fault.code == ErrorCode.PROGRAM and len(runnable) < len(program):
                    bad = program[len(runnable)]  # the unknown opcode comes first
                    raise CoreFault(ErrorCode.OPCODE, len(runnable), bad.opcode) from None
                raise
            bus = len(program) * DESCRIPTOR_BYTES + stats.table_bytes + stats.weight_bytes
            self.regs.update({
                Reg.TOKEN_OUT: interp.token, Reg.WEIGHT_BYTES: stats.weight_bytes,
                Reg.BUS_BYTES: bus, Reg.SPIKES_NONZERO: stats.spikes_nonzero,
                Reg.SPIKES_TOTAL: stats.spikes_total, Reg.ERROR_INFO: 0,
            })
            for k, nbytes in enumerate(stats.port_bytes):
                self.regs[Reg[f"PORT{k}_BYTES"]] = nbytes
            busiest = max([*stats.port_bytes, 0])
            ctl = bus - stats.weight_bytes
            cycles = -(-max(busiest, ctl) // self.build.port_bytes)
            self.regs[Reg.WEIGHT_CYCLES] = -(-busiest // self.build.port_bytes)
            status = (len(program) - 1) & 0xFFFF
        except CoreFault as fault:
            cycles = 0
            status = fault.pc & 0xFFFF | (fault.opcode & 0xFF) << 16 | int(fault.code) << 28
        self.regs[Reg.CYCLES_LO] = cycles & 0xFFFFFFFF
        self.regs[Reg.CYCLES_HI] = cycles >> 32
        self.regs[Reg.STATUS] = status
        self.ctrl_done = True
        self.regs[Reg.ISR] |= self.regs[Reg.IER] & 1
        self.seconds = time.perf_counter() - t0


