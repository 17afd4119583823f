"""Boards described as data (``<name>.json`` beside this file)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Board:
    name: str
    part: str
    pl_clock_mhz: float
    memories: tuple[dict, ...]
    capacity: dict
    axi_port_bytes: int
    description: str = ""

    @property
    def bandwidth_gbytes(self) -> float:
        """Peak DRAM bandwidth over all memories (GB/s)."""
        return sum(m["gbytes_per_s"] for m in self.memories)


def known_boards() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.json"))


def get_board(name: str) -> Board:
    path = HERE / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown board {name!r}; known boards: {', '.join(known_boards())}")
    d = json.loads(path.read_text())
    return Board(name=d["name"], part=d["part"], pl_clock_mhz=d["pl_clock_mhz"],
                 memories=tuple(d["memories"]), capacity=d["capacity"],
                 axi_port_bytes=d["axi_port_bytes"], description=d.get("description", ""))
