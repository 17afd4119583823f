"""Resource counts of the board build by unit group, for the power model.

The counts are Yosys' (``synth_xilinx -family xcup -uram``, hierarchical:
:func:`nsllm.hdl.synth.core_resources`) of the board build — an UltraScale+ mapping standing in
for Versal, an estimate (docs/hardware.md). Synthesising the board build takes tens of minutes,
so a snapshot of :meth:`CoreParams.board` is kept in ``nsllm/perf/data/board_resources.json``
(:func:`write_snapshot` regenerates it) and other builds are scaled from it group by group
(:func:`scale`): the weight path with ports × port width (its banks with their bits), the linear
and vector units with the vector width, the scratchpad and tables with their bits. An exact
synthesis of any build replaces the snapshot with ``synthesize=True`` (cached under
build/synth/).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nsllm.hdl.core.params import CoreParams

from .activity import GROUPS, group_of

__all__ = ["SNAPSHOT", "ResourceReport", "group_resources", "load", "memory_fit", "scale",
           "sla_state_memory", "write_snapshot"]

SNAPSHOT = Path(__file__).resolve().parent / "data" / "board_resources.json"
CLASSES = ("LUT", "FF", "BRAM", "URAM", "DSP")


@dataclass
class ResourceReport:
    """LUT / FF / BRAM / URAM / DSP per unit group of one build."""

    groups: dict[str, dict[str, float]]
    params: str  #: repr of the CoreParams they are for
    source: str

    def total(self) -> dict[str, float]:
        return {c: sum(g.get(c, 0) for g in self.groups.values()) for c in CLASSES}

    def as_dict(self) -> dict:
        return {"groups": self.groups, "total": self.total(), "params": self.params,
                "source": self.source}


def group_resources(syn) -> dict[str, dict[str, float]]:
    """Sum a :class:`~nsllm.hdl.synth.HierarchicalSynthesis`'s own mapped cells of every
    instance into its group (:data:`nsllm.perf.activity.GROUPS`)."""
    from nsllm.hdl.synth import Synthesis

    out = {g: dict.fromkeys(CLASSES, 0.0) for g, _ in GROUPS}
    for path, rep in syn.instances.items():
        below = path.split(".", 1)[1] if "." in path else ""
        res = Synthesis(rep, {}, syn.modules[rep][1]).resources()
        acc = out[group_of(below) if below else "control"]
        for c in CLASSES:
            acc[c] += res.get(c, 0)
    return out


def _bits(p: CoreParams) -> dict[str, float]:
    from nsllm.model import numerics as nx

    return {"weight path": p.weight_ports * p.acc_words * p.lanes * p.acc_bits,
            "scratchpad": p.scratch_words * p.vector * nx.ACT_BITS,
            "tables": 2 * p.table_bank_words * p.vector * 32}


def scale(report: ResourceReport, base: CoreParams, params: CoreParams) -> ResourceReport:
    """The snapshot of ``base`` scaled to ``params`` group by group (module docstring)."""
    if report.params == repr(params):
        return report
    logic = {"weight path": params.weight_ports * params.port_bytes
             / (base.weight_ports * base.port_bytes),
             "linear unit": params.vector / base.vector,
             "vector unit": params.vector / base.vector}
    b0, b1 = _bits(base), _bits(params)
    out = {}
    for g, res in report.groups.items():
        fl = logic.get(g, 1.0)
        fm = b1[g] / b0[g] if g in b0 and b0[g] else 1.0
        out[g] = {c: v * (fm if c in ("BRAM", "URAM") else fl) for c, v in res.items()}
    return ResourceReport(out, repr(params), f"{report.source}; scaled to {params!r} "
                                             "(nsllm.perf.resources.scale)")


#: A URAM288 block: 4,096 words of 72 bits (UltraScale+ and Versal).
URAM_WORDS, URAM_BITS = 4096, 72


def sla_state_memory(params: CoreParams) -> dict:
    """The SLA unit's state memory of a build, computed (no synthesis): ``max_sla_layers`` slots
    of ``max_hidden · max_head_dim`` 24-bit entries in words of ``sla_lanes`` entries, mapped to
    URAM288 blocks as a ``words × bits`` array of them (⌈bits / 72⌉ wide, ⌈words / 4096⌉ deep)."""
    from nsllm.model import numerics as nx

    if not params.max_sla_layers:
        return {"layers": 0, "bytes_per_layer": 0, "bytes": 0, "URAM": 0, "URAM_per_layer": 0}
    bits = params.sla_lanes * nx.SLA_STATE_BITS
    words = params.max_sla_layers * params.sla_slot_words
    wide = -(-bits // URAM_BITS)
    return {"layers": params.max_sla_layers,
            "bytes_per_layer": params.sla_state_bytes // params.max_sla_layers,
            "bytes": params.sla_state_bytes, "word_bits": bits, "words": words,
            "URAM": wide * -(-words // URAM_WORDS),
            "URAM_per_layer": wide * -(-params.sla_slot_words // URAM_WORDS)}


def memory_fit(params: CoreParams, capacity: dict, report: ResourceReport | None = None
               ) -> dict:
    """On-chip memory of a build against a device's ``capacity`` (a board's: ``URAM``,
    ``BRAM36``): the rest of the core from ``report`` (default :func:`load`: the board snapshot
    scaled) plus the SLA state memory (:func:`sla_state_memory`). An estimate: block counts of
    Yosys' UltraScale+ mapping and of the arithmetic above, not a Versal implementation."""
    report = load(params) if report is None else report
    core = report.total()
    sla = sla_state_memory(params)
    uram = core["URAM"] + sla["URAM"]
    bram = core["BRAM"]
    return {"core_URAM": core["URAM"], "core_BRAM": bram, "sla_state": sla,
            "URAM": uram, "BRAM": bram, "URAM_capacity": capacity["URAM"],
            "BRAM_capacity": capacity["BRAM36"],
            "fits": uram <= capacity["URAM"] and bram <= capacity["BRAM36"],
            "source": f"{report.source}; SLA state computed (nsllm.perf.resources."
                      "sla_state_memory)"}


