"""Run a model image on any :class:`~nsllm.host.device.Device`: load, reset, one program per token.

The host writes the image into device DRAM at its base address (after checking it against the
build maxima the core reports in its BUILD_* registers), runs the reset program once per sequence
(clears the recurrent state), then per token writes TOKEN_IN, points PROG_ADDR at the token
program, starts, waits, and reads TOKEN_OUT (the on-device greedy argmax) and the counters.
Logits, when the host wants to sample, come through the scratch readback window
(SCRATCH_ADDR / SCRATCH_DATA) from the scratch region the ARGMAX descriptor reads.

Example
-------
>>> image = build_image(weights, port_bytes=8)                       # doctest: +SKIP
>>> device = ModelDevice(limits)  # or SimDevice(NSLLMCore(params))  # doctest: +SKIP
>>> backend = CoreBackend(CoreRunner(device, image))                 # doctest: +SKIP
>>> Generator(backend, tokenizer).generate("Hello", 16).text         # doctest: +SKIP
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import numpy as np

from ..model.numerics import from_fixed
from .device import Device, DeviceError, DeviceTimeout, Reg, read_status
from .image import HEADER, BuildLimits, ImageError, ModelImage
from .program import Op

__all__ = ["CoreBackend", "CoreRunner", "Divergence", "LoadedImage", "TokenCounters", "load_image",
           "locate_divergence", "record_spikes",
           "read_build_limits"]


def read_build_limits(device: Device, packings: tuple[str, ...] = ("2bit",)) -> BuildLimits:
    """The maxima of the core build behind ``device``, from its BUILD_* registers.

    ``packings`` is not in the register map (v1): the caller states which the build decodes.
    """
    r = device.reg_read
    port_bytes = r(Reg.BUILD_PORT_BYTES)
    if port_bytes == 0 or port_bytes & (port_bytes - 1):
        raise DeviceError(f"BUILD_PORT_BYTES reads {port_bytes:#x}, not a power of two: the "
                          "register slave is not answering as an NSLLM core (wrong bitstream "
                          "or base address?)")
    return BuildLimits(
        port_bytes=port_bytes, max_vocab=r(Reg.BUILD_MAX_VOCAB), max_hidden=r(Reg.BUILD_MAX_HIDDEN),
        max_intermediate=r(Reg.BUILD_MAX_INTER), max_layers=r(Reg.BUILD_MAX_LAYERS),
        max_D=r(Reg.BUILD_MAX_D), scratch_entries=r(Reg.BUILD_SCRATCH),
        acc_bits=r(Reg.BUILD_ACC_BITS), packings=packings)


@dataclass
class LoadedImage:
    """An image in device DRAM: where its programs and its logits are."""

    image: ModelImage
    base: int
    reset_addr: int  #: DRAM address of the reset program
    reset_ops: int  #: its descriptors (PROG_OPS)
    token_addr: int  #: DRAM address of the per-token program
    token_ops: int
    logits_addr: int  #: scratchpad entry of logit 0 (the ARGMAX descriptor's source)
    vocab: int
    build: BuildLimits


def load_image(device: Device, image: ModelImage, base: int | None = None,
               packings: tuple[str, ...] = ("2bit",)) -> LoadedImage:
    """Check ``image`` against the device's build and write it into DRAM at ``base``.

    Raises
    ------
    ImageError
        When the model exceeds the build's maxima (naming each and the flag to raise), or was
        built for another base address or port width.
    """
    base = image.base if base is None else base
    if base != image.base:
        raise ImageError(f"the image was built for DRAM address {image.base:#x}, not {base:#x} "
                         "(descriptors hold absolute addresses): rebuild it with "
                         f"build_image(..., base={base:#x})")
    build = read_build_limits(device, packings)
    image.check_fits(build)
    if base % build.port_bytes:
        raise ImageError(f"base {base:#x} is not aligned to the core's {build.port_bytes}-byte "
                         "words; place the image on a word boundary")
    fields = HEADER.unpack(image.raw[: HEADER.size])
    reset_off, token_off = fields[14], fields[16]
    argmax = [ins for ins in image.token if ins.op == Op.ARGMAX]
    if len(argmax) != 1:
        raise ImageError(f"the token program has {len(argmax)} ARGMAX descriptors, expected one; "
                         "rebuild the image")
    max_ops = device.reg_read(Reg.BUILD_MAX_OPS)
    longest = max(len(image.reset), len(image.token))
    if longest > max_ops:
        raise ImageError(f"the token program has {longest} descriptors, the core's program "
                         f"cache holds {max_ops} (BUILD_MAX_OPS): rebuild the core with a larger "
                         "program cache (CoreParams.max_ops) or for more layers")
    device.write(base, image.raw)
    device.reg_write(Reg.CACHE_FLUSH, 1)  # programs at these addresses may have changed
    return LoadedImage(image, base, base + reset_off, len(image.reset), base + token_off,
                       len(image.token), argmax[0].src_a, argmax[0].n, build)


@dataclass
class TokenCounters:
    """What the core reported for one program run."""

    cycles: int
    weight_bytes: int  #: bytes of weight columns fetched (only columns that spiked)
    bus_bytes: int  #: all bytes read over the AXI master
    spikes_nonzero: int
    spikes_total: int
    seconds: float  #: host wall-clock time of the run (start to done)

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
    base : int, optional
        DRAM address (default: the image's own base).
    timeout : float, optional
        Wall-clock budget per run (default: the device's).
    packings : tuple of str
        Weight packings the core build decodes.
    """

    def __init__(self, device: Device, image: ModelImage, base: int | None = None,
                 timeout: float | None = None, packings: tuple[str, ...] = ("2bit",)):
        self.device = device
        self.timeout = timeout
        self.loaded = load_image(device, image, base, packings)

    @property
    def vocab(self) -> int:
        return self.loaded.vocab

    def _where(self, prog_addr: int, pc: int) -> str:
        """Which descriptor ``pc`` of the program at ``prog_addr`` is, with its layer name."""
        loaded = self.loaded
        which, program = (("reset", loaded.image.reset) if prog_addr == loaded.reset_addr
                          else ("token", loaded.image.token))
        if pc >= len(program):
            return f"pc {pc} is beyond the {len(program)} descriptors of the {which} program"
        ins = program[pc]
        return (f"descriptor {pc} of the {which} program is {ins.op.name}"
                + (f" ({ins.name})" if ins.name else ""))

    def _run(self, prog_addr: int, ops: int, token: int = 0) -> TokenCounters:
        dev = self.device
        dev.reg_write(Reg.PROG_ADDR_LO, prog_addr & 0xFFFFFFFF)
        dev.reg_write(Reg.PROG_ADDR_HI, prog_addr >> 32)
        dev.reg_write(Reg.PROG_OPS, ops)
        dev.reg_write(Reg.TOKEN_IN, token)
        t0 = time.perf_counter()
        dev.start()
        try:
            dev.wait(self.timeout)
        except DeviceTimeout as exc:
            if exc.status is None:
                raise
            raise DeviceTimeout(f"{exc} ({self._where(prog_addr, exc.status.pc)})",
                                exc.status) from None
        seconds = time.perf_counter() - t0
        status = read_status(dev)
        if status.error:
            raise DeviceError(f"the core stopped with an error running the program at "
                              f"{prog_addr:#x} ({self._where(prog_addr, status.pc)}): "
                              f"{status.describe()}; an unknown opcode means the "
                              "image and the core disagree on the instruction set (rebuild both), "
                              "an AXI error an address outside DRAM, a bad program a wrong "
                              "PROG_OPS or an image built for another core")
        return TokenCounters(
            cycles=status.cycles, weight_bytes=dev.reg_read(Reg.WEIGHT_BYTES),
            bus_bytes=dev.reg_read(Reg.BUS_BYTES), spikes_nonzero=dev.reg_read(Reg.SPIKES_NONZERO),
            spikes_total=dev.reg_read(Reg.SPIKES_TOTAL), seconds=seconds)

    def reset(self) -> TokenCounters:
        """Run the reset program: clear the recurrent state (start of a sequence)."""
        return self._run(self.loaded.reset_addr, self.loaded.reset_ops)

    def run_token(self, token: int) -> tuple[int, TokenCounters]:
        """Run the token program on ``token``; return the core's next token and the counters."""
        if not 0 <= token < self.vocab:
            raise ValueError(f"token {token} is outside the model's vocabulary [0, {self.vocab})")
        counters = self._run(self.loaded.token_addr, self.loaded.token_ops, token)
        return self.device.reg_read(Reg.TOKEN_OUT), counters

    def read_logits(self) -> np.ndarray:
        """The last run's logits (ACT fixed point, int64) through the scratch readback window."""
        out = np.empty(self.vocab, dtype=np.int64)
        for k in range(self.vocab):
            self.device.reg_write(Reg.SCRATCH_ADDR, self.loaded.logits_addr + k)
            out[k] = self.device.reg_read(Reg.SCRATCH_DATA)
        return np.where(out >= 1 << 31, out - (1 << 32), out)  # the register is sign-extended


