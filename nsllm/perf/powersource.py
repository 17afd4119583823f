"""Measured board power: a power source sampled while tokens run, idle subtracted.

On the VCK190 the rail monitors sit on the System Controller, not on the Versal (BOARD_FLOW.md,
"Power readout"): a *command* source runs e.g. ``ssh root@vck190-sc sc_app -c getpower -t
VCCINT`` and parses the watts it prints. Boards with a Linux hwmon driver for their monitors use a
*hwmon* source (``/sys/class/hwmon/hwmonN``: ``power*_input`` in µW, or ``in*_input`` mV ×
``curr*_input`` mA). :class:`PowerSampler` samples a source in a background thread;
:func:`measure` takes an idle window, then samples while a workload runs, and reports
``dynamic = running − idle`` with the number of samples of each.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CommandSource", "HwmonSource", "PowerMeasurement", "PowerSampler", "PowerSourceError",
           "measure", "parse_power_source"]


class PowerSourceError(RuntimeError):
    """A power source that cannot be read; the message says what and how to fix it."""


class HwmonSource:
    """Watts from a Linux hwmon directory or one of its ``power*_input`` files."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise PowerSourceError(f"no hwmon path {self.path}: give a /sys/class/hwmon/hwmonN "
                                   "directory or a power*_input file")
        self.name = f"hwmon:{self.path}"

    def _value(self, f: Path) -> float:
        try:
            return float(f.read_text().strip())
        except (OSError, ValueError) as e:
            raise PowerSourceError(f"cannot read a number from {f}: {e}") from None

    def read_watts(self) -> float:
        p = self.path
        if p.is_file():
            return self._value(p) * 1e-6  # power*_input: microwatts
        powers = sorted(p.glob("power*_input"))
        if powers:
            return self._value(powers[0]) * 1e-6
        total = 0.0
        pairs = 0
        for volt in sorted(p.glob("in*_input")):
            curr = p / volt.name.replace("in", "curr", 1)
            if curr.is_file():  # mV × mA
                total += self._value(volt) * self._value(curr) * 1e-6
                pairs += 1
        if not pairs:
            raise PowerSourceError(f"{p} has no power*_input and no in*_input/curr*_input pair")
        return total


_NUMBER = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"


class CommandSource:
    """Watts printed by a command (e.g. the VCK190 System Controller's ``sc_app -c getpower``
    over ssh): the number on a line naming power (``Power(W): 7.9``, ``power: 7900 mW``), else
    voltage × current lines, else the only number printed."""

    def __init__(self, command: str, timeout: float = 10.0):
        self.command = command
        self.argv = shlex.split(command)
        if not self.argv:
            raise PowerSourceError("an empty power command")
        self.timeout = timeout
        self.name = f"cmd:{command}"

    @staticmethod
    def parse(text: str) -> float:
        lines = text.splitlines()
        for line in lines:
            if re.search(r"power", line, re.I):
                m = re.search(_NUMBER + r"\s*(mW|W)?\b", line.split(":", 1)[-1])
                if m:
                    scale = 1e-3 if (m.group(2) or "").lower() == "mw" or re.search(
                        r"\(mW\)", line) else 1.0
                    return float(m.group(1)) * scale
        volts = amps = None
        for line in lines:
            m = re.search(_NUMBER, line.split(":", 1)[-1])
            if m and re.search(r"volt", line, re.I):
                volts = float(m.group(1))
            elif m and re.search(r"curr", line, re.I):
                amps = float(m.group(1))
        if volts is not None and amps is not None:
            return volts * amps
        numbers = re.findall(_NUMBER, text)
        if len(numbers) == 1:
            return float(numbers[0])
        raise PowerSourceError(f"cannot find watts in the power command's output {text!r}")

    def read_watts(self) -> float:
        try:
            out = subprocess.run(self.argv, capture_output=True, text=True,
                                 timeout=self.timeout, check=False)
        except FileNotFoundError:
            raise PowerSourceError(f"power command {self.argv[0]!r} not found") from None
        except subprocess.TimeoutExpired:
            raise PowerSourceError(f"power command `{self.command}` did not answer within "
                                   f"{self.timeout:g} s") from None
        if out.returncode != 0:
            raise PowerSourceError(f"power command `{self.command}` failed (exit "
                                   f"{out.returncode}): {out.stderr.strip()[-300:]}")
        return self.parse(out.stdout)


def parse_power_source(spec: str):
    """``hwmon:PATH``, ``cmd:COMMAND``, or a path (a hwmon source)."""
    if spec.startswith("cmd:"):
        return CommandSource(spec[4:])
    if spec.startswith("hwmon:"):
        return HwmonSource(spec[6:])
    if Path(spec).exists():
        return HwmonSource(spec)
    raise PowerSourceError(f"power source {spec!r}: give hwmon:/sys/class/hwmon/hwmonN or "
                           "cmd:'ssh root@<system controller> sc_app -c getpower -t VCCINT'")


class PowerSampler:
    """Samples ``source`` every ``interval`` seconds in a thread between ``__enter__`` and
    ``__exit__`` (one sample at once, one at the end)."""

    def __init__(self, source, interval: float = 0.2):
        self.source, self.interval = source, interval
        self.samples: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        try:
            self.samples.append(float(self.source.read_watts()))
        except PowerSourceError as e:
            self.errors.append(str(e))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> PowerSampler:
        self._sample()
        if self.errors:
            raise PowerSourceError(self.errors[0])
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    @property
    def mean(self) -> float:
        if not self.samples:
            raise PowerSourceError(f"no power samples ({'; '.join(self.errors) or 'none taken'})")
        return sum(self.samples) / len(self.samples)


@dataclass
class PowerMeasurement:
    """Board power while idle and while running, in watts."""

    source: str
    idle_w: float
    running_w: float
    idle_samples: int
    running_samples: int
    errors: list[str] = field(default_factory=list)

    @property
    def dynamic_w(self) -> float:
        return self.running_w - self.idle_w

    def as_dict(self) -> dict:
        return {"source": self.source, "idle_w": round(self.idle_w, 4),
                "running_w": round(self.running_w, 4), "dynamic_w": round(self.dynamic_w, 4),
                "idle_samples": self.idle_samples, "running_samples": self.running_samples,
                "errors": self.errors}


def measure(source, workload: Callable[[], object], idle_seconds: float = 2.0,
            interval: float = 0.2):
    """Sample ``source`` for ``idle_seconds`` with nothing running, then while ``workload()``
    runs; returns (the workload's result, :class:`PowerMeasurement`)."""
    with PowerSampler(source, interval) as idle:
        time.sleep(idle_seconds)
    with PowerSampler(source, interval) as running:
        result = workload()
    return result, PowerMeasurement(getattr(source, "name", str(source)), idle.mean,
                                    running.mean, len(idle.samples), len(running.samples),
                                    idle.errors + running.errors)
