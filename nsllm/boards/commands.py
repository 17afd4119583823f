"""``nsllm build``: write the Vitis RTL-kernel project of a model (or a preset) for a board.

``nsllm build --board vck190 (--model M | --preset P) [--weight-ports N] [--clock-mhz F]
[--memory PORT=TAG …] [--packing 2bit|base3] [--platform NAME] [--skip-resources]
[--skip-projection] --out DIR [--json]``
"""

from __future__ import annotations

import argparse
import json

from nsllm import options
from nsllm.isa import MAX_WEIGHT_PORTS
from nsllm.model.packing import PACKINGS

from . import known_boards


def _memory(text: str) -> tuple[str, str]:
    port, sep, tag = text.partition("=")
    if not sep or not port or not tag:
        raise argparse.ArgumentTypeError(f"expected PORT=TAG (e.g. m_axi_w0=DDR), not {text!r}")
    port = port if port.startswith("m_axi_") else f"m_axi_{port}"
    return port, tag


def cmd_build(args) -> int:
    from nsllm.model import load_model, resolve_model_path

    from .build import build_project
    from .vitis import DEFAULT_PLATFORM

    weights = model_path = None
    if args.model is not None:
        model_path = resolve_model_path(None if args.model == "default" else args.model)
        weights = load_model(model_path)
    memory = dict(args.memory or [])
    # a BuildError is a ValueError: the CLI prints it as `nsllm: error: …` (exit 2)
    report = build_project(args.out, board=args.board, weights=weights, preset=args.preset,
                           weight_ports=args.weight_ports, clock_mhz=args.clock_mhz,
                           memory=memory, platform=args.platform or DEFAULT_PLATFORM,
                           packing=args.packing, resources=not args.skip_resources,
                           projection=not args.skip_projection, model_path=model_path)
    summary = report.as_dict()
    if args.json:
        print(json.dumps(summary))
        return 0
    plan = report.plan
    print(f"wrote the {report.board} project for {report.model} to {report.out} in "
          f"{report.seconds['total']:.0f} s")
    print(f"  kernel {summary['kernel']}: {report.params.weight_ports} weight ports × "
          f"{8 * report.params.port_bytes} bits at {report.clock_hz / 1e6:g} MHz; "
          + ", ".join(f"{m}→{t}" for m, t in plan.assignments.items()))
    if report.resources:
        print("  resources (estimate): " + ", ".join(
            f"{k} {v:,.0f}" for k, v in report.resources.items() if k in
            ("LUT", "FF", "BRAM", "URAM", "DSP")))
    else:
        print(f"  resources {report.resources_note}")
    if report.projection:
        pr = report.projection
        print(f"  projection (estimate): {pr['tokens_per_s']:,.1f} tokens/s "
              f"({pr['roofline_fraction']:.0%} of the DRAM roofline), "
              f"{pr['watts']['typical']:.2f} W dynamic, firing rate {pr['firing_rate']:.3f}")
    print(f"  next: make -C {report.out}  (Vivado/Vitis 2023.2; see {report.out}/report/README.md)"
          "; then on the board: python3 host/run.py (docs/board.md)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``build`` subcommand."""
    p = subparsers.add_parser(
        "build", help="write a Vitis RTL-kernel project for a board (VCK190)",
        description="Write the kernel's Verilog, package_kernel.tcl, kernel.xml, link.cfg, a "
                    "Makefile (package_xo → v++ -l → v++ -p), the model image per memory bank "
                    "with a run script, and a resource report (docs/board.md).")
    p.add_argument("--board", default="vck190", choices=known_boards(),
                   help="target board (default vck190)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", "-m", help="a .nsllm file or folder ('default': the shipped "
                                            "model); the kernel gets its maxima, host/ its image")
    src.add_argument("--preset", help="a preset shape (e.g. nsllm-1.5b): the kernel only, no "
                                      "image")
    p.add_argument("--weight-ports", type=options.integer(1, MAX_WEIGHT_PORTS,
                                                          what="a number of weight ports"),
                   default=None, help="AXI weight ports (default: one per memory controller)")
    p.add_argument("--clock-mhz", type=options.number(10.0, 1000.0, what="a clock in MHz"),
                   default=None, help="kernel clock, pinned in link.cfg (default: the board's "
                                      "assumed clock, 300 MHz on the VCK190)")
    p.add_argument("--memory", type=_memory, action="append", metavar="PORT=TAG",
                   help="link a master to a memory (e.g. w0=DDR; repeatable); the others are "
                        "planned so the ports' bandwidth adds up")
    p.add_argument("--packing", choices=PACKINGS, default="base3",
                   help="trit packing of the image (default base3: fewer bytes per column)")
    p.add_argument("--platform", default=None,
                   help="Vitis platform for the Makefile (default xilinx_vck190_base_202320_1)")
    p.add_argument("--skip-resources", action="store_true",
                   help="skip the Yosys resource estimate (and its fit check)")
    p.add_argument("--skip-projection", action="store_true",
                   help="skip the tokens/s and watts projection (nsllm estimate) in the report")
    p.add_argument("--out", "-o", required=True, type=options.output_folder,
                   help="project folder (created; its files are replaced)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_build)
