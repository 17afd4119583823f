"""The XRT stand-in (xrt_standin.cpp) for tests: build it, write its xclbins, read its log.

The stand-in is a shared library exporting the XRT C functions XrtDevice calls; it forwards
them to the Verilator harness library of the kernel (``nsllm_kernel``, Vitis pin names)
built from a project's rtl/. Both libraries are cached by content under build/.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
from pathlib import Path

from nsllm.boards.kernel import KERNEL_TOP, simulation_source
from nsllm.sim.cocotb_runner import build_root
from nsllm.sim.verilator_device import build_harness

SOURCE = Path(__file__).with_name("xrt_standin.cpp")
#: XRT's xclbin magic; the stand-in's xclbin is this, then key=value lines.
MAGIC = b"xclbin2\0"


def build_standin() -> Path:
    """Compile the stand-in (cached by the source's hash); its file name is XRT's."""
    text = SOURCE.read_bytes()
    digest = hashlib.sha256(text).hexdigest()[:16]
    directory = build_root() / "boards" / "xrt-standin" / digest
    library = directory / "libxrt_coreutil.so"
    if library.is_file():
        return library
    directory.mkdir(parents=True, exist_ok=True)
    gxx = shutil.which("g++")
    if gxx is None:
        raise RuntimeError("g++ is needed to build the XRT stand-in")
    tmp = directory / f".{library.name}.tmp"
    subprocess.run([gxx, "-std=c++17", "-O1", "-shared", "-fPIC", "-o", str(tmp), str(SOURCE),
                    "-ldl"], check=True, capture_output=True, text=True)
    tmp.replace(library)
    return library


def kernel_source(project: Path) -> str:
    """The project's kernel Verilog (rtl/*.v) as one text."""
    return simulation_source({p.name: p.read_text() for p in (project / "rtl").glob("*.v")})


def kernel_simulation(project: Path) -> Path:
    """The Verilator harness library of the project's kernel (rtl/*.v, top nsllm_kernel)."""
    return build_harness(kernel_source(project), top=KERNEL_TOP).library


def write_xclbin(path: Path, project: Path, simulation: Path, *, banks=("DDR", "LPDDR"),
                 bank_bytes: int = 1 << 24, latency: int = 0) -> Path:
    """A stand-in xclbin: the project's kernel.xml and link.cfg, the simulation library, the
    platform's memory tags (index order) and the DRAM latency in cycles."""
    lines = [f"kernel_xml={project / 'kernel.xml'}", f"link_cfg={project / 'link.cfg'}",
             f"sim={simulation}", f"banks={','.join(banks)}", f"bank_bytes={bank_bytes}",
             f"latency={latency}"]
    path.write_bytes(MAGIC + ("\n".join(lines) + "\n").encode())
    return path


def standin_log(library: Path) -> str:
    """Every call the stand-in saw (the same loaded library XrtDevice uses)."""
    lib = ctypes.CDLL(str(library))
    n = lib.standin_log(None, 0)
    buf = ctypes.create_string_buffer(n + 1)
    lib.standin_log(buf, n + 1)
    return buf.value.decode()


def clear_log(library: Path) -> None:
    ctypes.CDLL(str(library)).standin_clear_log()
