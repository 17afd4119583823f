"""Size and conversion time of the core's Verilog, at the sim and board builds.

    python bench/verilog_size.py [--sizes sim,board] [--json]

Converts ``NSLLMCore`` afresh (not from the cache) with the Yosys bundled with Amaranth and
reports bytes, lines, modules and seconds (wall and CPU). The board build takes minutes on a
2-core machine; the numbers in docs/hardware.md come from this script.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time

from nsllm.hdl import registry


def measure(size: str) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    text = registry.verilog_text(registry.build("NSLLMCore", size), "nsllm_core")
    return {"size": size, "bytes": len(text), "lines": text.count("\n"),
            "modules": len(re.findall(r"^module ", text, re.M)),
            "seconds": round(time.perf_counter() - t0, 1),
            "cpu_seconds": round(time.process_time() - c0, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="sim,board")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = [measure(size) for size in args.sizes.split(",")]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            print(f"{r['size']:5s} {r['bytes'] / 1e6:6.2f} MB, {r['lines']:,} lines, "
                  f"{r['modules']} modules, {r['seconds']} s ({r['cpu_seconds']} s CPU in this "
                  "process; Yosys runs in a subprocess)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
