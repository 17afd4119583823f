"""cocotb testbench helpers for Amaranth stream ports, and payload packing for any simulator.

In the Verilog that ``amaranth.back.verilog`` writes, a port ``i_stream: In(stream.Signature(L))``
becomes three flat ports ``i_stream__payload`` (all of ``L`` packed into one vector, first field
in the low bits), ``i_stream__valid`` and ``i_stream__ready``; the clock and reset are ``clk`` and
``rst`` (synchronous, active high). :func:`pack` and :func:`unpack` convert between Python values
and that packed integer for any ``data.Layout``:

* a ``StructLayout`` ↔ a ``dict`` of its fields,
* an ``ArrayLayout`` ↔ a ``list`` of its elements,
* a plain shape ↔ an ``int`` (negative for signed shapes).

A cocotb test module (run by :func:`nsllm.sim.cocotb_runner.run_cocotb`):

.. code-block:: python

    import cocotb
    from nsllm.sim.streams import TB, StreamSource, StreamSink, dut_component, test_parameters

    @cocotb.test()
    async def random_words(dut):
        params = test_parameters()                 # the run_cocotb(parameters=...) dict
        model = dut_component()                    # the Amaranth object, for its layouts
        tb = TB(dut, "TritUnpacker", seed=params.get("seed", 0))
        source = tb.source("i_stream", model.i_stream.payload.shape(), valid_probability=0.7)
        sink = tb.sink("o_stream", model.o_stream.payload.shape(), ready_probability=0.6)
        await tb.reset()
        sink.expect(expected_beats)                # compared beat by beat, lane by lane
        source.send(input_beats)
        await sink.wait_for(len(expected_beats), timeout_cycles=10_000)

A mismatch raises :class:`StreamMismatch`: ``"TritUnpacker: cycle 812, beat 37, lane [5]:
expected 1, got -1"`` (the lane is the path into the payload, e.g. ``acc[1][5]``).

The same stream models exist for ``amaranth.sim`` (no Verilog, no external tools):

.. code-block:: python

    got = run_amaranth_stream(dut, input_beats, len(expected), setup=lambda ctx: ...,
                              valid_probability=0.7, ready_probability=0.7, seed=1)
    check_beats("TritUnpacker", got, expected)   # same mismatch message format

Protocol: both cocotb models act on the falling clock edge and sample the handshake in the read-only
phase just after it, i.e. exactly the values the DUT sees at the next rising edge. This is
simulator independent (Verilator runs value callbacks after evaluating the edge; Icarus before).
"""

from __future__ import annotations

import json
import os
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = [
    "pack", "unpack", "flatten", "StreamMismatch", "TB", "StreamSource", "StreamSink",
    "test_parameters", "dut_component", "compare_beat", "run_amaranth_stream", "check_beats",
]


# --- payload packing (pure Python; usable with any simulator) -----------------------------------
def _layout(shape) -> data.Layout | None:
    if isinstance(shape, data.Layout):
        return shape
    if isinstance(shape, type) and issubclass(shape, data.Struct | data.Union):
        return data.Layout.cast(shape)
    return None


def pack(shape, value) -> int:
    """Pack ``value`` (dict / list / int, nested like ``shape``) into the raw unsigned integer.

    Missing struct fields pack as zero; values are truncated to their field width (two's
    complement for negatives), as the hardware would see them.
    """
    layout = _layout(shape)
    if layout is None:
        width = Shape.cast(shape).width
        return int(value) & ((1 << width) - 1)
    raw = 0
    if isinstance(layout, data.ArrayLayout):
        elem_width = Shape.cast(layout.elem_shape).width
        values = list(value)
        if len(values) != layout.length:
            raise ValueError(f"array of {layout.length} elements expected, got {len(values)}")
        for i, v in enumerate(values):
            raw |= pack(layout.elem_shape, v) << (i * elem_width)
        return raw
    for key, fld in layout:
        if key in value:
            raw |= pack(fld.shape, value[key]) << fld.offset
    unknown = set(value) - {key for key, _ in layout}
    if unknown:
        raise KeyError(f"fields {sorted(unknown)} are not in the layout {layout!r}")
    return raw


