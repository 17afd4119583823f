"""Switching activity of the core, measured in Verilator over real tokens, for the power model.

The simulated build (the shipped model's 64-bit build) is compiled a second time with Verilator's
``--coverage-toggle`` (:class:`~nsllm.sim.verilator_device.SimDevice` ``coverage=True``); after
the first token the toggle counters are zeroed, ``tokens`` more tokens of a text run, and every
signal bit's toggle count is read back (:func:`read_toggles`). Bits are grouped by the unit they
belong to (:data:`GROUPS`, by instance path); a group's **toggle rate** is its toggles per bit per
cycle.

The board build is larger (512-bit ports, vector 16) and runs another model, so a group's rate is
carried over *per event* rather than per cycle (:meth:`Activity.at`): the weight path's per weight
beat, the linear unit's per cycle it is busy, the vector unit's per cycle it is busy; the
sequencer, registers, scratchpad and tables per cycle. The events per cycle on each build come
from the cycle model (:mod:`nsllm.perf.cycles`), which reproduces the simulated runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GROUPS", "Activity", "ActivityError", "EVENTS", "events", "group_of", "measure",
           "read_toggles"]

#: Unit groups of the core by instance path below the top (first match wins).
GROUPS = (
    ("weight path", re.compile(r"^(linear\.(streamer|bank)\d+|w\d+_port)(\$\d+)?(\.|$)")),
    ("linear unit", re.compile(r"^linear(\$\d+)?(\.|$)")),
    ("vector unit", re.compile(r"^vector(\$\d+)?(\.|$)")),
    ("scratchpad", re.compile(r"^scratch(\$\d+)?(\.|$)")),
    ("tables", re.compile(r"^(tables|table_loader)(\$\d+)?(\.|$)")),
    ("control", re.compile(r".*")),
)
#: The event each group's toggles are counted per (see :func:`events`).
EVENTS = {"weight path": "weight beats per port", "linear unit": "LINEAR busy",
          "vector unit": "vector busy", "scratchpad": "cycle", "tables": "cycle",
          "control": "cycle"}


class ActivityError(RuntimeError):
    """Toggle counts that cannot be read or measured."""


def group_of(path: str) -> str:
    """The group of an instance path below the top (``linear.streamer0.unpack`` → weight path)."""
    for name, pattern in GROUPS:
        if pattern.match(path):
            return name
    return "control"


def read_toggles(path: str | Path, top: str = "nsllm_core") -> dict[str, tuple[int, int]]:
    """``{instance path below top: (bits, toggles)}`` from a Verilator coverage.dat.

    Each toggle point is one bit (or one direction of one bit, ``…:0->1``/``…:1->0``, counted as
    half a bit each); its count is the transitions it saw.
    """
    out: dict[str, list[float]] = {}
    found = False
    for line in Path(path).read_text(errors="replace").splitlines():
        if not line.startswith("C '"):
            continue
        body, _, count = line[3:].rpartition("' ")
        fields = dict(kv.split("\x02", 1) for kv in body.split("\x01") if "\x02" in kv)
        if not fields.get("page", "").startswith("v_toggle"):
            continue
        found = True
        parts = fields.get("h", "").split(".")
        while parts and parts[0] == top:  # the harness's TOP name, then the top module
            parts.pop(0)
        inst = ".".join(parts)
        weight = 0.5 if "->" in fields.get("o", "") else 1.0
        acc = out.setdefault(inst, [0.0, 0.0])
        acc[0] += weight
        acc[1] += int(count)
    if not found:
        raise ActivityError(f"{path} holds no toggle coverage (was the core built with "
                            "--coverage-toggle?)")
    return {k: (round(b), round(t)) for k, (b, t) in out.items()}


def events(program, breakdown, weight_ports: int) -> dict[str, float]:
    """Events per cycle of one modelled run (a :class:`~nsllm.perf.cycles.CycleBreakdown`)."""
    cycles = breakdown.cycles
    linear = breakdown.by_op.get("LINEAR", 0.0)
    vector = sum(v for k, v in breakdown.by_op.items() if k != "LINEAR")
    beats = sum(breakdown.weight_beats) / max(weight_ports, 1)
    return {"weight beats per port": beats / cycles, "LINEAR busy": linear / cycles,
            "vector busy": vector / cycles, "cycle": 1.0}


@dataclass
class Activity:
    """Toggle rates per group, measured on one build, with the events they were counted over."""

    rates: dict[str, float]  #: group → toggles per bit per cycle (on the measured build)
    bits: dict[str, int]
    events: dict[str, float]  #: event → per cycle on the measured build
    cycles: int
    tokens: int
    source: str

    def at(self, board_events: dict[str, float]) -> dict[str, float]:
        """Toggle rates on a build whose events per cycle are ``board_events``: per event."""
        out = {}
        for g, r in self.rates.items():
            ev = EVENTS.get(g, "cycle")
            sim = self.events.get(ev, 1.0)
            out[g] = min(1.0, r * board_events.get(ev, 1.0) / sim) if sim > 0 else r
        return out

    def scaled(self, factor: float) -> Activity:
        """The same activity with every toggle rate × ``factor`` (a sensitivity check)."""
        return Activity({g: r * factor for g, r in self.rates.items()}, self.bits, self.events,
                        self.cycles, self.tokens, f"{self.source} × {factor:g}")

    def as_dict(self) -> dict:
        return {"toggle_rate_per_bit_per_cycle": dict(self.rates), "bits": self.bits,
                "events_per_cycle": dict(self.events),
                "cycles": self.cycles, "tokens": self.tokens, "source": self.source}

    @classmethod
    def from_dict(cls, d: dict) -> Activity:
        return cls(d["toggle_rate_per_bit_per_cycle"], d["bits"], d["events_per_cycle"],
                   d["cycles"], d["tokens"], d["source"])

    @classmethod
    def default(cls, rate: float = 0.125) -> Activity:
        """XPE's default toggle rate (12.5 %) for every group, per cycle: when nothing was
        measured."""
        groups = [g for g, _ in GROUPS]
        return cls(dict.fromkeys(groups, rate), dict.fromkeys(groups, 0), {}, 0, 0,
                   f"not measured: AMD XPE's default toggle rate {rate:.1%} for every net")


def grouped(toggles: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    out: dict[str, list[int]] = {}
    for inst, (bits, count) in toggles.items():
        acc = out.setdefault(group_of(inst), [0, 0])
        acc[0] += bits
        acc[1] += count
    return {g: (b, t) for g, (b, t) in out.items()}


def measure(weights, *, tokens: int = 8, text_ids: Iterable[int] | None = None,
            params=None, cache_dir: Path | None = None, progress=None,
            model_label: str = "") -> Activity:
    """Toggle rates of the simulated core running ``weights`` over ``tokens`` tokens.

    Builds (once, cached) the coverage build of ``params`` (default: the model's 64-bit build),
    runs one token, zeroes the counters, runs ``tokens`` more, and groups the counts. The result
    is cached as JSON under ``build/perf`` by build, model and tokens.
    """
    import tempfile

    from nsllm.hdl.core import CoreParams
    from nsllm.host.image import build_image
    from nsllm.host.program import Interpreter
    from nsllm.sim.cocotb_runner import build_root
    from nsllm.sim.verilator_device import core_verilog, sim_backend

    from .cycles import CycleModel, PortTiming

    say = progress or (lambda msg: None)
    params = params or CoreParams.for_model(weights.config)
    ids = list(text_ids) if text_ids is not None else list(b"The quick brown fox jumps over")
    ids = [i % weights.config.vocab_size for i in ids][: tokens + 1]
    if len(ids) < 2:
        raise ActivityError("activity needs at least two tokens")
    verilog = core_verilog(params)
    image = build_image(weights, port_bytes=params.port_bytes, packing=params.packings[0],
                        weight_ports=params.weight_ports)
    digest = hashlib.sha256(verilog.read_bytes() + image.raw + b"".join(image.regions))
    digest.update(json.dumps(ids).encode())
    cache = (cache_dir or build_root() / "perf") / f"activity_{digest.hexdigest()[:16]}.json"
    if cache.is_file():
        return Activity.from_dict(json.loads(cache.read_text()))
    say("building the toggle-coverage core in Verilator (once, then cached; about 10 minutes "
        "on a 2-core machine) …")
    backend = sim_backend(weights, params, packing=params.packings[0], coverage=True,
                          timeout=600)
    runner, dev = backend.runner, backend.runner.device
    image = runner.loaded.image
    interp = Interpreter(image.raw, image.regions, runner.loaded.build)
    interp.run(image.reset)
    runner.reset()
    interp.run(image.token, token=ids[0])
    runner.run_token(ids[0])
    model = CycleModel(params, PortTiming(), PortTiming())
    say(f"running {len(ids) - 1} tokens with toggle counting …")
    dev.zero_toggle_counts()
    c0 = dev.cycles
    ev_sum: dict[str, float] = {}
    busy = 0
    for t in ids[1:]:
        stats = interp.run(image.token, token=t)
        _, counters = runner.run_token(t)
        busy += counters.cycles
        bd = model.program(image.token, stats.fired)
        for k, v in events(image.token, bd, params.weight_ports).items():
            ev_sum[k] = ev_sum.get(k, 0.0) + v * bd.cycles
    cycles = dev.cycles - c0
    with tempfile.TemporaryDirectory() as tmp:
        counts = grouped(read_toggles(dev.toggle_counts(Path(tmp) / "coverage.dat")))
    dev.close()
    rates = {g: t / (b * cycles) for g, (b, t) in counts.items() if b}
    # the events happened during the busy cycles; the rates are over all simulated cycles
    source = (f"Verilator --coverage-toggle, {model_label or weights.config.name} on the "
              f"{params.port_bytes * 8}-bit, vector-{params.vector} build, {len(ids) - 1} "
              f"tokens ({cycles:,} cycles, {busy:,} busy)")
    act = Activity(rates, {g: b for g, (b, _) in counts.items()},
                   {k: v / cycles for k, v in ev_sum.items()} | {"cycle": 1.0}, cycles,
                   len(ids) - 1, source)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(act.as_dict(), indent=1))
    return act
