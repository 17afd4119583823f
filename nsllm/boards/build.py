"""``nsllm build``: a complete Vitis RTL-kernel project for a board, from a model or a preset.

The project folder::

    rtl/nsllm_core.v, rtl/nsllm_kernel.v   the kernel's Verilog (the core at board parameters)
    kernel.xml, package_kernel.tcl         package_xo inputs, from nsllm.isa's register map
    link.cfg                               v++ --link: one sp= per master, [clock] freqHz=
    Makefile                               package_xo → v++ -l → v++ -p, logs in logs/
    host/                                  the model image, one file per buffer (memory bank),
                                           manifest.json and run.py (XrtDevice)
    report/                                resources against the device, memory plan, tools
    build.json                             what was built (the --json summary)

:func:`build_project` checks before it writes anything that the model fits the memory banks
(each buffer in the bank its port is linked to) and, once the resource estimate is known, the
device; a master with no memory is an error too (:class:`BuildError`).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from nsllm.hdl.core import CoreParams, NSLLMCore
from nsllm.isa import Op
from nsllm.outputs import write_bytes, write_json, write_text

from . import Board, get_board
from .kernel import CORE_MODULE, KERNEL_NAME, kernel_arguments, kernel_interfaces, kernel_rtl
from .vitis import (
    DEFAULT_PLATFORM,
    TOOL_VERSIONS,
    kernel_xml,
    link_cfg,
    makefile,
    package_tcl,
)

__all__ = ["Bank", "BuildError", "BuildReport", "MemoryPlan", "board_banks", "board_params",
           "build_project", "plan_memory", "shape_bytes"]

GB = 1e9
#: Capacity keys of the board data for each resource of the estimate.
CAPACITY_KEYS = {"LUT": "LUT", "FF": "FF", "BRAM": "BRAM36", "URAM": "URAM", "DSP": "DSP"}


class BuildError(ValueError):
    """The build cannot be made as asked; the message says why and what to change."""


@dataclass(frozen=True)
class Bank:
    """A link target: the memories behind one SP tag (``DDR``, ``LPDDR``)."""

    tag: str
    memories: tuple[str, ...]
    gbytes_per_s: float
    capacity_bytes: int


def board_banks(board: Board) -> list[Bank]:
    """The board's memories grouped by SP tag, in board order."""
    banks: dict[str, list[dict]] = {}
    for mem in board.memories:
        if not mem.get("sp"):
            raise BuildError(f"board {board.name}: memory {mem.get('name')} has no link tag "
                             f"('sp' in nsllm/boards/{board.name}.json)")
        banks.setdefault(mem["sp"], []).append(mem)
    return [Bank(tag, tuple(m["name"] for m in ms), sum(m["gbytes_per_s"] for m in ms),
                 int(sum(m.get("gbytes", 0) for m in ms) * 2**30))
            for tag, ms in banks.items()]


@dataclass
class MemoryPlan:
    """Which bank each master is linked to, and what the ports ask of them."""

    assignments: dict[str, str]  #: master → SP tag
    port_gbytes_per_s: float  #: peak of one port (clock × width)
    banks: list[Bank]
    bytes_per_master: dict[str, int] = field(default_factory=dict)  #: buffer sizes

    def bank(self, tag: str) -> Bank:
        return next(b for b in self.banks if b.tag == tag)

    def weight_gbytes_per_s(self) -> float:
        """Weight bandwidth the plan can deliver: per bank, the smaller of its bandwidth and
        the peaks of the weight ports linked to it."""
        total = 0.0
        for bank in self.banks:
            ports = sum(1 for m, t in self.assignments.items()
                        if t == bank.tag and m != "m_axi_ctl")
            total += min(bank.gbytes_per_s, ports * self.port_gbytes_per_s)
        return total

    def bytes_per_bank(self) -> dict[str, int]:
        used = {b.tag: 0 for b in self.banks}
        for master, n in self.bytes_per_master.items():
            used[self.assignments[master]] += n
        return used

    def as_dict(self) -> dict:
        return {
            "assignments": dict(self.assignments),
            "port_gbytes_per_s": round(self.port_gbytes_per_s, 3),
            "weight_gbytes_per_s": round(self.weight_gbytes_per_s(), 3),
            "banks": [{**asdict(b), "bytes_used": self.bytes_per_bank().get(b.tag, 0)}
                      for b in self.banks],
            "bytes_per_master": dict(self.bytes_per_master),
        }