def unpack(shape, raw: int):
    """Inverse of :func:`pack`: raw unsigned integer → dict / list / int."""
    layout = _layout(shape)
    if layout is None:
        s = Shape.cast(shape)
        v = raw & ((1 << s.width) - 1)
        if s.signed and s.width and v >> (s.width - 1):
            v -= 1 << s.width
        return v
    if isinstance(layout, data.ArrayLayout):
        w = Shape.cast(layout.elem_shape).width
        return [unpack(layout.elem_shape, raw >> (i * w)) for i in range(layout.length)]
    return {key: unpack(fld.shape, raw >> fld.offset) for key, fld in layout}


def flatten(value, path: str = "") -> Iterator[tuple[str, int]]:
    """(path, int) for every leaf of an unpacked value: ``acc[1][5]``, ``index``, ..."""
    if isinstance(value, dict):
        for key, v in value.items():
            yield from flatten(v, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from flatten(v, f"{path}[{i}]")
    else:
        yield path, int(value)


class StreamMismatch(AssertionError):
    """A stream beat differs from the golden model; the message has component, cycle, lane."""


def compare_beat(component: str, cycle: int, beat: int, expected, got) -> None:
    """Raise :class:`StreamMismatch` at the first lane where ``got`` differs from ``expected``.

    Leaves missing from ``expected`` (a dict without some fields) are not compared.
    """
    got_leaves = dict(flatten(got))
    for lane, want in flatten(expected):
        if lane not in got_leaves:
            raise StreamMismatch(f"{component}: cycle {cycle}, beat {beat}: the output has no "
                                 f"field {lane!r}")
        if got_leaves[lane] != want:
            raise StreamMismatch(f"{component}: cycle {cycle}, beat {beat}, lane {lane or '0'}: "
                                 f"expected {want}, got {got_leaves[lane]}")


# --- testbench parameters -------------------------------------------------------------------------
def test_parameters() -> dict[str, Any]:
    """The ``parameters`` dict passed to ``run_cocotb`` (JSON in ``NSLLM_COCOTB_PARAMS``)."""
    return json.loads(os.environ.get("NSLLM_COCOTB_PARAMS", "{}"))


test_parameters.__test__ = False  # not a pytest test, despite the name


def dut_component():
    """The Amaranth component object the simulated Verilog was generated from (registry name and
    size from ``run_cocotb``); use it for port layouts. Fails for instance-based runs."""
    from nsllm.hdl import registry

    name = os.environ.get("NSLLM_COCOTB_COMPONENT", "")
    if not name:
        raise RuntimeError("run_cocotb was given a component instance, not a registry name: "
                           "rebuild the component from test_parameters() instead")
    return registry.build(name, os.environ.get("NSLLM_COCOTB_SIZE", "sim"))


# --- cocotb models ---------------------------------------------------------------------------
def _read(handle) -> int:
    """Integer value of a handle (a ``LogicArray`` vector or a single ``Logic`` bit)."""
    value = handle.value
    try:
        return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)
    except ValueError:
        raise StreamMismatch(f"{handle._name} is not a resolvable value: {value}") from None


