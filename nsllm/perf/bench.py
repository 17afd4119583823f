"""``nsllm bench``: measured tokens/s, cycles and bytes per token beside the cycle model's
prediction for the same run, and (on a board) measured power.

Every backend generates the same greedy continuation; the tokens it was fed are replayed through
the :class:`~nsllm.host.program.Interpreter` of the same image, whose fired columns drive
:class:`~nsllm.perf.cycles.CycleModel` for each token: ``predicted_cycles_per_token`` is the
model's mean over the generated tokens, ``model_error`` = predicted ÷ measured − 1. The golden
backend measures no cycles (it is the NumPy model); the prediction is for the simulated build.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from nsllm.host.program import Interpreter

from .cycles import CycleModel, PortTiming

__all__ = ["BenchConfig", "predict_run", "run_bench"]


@dataclass
class BenchConfig:
    backend: str = "sim"
    weight_ports: int = 1
    packing: str = "2bit"
    latency: int = 0
    stall_prob: float = 0.0
    max_outstanding: int = 8
    tokens: int = 16
    prompt: str = "The "
    seed: int = 1


def predict_run(image, build, params, fed: list[int], timing: PortTiming | list[PortTiming],
                ctl: PortTiming | None = None):
    """Per fed token: (its :class:`~nsllm.perf.cycles.CycleBreakdown`, the interpreter's
    :class:`~nsllm.host.program.RunStats`) from a replay of ``fed`` from a reset (the first
    token after the reset loads the token program: not cached)."""
    interp = Interpreter(image.raw, image.regions, build)
    interp.run(image.reset)
    model = CycleModel(params, ctl or (timing if isinstance(timing, PortTiming) else timing[0]),
                       timing)
    out = []
    for k, tok in enumerate(fed):
        stats = interp.run(image.token, token=tok)
        bd = model.program(image.token, stats.fired, cached=k > 0)
        out.append((bd, stats))
    return out


def run_bench(cfg: BenchConfig, weights, tokenizer, *, backend=None, params=None,
              power_source=None, idle_seconds: float = 2.0, power_interval: float = 0.2,
              timing: PortTiming | list[PortTiming] | None = None) -> dict:
    """Generate ``cfg.tokens`` tokens on the backend and compare with the cycle model.

    ``backend``: a ready :class:`~nsllm.host.runtime.CoreBackend` (the xrt one, or a test's);
    otherwise one is made for ``cfg.backend`` (golden or sim). ``power_source``: sampled while
    the tokens run, idle subtracted (:func:`nsllm.perf.powersource.measure`).
    """
    from nsllm.hdl.core import CoreParams
    from nsllm.host.generator import Generator, ModelBackend
    from nsllm.host.image import build_image
    from nsllm.model import IntegerModel

    if params is None:
        params = CoreParams.for_model(weights.config, weight_ports=cfg.weight_ports,
                                      packings=(cfg.packing,))
    if backend is None:
        if cfg.backend == "golden":
            backend = ModelBackend(IntegerModel(weights), "golden")
        elif cfg.backend == "sim":
            from nsllm.sim.verilator_device import sim_backend

            backend = sim_backend(weights, params, packing=cfg.packing, latency=cfg.latency,
                                  stall_prob=cfg.stall_prob, seed=cfg.seed,
                                  max_outstanding=cfg.max_outstanding, timeout=600)
        else:
            raise ValueError(f"run_bench makes golden and sim backends; give the {cfg.backend} "
                             "one as backend=")
    gen = Generator(backend, tokenizer)

    def work():
        t0 = time.perf_counter()
        res = gen.generate(cfg.prompt, cfg.tokens)
        return res, time.perf_counter() - t0

    power = None
    if power_source is not None:
        from .powersource import measure

        (res, seconds), power = measure(power_source, work, idle_seconds, power_interval)
    else:
        res, seconds = work()
    fed = list(res.prompt_tokens) + list(res.tokens)  # the generator feeds each one back
    n_prompt = len(res.prompt_tokens)
    runner = getattr(backend, "runner", None)
    if runner is not None:
        image, build = runner.loaded.image, runner.loaded.build
        params = _params_of(build, params)
    else:
        image = build_image(weights, port_bytes=params.port_bytes, packing=cfg.packing,
                            weight_ports=params.weight_ports)
        build = params.build_limits()
    timing = timing or PortTiming(latency=cfg.latency, stall_prob=cfg.stall_prob,
                                  max_outstanding=cfg.max_outstanding)
    predicted = predict_run(image, build, params, fed, timing)
    gen_pred = predicted[n_prompt:]
    n = max(len(gen_pred), 1)
    pred_cycles = sum(bd.cycles for bd, _ in gen_pred) / n
    nz = sum(s.spikes_nonzero for _, s in gen_pred)
    total = sum(s.spikes_total for _, s in gen_pred)
    out = {
        "backend": cfg.backend, "model": weights.config.name, "weight_ports": params.weight_ports,
        "packing": cfg.packing, "latency": cfg.latency, "stall_prob": cfg.stall_prob,
        "prompt_tokens": n_prompt, "tokens": len(res.tokens),
        "tokens_per_s": round(len(fed) / seconds, 3) if seconds else None,
        "firing_rate": round(nz / total, 4) if total else 0.0,
        "predicted_cycles_per_token": round(pred_cycles, 1),
        "predicted_weight_bytes_per_token": round(sum(bd.weight_bytes for bd, _ in gen_pred) / n),
        "cycles_per_token": None, "model_error": None,
        "bytes_per_token": None, "weight_bytes_per_token": None,
    }
    summary = getattr(backend, "summary", None)
    if summary is not None and summary.per_token:
        runs = summary.per_token[n_prompt:]
        m = max(len(runs), 1)
        cycles = sum(c.cycles for c in runs) / m
        out.update({
            "cycles_per_token": round(cycles, 1),
            "model_error": round(pred_cycles / cycles - 1, 5) if cycles else None,
            "bytes_per_token": round(sum(c.bus_bytes for c in runs) / m),
            "weight_bytes_per_token": round(sum(c.weight_bytes for c in runs) / m),
            "weight_bytes_per_port": [round(sum(c.port_bytes[k] for c in runs) / m)
                                      for k in range(params.weight_ports)],
            "per_token_error_max": round(max(
                abs(bd.cycles / c.cycles - 1) for (bd, _), c in zip(gen_pred, runs,
                                                                      strict=True)), 5),
        })
    if power is not None:
        out["power"] = power.as_dict()
        if out["tokens_per_s"] and power.dynamic_w > 0:
            out["tokens_per_joule"] = round(out["tokens_per_s"] / power.dynamic_w, 3)
    return out


def _params_of(build, fallback):
    """CoreParams matching a device's BuildLimits (port width, vector, ports, FIFO depth of the
    fallback)."""
    from dataclasses import replace

    return replace(fallback, port_bytes=build.port_bytes, vector=build.vector,
                   weight_ports=build.weight_ports, packings=tuple(build.packings))