def plan_memory(board: Board, masters: list[str], port_bytes: int, clock_hz: float,
                requested: dict[str, str] | None = None) -> MemoryPlan:
    """Link each master to a bank so that the weight ports' bandwidth adds up.

    Weight ports go, one at a time, to the bank where they add the most deliverable bandwidth
    (a bank delivers the smaller of its bandwidth and its ports' peaks), ties to the bank with
    fewer ports, then more bandwidth left: on the VCK190 three 512-bit ports at 300 MHz go to
    LPDDR, DDR, LPDDR. The image port (descriptors and tables, a small share of the traffic)
    goes last to the bank with the most bandwidth left. ``requested``
    (``{"m_axi_w1": "LPDDR"}``) pins masters to banks.
    """
    banks = board_banks(board)
    if not banks:
        raise BuildError(f"board {board.name} lists no memory: no master of the kernel would "
                         "have one")
    tags = [b.tag for b in banks]
    requested = dict(requested or {})
    for master, tag in requested.items():
        if master not in masters:
            raise BuildError(f"--memory names {master}, which this kernel does not have (its "
                             f"masters: {', '.join(masters)})")
        if tag not in tags:
            raise BuildError(f"--memory {master}={tag}: the {board.name} has no memory {tag} "
                             f"(its link tags: {', '.join(tags)})")
    peak = clock_hz * port_bytes / GB
    bandwidth = {b.tag: b.gbytes_per_s for b in banks}
    count = dict.fromkeys(tags, 0)

    def gain(tag: str) -> float:
        return (min(bandwidth[tag], (count[tag] + 1) * peak)
                - min(bandwidth[tag], count[tag] * peak))

    def left(tag: str) -> float:
        return bandwidth[tag] - count[tag] * peak

    assignments: dict[str, str] = {}
    for master in [m for m in masters if m != "m_axi_ctl"]:
        tag = requested.get(master) or max(
            tags, key=lambda t: (round(gain(t), 9), -count[t], left(t), -tags.index(t)))
        assignments[master] = tag
        count[tag] += 1
    for master in [m for m in masters if m == "m_axi_ctl"]:
        assignments[master] = requested.get(master) or max(
            tags, key=lambda t: (left(t), -tags.index(t)))
    return MemoryPlan({m: assignments[m] for m in masters}, peak, banks)


def board_params(board: Board, cfg, weight_ports: int) -> CoreParams:
    """The board build (:meth:`CoreParams.board`: vector, packings, D range) with the board's
    port width, ``weight_ports`` and the maxima of the shape ``cfg`` — with an SLA unit of
    32 lanes (fewer for small heads) when it has SLA layers."""
    sla = {}
    if cfg.sla_layers():
        head = max(cfg.sla_params(li).head_dim for li in cfg.sla_layers())
        sla = dict(max_sla_layers=len(cfg.sla_layers()), max_head_dim=head,
                   sla_lanes=min(32, head))
    return replace(CoreParams.board(), port_bytes=board.axi_port_bytes, weight_ports=weight_ports,
                   max_vocab=cfg.vocab_size, max_hidden=cfg.hidden_size,
                   max_intermediate=cfg.intermediate_size, max_layers=cfg.num_layers, **sla)