class TB:
    """Owns the clock and reset of a DUT, and creates stream models that share its random seed.

    Parameters
    ----------
    dut : cocotb handle of the toplevel
    component : str
        Name used in mismatch messages.
    seed : int
        Seeds every source and sink created by this TB (each gets its own stream of numbers).
    period_ns : int
        Clock period.
    """

    def __init__(self, dut, component: str, *, seed: int = 0, period_ns: int = 10,
                 clock: str = "clk", reset: str = "rst"):
        import cocotb
        from cocotb.clock import Clock

        self.dut = dut
        self.component = component
        self.period_ns = period_ns
        self.clk = getattr(dut, clock)
        self.rst = getattr(dut, reset)
        self._seed = seed
        self._models = 0
        self.rst.value = 1
        self._clock_task = cocotb.start_soon(Clock(self.clk, period_ns, unit="ns").start())

    def cycle(self) -> int:
        """Rising edges since time zero."""
        from cocotb.utils import get_sim_time

        return int(get_sim_time("ns") // self.period_ns)

    def _rng(self) -> random.Random:
        self._models += 1
        return random.Random(self._seed * 1_000_003 + self._models)

    async def reset(self, cycles: int = 2) -> None:
        """Hold the synchronous reset high for ``cycles`` rising edges, then release it."""
        from cocotb.triggers import ClockCycles, FallingEdge

        self.rst.value = 1
        await ClockCycles(self.clk, cycles)
        await FallingEdge(self.clk)
        self.rst.value = 0

    async def cycles(self, n: int) -> None:
        from cocotb.triggers import ClockCycles

        await ClockCycles(self.clk, n)

    def source(self, port: str, shape, *, valid_probability: float = 0.7) -> StreamSource:
        """A :class:`StreamSource` for the input stream ``port`` (e.g. ``"i_stream"``)."""
        return StreamSource(self, port, shape, valid_probability=valid_probability, rng=self._rng())

    def sink(self, port: str, shape, *, ready_probability: float = 0.7) -> StreamSink:
        """A :class:`StreamSink` for the output stream ``port`` (e.g. ``"o_stream"``)."""
        return StreamSink(self, port, shape, ready_probability=ready_probability, rng=self._rng())


class StreamSource:
    """Drives ``<port>__payload/__valid`` with the queued beats, idling at random between them.

    ``valid_probability`` is the chance that a new beat is offered in a cycle when one is
    queued (1.0: full rate). Once offered, a beat stays on the bus until ``ready`` takes it, as
    the stream protocol requires. ``accepted`` lists the cycle each beat was taken in.
    """

    def __init__(self, tb: TB, port: str, shape, *, valid_probability: float = 0.7,
                 rng: random.Random | None = None):
        import cocotb

        if not 0 < valid_probability <= 1:
            raise ValueError(f"valid_probability must be in (0, 1], not {valid_probability}")
        self.tb, self.port, self.shape = tb, port, shape
        self.valid_probability = valid_probability
        self.rng = rng or random.Random(0)
        self.payload = getattr(tb.dut, f"{port}__payload")
        self.valid = getattr(tb.dut, f"{port}__valid")
        self.ready = getattr(tb.dut, f"{port}__ready")
        self.valid.value = 0
        self.queue: deque = deque()
        self.accepted: list[int] = []
        self._pending = None  # the beat on the bus, waiting for ready
        self._task = cocotb.start_soon(self._run())

    def send(self, beats: Iterable) -> None:
        """Queue beats (values for :func:`pack`)."""
        self.queue.extend(beats)

    def idle(self) -> bool:
        """True when every queued beat has been accepted."""
        return not self.queue and self._pending is None

    async def _run(self) -> None:
        from cocotb.triggers import FallingEdge, ReadOnly

        while True:
            await FallingEdge(self.tb.clk)
            if self._pending is None and self.queue and self.rng.random() < self.valid_probability:
                self._pending = self.queue.popleft()
                self.payload.value = pack(self.shape, self._pending)
            self.valid.value = int(self._pending is not None)
            await ReadOnly()
            if self._pending is not None and _read(self.ready) and not _read(self.tb.rst):
                self.accepted.append(self.tb.cycle())
                self._pending = None

    async def wait_idle(self, timeout_cycles: int = 100_000) -> None:
        """Wait until every queued beat was accepted."""
        from cocotb.triggers import RisingEdge

        for _ in range(timeout_cycles):
            if self.idle():
                return
            await RisingEdge(self.tb.clk)
        raise StreamMismatch(f"{self.tb.component}: {self.port} still has {len(self.queue)} beats "
                             f"queued after {timeout_cycles} cycles (is ready stuck low?)")


class StreamSink:
    """Takes beats from ``<port>__payload/__valid``, dropping ``ready`` at random (back-pressure).

    ``ready_probability`` is the chance that ready is high in a cycle. Received beats are
    unpacked into ``beats`` (with their cycle in ``cycles``); beats queued with :meth:`expect`
    are compared lane by lane as they arrive. ``check`` may replace the comparison
    (``check(cycle, beat_index, expected, got)`` raising on a mismatch).
    """

    def __init__(self, tb: TB, port: str, shape, *, ready_probability: float = 0.7,
                 rng: random.Random | None = None):
        import cocotb

        if not 0 < ready_probability <= 1:
            raise ValueError(f"ready_probability must be in (0, 1], not {ready_probability}")
        self.tb, self.port, self.shape = tb, port, shape
        self.ready_probability = ready_probability
        self.rng = rng or random.Random(1)
        self.payload = getattr(tb.dut, f"{port}__payload")
        self.valid = getattr(tb.dut, f"{port}__valid")
        self.ready = getattr(tb.dut, f"{port}__ready")
        self.ready.value = 0
        self.beats: list = []
        self.cycles: list[int] = []
        self.expected: deque = deque()
        self.check: Callable[[int, int, Any, Any], None] | None = None
        self.error: StreamMismatch | None = None
        self._task = cocotb.start_soon(self._run())

    def expect(self, beats: Iterable) -> None:
        """Queue the beats the DUT must produce, in order."""
        self.expected.extend(beats)

    async def _run(self) -> None:
        from cocotb.triggers import FallingEdge, ReadOnly

        while True:
            await FallingEdge(self.tb.clk)
            ready = self.rng.random() < self.ready_probability
            self.ready.value = int(ready)
            await ReadOnly()
            if ready and _read(self.valid) and not _read(self.tb.rst):
                cycle = self.tb.cycle()
                got = unpack(self.shape, _read(self.payload))
                index = len(self.beats)
                self.beats.append(got)
                self.cycles.append(cycle)
                if self.error is not None:
                    continue
                if not self.expected:
                    self.error = StreamMismatch(
                        f"{self.tb.component}: cycle {cycle}, beat {index}: unexpected beat "
                        f"on {self.port} (no more expected): {got}")
                    continue
                want = self.expected.popleft()
                try:
                    if self.check is not None:
                        self.check(cycle, index, want, got)
                    else:
                        compare_beat(self.tb.component, cycle, index, want, got)
                except StreamMismatch as exc:
                    self.error = exc

    async def wait_for(self, count: int, timeout_cycles: int = 100_000) -> list:
        """Wait until ``count`` beats arrived in total; raise the first mismatch, if any."""
        from cocotb.triggers import RisingEdge

        for _ in range(timeout_cycles):
            if self.error is not None:
                raise self.error
            if len(self.beats) >= count:
                return self.beats
            await RisingEdge(self.tb.clk)
        if self.error is not None:
            raise self.error
        raise StreamMismatch(f"{self.tb.component}: only {len(self.beats)} of {count} beats on "
                             f"{self.port} after {timeout_cycles} cycles")

    async def wait_quiet(self, cycles: int = 16) -> None:
        """Wait ``cycles`` more cycles and fail if any further beat (or a mismatch) appears."""
        n = len(self.beats)
        await self.tb.cycles(cycles)
        if self.error is not None:
            raise self.error
        if len(self.beats) != n:
            raise StreamMismatch(f"{self.tb.component}: {len(self.beats) - n} unexpected extra "
                                 f"beats on {self.port}: {self.beats[n:]}")


# --- amaranth.sim ----------------------------------------------------------------------------
def run_amaranth_stream(dut, beats: Iterable, n_out: int, *, setup: Callable | None = None,
                        in_port: str = "i_stream", out_port: str = "o_stream",
                        valid_probability: float = 0.7, ready_probability: float = 0.7,
                        seed: int = 0, max_cycles: int = 200_000, settle: int = 8
                        ) -> list[tuple[int, Any]]:
    """Drive ``beats`` into ``dut.<in_port>`` and collect ``n_out`` beats from ``dut.<out_port>``
    in ``amaranth.sim``, with random valid gaps and back-pressure (the same models as the cocotb
    :class:`StreamSource` / :class:`StreamSink`).

    ``beats`` are Python values for :func:`pack`; the result is ``[(cycle, value)]`` with
    values as :func:`unpack` returns them. ``setup(ctx)`` sets static ports (configuration)
    before the first beat. After the last expected beat and the last input beat, ``settle``
    more cycles run; any further output beat raises :class:`StreamMismatch`.
    """
    from amaranth.hdl import Value
    from amaranth.sim import Simulator

    i_port, o_port = getattr(dut, in_port), getattr(dut, out_port)
    i_shape, o_shape = i_port.payload.shape(), o_port.payload.shape()
    i_raw, o_raw = Value.cast(i_port.payload), Value.cast(o_port.payload)
    rng_in, rng_out = random.Random(seed * 2 + 1), random.Random(seed * 2 + 2)
    name = type(dut).__name__
    beats = list(beats)
    got: list[tuple[int, Any]] = []
    sent = [0]

    async def producer(ctx):
        if setup is not None:
            setup(ctx)
        for beat in beats:
            while rng_in.random() >= valid_probability:
                await ctx.tick()
            ctx.set(i_raw, pack(i_shape, beat))
            ctx.set(i_port.valid, 1)
            await ctx.tick().until(i_port.ready)
            ctx.set(i_port.valid, 0)
            sent[0] += 1

    async def consumer(ctx):
        cycle = 0
        while len(got) < n_out and cycle < max_cycles:
            ctx.set(o_port.ready, int(rng_out.random() < ready_probability))
            _, _, valid, ready, raw = await ctx.tick().sample(o_port.valid, o_port.ready, o_raw)
            cycle += 1
            if valid and ready:
                got.append((cycle, unpack(o_shape, raw)))
        if len(got) < n_out:
            raise StreamMismatch(f"{name}: only {len(got)} of {n_out} beats on {out_port} "
                                 f"after {max_cycles} cycles")
        ctx.set(o_port.ready, 1)
        while sent[0] < len(beats) and cycle < max_cycles:  # inputs that make no output
            _, _, valid = await ctx.tick().sample(o_port.valid)
            cycle += 1
            if valid:
                raise StreamMismatch(f"{name}: cycle {cycle}: unexpected extra beat on {out_port}")
        if sent[0] < len(beats):
            raise StreamMismatch(f"{name}: only {sent[0]} of {len(beats)} beats were taken "
                                 f"from {in_port} after {max_cycles} cycles")
        for _ in range(settle):
            _, _, valid = await ctx.tick().sample(o_port.valid)
            cycle += 1
            if valid:
                raise StreamMismatch(f"{name}: cycle {cycle}: unexpected extra beat on {out_port}")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run()
    return got


def check_beats(component: str, got: list[tuple[int, Any]], expected: Iterable) -> None:
    """Compare ``[(cycle, value)]`` from :func:`run_amaranth_stream` with expected values."""
    expected = list(expected)
    if len(got) != len(expected):
        raise StreamMismatch(f"{component}: {len(got)} beats, expected {len(expected)}")
    for beat, ((cycle, value), want) in enumerate(zip(got, expected, strict=True)):
        compare_beat(component, cycle, beat, want, value)
