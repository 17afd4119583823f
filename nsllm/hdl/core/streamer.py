"""``WeightStreamer``: one weight port's columns, from the spike queue to its accumulator bank.

For every spiking column routed to its port (offset in the port's weight region, spike count)
the streamer requests one burst of ``stride / port_bytes`` beats from the port's
:class:`~nsllm.hdl.core.axi.BurstSplitter`, and remembers the count in a FIFO (its depth is how
many columns may be in flight: what hides the DRAM latency). Beats come back in order; each is
decoded by a :class:`~nsllm.hdl.trits.TritUnpacker` (2bit or base3, per LINEAR) and leaves as
one :class:`~nsllm.hdl.accumulator.AccumulatorBank` beat: the trits of that word of the column,
the column's count, the word index, and ``first`` for the port's first column of the layer
(which starts the bank's words instead of adding to them).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..accumulator import beat_layout, count_shape
from ..trits import TritUnpacker
from .axi import read_client_signature
from .params import CoreParams

__all__ = ["WeightStreamer", "column_layout"]


def column_layout(max_D: int) -> data.StructLayout:
    """A spiking column for one port: byte offset in the port's region and the spike count."""
    return data.StructLayout({"offset": unsigned(32), "count": count_shape(max_D)})


class WeightStreamer(wiring.Component):
    """One weight port's column fetches (see the module docstring).

    Attributes
    ----------
    i_col : In(stream.Signature(column_layout(max_D)))
    read : Out(read_client_signature(port_bytes))
    o_beat : Out(stream.Signature(beat_layout(lanes, max_D, acc_words)))
    base : In(64)
        Device address of this port's weight region (the W<k> register).
    beats : In(16)
        Beats per column (stride / port_bytes) of the running LINEAR.
    base3 : In(1)
        The running LINEAR's columns are base-3 packed.
    begin : In(1)
        A new LINEAR starts: its first column starts the bank's words.
    used : Out(1)
        A column of the running LINEAR has been fetched.
    busy : Out(1)
        Columns in flight, or beats not yet handed to the bank.
    beat : Out(1)
        A weight beat arrived this cycle (for the byte counters).
    error : Out(1)
        Sticky: an invalid trit code.
    axi_error : Out(1)
        Sticky: a beat answered with an AXI error.
    """

    def __init__(self, params: CoreParams):
        self.params = params
        self.beat_shape = beat_layout(params.lanes, params.max_D, params.acc_words)
        super().__init__({
            "i_col": In(stream.Signature(column_layout(params.max_D))),
            "read": Out(read_client_signature(params.port_bytes)),
            "o_beat": Out(stream.Signature(self.beat_shape)),
            "base": In(64), "beats": In(16), "base3": In(1), "begin": In(1),
            "used": Out(1), "busy": Out(1), "beat": Out(1), "error": Out(1),
            "axi_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        cnt = count_shape(p.max_D)
        side = data.StructLayout({"count": cnt, "word": self.beat_shape["word"].shape,
                                  "first": 1})
        m.submodules.unpack = unpack = TritUnpacker(p.packings, p.port_bytes, side=side)
        m.submodules.counts = counts = SyncFIFOBuffered(width=cnt.width + 1, depth=p.fifo_depth)

        # requests: one burst per column, its count queued for the beats
        with m.If(self.begin):
            m.d.sync += self.used.eq(0)
        take = self.i_col.valid & self.read.req.ready & counts.w_rdy
        m.d.comb += [
            self.i_col.ready.eq(self.read.req.ready & counts.w_rdy),
            self.read.req.valid.eq(self.i_col.valid & counts.w_rdy),
            self.read.req.p.addr.eq(self.base + self.i_col.p.offset),
            self.read.req.p.beats.eq(self.beats),
            counts.w_data.eq(self.i_col.p.count.as_unsigned() | (~self.used << cnt.width)),
            counts.w_en.eq(take),
        ]
        with m.If(take):
            m.d.sync += self.used.eq(1)

        # beats: the column's count and the word index travel with each word to the bank
        word = Signal(16)
        beat = self.read.data
        m.d.comb += [
            # a beat waits for its column's count (the FIFO shows an entry a cycle after it)
            unpack.i_stream.valid.eq(beat.valid & counts.r_rdy),
            beat.ready.eq(unpack.i_stream.ready & counts.r_rdy),
            unpack.i_stream.p.word.eq(beat.p.data),
            unpack.i_stream.p.side.count.eq(counts.r_data[:cnt.width]),
            unpack.i_stream.p.side.first.eq(counts.r_data[cnt.width]),
            unpack.i_stream.p.side.word.eq(word),
            self.beat.eq(beat.valid & beat.ready),
        ]
        if len(p.packings) > 1:
            m.d.comb += unpack.base3.eq(self.base3)
        with m.If(beat.valid & beat.ready):
            with m.If(beat.p.error):
                m.d.sync += self.axi_error.eq(1)
            with m.If(word + 1 == self.beats):
                m.d.sync += word.eq(0)
                m.d.comb += counts.r_en.eq(1)
            with m.Else():
                m.d.sync += word.eq(word + 1)
        u = unpack.o_stream
        m.d.comb += [
            self.o_beat.valid.eq(u.valid), u.ready.eq(self.o_beat.ready),
            self.o_beat.p.trits.eq(u.p.trits), self.o_beat.p.count.eq(u.p.side.count),
            self.o_beat.p.word.eq(u.p.side.word), self.o_beat.p.first.eq(u.p.side.first),
            self.error.eq(unpack.error),
            self.busy.eq((counts.level != 0) | u.valid),
        ]
        return m