def shape_bytes(cfg, port_bytes: int, packing: str, weight_ports: int) -> tuple[int, int]:
    """(image region bytes, bytes of each weight region) of a model shape, from its program
    outline (exact for the weight regions; the image within a few KiB)."""
    from nsllm.host.image import PROGRAM_OFFSET
    from nsllm.host.program import program_outline
    from nsllm.isa import DESCRIPTOR_BYTES, TABLE_ALIGN

    reset, token = program_outline(cfg, port_bytes, packing, weight_ports)
    image = PROGRAM_OFFSET + DESCRIPTOR_BYTES * (len(reset) + len(token))
    region = 0
    for ins in token:
        if ins.op == Op.EMBED:
            image += ins.m << ins.shift_b
        elif ins.op in (Op.NORM, Op.LINEAR, Op.MLGRU):
            image += -(-4 * ins.n // TABLE_ALIGN) * TABLE_ALIGN
        if ins.op == Op.LINEAR:
            region += ins.wsize
    return image, region


class _Steps:
    """Progress of the build on stderr: a line per step, a heartbeat on long ones."""

    def __init__(self, stream=None, heartbeat: float = 30.0):
        self.stream = sys.stderr if stream is None else stream
        self.heartbeat = heartbeat
        self.seconds: dict[str, float] = {}

    def say(self, text: str) -> None:
        if self.stream is not None:
            self.stream.write(f"[build] {text}\n")
            self.stream.flush()

    def run(self, key: str, label: str, fn, *args, note: str = "", **kwargs):
        self.say(f"{label}{f' ({note})' if note else ''}…")
        stop = threading.Event()
        t0 = time.perf_counter()

        def beat():
            while not stop.wait(self.heartbeat):
                self.say(f"  {label}: {time.perf_counter() - t0:.0f} s")

        ticker = threading.Thread(target=beat, daemon=True)
        ticker.start()
        try:
            return fn(*args, **kwargs)
        finally:
            stop.set()
            self.seconds[key] = round(time.perf_counter() - t0, 2)
            self.say(f"  {label}: done in {self.seconds[key]:.1f} s")


@dataclass
class BuildReport:
    """What :func:`build_project` wrote and found (``as_dict`` is ``build.json``)."""

    out: Path
    board: str
    part: str
    model: str
    params: CoreParams
    clock_hz: int
    platform: str
    packing: str
    plan: MemoryPlan
    image_files: dict[str, int]  #: host/ file → bytes ({} for a preset)
    bytes_estimated: bool  #: buffer sizes from the shape (preset) rather than an image
    resources: dict | None
    resources_note: str
    resources_by_unit: dict = field(default_factory=dict)
    capacity: dict = field(default_factory=dict)  #: the device's, by resource name
    files: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    projection: dict | None = None  #: nsllm estimate's result for this build (an estimate)

    def as_dict(self) -> dict:
        p = self.params
        return {
            "out": str(self.out), "board": self.board, "part": self.part, "model": self.model,
            "kernel": KERNEL_NAME, "clock_hz": self.clock_hz, "platform": self.platform,
            "packing": self.packing,
            "params": {"port_bytes": p.port_bytes, "vector": p.vector,
                       "weight_ports": p.weight_ports, "packings": list(p.packings),
                       "max_vocab": p.max_vocab, "max_hidden": p.max_hidden,
                       "max_intermediate": p.max_intermediate, "max_layers": p.max_layers,
                       "max_D": p.max_D},
            "memory": self.plan.as_dict(), "bytes_estimated": self.bytes_estimated,
            "image_files": self.image_files, "resources": self.resources,
            "resources_by_unit": self.resources_by_unit, "resources_note": self.resources_note,
            "capacity": self.capacity, "tool_versions": TOOL_VERSIONS,
            "files": self.files, "seconds": self.seconds, "projection": self.projection,
        }


def _check_banks(plan: MemoryPlan, board: Board) -> None:
    over = []
    for tag, used in plan.bytes_per_bank().items():
        cap = plan.bank(tag).capacity_bytes
        if cap and used > cap:
            over.append(f"{tag} needs {used / 2**30:.2f} GiB of its {cap / 2**30:.2f} GiB")
    if over:
        raise BuildError(f"the model does not fit the {board.name}'s memory banks: "
                         f"{'; '.join(over)} (use more weight ports, base3 packing, or pin "
                         "masters to other banks with --memory)")


def _check_device(resources: dict, board: Board) -> list[str]:
    cap = board.capacity
    return [f"{name} {resources[name]:,.0f} > {cap[key]:,}" for name, key in CAPACITY_KEYS.items()
            if name in resources and key in cap and resources[name] > cap[key]]


RESOURCES_NOTE = ("Yosys synth_xilinx -family xcup -uram on each unique unit of the core, summed "
                  "by instance count (nsllm.hdl.synth.core_resources): an UltraScale+ estimate, "
                  "an upper one (no optimisation across units), not a Versal implementation "
                  "result; the kernel wrapper adds one flip-flop")


def _core_resources(params: CoreParams, say=None) -> tuple[dict, dict, dict]:
    """(resources of the whole core, by unit, by power group of :mod:`nsllm.perf.resources`),
    from the per-unit synthesis.

    Cached under ``build/boards/resources/`` by the core's Verilog digest (params and HDL
    sources, :func:`~nsllm.sim.verilator_device.core_verilog`) and the synthesis code, so a
    rebuild skips even the RTLIL conversion that the synthesis cache is keyed by."""
    import hashlib
    import inspect

    from nsllm.hdl import synth
    from nsllm.sim.cocotb_runner import build_root
    from nsllm.sim.verilator_device import core_verilog

    code = hashlib.sha256(inspect.getsource(synth).encode()).hexdigest()[:12]
    cache = build_root() / "boards" / "resources" / f"{Path(core_verilog(params)).stem}_{code}.json"
    if cache.is_file():
        data = json.loads(cache.read_text())
        if "groups" in data:
            return data["total"], data["by_unit"], data["groups"]
    from nsllm.perf.resources import group_resources

    syn = synth.core_resources(params, progress=say)
    total, by_unit, groups = syn.resources(), syn.by_unit(), group_resources(syn)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps({"total": total, "by_unit": by_unit, "groups": groups}))
    tmp.replace(cache)
    return total, by_unit, groups


