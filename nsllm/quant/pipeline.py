"""The NSLLM pipeline as one command (``nsllm pipeline``, ``make model``).

Stages, each on the text it may see:

0. **allocate first** (``allocate_first``, with ``--init``): sensitivity of the starting model
   (or a saved report of it, ``init_sensitivity``) and the D allocation under the budget; training
   then runs with every layer at its allocated D (QAT sees the quantizer the hardware runs), so
   stages 2–4 keep that allocation (they are skipped when the trained model meets the budget).
1. **train** (sparse): sparsity-aware QAT (:mod:`nsllm.quant.train`: firing-rate target, δ and θ
   learned), from scratch or fine-tuning a saved model (``--init``); or skipped with
   ``--trained M``. Training split only.
2. **θ at every D**: ``trained`` (default) keeps each layer's trained θ and δ and only clips the
   counts at the lower D; ``mse`` calibrates θ*(D) over several slices of the training split
   (calibration over many texts, one executor task per slice; MSE of the layer's own quantizer
   with its δ, the trained θ kept where it quantizes with a lower MSE).
3. **sensitivity**: hierarchical sensitivity on the calibration text (float model).
4. **allocate**: one D per layer under the average-D budget (weighted by #weights), exact DP.
5. **sparsify**: extra δ per layer (added to the learned δ) under the KL budget, chosen by the
   measured KL on the calibration text.
6. **golden**: the integer golden model of the result, and its float spiking twin.
7. **evaluate**: held-out bits/byte and firing rates (integer model) after every stage, the float
   twin's bits/byte, size.
8. **card**: everything above as JSON next to the model (``M.json``), shown by ``nsllm info``.

Stages 2, 3 and 5 are the sweeps that grow with model size; they run through one executor
(:mod:`nsllm.quant.executor`: serial, or Ray with ``--ray``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..model.numerics import SPIKE_COUNT_SET
from ..model.weights import ModelWeights
from .executor import SERIAL, Executor

#: Extra δ grid of the sparsification stage, added to each layer's learned δ.
PIPELINE_DELTAS = (0.0, 0.125, 0.25, 0.5, 0.75)
#: θ of a layer at a lower D: its trained θ (counts clipped at D), or θ*(D) from calibration.
THETA_RULES = ("trained", "mse")


@dataclass
class PipelineSettings:
    """The budgets and texts of a pipeline run (stored in the card)."""

    budget: float = 7.0  #: average D, weighted by #weights
    kl_budget: float = 0.03  #: Σ KL (nats per prediction) the sparsification may add
    calib_bytes: int = 4096  #: calibration text of the sensitivity and δ sweeps
    calib_texts: int = 4  #: slices of the training split that θ is calibrated on
    deltas: tuple[float, ...] = PIPELINE_DELTAS
    theta: str = "trained"  #: θ at a lower D: the trained θ ("trained") or θ*(D) ("mse")
    timesteps: tuple[int, ...] = SPIKE_COUNT_SET
    name: str = "nsllm-default"
    allocate_first: bool = False  #: allocate D on the starting model, then train at it
    init_sensitivity: str | None = None  #: saved sensitivity report of the starting model
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        if not (self.budget >= min(self.timesteps)):
            raise ValueError(f"budget must be ≥ {min(self.timesteps)} (the smallest D), not "
                             f"{self.budget}")
        if not (self.kl_budget >= 0):
            raise ValueError(f"kl-budget must be ≥ 0, not {self.kl_budget}")
        if self.calib_bytes < 256 or self.calib_texts < 1:
            raise ValueError("calib-bytes must be ≥ 256 and calib-texts ≥ 1")
        if any(d < 0 for d in self.deltas) or not self.deltas:
            raise ValueError("deltas must be a non-empty list of numbers ≥ 0")
        if self.init_sensitivity is not None and not self.allocate_first:
            raise ValueError("init-sensitivity is the report of the starting model's allocation: "
                             "it needs allocate-first")
        if self.theta not in THETA_RULES:
            raise ValueError(f"theta must be one of {', '.join(THETA_RULES)}, not {self.theta!r}")


def calibration_slices(n_texts: int, n_bytes: int) -> list[np.ndarray]:
    """``n_texts`` slices of ``n_bytes`` spread over the training split (never held-out text)."""
    from ..data.corpus import pydoc_corpus

    train = np.frombuffer(pydoc_corpus()[0].encode("utf-8"), np.uint8).astype(np.int64)
    starts = np.linspace(0, len(train) - n_bytes, n_texts + 2)[1:-1].astype(np.int64)
    return [train[s:s + n_bytes] for s in starts]


def heldout_row(weights: ModelWeights, tokens, backend: str = "integer") -> dict:
    """Held-out bits/byte and firing rates of a model (integer golden model or float twin)."""
    from ..model import FloatModel, IntegerModel
    from ..model.stats import evaluate, mean_firing_rate
    from .probe import layer_weights

    t0 = time.time()
    model = IntegerModel(weights) if backend == "integer" else FloatModel(weights, act="spike")
    st = evaluate(model, tokens)
    sizes = layer_weights(weights)
    D = {n: q.D for n, q in weights.config.quant.items()}
    return {"bits_per_byte": round(st.bits_per_byte, 4),
            "weighted_firing_rate": round(mean_firing_rate(st.firing, sizes), 4),
            "mean_firing_rate": round(mean_firing_rate(st.firing), 4),
            "average_D": round(sum(sizes[n] * D[n] for n in sizes) / sum(sizes.values()), 3),
            "firing_rate": {k: round(v, 4) for k, v in st.firing.items()},
            "seconds": round(time.time() - t0, 2)}


def run_pipeline(settings: PipelineSettings, out: str | os.PathLike, *, train_settings=None,
                 trained: str | os.PathLike | None = None, executor: Executor = SERIAL,
                 log=print, workdir: str | os.PathLike | None = None) -> dict:
    """Run every stage; write the model to ``out`` and its card to ``out`` with ``.json``."""
    from ..data.corpus import calibration_text, pydoc_corpus
    from ..model import load_model
    from ..model.fileformat import save_model
    from ..outputs import write_json
    from .allocation import Allocation, allocate, weighted_average
    from .evaluation import tensor_bytes
    from .probe import QuantProbe, layer_weights
    from .quantize import apply_timesteps, calibration_thetas, sparsify_model
    from .sensitivity import SensitivityReport, measure_sensitivity

    settings.validate()
    out = Path(out)
    work = Path(workdir) if workdir else out.parent
    work.mkdir(parents=True, exist_ok=True)
    held = np.frombuffer(pydoc_corpus()[1].encode("utf-8"), np.uint8).astype(np.int64)
    times: dict[str, float] = {}
    stages: dict[str, dict] = {}

    def stage(name: str):
        log(f"[pipeline] {name} …")
        return time.time()

    calib = np.frombuffer(calibration_text(settings.calib_bytes).encode(), np.uint8)
    calib = calib.astype(np.int64)
    pre = start = None
    # 0. allocate first: D per layer of the starting model, training then runs at it
    if settings.allocate_first:
        if trained is not None or train_settings is None or not train_settings.init:
            raise ValueError("allocate-first allocates D on the model training starts from: "
                             "it needs --init (and no --trained)")
        t = stage(f"allocate first: D of the starting model {train_settings.init} under an "
                  f"average-D budget of {settings.budget:g}")
        start = load_model(train_settings.init)
        probe = QuantProbe(start, calib)
        if settings.init_sensitivity:
            report0 = SensitivityReport.load(settings.init_sensitivity)
            if set(report0.reference_D) != set(start.config.quant):
                raise ValueError(f"{settings.init_sensitivity}: a sensitivity report of another "
                                 f"model (its layers are not those of {train_settings.init})")
            log(f"  sensitivity of the starting model: {settings.init_sensitivity}")
        else:
            thetas0 = calibration_thetas(start, calib, settings.timesteps)
            report0 = measure_sensitivity(probe, thetas0, settings.timesteps, log=log,
                                          executor=executor)
            report0.save(work / f"{out.stem}.init-sensitivity.json", join=False)
        sizes = layer_weights(start)
        alloc0 = allocate(report0.cost_table("kl"), sizes, settings.budget)
        start = apply_timesteps(probe, report0.thetas, alloc0.D)
        start_path = work / f"{out.stem}.start.nsllm"
        save_model(start, start_path, join=False)
        train_settings = replace(train_settings, init=str(start_path))
        times["allocate_first"] = round(time.time() - t, 1)
        stages["start"] = heldout_row(start, held)
        pre = {"D": alloc0.D, "average_D": round(alloc0.average_timesteps, 3),
               "predicted_kl": alloc0.sensitivity, "exact": alloc0.exact,
               "sensitivity": settings.init_sensitivity or "measured",
               "start_model": start_path.name}
        log(f"  average D {alloc0.average_timesteps:.2f}; the starting model at it: held-out "
            f"bits/byte {stages['start']['bits_per_byte']:.4f}, firing "
            f"{stages['start']['weighted_firing_rate']:.3f} ({start_path})")

    # 1. train
    t = stage("train")
    train_report = None
    if trained is not None:
        weights = load_model(trained)
        log(f"  using the trained model {trained} (training skipped)")
        card_path = Path(trained).with_suffix(".train.json")
        if card_path.is_file():
            train_report = json.loads(card_path.read_text())
    else:
        from .train import train

        weights, train_report = train(train_settings, log=log, init=start)
        trained_path = work / f"{out.stem}.trained.nsllm"
        save_model(weights, trained_path, join=False)
        write_json(trained_path.with_suffix(".train.json"), train_report, join=False)
        log(f"  trained model: {trained_path}")
    times["train"] = round(time.time() - t, 1)
    stages["trained"] = heldout_row(weights, held)
    log(f"  held-out (integer): bits/byte {stages['trained']['bits_per_byte']:.4f}, weighted "
        f"firing rate {stages['trained']['weighted_firing_rate']:.3f}, average D "
        f"{stages['trained']['average_D']:.2f}")
    sizes = layer_weights(weights)
    trained_D = {n: q.D for n, q in weights.config.quant.items()}
    if weighted_average(trained_D, sizes) <= settings.budget + 1e-9:
        # every allocation cost is 0 at the trained D, so the DP keeps it: nothing to measure
        log(f"[pipeline] the trained model meets the average-D budget of {settings.budget:g}: "
            f"its D are kept (θ calibration, sensitivity and allocation skipped)")
        alloc = Allocation(trained_D, 0.0, weighted_average(trained_D, sizes), settings.budget,
                           True)
        mixed = weights
        stages["allocated"] = stages["trained"]
    else:
        # 2. θ at every D: trained, or calibrated over several texts
        if settings.theta == "trained":
            t = stage("θ at every D: the trained θ (counts clipped at D)")
            thetas = {n: dict.fromkeys(map(int, settings.timesteps), q.theta)
                      for n, q in weights.config.quant.items()}
        else:
            t = stage(f"calibrate θ*(D) on {settings.calib_texts} × {settings.calib_bytes} "
                      f"bytes ({executor.name})")
            slices = calibration_slices(settings.calib_texts, settings.calib_bytes)
            thetas = calibration_thetas(weights, slices, settings.timesteps, executor=executor,
                                        own_quantizer=True)
        times["calibrate"] = round(time.time() - t, 1)

        # 3. sensitivity
        t = stage(f"sensitivity ({executor.name})")
        probe = QuantProbe(weights, calib)
        report = measure_sensitivity(probe, thetas, settings.timesteps, log=log,
                                     executor=executor)
        report.save(work / f"{out.stem}.sensitivity.json", join=False)
        times["sensitivity"] = round(time.time() - t, 1)

        # 4. allocate
        t = stage(f"allocate D under an average-D budget of {settings.budget:g}")
        alloc = allocate(report.cost_table("kl"), sizes, settings.budget)
        mixed = apply_timesteps(probe, report.thetas, alloc.D)
        times["allocate"] = round(time.time() - t, 1)
        stages["allocated"] = heldout_row(mixed, held)
    log(f"  average D {alloc.average_timesteps:.2f}; held-out bits/byte "
        f"{stages['allocated']['bits_per_byte']:.4f}, firing "
        f"{stages['allocated']['weighted_firing_rate']:.3f}")

    # 5. sparsify
    t = stage(f"sparsify under a KL budget of {settings.kl_budget:g} ({executor.name})")
    final, choice, sw = sparsify_model(mixed, calib, settings.kl_budget, settings.deltas,
                                       executor=executor, relative=True)
    times["sparsify"] = round(time.time() - t, 1)

    # 6.–7. golden model, float twin, held-out evaluation
    t = stage("integer golden model and held-out evaluation")
    final.config.name = settings.name
    final.config.validate()
    stages["sparsified"] = heldout_row(final, held)
    twin = heldout_row(final, held, backend="float")
    times["evaluate"] = round(time.time() - t, 1)
    res = stages["sparsified"]
    log(f"  held-out (integer): bits/byte {res['bits_per_byte']:.4f}, weighted firing rate "
        f"{res['weighted_firing_rate']:.3f}, average D {res['average_D']:.2f}; float twin "
        f"{twin['bits_per_byte']:.4f}")

    # 8. model and card (written at once, not with the command's other outputs: the card
    # records the file's size)
    save_model(final, out, join=False)
    cfg = final.config
    card = {
        "model": out.name, "name": cfg.name,
        "shape": {"vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
                  "num_layers": cfg.num_layers, "intermediate_size": cfg.intermediate_size},
        "parameters": cfg.num_parameters(), "ternary_weights": cfg.num_ternary_weights(),
        "file_bytes": out.stat().st_size, "tensor_bytes": tensor_bytes(final),
        "corpus": "pydoc_data.topics, topics sorted by name, every 10th held out",
        "heldout_bytes": int(len(held)),
        "budgets": {"average_D": settings.budget, "kl": settings.kl_budget},
        "heldout": {"integer (golden)": res, "float, same spikes": {
            "bits_per_byte": twin["bits_per_byte"], "seconds": twin["seconds"]}},
        "layers": {n: {"D": q.D, "theta": round(q.theta, 6), "delta": round(q.delta, 4),
                       "firing_rate": res["firing_rate"][n]} for n, q in cfg.quant.items()},
        "pipeline": {
            "settings": asdict(settings), "executor": executor.name, "seconds": times,
            "stages": {k: {kk: v[kk] for kk in ("bits_per_byte", "weighted_firing_rate",
                                                 "average_D")} for k, v in stages.items()},
            "allocation": {"D": alloc.D, "average_D": round(alloc.average_timesteps, 3),
                           "predicted_kl": alloc.sensitivity, "exact": alloc.exact,
                           "kept_trained_D": mixed is weights},
            "sparsification": {"source": choice.source, "predicted_kl": choice.predicted_kl,
                               "predicted_weighted_firing": choice.predicted_firing,
                               "extra_delta": {n: round(choice.delta[n] - sw.base_delta[n], 4)
                                               for n in choice.delta}},
        },
    }
    if pre is not None:
        card["pipeline"]["allocate_first"] = pre
    if train_report is not None:
        card["training"] = train_report
        card["train_bytes"] = train_report.get("train_bytes")
    card_path = out.with_suffix(".json")
    write_json(card_path, card, ensure_ascii=False, join=False)
    log(f"[pipeline] wrote {out} and {card_path}")
    return card


def load_card(model_path: str | os.PathLike) -> dict | None:
    """The model card next to a model (``M.json``), or None when there is none (or unreadable)."""
    p = Path(model_path).with_suffix(".json")
    if not p.is_file():
        return None
    try:
        card = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return card if isinstance(card, dict) else None


def card_info(model_path: str | os.PathLike, info: dict) -> dict | None:
    """What ``nsllm info`` shows from the card next to a model: adds ``card`` (budgets, held-out
    numbers) and each layer's measured ``firing_rate`` to ``info``; returns a summary dict with a
    ``summary`` line and ``firing_rate`` per layer (None without a card)."""
    card = load_card(model_path)
    if not card or "heldout" not in card:
        return None
    if card.get("file_bytes") not in (None, Path(model_path).stat().st_size):
        return None  # the card describes another version of the file
    golden = card["heldout"].get("integer (golden)", {})
    firing = golden.get("firing_rate", {})
    for n, rate in firing.items():
        if n in info.get("layers", {}):
            info["layers"][n]["firing_rate"] = rate
    info["card"] = {k: card[k] for k in ("budgets", "heldout_bytes", "pipeline") if k in card}
    info["card"]["heldout"] = {k: {kk: v for kk, v in row.items() if kk != "firing_rate"}
                               for k, row in card["heldout"].items()}
    parts = []
    if "bits_per_byte" in golden:
        parts.append(f"held-out bits/byte {golden['bits_per_byte']:.4f}")
    if "weighted_firing_rate" in golden:
        parts.append(f"weighted firing rate {golden['weighted_firing_rate']:.3f}")
    if "average_D" in golden:
        parts.append(f"average D {golden['average_D']:.2f}")
    b = card.get("budgets")
    if b:
        parts.append(f"budgets: average D ≤ {b['average_D']:g}, KL ≤ {b['kl']:g}")
    return {"summary": "; ".join(parts) + f" ({Path(model_path).with_suffix('.json').name})",
            "firing_rate": firing}