@dataclass
class RunSummary:
    """Totals over the token runs of a :class:`CoreBackend` since its last reset."""

    tokens: int = 0
    cycles: int = 0
    weight_bytes: int = 0
    bus_bytes: int = 0
    spikes_nonzero: int = 0
    spikes_total: int = 0
    per_token: list[TokenCounters] = field(default_factory=list)

    def add(self, c: TokenCounters) -> None:
        self.tokens += 1
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
            "firing_rate": self.spikes_nonzero / self.spikes_total if self.spikes_total else 0.0,
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
    return np.where(out >= 1 << 31, out - (1 << 32), out)


def _stepped(runner: CoreRunner, tokens: list[int]):
    """Run ``tokens`` from a reset one instruction at a time; yield (t, pc, instr) after each.

    Each instruction runs as a two-descriptor program [instruction, END] written after the
    image, so the scratchpad can be read between any two instructions.
    """
    from .program import Instr

    loaded, dev = runner.loaded, runner.device
    image = loaded.image
    debug_addr = loaded.base + image.total_bytes + (-image.total_bytes % 64)
    runner.reset()
    for t, tok in enumerate(tokens):
        for pc, ins in enumerate(image.token[:-1]):
            dev.write(debug_addr, ins.pack() + Instr(Op.END).pack())
            dev.reg_write(Reg.CACHE_FLUSH, 1)  # same address, new program
            runner._run(debug_addr, 2, tok)
            yield t, pc, ins


def locate_divergence(runner: CoreRunner, tokens: list[int]) -> Divergence | None:
    """Find the first instruction at which the core's scratchpad differs from the interpreter's.

    Replays ``tokens`` from a reset on the core and on :class:`~nsllm.host.program.Interpreter`
    (the sequencer's golden model) one instruction at a time and compares every instruction's
    output region (the next token for ARGMAX). Slow (a register read per element), meant for
    the rare mismatch. Returns ``None`` when the two agree throughout.
    """
    from .program import Instr, Interpreter

    image, dev = runner.loaded.image, runner.device
    interp = Interpreter(image.raw, image.scratch_entries, image.packing, base=runner.loaded.base)
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