def build_project(out: str | Path, *, board: str | Board = "vck190", weights=None,
                  preset: str | None = None, weight_ports: int | None = None,
                  clock_mhz: float | None = None, memory: dict[str, str] | None = None,
                  platform: str = DEFAULT_PLATFORM, packing: str = "base3",
                  params: CoreParams | None = None, resources: bool = True,
                  projection: bool = True, model_path: str | Path | None = None,
                  progress=None) -> BuildReport:
    """Write the Vitis project for ``weights`` (a model) or ``preset`` (a shape) into ``out``.

    Parameters
    ----------
    out : path
        The project folder (created; files in it are replaced).
    board : str or Board
    weights : ModelWeights, optional
        The model: the kernel gets its maxima and ``host/`` its image.
    preset : str, optional
        A preset shape instead (no image; the memory check uses the shape's sizes).
    weight_ports : int, optional
        Weight ports (default: one per memory controller of the board).
    clock_mhz : float, optional
        Kernel clock (default: the board's assumed clock); pinned in link.cfg and FREQ_HZ.
    memory : dict, optional
        Masters pinned to banks (``{"m_axi_w0": "DDR"}``); the others are planned.
    platform : str
        The Vitis platform the Makefile links for.
    packing : str
        Trit packing of the image (the kernel decodes both).
    params : CoreParams, optional
        Override the kernel's build parameters (tests use a small core).
    resources : bool
        Estimate the resources (and check them against the device).
    projection : bool
        Project tokens/s and watts with ``nsllm estimate``'s code (firing rates measured with
        the golden model of ``weights``, or of the shipped model for a preset).
    model_path : path, optional
        Where ``weights`` came from (an ``hf`` tokenizer's ``tokenizer.json`` is found there).
    progress : _Steps, optional
        Where step progress goes (default: stderr).

    Raises
    ------
    BuildError
        The model does not fit the banks or the device, or a master has no memory.
    """
    if (weights is None) == (preset is None):
        raise BuildError("give a model or a preset (one of them)")
    board = get_board(board) if isinstance(board, str) else board
    steps = progress if progress is not None else _Steps()
    t_start = time.perf_counter()
    if weights is not None:
        cfg, model_name = weights.config, weights.config.name
    else:
        from nsllm.model.config import preset as preset_config

        cfg, model_name = preset_config(preset), preset
    ports = weight_ports or len(board.memories)
    if params is None:
        params = board_params(board, cfg, ports)
    if packing not in params.packings:
        raise BuildError(f"packing {packing} is not decoded by this build "
                         f"({', '.join(params.packings)})")
    clock_mhz = clock_mhz or board.pl_clock_mhz
    if not 10 <= clock_mhz <= 1000:
        raise BuildError(f"--clock-mhz {clock_mhz:g} is outside [10, 1000] MHz")
    clock_hz = int(round(clock_mhz * 1e6))

    core = NSLLMCore(params)
    core._MustUse__silence = True  # built for its signature only
    interfaces = kernel_interfaces(core)
    masters = [i.name for i in interfaces if i.master]
    plan = plan_memory(board, masters, params.port_bytes, clock_hz, memory)
    args = kernel_arguments(params.weight_ports)

    # the model image (or the shape's sizes) against the banks, before anything is written
    image = None
    if weights is not None:
        from nsllm.host.image import build_image

        image = steps.run("image", "model image", build_image, weights,
                          port_bytes=params.port_bytes, packing=packing,
                          weight_ports=params.weight_ports,
                          note=f"{packing}, {params.weight_ports} weight regions")
        image.check_fits(params.build_limits())
        image_bytes, region_bytes = image.image_bytes, image.region_bytes
    else:
        image_bytes, region_bytes = shape_bytes(cfg, params.port_bytes, packing,
                                                params.weight_ports)
    plan.bytes_per_master = {m: (image_bytes if m == "m_axi_ctl" else region_bytes)
                             for m in masters}
    _check_banks(plan, board)

    rtl = steps.run("verilog", "Verilog of the kernel", kernel_rtl, params,
                    note="the core is converted once and cached: minutes at board size")

    res, by_unit, groups, res_note = None, {}, None, "not estimated (--skip-resources)"
    if resources:
        res, by_unit, groups = steps.run("resources", "resource estimate", _core_resources, params,
                                 lambda msg: steps.say(f"  {msg}"),
                                 note="Yosys per unit of the core, cached")
        res_note = RESOURCES_NOTE
        over = _check_device(res, board)
        if over:
            raise BuildError(f"the kernel does not fit the {board.part}: {'; '.join(over)} "
                             "(estimate); build for a smaller model or fewer weight ports")

    proj = None
    if projection:
        proj = steps.run("projection", "projection (nsllm estimate)", _projection, cfg, board,
                         weights, params, packing, clock_mhz, groups,
                         lambda msg: steps.say(f"  {msg}"), model_path=model_path,
                         note="firing rates from the golden model")

    out = Path(out)
    files: dict[str, bytes | str] = {f"rtl/{name}": text for name, text in rtl.items()}
    files["kernel.xml"] = kernel_xml(args, interfaces)
    files["package_kernel.tcl"] = package_tcl(args, interfaces, clock_hz, board.part)
    files["link.cfg"] = link_cfg(plan.assignments, clock_hz)
    files["Makefile"] = makefile(platform)
    image_files: dict[str, int] = {}
    arg_of = {a.port: a.name for a in args if a.pointer}
    manifest = {"model": model_name, "kernel": KERNEL_NAME, "packing": packing,
                "tokenizer": cfg.tokenizer, "port_bytes": params.port_bytes,
                "weight_ports": params.weight_ports, "buffers": []}
    if image is not None:
        names = dict(zip(masters, image.files(), strict=True))
        for master, fname in names.items():
            data = image.files()[fname]
            files[f"host/{fname}"] = data
            image_files[fname] = len(data)
            manifest["buffers"].append({"file": fname, "arg": arg_of[master], "master": master,
                                        "bank": plan.assignments[master], "bytes": len(data)})
        manifest["image_crc32"] = image.image_crc
        manifest["region_crc32"] = list(image.region_crcs[:params.weight_ports])
    files["host/manifest.json"] = json.dumps(manifest, indent=1) + "\n"
    files["host/run.py"] = RUN_SCRIPT
    report = BuildReport(out, board.name, board.part, model_name, params, clock_hz, platform,
                         packing, plan, image_files, image is None, res, res_note, by_unit,
                         {n: board.capacity[k] for n, k in CAPACITY_KEYS.items()
                          if k in board.capacity}, projection=proj)
    files["report/README.md"] = _report_markdown(report, board)
    report.files = sorted(files) + ["build.json", "report/report.json"]
    for name, data in files.items():
        (write_bytes if isinstance(data, bytes) else write_text)(out / name, data)
    report.seconds = dict(steps.seconds, total=round(time.perf_counter() - t_start, 2))
    write_json(out / "report" / "report.json", report.as_dict())
    write_json(out / "build.json", report.as_dict())
    return report


