"""Build an Amaranth component's Verilog with Verilator or Icarus and run cocotb tests on it.

:func:`run_cocotb` generates the Verilog, builds it with ``cocotb_tools.runner`` in
``build/sim/<simulator>/<Component>_<hash of the Verilog>`` (a rebuild is skipped when that
directory already holds a finished build of the same Verilog), runs the ``@cocotb.test()``
coroutines of ``test_module`` and raises :class:`CocotbFailure` naming the failing tests and the
log when any fails.

A pytest entry point looks like this (``tests/hdl/test_trits_cocotb.py``):

.. code-block:: python

    import pytest
    from nsllm.sim.cocotb_runner import run_cocotb, simulator_params

    @pytest.mark.parametrize("simulator", simulator_params())
    def test_trit_unpacker(simulator):
        run_cocotb("TritUnpacker", "tests.hdl.cocotb_trits", simulator,
                   parameters={"beats": 2000})

``simulator_params()`` marks the Icarus case as skipped (with the install command) when
``iverilog`` is absent. Inside the simulator, the testbench reads ``parameters`` with
:func:`nsllm.sim.streams.test_parameters` and rebuilds the same component object (for its port
layouts) with :func:`nsllm.sim.streams.dut_component`. A component instance can be passed
instead of a registry name; then ``parameters`` must carry whatever the testbench needs to
rebuild it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.lib import wiring

from nsllm.hdl import registry

from . import toolchain

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Environment variables the testbench side reads (see :mod:`nsllm.sim.streams`).
ENV_PARAMS = "NSLLM_COCOTB_PARAMS"
ENV_COMPONENT = "NSLLM_COCOTB_COMPONENT"
ENV_SIZE = "NSLLM_COCOTB_SIZE"

#: Verilator warning classes that Amaranth's generated Verilog trips and that are style, not
#: bugs; they are disabled (only these) for cocotb builds and waived by the ``-Wall`` lint.
#: docs/hardware.md explains each.
VERILATOR_WAIVERS: dict[str, str] = {
    "WIDTHEXPAND": "Yosys' Verilog backend writes constants at their minimal width "
                   "(`$20 <= 7'h40` with an 8-bit left side); Verilog's extension rules give "
                   "the intended value and Amaranth has already sized every operation.",
    "WIDTHTRUNC": "Yosys writes 'vector is zero' as a logical not of the vector (`!sum_sq`), "
                  "which Verilator reports as truncating the vector to one bit; the semantics "
                  "are exactly the intended ones.",
    "UNUSEDSIGNAL": "intermediate wires keep the full width of an operation (e.g. the carry "
                    "bit of an adder, `$100[11]`) when only the low bits are used, and some "
                    "payload bits are not read by every parameterisation.",
    "PROCASSINIT": "registers are declared with their reset/initial value "
                   "(`reg r = 1'h0;`) and assigned in `always @(posedge clk)`: that is how "
                   "Amaranth gives a register its power-up value.",
    "CASEINCOMPLETE": "`casez` over an FSM state or a partial decoder without a `default`: "
                      "the process assigns the default value before the case.",
    "DECLFILENAME": "a design with submodules is written as one file holding every module of "
                    "its hierarchy (`top.vector.rscale0` …), so only the top module's name can "
                    "match the file name.",
}

#: The time unit of every testbench clock (cocotb's Icarus build needs one explicitly).
TIMESCALE = ("1ns", "1ps")


class CocotbFailure(AssertionError):
    """One or more cocotb tests failed, or the simulation ended abnormally."""


class CocotbBuildError(RuntimeError):
    """The simulator could not build the generated Verilog; the message names the build log."""


@dataclass
class CocotbRun:
    """Outcome of :func:`run_cocotb` (only returned when every test passed)."""

    component: str
    simulator: str
    build_dir: Path
    results: Path
    log: Path
    tests: list[str] = field(default_factory=list)
    built: bool = False  #: False when an earlier build of the same Verilog was reused
    build_seconds: float = 0.0
    test_seconds: float = 0.0


def simulator_params() -> list:
    """``pytest.param``\\s for verilator and icarus, Icarus skipped with the install hint."""
    import pytest

    return [
        pytest.param("verilator", id="verilator"),
        pytest.param("icarus", id="icarus", marks=pytest.mark.skipif(
            not toolchain.icarus_available(), reason=toolchain.ICARUS_INSTALL_HINT)),
    ]


def build_root() -> Path:
    """``$NSLLM_BUILD_DIR`` or ``<repo>/build``."""
    return Path(os.environ.get("NSLLM_BUILD_DIR", REPO_ROOT / "build"))


def _resolve(component: str | wiring.Component, size: str, name: str | None
             ) -> tuple[str, wiring.Component]:
    if isinstance(component, str):
        return component, registry.build(component, size)
    if not isinstance(component, wiring.Component):
        raise TypeError(
            f"component must be a registry name or a wiring.Component, not {component!r}")
    return name or type(component).__name__, component


def _build_args(simulator: str) -> list[str]:
    if simulator == "verilator":
        return [f"-Wno-{w}" for w in VERILATOR_WAIVERS]
    return []


@contextmanager
def _locked(directory: Path):
    """Serialise builds and runs in one directory (another process may simulate concurrently)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def _repo_on_sys_path():
    # cocotb's runner exports sys.path as the simulator's PYTHONPATH; test modules live in tests/
    added = str(REPO_ROOT) not in sys.path
    if added:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        yield
    finally:
        if added:
            sys.path.remove(str(REPO_ROOT))


