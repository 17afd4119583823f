"""Checked command-line option types: every numeric option and every output path is validated
when the command line is parsed, before any work, with a message naming the option.

Each factory returns an ``argparse`` ``type=`` callable; a bad value raises
:class:`argparse.ArgumentTypeError`, which argparse reports as ``argument --top-k: …`` (exit 2).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from .model.numerics import MAX_DELTA, MAX_TIMESTEPS

__all__ = ["delta", "delta_list", "integer", "number", "output_file", "output_folder",
           "timesteps", "timesteps_list"]


def _bounds(lo, hi) -> str:
    if hi is None:
        return f"≥ {lo:g}"
    return f"in [{lo:g}, {hi:g}]"


def integer(lo: int = 1, hi: int | None = None, what: str = "an integer") -> Callable[[str], int]:
    """An integer in [lo, hi] (``hi=None``: no upper bound)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, not {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be {what} {_bounds(lo, hi)}, not {v}")
        return v

    return parse


def number(lo: float = 0.0, hi: float | None = None, *, open_lo: bool = False,
           what: str = "a number") -> Callable[[str], float]:
    """A finite float in [lo, hi] (or (lo, hi] with ``open_lo``)."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, not {text!r}") from None
        low_ok = v > lo if open_lo else v >= lo
        if not math.isfinite(v) or not low_ok or (hi is not None and v > hi):
            rng = (f"> {lo:g}" if hi is None else f"in ({lo:g}, {hi:g}]") if open_lo \
                else _bounds(lo, hi)
            raise argparse.ArgumentTypeError(f"must be {what} {rng}, not {text}")
        return v

    return parse


def _list(item: Callable[[str], float], what: str) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or any(p == "" for p in parts):
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, not {text!r}")
        values = []
        for p in parts:
            values.append(item(p))  # its message names the bad value
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"{text!r} lists a value twice")
        return tuple(values)

    return parse


#: A timestep count D (the hardware holds counts in 8 signed bits).
timesteps = integer(1, MAX_TIMESTEPS, "a timestep count D")
#: A sparsification shift δ (held in 16 bits of U_FRAC fixed point by the core).
delta = number(0.0, MAX_DELTA, what="a shift δ")
timesteps_list = _list(timesteps, "timestep counts D")
delta_list = _list(delta, "shifts δ")


def _output(kind: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        from .outputs import OutputError, check_output

        try:
            check_output(text, option="", kind=kind)
        except OutputError as e:
            raise argparse.ArgumentTypeError(str(e).lstrip()) from None
        return text

    parse.__name__ = f"output_{kind}"
    return parse


#: An output file: not an existing folder, not under a file, in a writable folder.
output_file = _output("file")
#: An output folder: not an existing file, creatable in a writable folder.
output_folder = _output("folder")