PROJECTION_TOKENS = 256  #: tokens of held-out text the firing rates are measured on


def _projection(cfg, board: Board, weights, params: CoreParams, packing: str, clock_mhz: float,
                groups: dict | None, say, model_path=None) -> dict:
    """``nsllm estimate`` for this build: tokens/s, roofline, watts (XPE's default toggle rate;
    ``nsllm estimate --activity sim`` measures it in Verilator)."""
    from nsllm.model import load_model, resolve_model_path
    from nsllm.perf import resources as res_mod
    from nsllm.perf.activity import Activity
    from nsllm.perf.estimate import estimate
    from nsllm.perf.firing import measure

    def shipped():
        path = resolve_model_path(None)
        return load_model(path), f"the shipped model ({path.name})"

    weights, label = shipped() if weights is None else (weights, cfg.name)  # a preset: shipped
    say(f"measuring firing rates with the golden model of {label} on {PROJECTION_TOKENS} "
        "held-out tokens …")
    try:
        firing = measure(weights, max_tokens=PROJECTION_TOKENS, model_label=label,
                         model_path=model_path)
    except (OSError, ValueError) as e:  # e.g. an hf tokenizer without its tokenizer.json here
        say(f"cannot measure on {label} ({e}); using the shipped model's firing rates")
        weights, label = shipped()
        firing = measure(weights, max_tokens=PROJECTION_TOKENS, model_label=label)
    res = (res_mod.ResourceReport(groups, repr(params), "Yosys synth_xilinx -family xcup -uram "
                                  "of this build, per unit (nsllm.hdl.synth.core_resources)")
           if groups else res_mod.load(params))  # else the board snapshot, scaled
    est = estimate(cfg, board, firing, res, Activity.default(), weight_ports=params.weight_ports,
                   packing=packing, clock_mhz=clock_mhz, params=params)
    d = est.as_dict()
    return {k: d[k] for k in ("tokens_per_s", "cycles_per_token", "roofline_tokens_per_s",
                              "roofline_fraction", "firing_rate", "watts", "watts_total",
                              "tokens_per_joule", "limits", "bytes_per_token")} | {
        "firing_source": d["firing"]["source"], "activity_source": d["activity"]["source"],
        "resources_source": d["resources"]["source"]}


