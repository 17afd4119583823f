"""``TableLoader``: int32 tables from the image region into a bank of the table memory.

Every table (norm weights, encoder multipliers, lower bounds, an embedding row) is ``n``
little-endian int32 entries at a 64-byte aligned address; a beat of the image port carries
``port_bytes / 4`` of them, written lane by lane into words of ``vector`` entries. The table
memory has two banks, so the sequencer loads the next instruction's table while the current one
reads its own.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..shared_memory import write_signature
from .axi import read_client_signature

__all__ = ["TABLE_COMMAND", "TableLoader", "table_word"]

#: Load ``n`` entries from byte address ``addr`` into bank ``bank``.
TABLE_COMMAND = data.StructLayout({"addr": unsigned(64), "n": unsigned(32), "bank": 1})


def table_word(vector: int) -> data.ArrayLayout:
    """A word of the table memory: ``vector`` int32 entries."""
    return data.ArrayLayout(signed(32), vector)


class TableLoader(wiring.Component):
    """Loads one table per command (see the module docstring).

    Parameters
    ----------
    port_bytes : int
        Image-port width; ``port_bytes / 4`` entries per beat must not exceed ``vector``.
    vector : int
        Entries per table-memory word.
    bank_words : int
        Words per bank (a power of two: the bank is the address's top bit).

    Attributes
    ----------
    cmd : In(stream.Signature(TABLE_COMMAND))
    read : Out(read_client_signature(port_bytes))
    table : Out(write_signature(table_word(vector), 2 * bank_words))
    busy : Out(1)
        A command is being served (set the cycle after it is taken).
    error : Out(1)
        Sticky: a beat came back with an AXI error.
    """

    def __init__(self, port_bytes: int, vector: int, bank_words: int):
        if port_bytes < 4 or port_bytes // 4 > vector or vector % (port_bytes // 4):
            raise ValueError(f"port_bytes/4 ({port_bytes // 4}) entries per beat must divide the "
                             f"table word of {vector} entries")
        if bank_words < 1 or bank_words & (bank_words - 1):
            raise ValueError(f"bank_words must be a power of two, not {bank_words}")
        self.port_bytes, self.vector, self.bank_words = port_bytes, vector, bank_words
        super().__init__({
            "cmd": In(stream.Signature(TABLE_COMMAND)),
            "read": Out(read_client_signature(port_bytes)),
            "table": Out(write_signature(table_word(vector), 2 * bank_words)),
            "busy": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        pb, E = self.port_bytes, self.vector
        q = pb // 4  # entries per beat
        lg_q = (q - 1).bit_length()
        lg_e = (E - 1).bit_length()
        bank = Signal()
        entries = Signal(32)  # of the current table
        idx = Signal(32)  # next entry to write
        requested = Signal()
        m.d.comb += self.cmd.ready.eq(~self.busy)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [self.busy.eq(1), bank.eq(self.cmd.p.bank), entries.eq(self.cmd.p.n),
                         idx.eq(0), requested.eq(0), self.read.req.p.addr.eq(self.cmd.p.addr),
                         self.read.req.p.beats.eq(self.cmd.p.n >> lg_q)]
        m.d.comb += self.read.req.valid.eq(self.busy & ~requested)
        with m.If(self.read.req.valid & self.read.req.ready):
            m.d.sync += requested.eq(1)

        beat = self.read.data
        m.d.comb += beat.ready.eq(self.busy)
        lane0 = idx[:lg_e] if lg_e else 0
        with m.If(beat.valid & beat.ready):
            m.d.comb += self.table.addr.eq((bank << (self.bank_words - 1).bit_length())
                                           | (idx >> lg_e))
            for k in range(q):
                for lane in range(E):
                    with m.If(lane0 + k == lane):
                        m.d.comb += [self.table.data[lane].eq(beat.p.data[32 * k: 32 * k + 32]),
                                     self.table.en[lane].eq(1)]
            m.d.sync += idx.eq(idx + q)
            with m.If(beat.p.error):
                m.d.sync += self.error.eq(1)
            with m.If(idx + q >= entries):
                m.d.sync += self.busy.eq(0)
        return m
