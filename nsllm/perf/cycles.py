"""Cycle model of :class:`nsllm.hdl.core.NSLLMCore` as built: expected cycles of a program.

The model follows the core's state machines event by event — not cycle by cycle — with the
pipeline depths and overheads read from the units' attributes (``latency``, ``read_latency``,
the sequencer's state counts, the linear unit's FIFO depths), so a change to a unit changes the
model. What it follows:

* **Dispatch** (:class:`~nsllm.hdl.core.sequencer.Sequencer`): the program burst on the image
  port when the program is not cached; per descriptor FETCH → DECODE → CHECK → [TABLE] → RETIRE
  → ISSUE, where the next descriptor's fetch, checks and table load run while the previous
  instruction executes, and RETIRE waits for both the running unit's ``done`` and the table.
* **Table loads** (:class:`~nsllm.hdl.core.tables.TableLoader`): ``n / (port_bytes / 4)`` beats
  over the image port, split into bursts like :class:`~nsllm.hdl.core.axi.BurstSplitter`.
* **Vector passes** (:class:`~nsllm.hdl.core.vector.VectorUnit`): ``n / vector`` words, one per
  cycle, through the opcode's lane pipeline; NORM and UNORM are two passes with Σx² and the RMS
  factor between them; COUNT is one pass through the encoder lanes.
* **SLA** (:class:`~nsllm.hdl.core.sla.SLAUnit`): per head LOAD, one state word per cycle over
  the head's rows, the pipeline drain, the read-out's magnitude and exponent, WRITE
  (:meth:`~nsllm.hdl.core.sla.SLAUnit.head_cycles`); SLACLEAR, one word per cycle of the slot.
  The state traffic is on chip, so no memory timing enters.
* **LINEAR** (:class:`~nsllm.hdl.core.linear.LinearUnit`): SETUP, then the encoder front end
  (scratchpad read, skid FIFO, encoders), the spike-index filter (one spiking column per cycle,
  at least one cycle per word), the route FIFO of each weight port, the streamer's one burst per
  spiking column (4 KiB splits), the memory's queue of at most ``max_outstanding`` bursts, its
  latency and one beat per ``cycles_per_beat``; after every port drained, REQUANT.
* **The memory** of each port (:class:`PortTiming`): what the Verilator harness models (first
  beat ``latency`` cycles after the cycle following the AR handshake, in-order bursts, a queue of
  ``max_outstanding``) with its random read stalls as their expectation: a beat that is ready is
  withheld with probability ``stall_prob`` per cycle, so it takes ``1 / (1 − stall_prob)`` cycles
  on average. On a board, ``beat_cycles`` > 1 stands for a memory slower than the port.

Expected values are propagated through the max-plus recurrences; that ignores the spread of the
stall process (Jensen's inequality), which the validation against Verilator bounds
(docs/performance.md). Use :meth:`CycleModel.program` for one run of a program with the fired
columns of every LINEAR (the indices the interpreter or golden model reports).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from nsllm.hdl.accumulator import AccumulatorBank
from nsllm.hdl.argmax import Argmax
from nsllm.hdl.core.axi import BOUNDARY, MAX_BURST, BurstSplitter
from nsllm.hdl.core.linear import LinearUnit, Requantizer
from nsllm.hdl.core.params import CoreParams
from nsllm.hdl.core.sequencer import Sequencer
from nsllm.hdl.core.sla import SLAUnit
from nsllm.hdl.core.tables import TableLoader
from nsllm.hdl.core.vector import VectorUnit
from nsllm.hdl.norm import RsqrtFactor, SumOfSquares
from nsllm.hdl.shared_memory import SharedMemory
from nsllm.hdl.spike import EncoderArray, SpikeIndexFilter
from nsllm.hdl.trits import TritUnpacker
from nsllm.isa import DESCRIPTOR_BYTES, Instr, Op, column_port, column_slot, columns_per_port
from nsllm.isa.layout import TABLE_ENTRY_BYTES, TABLE_OPS

__all__ = ["AR_TO_FIRST_BEAT", "FIFO_LATENCY", "CycleBreakdown", "CycleModel", "InstrCycles",
           "LinearCycles", "PortTiming", "bursts", "weight_offsets"]

#: The harness (nsllm/sim/harness/harness.cpp) presents a burst's first beat ``latency`` cycles
#: after the cycle that follows its AR handshake.
AR_TO_FIRST_BEAT = 1
#: ``amaranth.lib.fifo.SyncFIFOBuffered``: an entry written to an empty queue is readable two
#: cycles later (one more than ``SyncFIFO``, its documentation says).
FIFO_LATENCY = 2


@dataclass(frozen=True)
class PortTiming:
    """How the memory behind one AXI read port answers.

    Parameters
    ----------
    latency : float
        Cycles from an accepted AR (the cycle after its handshake) to its first beat.
    stall_prob : float
        Probability per cycle that a ready beat is withheld (the harness's ``stall_prob``).
    max_outstanding : int
        Bursts the memory queues; AR is refused while that many are unfinished.
    beat_cycles : float
        Cycles per beat when nothing stalls (> 1: the memory is slower than the port).
    in_flight_bytes : int, optional
        Read bytes the path to the memory holds at most (a NoC master unit's reorder buffer):
        a burst (or piece) is accepted only when its bytes fit beside the unfinished ones.
    piece_bytes : int, optional
        The path serves bursts as transactions of at most this many bytes (default: whole
        bursts, or ``in_flight_bytes`` if smaller).
    """

    latency: float = 0.0
    stall_prob: float = 0.0
    max_outstanding: int = 8
    beat_cycles: float = 1.0
    in_flight_bytes: int | None = None
    piece_bytes: int | None = None

    def __post_init__(self):
        if self.latency < 0 or not 0 <= self.stall_prob < 1 or self.max_outstanding < 1 \
                or self.beat_cycles < 1 or (self.in_flight_bytes is not None
                                            and self.in_flight_bytes < 1):
            raise ValueError(f"need latency ≥ 0, 0 ≤ stall_prob < 1, max_outstanding ≥ 1 and "
                             f"beat_cycles ≥ 1, not {self}")

    @property
    def cycles_per_beat(self) -> float:
        """Expected cycles per beat: ``beat_cycles`` stretched by the stalls."""
        return self.beat_cycles / (1.0 - self.stall_prob)


def bursts(addr: int, beats: int, port_bytes: int) -> list[int]:
    """Beats of each AXI burst :class:`~nsllm.hdl.core.axi.BurstSplitter` makes of a request
    (at most 256 beats, none across a 4 KiB boundary)."""
    out = []
    while beats > 0:
        to_4k = (BOUNDARY - addr % BOUNDARY) // port_bytes
        b = min(beats, MAX_BURST, to_4k)
        out.append(b)
        addr += b * port_bytes
        beats -= b
    return out


def weight_offsets(program: Sequence[Instr], weight_ports: int) -> dict[int, int]:
    """``{pc: weight offset}`` of every LINEAR as :func:`nsllm.host.program.compile_program`
    lays the weight regions out (each layer's slots after the previous layer's), for outlines
    whose offsets are not filled in."""
    offsets, at = {}, 0
    for pc, ins in enumerate(program):
        if ins.op == Op.LINEAR:
            offsets[pc] = at
            at += columns_per_port(ins.n, weight_ports) * ins.stride
    return offsets


class _Port:
    """One AXI read port: its burst splitter and its memory's queue, in expected cycles."""

    def __init__(self, timing: PortTiming, port_bytes: int):
        self.timing, self.port_bytes = timing, port_bytes
        self.cpb = timing.cycles_per_beat
        self.first = AR_TO_FIRST_BEAT + timing.latency
        self.split_free = -math.inf  # first cycle the splitter takes another request
        self.last_beat = -math.inf  # cycle of the last beat served so far
        self.finishes: list[float] = []  # last-beat cycle of every burst, in order
        self.beats = 0
        self.limit = timing.in_flight_bytes
        self.flight: deque[tuple[float, int]] = deque()  # (last beat, bytes) unfinished
        self.flight_bytes = 0
        sizes = [b for b in (timing.piece_bytes, timing.in_flight_bytes) if b is not None]
        self.piece = min(sizes) if sizes else None

    def request(self, taken: float, addr: int, beats: int) -> tuple[float, float]:
        """The splitter takes a request at cycle ``taken``; returns the cycles of its first
        and last beats."""
        m = self.timing.max_outstanding
        ar = taken + BurstSplitter.request_latency - 1
        first = None
        pb = self.port_bytes
        split = ([beats] if beats <= MAX_BURST and addr % BOUNDARY + beats * pb <= BOUNDARY
                 else bursts(addr, beats, pb))
        piece = self.piece
        if piece is not None:
            per = max(1, piece // pb)
            split = [piece for b in split for piece in [per] * (b // per) + [b % per] if piece]
        for b in split:
            ar += 1  # one AR per cycle
            if len(self.finishes) >= m:  # the memory's queue is full until a burst finishes
                ar = max(ar, self.finishes[-m] + 1)
            if self.limit is not None:  # room for its bytes beside the unfinished bursts
                size = b * pb
                flight = self.flight
                while flight and flight[0][0] < ar:
                    self.flight_bytes -= flight.popleft()[1]
                while flight and self.flight_bytes + size > self.limit:
                    done, nbytes = flight.popleft()
                    ar = max(ar, done + 1)
                    self.flight_bytes -= nbytes
            start = max(ar + self.first, self.last_beat + 1)
            if first is None:
                first = start - 1 + self.cpb
            self.last_beat = start - 1 + b * self.cpb
            self.finishes.append(self.last_beat)
            if self.limit is not None:
                self.flight.append((self.last_beat, b * pb))
                self.flight_bytes += b * pb
        self.split_free = ar + 1
        self.beats += beats
        return first, self.last_beat


@dataclass
class LinearCycles:
    """One LINEAR: when its phases end, relative to the cycle its command was taken."""

    setup: float  #: SETUP (multiples of the stride)
    drained: float  #: the first cycle with every port drained (ENCODE ends)
    done: float  #: the ``done`` pulse (REQUANT ends)
    columns: int  #: spiking columns fetched
    port_beats: list[int]  #: weight beats per port
    weight_start: float  #: first weight beat
    weight_end: float  #: last weight beat


@dataclass
class InstrCycles:
    """One instruction of a modelled run, in cycles from the start."""

    op: str
    name: str
    taken: float  #: its unit took the command
    done: float  #: its unit's ``done``
    phases: dict[str, float] = field(default_factory=dict)  #: LINEAR: setup, weights, requant


@dataclass
class CycleBreakdown:
    """Expected cycles of one program run (what the CYCLES register counts)."""

    cycles: float
    by_op: dict[str, float]  #: cycles each opcode's unit was busy (command taken → done)
    overheads: dict[str, float]  #: program load, dispatch, waits for tables, the END
    linear: dict[str, float]  #: LINEAR time by phase: setup, weights, requant
    weight_beats: list[int]  #: per weight port
    table_beats: int  #: beats on the image port (tables and program)
    port_bytes: int = 8  #: bytes per beat
    instructions: list[InstrCycles] = field(default_factory=list)

    @property
    def weight_bytes(self) -> int:
        return sum(self.weight_beats) * self.port_bytes

    def as_dict(self) -> dict:
        return {"cycles": self.cycles, "by_op": self.by_op, "overheads": self.overheads,
                "linear": self.linear, "weight_beats": self.weight_beats,
                "table_beats": self.table_beats}


class CycleModel:
    """Expected cycles of programs on one core build with given memories.

    Parameters
    ----------
    params : CoreParams
        The build (port width, vector, weight ports, FIFO depth).
    ctl : PortTiming
        The image port's memory (programs and tables).
    weights : PortTiming or list of PortTiming
        Each weight port's memory (one for all, or one per port).
    """

    def __init__(self, params: CoreParams, ctl: PortTiming = PortTiming(),
                 weights: PortTiming | Sequence[PortTiming] = PortTiming()):
        self.params = params
        n = params.weight_ports
        self.ctl = ctl
        self.weights = [weights] * n if isinstance(weights, PortTiming) else list(weights)
        if len(self.weights) != n:
            raise ValueError(f"{len(self.weights)} weight-port timings for {n} weight ports")
        E = params.vector
        mem = SharedMemory.read_latency
        # vector unit: cycles from the command taken to done, minus the words of each pass
        # the read of word 0 is issued the cycle after the command; the lanes see it ``mem`` later
        ssq_to_pass2 = SumOfSquares.latency + RsqrtFactor.latency + VectorUnit.RESTART_CYCLES
        self._vector = {
            Op.EMBED: mem + VectorUnit.EMBED_LATENCY,
            Op.ARGMAX: mem + Argmax.latency_of(E),
            Op.CLEAR: 0,  # writes zeros from the cycle after the command, one word per cycle
        }
        for op, lanes in VectorUnit.LANES.items():
            lane = sum(u.latency for u in lanes)
            two_pass = op in (Op.NORM, Op.UNORM)
            self._vector[op] = (mem + lane if not two_pass
                                else 2 * mem + ssq_to_pass2 - 1 + lane)
        # linear unit
        self._setup = LinearUnit.stride_multiples(params)
        self._read = mem
        self._enc = EncoderArray.latency
        self._filter = SpikeIndexFilter.latency
        self._drain = TritUnpacker.latency + AccumulatorBank.latency
        self._requant = 1 + AccumulatorBank.read_latency + Requantizer.latency
        # sequencer
        s = Sequencer
        self._decode, self._table_state = s.decode_cycles, s.table_cycles
        self._retire, self._issue = s.retire_cycles, s.issue_cycles

    # ---- one vector instruction
    def vector_cycles(self, ins: Instr) -> float:
        """Cycles from the command taken to ``done`` (the unit's busy time)."""
        words = ins.n // self.params.vector
        passes = 2 if ins.op in (Op.NORM, Op.UNORM) else 1
        return passes * words + self._vector[ins.op]

    # ---- one SLA-unit instruction
    def sla_cycles(self, ins: Instr) -> float:
        """Cycles from the command taken to ``done``: SLA, every head's phases
        (:meth:`SLAUnit.head_cycles`); SLACLEAR, one state word per cycle over the slot."""
        if ins.op == Op.SLACLEAR:
            return self.params.sla_slot_words
        return ins.n // ins.m * SLAUnit.head_cycles(self.params, ins.m)

    # ---- one LINEAR
    def linear_cycles(self, ins: Instr, fired, ports: list[_Port], t0: float = 0.0,
                      weight_offset: int | None = None, bases: Sequence[int] | None = None
                      ) -> LinearCycles:
        """The LINEAR ``ins`` taken at cycle ``t0`` with the spiking inputs ``fired`` (indices,
        ascending), its columns served by ``ports`` (their state carries over)."""
        p = self.params
        E, N, pb = p.vector, p.weight_ports, p.port_bytes
        words = ins.n // E
        beats = ins.stride // pb
        offset0 = ins.weight if weight_offset is None else weight_offset
        bases = bases or [0] * N
        fired = np.sort(np.asarray(fired, dtype=np.int64))
        per_word = np.bincount(fired // E, minlength=words)
        f0 = t0 + 1 + self._setup  # ENCODE: fetching from here
        route_depth, ahead = LinearUnit.ROUTE_DEPTH, LinearUnit.FETCH_AHEAD
        counts_depth = p.fifo_depth
        counted = self._read + 1  # a word is in the FIFO's level from this long after its read
        # per port: take times of its columns (route FIFO space) and last beats (counts FIFO)
        takes: list[list[float]] = [[] for _ in range(N)]
        lasts: list[list[float]] = [[] for _ in range(N)]
        issue: list[float] = []
        enc_take: list[float] = []
        avail_prev = g_prev = -math.inf
        free = -math.inf  # the filter takes its next word from this cycle
        e = -math.inf  # last item emitted
        first_beat = math.inf
        k = 0  # index into fired
        for w in range(words):
            # issue the scratchpad read of word w once fewer than FETCH_AHEAD words are
            # counted in the skid FIFO's level (from ``counted`` cycles after their read until
            # the encoders take them); the count only falls when a word is taken
            earliest = f0 if w == 0 else issue[-1] + 1
            recent = range(max(0, w - ahead - 2), w)
            for t in sorted({earliest} | {enc_take[v] + 1 for v in recent
                                          if enc_take[v] >= earliest}):
                if sum(issue[v] + counted <= t <= enc_take[v] for v in recent) < ahead:
                    break
            issue.append(t)
            ready = t + self._read + FIFO_LATENCY
            if w:
                ready = max(ready, enc_take[-1] + 1)
            # the encoders (a global-stall pipeline) take it when their first stage frees
            take = max(ready, avail_prev - 1, enc_take[-1] + 1 if w else -math.inf)
            enc_take.append(take)
            avail = max(take + self._enc, g_prev + 1)
            g = max(avail, free)  # the filter takes the word
            nz = int(per_word[w])
            if nz == 0:
                free = g + 1
                if w == words - 1:
                    e = g + self._filter  # the closing zero-count item
            else:
                e = g + self._filter - 1
                for j in fired[k:k + nz]:
                    j = int(j)
                    port = column_port(j, N)
                    tk = takes[port]
                    # the item waits for room in its port's route FIFO
                    room = tk[-route_depth] + 1 if len(tk) >= route_depth else -math.inf
                    e = max(e + 1, room)
                    pt = ports[port]
                    lt = lasts[port]
                    taken = max(e + FIFO_LATENCY, pt.split_free,
                                lt[-counts_depth] + 1 if len(lt) >= counts_depth else -math.inf)
                    tk.append(taken)
                    addr = bases[port] + offset0 + column_slot(j, N) * ins.stride
                    first, last = pt.request(taken, addr, beats)
                    first_beat = min(first_beat, first)
                    lt.append(last)
                k += nz
                free = e
            avail_prev, g_prev = avail, g
        encode_done = e + 1
        drained = encode_done
        last_beat = -math.inf
        for lt in lasts:
            if lt:
                last_beat = max(last_beat, lt[-1])
                drained = max(drained, lt[-1] + self._drain)
        done = drained + (ins.m // E) - 1 + self._requant
        return LinearCycles(setup=self._setup, drained=drained - t0, done=done - t0,
                            columns=int(fired.size),
                            port_beats=[len(lt) * beats for lt in lasts],
                            weight_start=first_beat - t0, weight_end=last_beat - t0)

    # ---- a whole program
    def program(self, program: Sequence[Instr], fired: Mapping[str, np.ndarray], *,
                cached: bool = True, bases: Sequence[int] | None = None) -> CycleBreakdown:
        """Expected CYCLES of one run of ``program`` (ending with END).

        Parameters
        ----------
        program : list of Instr
            ``image.token`` (weight offsets filled in) or an outline of a shape.
        fired : mapping
            Spiking input indices of each LINEAR, by layer name (``RunStats.fired``).
        cached : bool
            The program is in the core's program cache (every run of the same program but the
            first).
        bases : list of int, optional
            Device addresses of the weight regions (only their offset within 4 KiB matters: the
            runtime allocates them 4 KiB aligned, the default).
        """
        p = self.params
        pb, q = p.port_bytes, p.port_bytes // TABLE_ENTRY_BYTES
        ctl = _Port(self.ctl, pb)
        ports = [_Port(t, pb) for t in self.weights]
        offsets = {pc: ins.weight for pc, ins in enumerate(program) if ins.op == Op.LINEAR}
        if not any(offsets.values()):  # an outline: lay the regions out as the compiler does
            offsets = weight_offsets(program, p.weight_ports)
        by_op: dict[str, float] = {}
        linear = {"setup": 0.0, "weights": 0.0, "requant": 0.0}
        over = {"program load": 0.0, "dispatch": 0.0, "table wait": 0.0, "end": 0.0}
        rows = []
        table_beats = 0
        fetch = 1  # IDLE takes start at cycle 0; FETCH (cached) the cycle after
        if not cached:
            beats = len(program) * max(1, DESCRIPTOR_BYTES // pb)
            table_beats += beats
            _, last = ctl.request(Sequencer.load_request_cycles, 0, beats)
            fetch = last + 1
            over["program load"] = fetch - 1
        done_prev = None  # done pulse of the running instruction
        for pc, ins in enumerate(program):
            check_end = fetch + self._decode  # RETIRE (or TABLE) from here
            if ins.op == Op.END:
                end = check_end if done_prev is None else max(check_end,
                                                              done_prev + self._retire)
                over["end"] += end - (done_prev if done_prev is not None else 0)
                cycles = end
                break
            retire_from = check_end
            table_in = -math.inf
            if ins.op in TABLE_OPS:
                retire_from += self._table_state
                beats = -(-ins.n // q)
                table_beats += beats
                ctl_take = max(check_end + TableLoader.request_latency, ctl.split_free)
                table_in = ctl.request(ctl_take, ins.table, beats)[1] + 1  # loader idle
            ready = max(retire_from, table_in,
                        done_prev + self._retire if done_prev is not None else -math.inf)
            taken = ready + self._issue  # the unit takes the command in ISSUE
            if done_prev is not None:
                gap = taken - done_prev
                over["dispatch"] += min(gap, self._retire + self._issue)
                over["table wait"] += max(0.0, gap - self._retire - self._issue)
            else:
                over["dispatch"] += taken
            phases = {}
            if ins.op == Op.LINEAR:
                lc = self.linear_cycles(ins, fired.get(ins.name, ()), ports, taken, offsets[pc],
                                        bases)
                busy = lc.done
                phases = {"setup": 1 + lc.setup, "weights": lc.drained - 1 - lc.setup,
                          "requant": lc.done - lc.drained}
                for k, v in phases.items():
                    linear[k] += v
            elif ins.op in (Op.SLA, Op.SLACLEAR):
                busy = self.sla_cycles(ins)
            else:
                busy = self.vector_cycles(ins)
            done = taken + busy
            by_op[ins.op.name] = by_op.get(ins.op.name, 0.0) + busy
            rows.append(InstrCycles(ins.op.name, ins.name, taken, done, phases))
            done_prev = done
            fetch = taken + 1
        else:
            raise ValueError("the program has no END")
        return CycleBreakdown(cycles=cycles, by_op=by_op, overheads=over, linear=linear,
                              weight_beats=[pt.beats for pt in ports], table_beats=table_beats,
                              port_bytes=pb, instructions=rows)
