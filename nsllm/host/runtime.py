"""Run a model image on any :class:`~nsllm.host.device.Device`: load, reset, one program per token.

The host checks the image against the build the core reports in its BUILD_* registers, allocates
one buffer for the image region (kernel argument ``image``) and one per weight region
(``weights0`` …, each in its own memory bank on the board), writes them, reads them back and
checks their CRCs, and points the IMAGE / W<k> / IMAGE_BYTES / REGION_BYTES registers at them.
It runs the reset program once per sequence (clears the recurrent state), then per token writes
TOKEN_IN and PROG_OFFSET/PROG_OPS, starts, waits, and reads TOKEN_OUT (the on-device greedy
argmax) and the counters. Logits, when the host wants to sample, come through the scratch
readback window (SCRATCH_ADDR / SCRATCH_DATA) from the region the ARGMAX descriptor reads.

Example
-------
>>> image = build_image(weights, port_bytes=8, weight_ports=3)              # doctest: +SKIP
>>> device = ModelDevice(limits)  # or SimDevice(core_verilog(params))      # doctest: +SKIP
>>> backend = CoreBackend(CoreRunner(device, image))                        # doctest: +SKIP
>>> Generator(backend, tokenizer).generate("Hello", 16).text                # doctest: +SKIP
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import numpy as np

from ..isa import ISA_VERSION, BuildLimits, Instr, Op, Reg
from ..isa.registers import ISA_MAGIC
from ..model.numerics import from_fixed
from .device import Device, DeviceError, DeviceTimeout, read_status
from .image import ImageError, ModelImage, verify_regions

__all__ = ["CoreBackend", "CoreRunner", "Divergence", "LoadedImage", "TokenCounters", "load_image",
           "locate_divergence", "read_build_limits", "record_spikes"]

#: Bytes after the image in its buffer for the one-instruction programs of :func:`_stepped`.
DEBUG_SLOT = 128


def read_build_limits(device: Device) -> BuildLimits:
    """The maxima of the core build behind ``device``, from its BUILD_* registers."""
    r = device.reg_read
    isa = r(Reg.BUILD_ISA)
    if isa >> 16 != ISA_MAGIC:
        raise DeviceError(f"BUILD_ISA reads {isa:#x}, not an NSLLM core's 0x{ISA_MAGIC:04X}xxxx: "
                          "the register slave is not answering as an NSLLM core (wrong bitstream "
                          "or base address?)")
    if isa & 0xFFFF != ISA_VERSION:
        raise DeviceError(f"the core implements instruction set version {isa & 0xFFFF}, this "
                          f"runtime version {ISA_VERSION}: rebuild the core (nsllm verilog / "
                          "nsllm build) or use the matching nsllm release")
    port_bytes = r(Reg.BUILD_PORT_BYTES)
    if port_bytes == 0 or port_bytes & (port_bytes - 1):
        raise DeviceError(f"BUILD_PORT_BYTES reads {port_bytes:#x}, not a power of two")
    return BuildLimits(
        port_bytes=port_bytes, max_vocab=r(Reg.BUILD_MAX_VOCAB), max_hidden=r(Reg.BUILD_MAX_HIDDEN),
        max_intermediate=r(Reg.BUILD_MAX_INTER), max_layers=r(Reg.BUILD_MAX_LAYERS),
        max_D=r(Reg.BUILD_MAX_D), scratch_entries=r(Reg.BUILD_SCRATCH),
        acc_bits=r(Reg.BUILD_ACC_BITS), weight_ports=r(Reg.BUILD_WEIGHT_PORTS),
        vector=r(Reg.BUILD_VECTOR), packings=BuildLimits.packings_from_bits(r(Reg.BUILD_PACKINGS)),
        max_ops=r(Reg.BUILD_MAX_OPS), max_sla_layers=r(Reg.BUILD_SLA_SLOTS),
        max_head_dim=r(Reg.BUILD_SLA_HEAD), sla_lanes=r(Reg.BUILD_SLA_LANES))


@dataclass
class LoadedImage:
    """An image in device memory: where its buffers, programs and logits are."""

    image: ModelImage
    image_addr: int  #: device address of the image region
    region_addrs: list[int]  #: device address of each weight region
    reset_offset: int  #: offset of the reset program in the image region
    reset_ops: int  #: its descriptors (PROG_OPS)
    token_offset: int
    token_ops: int
    logits_addr: int  #: scratchpad entry of logit 0 (the ARGMAX descriptor's source)
    vocab: int
    build: BuildLimits

    @property
    def debug_offset(self) -> int:
        return self.image.image_bytes


def _write_regs64(device: Device, name: str, value: int) -> None:
    device.reg_write(Reg[f"{name}_LO"], value & 0xFFFFFFFF)
    device.reg_write(Reg[f"{name}_HI"], value >> 32)


def load_image(device: Device, image: ModelImage, verify: bool = True) -> LoadedImage:
    """Check ``image`` against the device's build, place its regions in device memory, point
    the core's region registers at them and (``verify``) read them back and check their CRCs.

    Raises
    ------
    ImageError
        When the model exceeds the build's maxima (naming each and the flag to raise), or was
        built for another port width, port count or packing.
    DeviceError
        When the read-back copy does not match the image's checksums.
    """
    build = read_build_limits(device)
    image.check_fits(build)
    if len(image.regions) != image.weight_ports:
        raise ImageError("the image has no weight regions (parsed without them?): load it with "
                         "build_image or parse_image(raw, regions)")
    argmax = [ins for ins in image.token if ins.op == Op.ARGMAX]
    if len(argmax) != 1:
        raise ImageError(f"the token program has {len(argmax)} ARGMAX descriptors, expected one; "
                         "rebuild the image")
    image_addr = device.alloc(image.image_bytes + DEBUG_SLOT, "image")
    device.write(image_addr, image.raw)
    region_addrs = []
    for k, region in enumerate(image.regions):
        addr = device.alloc(len(region), f"weights{k}")
        device.write(addr, region)
        region_addrs.append(addr)
    _write_regs64(device, "IMAGE", image_addr)
    for k, addr in enumerate(region_addrs):
        _write_regs64(device, f"W{k}", addr)
    device.reg_write(Reg.IMAGE_BYTES, image.image_bytes + DEBUG_SLOT)
    device.reg_write(Reg.REGION_BYTES, image.region_bytes)
    device.reg_write(Reg.CACHE_FLUSH, 1)  # programs at these offsets may have changed
    loaded = LoadedImage(image, image_addr, region_addrs, image.reset_offset, len(image.reset),
                         image.token_offset, len(image.token), argmax[0].src_a, argmax[0].n,
                         build)
    if verify:
        verify_image(device, loaded)
    return loaded


def verify_image(device: Device, loaded: LoadedImage) -> None:
    """Read the image's buffers back from the device and check them against its CRCs; raise
    :class:`DeviceError` naming the damaged region."""
    image = loaded.image
    raw = device.read(loaded.image_addr, image.image_bytes)
    regions = [device.read(a, image.region_bytes) for a in loaded.region_addrs]
    bad = verify_regions(image, raw, regions)
    if bad:
        raise DeviceError(f"the model image in device memory is damaged ({', '.join(bad)} does "
                          "not match its checksum): reload it (load_image) and, if it happens "
                          "again, check the device memory")


@dataclass
class TokenCounters:
    """What the core reported for one program run."""

    cycles: int
    weight_bytes: int  #: bytes of weight columns fetched (only columns that spiked)
    bus_bytes: int  #: all bytes read over the AXI master
    spikes_nonzero: int
    spikes_total: int
    seconds: float  #: host wall-clock time of the run (start to done)
    port_bytes: list[int] = field(default_factory=list)  #: weight bytes per weight port
    weight_cycles: int = 0  #: cycles in which a weight port delivered a beat

    @property
    def firing_rate(self) -> float:
        return self.spikes_nonzero / self.spikes_total if self.spikes_total else 0.0


class CoreRunner:
    """Runs a loaded image's programs on a device.

    Parameters
    ----------
    device : Device
    image : ModelImage
        Loaded on construction (see :func:`load_image`).
    timeout : float, optional
        Wall-clock budget per run (default: the device's).
    """

    def __init__(self, device: Device, image: ModelImage, timeout: float | None = None):
        self.device = device
        self.timeout = timeout
        self.loaded = load_image(device, image)

    @property
    def vocab(self) -> int:
        return self.loaded.vocab

    def verify_image(self) -> None:
        """Read the image back from the device and check its CRCs (see :func:`verify_image`)."""
        verify_image(self.device, self.loaded)

    def _where(self, prog_offset: int, pc: int) -> str:
        """Which descriptor ``pc`` of the program at ``prog_offset`` is, with its layer name."""
        loaded = self.loaded
        if prog_offset == loaded.reset_offset:
            which, program = "reset", loaded.image.reset
        elif prog_offset == loaded.token_offset:
            which, program = "token", loaded.image.token
        else:
            return f"descriptor {pc} of the debug program at offset {prog_offset:#x}"
        if pc >= len(program):
            return f"pc {pc} is beyond the {len(program)} descriptors of the {which} program"
        ins = program[pc]
        return (f"descriptor {pc} of the {which} program is {ins.op.name}"
                + (f" ({ins.name})" if ins.name else ""))

    def _run(self, prog_offset: int, ops: int, token: int = 0) -> TokenCounters:
        dev = self.device
        dev.reg_write(Reg.PROG_OFFSET, prog_offset)
        dev.reg_write(Reg.PROG_OPS, ops)
        dev.reg_write(Reg.TOKEN_IN, token)
        t0 = time.perf_counter()
        dev.start()
        try:
            dev.wait(self.timeout)
        except DeviceTimeout as exc:
            if exc.status is None:
                raise
            raise DeviceTimeout(f"{exc} ({self._where(prog_offset, exc.status.pc)})",
                                exc.status) from None
        seconds = time.perf_counter() - t0
        status = read_status(dev)
        if status.error:
            raise DeviceError(f"the core stopped with an error running the program at offset "
                              f"{prog_offset:#x} ({self._where(prog_offset, status.pc)}): "
                              f"{status.describe()}")
        ports = self.loaded.build.weight_ports
        return TokenCounters(
            cycles=status.cycles, weight_bytes=dev.reg_read(Reg.WEIGHT_BYTES),
            bus_bytes=dev.reg_read(Reg.BUS_BYTES), spikes_nonzero=dev.reg_read(Reg.SPIKES_NONZERO),
            spikes_total=dev.reg_read(Reg.SPIKES_TOTAL), seconds=seconds,
            port_bytes=[dev.reg_read(Reg[f"PORT{k}_BYTES"]) for k in range(ports)],
            weight_cycles=dev.reg_read(Reg.WEIGHT_CYCLES))

    def reset(self) -> TokenCounters:
        """Run the reset program: clear the recurrent state (start of a sequence)."""
        return self._run(self.loaded.reset_offset, self.loaded.reset_ops)

    def run_token(self, token: int) -> tuple[int, TokenCounters]:
        """Run the token program on ``token``; return the core's next token and the counters."""
        if not 0 <= token < self.vocab:
            raise ValueError(f"token {token} is outside the model's vocabulary [0, {self.vocab})")
        counters = self._run(self.loaded.token_offset, self.loaded.token_ops, token)
        return self.device.reg_read(Reg.TOKEN_OUT), counters

    def read_logits(self) -> np.ndarray:
        """The last run's logits (ACT fixed point, int64) through the scratch readback window."""
        return _scratch(self.device, self.loaded.logits_addr, self.vocab)


@dataclass
class RunSummary:
    """Totals over the token runs of a :class:`CoreBackend` since its last reset."""

    tokens: int = 0
    cycles: int = 0
    weight_bytes: int = 0
    bus_bytes: int = 0
    spikes_nonzero: int = 0
    spikes_total: int = 0
    weight_cycles: int = 0
    port_bytes: list[int] = field(default_factory=list)
    per_token: list[TokenCounters] = field(default_factory=list)

    def add(self, c: TokenCounters) -> None:
        self.tokens += 1
        self.weight_cycles += c.weight_cycles
        if len(self.port_bytes) < len(c.port_bytes):
            self.port_bytes += [0] * (len(c.port_bytes) - len(self.port_bytes))
        for k, b in enumerate(c.port_bytes):
            self.port_bytes[k] += b
        self.cycles += c.cycles
        self.weight_bytes += c.weight_bytes
        self.bus_bytes += c.bus_bytes
        self.spikes_nonzero += c.spikes_nonzero
        self.spikes_total += c.spikes_total
        self.per_token.append(c)

    def as_dict(self) -> dict:
        n = max(self.tokens, 1)
        return {
            "cycles": self.cycles, "cycles_per_token": self.cycles / n,
            "bytes_fetched_per_token": self.bus_bytes / n,
            "weight_bytes_per_token": self.weight_bytes / n,
            "weight_bytes_per_port": [b / n for b in self.port_bytes],
            "firing_rate": self.spikes_nonzero / self.spikes_total if self.spikes_total else 0.0,
            "non_weight_cycle_fraction": (1 - self.weight_cycles / self.cycles
                                          if self.cycles else 0.0),
        }


class CoreBackend:
    """The :class:`~nsllm.host.generator.Backend` protocol over a :class:`CoreRunner`.

    Parameters
    ----------
    runner : CoreRunner
    read_logits : bool
        True: :meth:`feed` returns the real logits read through the scratch window (needed for
        sampling, ``temperature > 0``). False (default): it returns a vector with 1 at the core's
        TOKEN_OUT and 0 elsewhere, so the generator's greedy pick equals the device's argmax and
        no logits cross the register bus.
    name : str
        Reported by the generator (``"sim"``, ``"model"``, ``"xrt"``).
    """

    def __init__(self, runner: CoreRunner, read_logits: bool = False, name: str | None = None):
        self.runner = runner
        self.read_logits = read_logits
        self.name = name or getattr(runner.device, "name", "core")
        self.summary = RunSummary()

    def reset(self) -> None:
        self.runner.reset()
        self.summary = RunSummary()

    def feed(self, tokens: list[int]) -> np.ndarray:
        if not tokens:
            raise ValueError("feed() needs at least one token")
        for tok in tokens:
            next_token, counters = self.runner.run_token(int(tok))
            self.summary.add(counters)
        if self.read_logits:
            return self.runner.read_logits()
        onehot = np.zeros(self.runner.vocab, dtype=np.int64)
        onehot[next_token] = 1
        return onehot

    def to_float(self, logits: np.ndarray) -> np.ndarray:
        """Fixed-point logits to float, for sampling (only meaningful with ``read_logits``)."""
        if not self.read_logits:
            raise ValueError("sampling needs the core's logits: create CoreBackend(..., "
                             "read_logits=True) when temperature > 0")
        return from_fixed(logits)


@dataclass
class Divergence:
    """Where the core first differs from the golden sequencer (:class:`Interpreter`)."""

    token_index: int  #: position in the fed sequence
    pc: int  #: descriptor of the token program
    name: str  #: its layer and unit, e.g. ``layers.2.attn.o_proj``
    op: str
    index: int  #: element of the instruction's output
    expected: int
    got: int

    def __str__(self) -> str:
        m = re.match(r"^layers\.(\d+)\.(.+)$", self.name or "")
        where = f"layer {m.group(1)}, {m.group(2)}" if m else (self.name or self.op)
        return (f"token {self.token_index}: {where} ({self.op}, descriptor {self.pc}), index "
                f"{self.index}: expected {self.expected}, got {self.got}")


def _scratch(device: Device, start: int, n: int) -> np.ndarray:
    out = np.empty(n, dtype=np.int64)
    for k in range(n):
        device.reg_write(Reg.SCRATCH_ADDR, start + k)
        out[k] = device.reg_read(Reg.SCRATCH_DATA)
    return np.where(out >= 1 << 31, out - (1 << 32), out)  # the register is sign-extended


def _stepped(runner: CoreRunner, tokens: list[int]):
    """Run ``tokens`` from a reset one instruction at a time; yield (t, pc, instr) after each.

    Each instruction runs as a two-descriptor program [instruction, END] written into the debug
    slot after the image, so the scratchpad can be read between any two instructions.
    """
    loaded, dev = runner.loaded, runner.device
    image = loaded.image
    runner.reset()
    for t, tok in enumerate(tokens):
        for pc, ins in enumerate(image.token[:-1]):
            dev.write(loaded.image_addr + loaded.debug_offset, ins.pack() + Instr(Op.END).pack())
            dev.reg_write(Reg.CACHE_FLUSH, 1)  # same offset, new program
            runner._run(loaded.debug_offset, 2, tok)
            yield t, pc, ins


def locate_divergence(runner: CoreRunner, tokens: list[int]) -> Divergence | None:
    """Find the first instruction at which the core's scratchpad differs from the interpreter's.

    Replays ``tokens`` from a reset on the core and on :class:`~nsllm.host.program.Interpreter`
    one instruction at a time and compares every instruction's output region (the next token for
    ARGMAX). Slow (a register read per element), meant for the rare mismatch. Returns ``None``
    when the two agree throughout.
    """
    from .program import Interpreter

    image, dev = runner.loaded.image, runner.device
    interp = Interpreter(image.raw, image.regions, runner.loaded.build)
    interp.run(image.reset)
    for t, pc, ins in _stepped(runner, tokens):
        interp.run([ins, Instr(Op.END)], token=tokens[t])
        if ins.op == Op.ARGMAX:
            got, want = dev.reg_read(Reg.TOKEN_OUT), interp.token
            if got != want:
                return Divergence(t, pc, ins.name, ins.op.name, 0, want, got)
            continue
        n = ins.m if ins.op == Op.LINEAR else ins.n
        got = _scratch(dev, ins.dst, n)
        want = interp.scratch[ins.dst: ins.dst + n]
        diff = np.flatnonzero(got != want)
        if diff.size:
            k = int(diff[0])
            return Divergence(t, pc, ins.name, ins.op.name, k, int(want[k]), int(got[k]))
    return None


def record_spikes(runner: CoreRunner, tokens: list[int]) -> dict[str, np.ndarray]:
    """Spike counts of every ternary layer's input as the core computed them, per token.

    Reads the scratchpad's spike region (where every LINEAR leaves a copy of its input counts)
    after each LINEAR instruction. Returns ``{layer: int array (tokens, in_features)}``, the
    layout of :class:`nsllm.analysis.recording.SpikeRecording`.
    """
    rows: dict[str, list[np.ndarray]] = {}
    for _, _, ins in _stepped(runner, tokens):
        if ins.op == Op.LINEAR:
            rows.setdefault(ins.name, []).append(_scratch(runner.device, ins.src_b, ins.n))
    return {name: np.stack(r) for name, r in rows.items()}
