"""``nsllm verilog``: write the Verilog of every registered component.

``nsllm verilog --out build/verilog [--size sim|board] [--component NAME ...]``
"""

from __future__ import annotations

import argparse

from .. import options
from . import registry


def cmd_verilog(args) -> int:
    specs = registry.components(strict=True)
    names = args.component or list(specs)
    unknown = [n for n in names if n not in specs]
    if unknown:
        from nsllm.cli import CommandError

        raise CommandError(f"unknown component(s) {', '.join(unknown)}; "
                           f"registered: {', '.join(specs)}")
    for name in names:
        path = registry.write_verilog(name, args.size, args.out)
        print(f"{path}  ({args.size}: {specs[name].summary})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``verilog`` subcommand."""
    p = subparsers.add_parser(
        "verilog", help="write Verilog for the hardware components",
        description="Generate Verilog (one <Component>.v per registered component) with the "
                    "Yosys bundled with Amaranth.")
    p.add_argument("--out", required=True, type=options.output_folder,
                   help="output directory (created if missing)")
    p.add_argument("--size", choices=registry.SIZES, default="sim",
                   help="parameterisation: 'sim' (small) or 'board' (VCK190 core sizes)")
    p.add_argument("--component", action="append", metavar="NAME",
                   help="only this component (repeatable); default all")
    p.set_defaults(func=cmd_verilog)
