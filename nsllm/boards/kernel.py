"""The Vitis RTL kernel ``nsllm_kernel``: the core behind the port names Vitis expects.

Vitis links an RTL kernel by its pin names (BOARD_FLOW.md): clock ``ap_clk``, active-low reset
``ap_rst_n``, ``interrupt``, one AXI4-Lite slave ``s_axi_control_*`` and AXI4 masters
``m_axi_<name>_*`` with 64-bit addresses. Every pin must belong to an interface, and no
document allows a read-only master, so each master also has AW/W/B channels, tied off.

:class:`NSLLMKernel` is a thin Amaranth wrapper generated from the core's signature (not from
its Verilog text): each interface of :class:`~nsllm.hdl.core.NSLLMCore` is recognised by its
signature (:func:`~nsllm.hdl.core.axil_signature`, :func:`~nsllm.hdl.core.axi_read_signature`),
renamed, and connected to an instance of the core's module ``nsllm_core``, whose Verilog is the
cached conversion of :func:`nsllm.sim.verilator_device.core_verilog` — the same file the
simulator runs. A core port that no interface carries is an error, so every kernel pin belongs
to a named interface by construction (and ``tests/boards`` checks the Verilog port list).

The kernel's arguments are the registers of :data:`nsllm.isa.REGISTER_MAP` that name one
(:func:`kernel_arguments`); kernel.xml, the packaging Tcl and :class:`~nsllm.boards.xrt.XrtDevice`
all use this list.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from amaranth.hdl import ClockDomain, ClockSignal, Instance, Module, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nsllm.hdl.core import CoreParams, NSLLMCore, axi_port_names, axi_read_signature, axil_signature
from nsllm.isa.registers import REGISTER_MAP
from nsllm.sim.verilator_device import TopInterface

__all__ = ["CONTROL", "CORE_MODULE", "KERNEL_LINT_WAIVERS", "KERNEL_NAME", "KERNEL_TOP", "VLNV",
           "Interface", "KernelArg", "NSLLMKernel", "kernel_arguments", "kernel_interfaces",
           "kernel_rtl", "kernel_verilog_text", "simulation_source"]

KERNEL_NAME = "nsllm_kernel"
CORE_MODULE = "nsllm_core"
#: The IP's vendor:library:name:version (package_kernel.tcl and kernel.xml must agree).
VENDOR, LIBRARY, VERSION = "nsllm.org", "kernel", "1.0"
VLNV = f"{VENDOR}:{LIBRARY}:{KERNEL_NAME}:{VERSION}"
CONTROL = "s_axi_control"  #: the one AXI4-Lite slave Vitis allows
ADDRESS_BITS = 64  #: every master's address width

#: The harness's view of the kernel's top level (clock, reset, interrupt, bus prefixes).
KERNEL_TOP = TopInterface(module=KERNEL_NAME, clock="ap_clk", reset="ap_rst_n",
                          reset_active_low=True, irq="interrupt", lite=f"{CONTROL}_", sep="_")

#: AW, W and B channels of each master, seen from the master: (signal, direction, width),
#: width ``"id"``/``"data"``/``"strb"``/``"addr"`` taken from the read side. Tied off.
WRITE_CHANNELS = (
    ("awid", Out, "id"), ("awaddr", Out, "addr"), ("awlen", Out, 8), ("awsize", Out, 3),
    ("awburst", Out, 2), ("awvalid", Out, 1), ("awready", In, 1),
    ("wdata", Out, "data"), ("wstrb", Out, "strb"), ("wlast", Out, 1), ("wvalid", Out, 1),
    ("wready", In, 1),
    ("bid", In, "id"), ("bresp", In, 2), ("bvalid", In, 1), ("bready", Out, 1),
)
#: The only tie-off that is not 0: the B channel is always ready (nothing is ever written).
TIE_HIGH = ("bready",)


@dataclass(frozen=True)
class Interface:
    """One interface of the kernel: the AXI4-Lite slave or an AXI4 master."""

    name: str  #: Vitis name, the pin prefix (``s_axi_control``, ``m_axi_w0``)
    core_member: str  #: the core's signature member it carries (``s_axil``, ``m_axi_w0``)
    master: bool
    data_bits: int
    address_bits: int


@dataclass(frozen=True)
class KernelArg:
    """One kernel argument (a register of the map with ``arg`` set)."""

    id: int
    name: str  #: argument name (``image``, ``weights0`` … ``token_in``)
    register: str  #: its register (``IMAGE``, ``W0`` …)
    offset: int  #: byte offset in s_axi_control
    size: int  #: bytes (8 for a pointer)
    port: str  #: interface: the master a pointer is read by, else ``s_axi_control``
    pointer: bool

    @property
    def address_qualifier(self) -> int:
        """kernel.xml: 1 = global memory pointer, 0 = scalar."""
        return 1 if self.pointer else 0

    @property
    def host_type(self) -> str:
        return "void*" if self.pointer else "uint"


def kernel_arguments(weight_ports: int) -> list[KernelArg]:
    """The kernel's arguments for a build with ``weight_ports`` weight ports, in id order.

    Registers of other weight ports (W<k>, k ≥ ``weight_ports``) are not arguments of this
    build; the offsets stay those of the register map."""
    masters = axi_port_names(weight_ports)
    args = []
    for reg in REGISTER_MAP:
        if reg.arg is None:
            continue
        if isinstance(reg.port, int) and reg.port >= weight_ports:
            continue
        if reg.pointer:
            port = masters[0] if reg.port == "ctl" else masters[1 + reg.port]
        else:
            port = CONTROL
        args.append(KernelArg(len(args), reg.arg, reg.name, reg.offset, reg.bits // 8, port,
                              reg.pointer))
    return args


def kernel_interfaces(core: NSLLMCore) -> list[Interface]:
    """The kernel's interfaces, recognised from the core's signature.

    Raises ``ValueError`` for a core member that is neither the AXI4-Lite slave, an AXI4 read
    master with 64-bit addresses, nor the interrupt (it would be a pin without an interface)."""
    pb = core.params.port_bytes
    lite, read = axil_signature().flip(), axi_read_signature(pb)
    found = []
    for name, member in core.signature.members.items():
        if (name == "irq" and member.is_port and member.flow == Out
                and Shape.cast(member.shape).width == 1):
            continue
        if member.is_signature and member.flow == In and member.signature == lite:
            if any(not i.master for i in found):
                raise ValueError(f"the core has a second AXI4-Lite slave {name!r}; Vitis allows "
                                 f"one ({CONTROL})")
            address_bits = Shape.cast(lite.members["awaddr"].shape).width
            found.append(Interface(CONTROL, name, False, 32, address_bits))
        elif member.is_signature and member.flow == Out and member.signature == read:
            if not name.startswith("m_axi_"):
                raise ValueError(f"core master {name!r} must be named m_axi_<name> for Vitis")
            found.append(Interface(name, name, True, 8 * pb, ADDRESS_BITS))
        else:
            raise ValueError(f"core port {name!r} belongs to no Vitis interface (expected the "
                             "AXI4-Lite slave, AXI4 read masters and irq)")
    if not any(not i.master for i in found):
        raise ValueError("the core has no AXI4-Lite slave for s_axi_control")
    return found


def _write_width(kind, pb: int, id_bits: int) -> int:
    return {"id": id_bits, "addr": ADDRESS_BITS, "data": 8 * pb, "strb": pb}.get(kind, kind)


class NSLLMKernel(wiring.Component):
    """``nsllm_kernel``: Vitis pins around an instance of the core's module ``nsllm_core``.

    Parameters
    ----------
    params : CoreParams
        The core build (its signature gives the interfaces; see :func:`kernel_interfaces`).

    The reset is registered once (``ap_rst_n`` comes from the platform with a large fan-out)
    and held active from power-up until the first clock edge.
    """

    def __init__(self, params: CoreParams):
        self.params = params
        core = NSLLMCore(params)
        core._MustUse__silence = True  # made for its signature; the module comes from Verilog
        self.interfaces = kernel_interfaces(core)
        self._core_ports: list[tuple[str, str, object]] = []  # (core pin, kernel pin, flow)
        members = {"ap_clk": In(1), "ap_rst_n": In(1), "interrupt": Out(1)}
        for path, member in core.signature.members.flatten():
            if not member.is_port:
                continue
            pin = self.pin_name(path)
            members[pin] = (In if member.flow == In else Out)(member.shape)
            self._core_ports.append(("__".join(path), pin, member.flow))
        id_bits = Shape.cast(axi_read_signature(params.port_bytes).members["arid"].shape).width
        self._tied: list[tuple[str, int]] = []
        for iface in self.interfaces:
            if not iface.master:
                continue
            for signal, flow, width in WRITE_CHANNELS:
                pin = f"{iface.name}_{signal}"
                members[pin] = flow(_write_width(width, params.port_bytes, id_bits))
                if flow == Out:
                    self._tied.append((pin, 1 if signal in TIE_HIGH else 0))
        super().__init__(members)

    def pin_name(self, path: tuple[str, ...]) -> str:
        """The kernel pin of a core port (``("s_axil", "awaddr")`` → ``s_axi_control_awaddr``)."""
        if path == ("irq",):
            return "interrupt"
        iface = next(i for i in self.interfaces if i.core_member == path[0])
        return "_".join((iface.name, *path[1:]))

    def elaborate(self, platform):
        m = Module()
        m.domains.kernel = ClockDomain("kernel", reset_less=True, local=True)
        m.d.comb += ClockSignal("kernel").eq(self.ap_clk)
        reset = Signal(init=1)  # in reset until the first edge samples ap_rst_n
        m.d.kernel += reset.eq(~self.ap_rst_n)
        ports = {"i_clk": ClockSignal("kernel"), "i_rst": reset}
        for core_pin, pin, flow in self._core_ports:
            ports[("i_" if flow == In else "o_") + core_pin] = getattr(self, pin)
        m.submodules.core = Instance(CORE_MODULE, **ports)
        m.d.comb += [getattr(self, pin).eq(value) for pin, value in self._tied]
        return m


def kernel_verilog_text(params: CoreParams) -> str:
    """Verilog of the wrapper module ``nsllm_kernel`` alone (the core is a separate module)."""
    from nsllm.hdl.registry import verilog_text

    return verilog_text(NSLLMKernel(params), KERNEL_NAME)


def kernel_rtl(params: CoreParams) -> dict[str, str]:
    """The kernel's Verilog files, ``{file name: text}``: ``nsllm_core.v`` (the core, converted
    once and cached by :func:`~nsllm.sim.verilator_device.core_verilog`) and
    ``nsllm_kernel.v`` (the wrapper)."""
    from nsllm.sim.verilator_device import core_verilog

    core = Path(core_verilog(params)).read_text()
    return {f"{CORE_MODULE}.v": core, f"{KERNEL_NAME}.v": kernel_verilog_text(params)}


#: Lint waivers of the kernel wrapper beyond Amaranth's style waivers
#: (:data:`nsllm.sim.cocotb_runner.VERILATOR_WAIVERS`), each with its reason.
KERNEL_LINT_WAIVERS = {
    "SYMRSVDWORD": "Vitis requires the interrupt pin to be called `interrupt`, a word Verilator "
                   "reserves for C++; it renames its C++ member (__SYM__interrupt), the Verilog "
                   "is unaffected.",
}


def simulation_source(rtl: dict[str, str]) -> str:
    """The kernel's Verilog files as one text, for the simulators (:func:`kernel_rtl`)."""
    return "\n".join(rtl[name] for name in sorted(rtl))