def _report_markdown(r: BuildReport, board: Board) -> str:
    p = r.params
    lines = [
        f"# {KERNEL_NAME} for the {board.name} ({r.model})", "",
        f"Generated by `nsllm build`. Part {board.part}, kernel clock {r.clock_hz / 1e6:g} MHz "
        f"(pinned in link.cfg; not a timing-closure result), platform `{r.platform}`.", "",
        "## Core build", "",
        f"{p.weight_ports} weight ports + the image port, {8 * p.port_bytes}-bit AXI4 "
        f"read masters; vector {p.vector}; packings {', '.join(p.packings)}; maxima: vocabulary "
        f"{p.max_vocab}, hidden {p.max_hidden}, intermediate {p.max_intermediate}, "
        f"{p.max_layers} layers, D ≤ {p.max_D}. Module `{CORE_MODULE}` in rtl/.", "",
        "## Resources", "",
    ]
    if r.resources:
        lines += ["| resource | estimate | XCVC1902 | use |", "| --- | ---: | ---: | ---: |"]
        for name, key in CAPACITY_KEYS.items():
            if name in r.resources and key in board.capacity:
                used, cap = r.resources[name], board.capacity[key]
                lines.append(f"| {name} | {used:,.0f} | {cap:,} | {100 * used / cap:.1f} % |")
        lines += ["", f"Estimate: {r.resources_note}.", ""]
        if r.resources_by_unit:
            names = [n for n in CAPACITY_KEYS if n in r.resources]
            lines += ["| unit | " + " | ".join(names) + " |",
                      "| --- |" + " ---: |" * len(names)]
            for unit, row in r.resources_by_unit.items():
                lines.append(f"| {unit} | " + " | ".join(f"{row.get(n, 0):,.0f}" for n in names)
                             + " |")
            lines.append("")
    else:
        lines += [f"Resources {r.resources_note}.", ""]
    plan = r.plan
    lines += [
        "## Memory", "",
        f"Each port peaks at {plan.port_gbytes_per_s:.1f} GB/s ({8 * p.port_bytes} bits × "
        f"{r.clock_hz / 1e6:g} MHz); the weight ports' banks deliver up to "
        f"{plan.weight_gbytes_per_s():.1f} GB/s together (peak DRAM figures from "
        f"nsllm/boards/{board.name}.json).", "",
        "| master | buffer | bank | bytes |", "| --- | --- | --- | ---: |",
    ]
    arg_of = {a.port: a.name for a in kernel_arguments(p.weight_ports) if a.pointer}
    for master, tag in plan.assignments.items():
        lines.append(f"| {master} | {arg_of[master]} | {tag} | "
                     f"{plan.bytes_per_master.get(master, 0):,} |")
    used = plan.bytes_per_bank()
    lines += ["", "| bank | memories | GB/s | capacity | used |",
              "| --- | --- | ---: | ---: | ---: |"]
    for b in plan.banks:
        lines.append(f"| {b.tag} | {', '.join(b.memories)} | {b.gbytes_per_s:g} | "
                     f"{b.capacity_bytes / 2**30:g} GiB | {used[b.tag] / 2**20:,.1f} MiB |")
    if r.bytes_estimated:
        lines += ["", "Buffer sizes estimated from the preset's shape (no model image)."]
    if r.projection:
        pr, w, tpj = r.projection, r.projection["watts"], r.projection["tokens_per_joule"]
        lines += [
            "", "## Projection (estimate, not a measurement)", "",
            f"`nsllm estimate`'s cycle and power models for this build at {r.clock_hz / 1e6:g} "
            f"MHz, {r.packing}, batch 1: **{pr['tokens_per_s']:,.1f} tokens/s** "
            f"({pr['cycles_per_token']:,} cycles/token; {pr['roofline_fraction']:.0%} of the DRAM "
            f"roofline of {pr['roofline_tokens_per_s']:,.1f} tokens/s), "
            f"{w['typical']:.2f} W dynamic (band {w['low']:.2f}–{w['high']:.2f}), "
            f"{tpj['typical']:.2f} tokens/J. Firing rate {pr['firing_rate']:.3f}: "
            f"{pr['firing_source']}. Activity: {pr['activity_source']}. Resources: "
            f"{pr['resources_source']}. Method and assumptions: docs/performance.md; "
            "measure on the board with `nsllm bench --backend xrt`.",
        ]
    lines += ["", "## Tools assumed", "", *(f"* {k}: {v}" for k, v in TOOL_VERSIONS.items()),
              "", "Steps and what each needs: docs/board.md of the nsllm repository.", ""]
    return "\n".join(lines)


RUN_SCRIPT = '''#!/usr/bin/env python3
"""Generated by `nsllm build`: generate text with the model image in this folder on the board.

    python3 run.py --prompt "The " -n 64 [--xclbin nsllm.xclbin] [--json]

Needs nsllm (and NumPy) on the board's Python and XRT's libxrt_coreutil.so (the VCK190 image
has it); the image files here go into the buffers of their kernel arguments (manifest.json).
"""

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--xclbin", default=None, help="the xclbin (default: nsllm.xclbin here or "
                   "in ../build)")
    p.add_argument("--prompt", "-p", default="The ")
    p.add_argument("--max-new-tokens", "-n", type=int, default=64)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per token run")
    p.add_argument("--device", type=int, default=0, help="XRT device index")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    from nsllm.boards.xrt import run_host_folder

    result = run_host_folder(HERE, args.prompt, args.max_new_tokens, xclbin=args.xclbin,
                             device_index=args.device, timeout=args.timeout)
    print(json.dumps(result) if args.json else args.prompt + result["text"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''
