"""AXI infrastructure of the core: bus signatures, the burst splitter and the read arbiter.

Every memory client of the core talks *read requests* — (byte address, beats) — and receives
*data beats* in order, through its own :func:`read_client_signature` interface. On the image
port (``m_axi_ctl``) several clients (the program loader, the table loader) share one AXI
master through a :class:`ReadArbiter`; each weight port has one client. A :class:`BurstSplitter`
per port turns requests into AXI4 INCR bursts that follow the protocol's rules (at most 256
beats, never across a 4 KiB boundary).
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from nsllm.isa.registers import ADDRESS_BITS

__all__ = ["BurstSplitter", "ReadArbiter", "axi_read_signature", "axil_signature", "data_beat",
           "read_client_signature", "READ_REQUEST"]

#: A read request: ``beats`` whole words from byte address ``addr`` (aligned to the port width).
READ_REQUEST = data.StructLayout({"addr": unsigned(64), "beats": unsigned(32)})
#: AXI4 allows at most 256 beats per INCR burst and no burst across a 4 KiB boundary.
MAX_BURST = 256
BOUNDARY = 4096


def data_beat(port_bytes: int) -> data.StructLayout:
    """One read beat: the word and whether the memory answered with an error (SLVERR/DECERR)."""
    return data.StructLayout({"data": unsigned(8 * port_bytes), "error": 1})


def axil_signature():
    """AXI4-Lite, seen from the master (the core's ``s_axil`` port is its flip)."""
    a = ADDRESS_BITS
    return wiring.Signature({
        "awaddr": Out(a), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(32), "wstrb": Out(4), "wvalid": Out(1), "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(a), "arvalid": Out(1), "arready": In(1),
        "rdata": In(32), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
    })


def axi_read_signature(port_bytes: int):
    """AXI4 read channels (AR, R), seen from the master."""
    return wiring.Signature({
        "arid": Out(1), "araddr": Out(64), "arlen": Out(8), "arsize": Out(3), "arburst": Out(2),
        "arvalid": Out(1), "arready": In(1),
        "rid": In(1), "rdata": In(8 * port_bytes), "rresp": In(2), "rlast": In(1),
        "rvalid": In(1), "rready": Out(1),
    })


def read_client_signature(port_bytes: int):
    """A read client, seen from the client: it sends requests and receives their beats."""
    return wiring.Signature({
        "req": Out(stream.Signature(READ_REQUEST)),
        "data": In(stream.Signature(data_beat(port_bytes))),
    })


class BurstSplitter(wiring.Component):
    """Read requests → AXI4 INCR bursts (≤ 256 beats, no 4 KiB crossing); R beats → a stream.

    One request is split at a time; the next is taken when the last burst of the current one
    has been accepted on AR, so any number of bursts may be outstanding (the memory limits them
    with ``arready``). Beats return in order with ``rready = o_data.ready``.

    Parameters
    ----------
    port_bytes : int
        AXI data width in bytes (a power of two).

    Attributes
    ----------
    i_req : In(stream.Signature(READ_REQUEST))
    axi : Out(axi_read_signature(port_bytes))
    o_data : Out(stream.Signature(data_beat(port_bytes)))
    pending : Out(unsigned(32))
        Beats requested and not yet delivered (0: the port is drained).
    """

    def __init__(self, port_bytes: int):
        if port_bytes < 1 or port_bytes & (port_bytes - 1) or port_bytes > 128:
            raise ValueError(f"port_bytes must be a power of two ≤ 128, not {port_bytes}")
        self.port_bytes = port_bytes
        super().__init__({
            "i_req": In(stream.Signature(READ_REQUEST)),
            "axi": Out(axi_read_signature(port_bytes)),
            "o_data": Out(stream.Signature(data_beat(port_bytes))),
            "pending": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        pb, axi = self.port_bytes, self.axi
        lg = (pb - 1).bit_length()
        cur_addr = Signal(64)
        cur_beats = Signal(32)
        beats_to_4k = Signal(range(BOUNDARY // pb + 1))
        burst = Signal(range(MAX_BURST + 1))
        capped = Mux(cur_beats < MAX_BURST, cur_beats, MAX_BURST)
        m.d.comb += [
            axi.arid.eq(0), axi.arsize.eq(Const(lg, 3)), axi.arburst.eq(1),
            beats_to_4k.eq((BOUNDARY - cur_addr[:12]) >> lg),
            burst.eq(Mux(beats_to_4k < capped, beats_to_4k, capped)),
            axi.araddr.eq(cur_addr), axi.arlen.eq(burst - 1), axi.arvalid.eq(cur_beats != 0),
            self.i_req.ready.eq(cur_beats == 0),
        ]
        with m.If(axi.arvalid & axi.arready):
            m.d.sync += [cur_addr.eq(cur_addr + (burst << lg)), cur_beats.eq(cur_beats - burst)]
        with m.Elif(self.i_req.valid & self.i_req.ready):
            m.d.sync += [cur_addr.eq(self.i_req.p.addr), cur_beats.eq(self.i_req.p.beats)]

        m.d.comb += [
            self.o_data.valid.eq(axi.rvalid), self.o_data.p.data.eq(axi.rdata),
            self.o_data.p.error.eq(axi.rresp[1]), axi.rready.eq(self.o_data.ready),
        ]
        take = self.i_req.valid & self.i_req.ready
        beat = axi.rvalid & axi.rready
        m.d.sync += self.pending.eq(self.pending + Mux(take, self.i_req.p.beats, 0) - beat)
        return m


class ReadArbiter(wiring.Component):
    """Several read clients on one port: fixed priority (client 0 first), responses routed back.

    A granted request's client and beat count enter a route FIFO; beats go to the client at its
    head, in order. Each client has its own :func:`read_client_signature` interface
    (``clients[i]``), so no client drives another's request.

    Parameters
    ----------
    port_bytes : int
    n_clients : int
    depth : int
        Requests in flight at most (route FIFO depth).
    """

    def __init__(self, port_bytes: int, n_clients: int, depth: int = 4):
        if n_clients < 1:
            raise ValueError(f"n_clients must be at least 1, not {n_clients}")
        self.port_bytes, self.n_clients, self.depth = port_bytes, n_clients, depth
        super().__init__({
            "clients": In(read_client_signature(port_bytes)).array(n_clients),
            "o_req": Out(stream.Signature(READ_REQUEST)),
            "i_data": In(stream.Signature(data_beat(port_bytes))),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.n_clients
        cbits = max(1, (n - 1).bit_length())
        m.submodules.route = route = SyncFIFOBuffered(width=cbits + 32, depth=self.depth)
        grant = Signal(range(max(n, 2)))
        any_req = Signal()
        for i in reversed(range(n)):  # lowest index has priority
            with m.If(self.clients[i].req.valid):
                m.d.comb += [grant.eq(i), any_req.eq(1)]
        with m.Switch(grant):
            for i in range(n):
                with m.Case(i):
                    m.d.comb += [self.o_req.p.eq(self.clients[i].req.p),
                                 self.clients[i].req.ready.eq(self.o_req.ready & route.w_rdy)]
        m.d.comb += [self.o_req.valid.eq(any_req & route.w_rdy),
                     route.w_data.eq(grant | (self.o_req.p.beats << cbits)),
                     # a request of zero beats gets no response: it must not wait in the route
                     route.w_en.eq(self.o_req.valid & self.o_req.ready & (self.o_req.p.beats != 0))]

        # responses: to the client at the head of the route FIFO
        head = route.r_data[:cbits]
        left = Signal(32)  # beats of the head request already delivered
        total = route.r_data[cbits:]
        for i in range(n):
            c = self.clients[i]
            m.d.comb += c.data.p.eq(self.i_data.p)
            with m.If(route.r_rdy & (head == i)):
                m.d.comb += [c.data.valid.eq(self.i_data.valid),
                             self.i_data.ready.eq(c.data.ready)]
        with m.If(self.i_data.valid & self.i_data.ready):
            with m.If(left + 1 == total):
                m.d.sync += left.eq(0)
                m.d.comb += route.r_en.eq(1)
            with m.Else():
                m.d.sync += left.eq(left + 1)
        return m
