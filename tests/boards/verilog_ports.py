"""A small reader of a Verilog module's port list (direction and width of each port), used to
check the generated kernel against Vitis' rules independently of the generator."""

from __future__ import annotations

import re


def module_ports(text: str, module: str) -> dict[str, tuple[str, int]]:
    """``{port: (direction, bits)}`` of ``module`` in Yosys-written Verilog."""
    start = re.search(rf"^module\s+{re.escape(module)}\s*\(([^)]*)\);", text, re.MULTILINE)
    assert start, f"no module {module}"
    names = [p.strip() for p in start[1].split(",") if p.strip()]
    body = text[start.end(): text.index("endmodule", start.end())]
    ports = {}
    for name in names:
        decl = re.search(rf"^\s*(input|output)\s+(?:\[(\d+):(\d+)\]\s+)?{re.escape(name)}\s*;",
                         body, re.MULTILINE)
        assert decl, f"no declaration of port {name}"
        bits = int(decl[2]) - int(decl[3]) + 1 if decl[2] else 1
        ports[name] = (decl[1], bits)
    return ports