def load(params: CoreParams, synthesize: bool = False, progress=None) -> ResourceReport:
    """Resources of ``params``: an exact hierarchical synthesis (``synthesize``, cached), else
    the board snapshot scaled."""
    if synthesize:
        from nsllm.hdl.synth import core_resources

        syn = core_resources(params, progress=progress)
        return ResourceReport(group_resources(syn), repr(params),
                              "Yosys synth_xilinx -family xcup -uram, hierarchical "
                              f"(nsllm.hdl.synth.core_resources{', cached' if syn.cached else ''})")
    if not SNAPSHOT.is_file():
        raise FileNotFoundError(f"{SNAPSHOT} is missing; regenerate it with "
                                "`python -m nsllm.perf.resources` (tens of minutes)")
    data = json.loads(SNAPSHOT.read_text())
    report = ResourceReport(data["groups"], data["params"], data["source"])
    return scale(report, CoreParams.board(), params)


def write_snapshot(progress=print) -> Path:
    """Synthesise :meth:`CoreParams.board` (or reuse build/synth/) and write :data:`SNAPSHOT`."""
    import subprocess

    from nsllm.hdl.synth import core_resources

    params = CoreParams.board()
    syn = core_resources(params, progress=progress)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=False,
                                cwd=Path(__file__).resolve().parent).stdout.strip()
    except OSError:
        commit = "?"
    report = {"params": repr(params), "groups": group_resources(syn),
              "total": syn.resources(),
              "source": f"Yosys synth_xilinx -family xcup -uram of CoreParams.board(), "
                        f"hierarchical (nsllm.hdl.synth.core_resources, {syn.seconds:.0f} s), "
                        f"at commit {commit or '?'}"}
    SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    SNAPSHOT.write_text(json.dumps(report, indent=1) + "\n")
    return SNAPSHOT


if __name__ == "__main__":
    print(write_snapshot())