def _failures(results: Path) -> tuple[list[str], list[str]]:
    """(all test names, failed ones with their messages) from cocotb's JUnit results file."""
    names, failed = [], []
    for case in ElementTree.parse(results).getroot().iter("testcase"):
        name = case.get("name", "?")
        names.append(name)
        for tag in ("failure", "error"):
            bad = case.find(tag)
            if bad is not None:
                message = (bad.get("message") or bad.text or "").strip()
                failed.append(f"{name}: {message}" if message else name)
                break
    return names, failed


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_cocotb(
    component: str | wiring.Component,
    test_module: str,
    simulator: str = "verilator",
    *,
    size: str = "sim",
    name: str | None = None,
    parameters: Mapping[str, object] | None = None,
    extra_env: Mapping[str, str] | None = None,
    build_dir: str | os.PathLike | None = None,
    timeout: float = 300,
    testcase: str | list[str] | None = None,
    seed: int | None = 1,
    waves: bool = False,
) -> CocotbRun:
    """Generate Verilog for ``component``, build it on ``simulator`` and run ``test_module``.

    Parameters
    ----------
    component : str or wiring.Component
        A registry name (built at ``size``) or a component instance (module name ``name``,
        default its class name).
    test_module : str
        Dotted name of the module holding the ``@cocotb.test()`` coroutines, e.g.
        ``"tests.hdl.cocotb_trits"``.
    simulator : {"verilator", "icarus"}
    parameters : mapping, optional
        JSON-serialisable values for the testbench (``streams.test_parameters()``).
    extra_env : mapping, optional
        More environment variables for the simulation.
    build_dir : path, optional
        Root of the build tree (default ``build/``); the build goes in
        ``<root>/sim/<simulator>/<name>_<hash>``.
    timeout : float
        Seconds the simulation may run before it is killed (the build is not limited).
    testcase : str or list of str, optional
        Run only these tests of ``test_module``.
    seed : int, optional
        ``COCOTB_RANDOM_SEED``; fixed by default so failures reproduce.
    waves : bool
        Record a waveform (a separate build, as the tracing flag changes the Verilator model).

    Returns
    -------
    CocotbRun

    Raises
    ------
    CocotbFailure
        A test failed or the simulation ended abnormally: the message names the component,
        simulator, failing tests and the log file.
    CocotbBuildError
        The simulator could not build the Verilog.
    nsllm.sim.toolchain.ToolchainError
        The simulator is missing or too old (the message says how to install it).
    """
    from cocotb_tools.runner import get_runner

    env = toolchain.simulator_env(simulator)
    top, dut = _resolve(component, size, name)
    text = registry.verilog_text(dut, top)
    if simulator == "icarus":
        text = toolchain.icarus_compatible(text)
    build_args = _build_args(simulator)
    digest = hashlib.sha256(
        "\n".join([text, simulator, repr(build_args), repr(TIMESCALE), str(waves)]).encode()
    ).hexdigest()[:12]
    root = Path(build_dir) if build_dir is not None else build_root()
    bdir = (root / "sim" / simulator / f"{top}_{digest}").resolve()

    env.update({k: str(v) for k, v in (extra_env or {}).items()})
    env[ENV_PARAMS] = json.dumps(dict(parameters or {}))
    env[ENV_COMPONENT] = top if isinstance(component, str) else ""
    env[ENV_SIZE] = size
    if shutil.which("timeout"):
        # cocotb's runner prefixes the simulator command with SIM_CMD_PREFIX
        env["SIM_CMD_PREFIX"] = f"timeout -k 5 {int(timeout)}"

    run = CocotbRun(component=top, simulator=simulator, build_dir=bdir,
                    results=bdir / "runs" / test_module / "results.xml",
                    log=bdir / "runs" / test_module / "sim.log")
    with _locked(bdir), _repo_on_sys_path(), toolchain.use_environment(env):
        runner = get_runner(simulator)
        source = bdir / f"{top}.v"
        done = bdir / ".built"
        run.built = not done.exists()
        if run.built or not source.exists():
            source.write_text(text)
        start = time.monotonic()
        try:
            # up to date → cheap: Verilator skips identical inputs, make and Icarus check dates
            runner.build(sources=[source], hdl_toplevel=top, build_args=build_args,
                         build_dir=bdir, timescale=TIMESCALE, waves=waves,
                         log_file=bdir / "build.log")
        except (RuntimeError, SystemExit) as exc:
            done.unlink(missing_ok=True)
            raise CocotbBuildError(
                f"{top}: {simulator} build failed ({exc}); log {bdir / 'build.log'}:\n"
                f"{_tail(bdir / 'build.log')}") from None
        run.build_seconds = time.monotonic() - start
        done.write_text(digest)
        run.results.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        exit_code = 0
        try:
            runner.test(test_module=test_module, hdl_toplevel=top, build_dir=bdir,
                        test_dir=run.results.parent, results_xml=str(run.results),
                        log_file=run.log, testcase=testcase, seed=seed, waves=waves,
                        timescale=TIMESCALE if simulator == "verilator" else None)
        except SystemExit as exc:  # the runner exits when the simulator fails or tests fail
            exit_code = exc.code if isinstance(exc.code, int) else 1
        run.test_seconds = time.monotonic() - start

    where = f"{top} on {simulator}"
    if not run.results.is_file():
        hint = f" (killed after the {timeout:.0f} s timeout?)" if exit_code in (124, 137) else ""
        raise CocotbFailure(
            f"{where}: simulation ended abnormally, exit code {exit_code}{hint}, no results; "
            f"log {run.log}:\n{_tail(run.log)}")
    run.tests, failed = _failures(run.results)
    if not run.tests:
        raise CocotbFailure(f"{where}: no cocotb tests ran from {test_module}; log {run.log}")
    if failed:
        raise CocotbFailure(
            f"{where}: {len(failed)} of {len(run.tests)} cocotb tests failed:\n  "
            + "\n  ".join(failed) + f"\nlog {run.log}:\n{_tail(run.log)}")
    if exit_code:
        raise CocotbFailure(f"{where}: simulator exited with code {exit_code}; log {run.log}")
    return run
