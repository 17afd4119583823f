"""The NSLLM quantization flow: calibrate θ, measure sensitivity, allocate D, choose δ."""

from __future__ import annotations

from dataclasses import replace

from ..model.numerics import MAX_DELTA, MAX_TIMESTEPS, SPIKE_COUNT_SET
from ..model.weights import ModelWeights
from .allocation import Allocation, allocate
from .calibrate import (
    DEFAULT_MAX_SAMPLES,
    record_inputs,
    record_inputs_many,
    theta_table,
    with_quant,
)
from .executor import SERIAL, Executor
from .probe import QuantProbe, layer_weights
from .sensitivity import SensitivityReport, measure_sensitivity, quant_at
from .sparsify import DEFAULT_DELTAS, DeltaChoice, SparsitySweep, choose_sparsity, sweep


def check_timesteps(timesteps) -> None:
    """Refuse timestep choices the hardware cannot hold (D must be an integer in [1, 127])."""
    ts = list(timesteps)
    bad = [D for D in ts if isinstance(D, bool) or int(D) != D or not 1 <= D <= MAX_TIMESTEPS]
    if not ts or bad:
        raise ValueError(f"timesteps must be integers in [1, {MAX_TIMESTEPS}], not "
                         f"{bad or ts}")


def check_deltas(deltas) -> None:
    """Refuse shifts δ the hardware cannot hold (δ in [0, MAX_DELTA])."""
    ds = list(deltas)
    bad = [d for d in ds if not 0 <= d <= MAX_DELTA]  # NaN fails too
    if not ds or bad:
        raise ValueError(f"deltas must be numbers in [0, {MAX_DELTA:g}], not {bad or ds}")


def calibration_thetas(weights: ModelWeights, tokens, timesteps=SPIKE_COUNT_SET,
                       max_samples: int = DEFAULT_MAX_SAMPLES,
                       executor: Executor | None = None,
                       own_quantizer: bool = False) -> dict[str, dict[int, float]]:
    """θ*(D) of every layer for every D (see :mod:`nsllm.quant.calibrate`).

    ``tokens``: one token sequence, or a list of them (calibration over many texts, one executor
    task per text, :func:`~nsllm.quant.calibrate.record_inputs_many`). ``own_quantizer``: the MSE
    is that of each layer's quantizer with its own δ, and its trained θ is a candidate at every D
    (:func:`~nsllm.quant.calibrate.theta_table`; used by the pipeline for sparse-trained models).
    """
    check_timesteps(timesteps)
    if isinstance(tokens, list | tuple):
        samples = record_inputs_many(weights, tokens, max_samples=max_samples, executor=executor)
    else:
        samples = record_inputs(weights, tokens, max_samples=max_samples)
    if own_quantizer:
        q = weights.config.quant
        return theta_table(samples, timesteps, deltas={n: v.delta for n, v in q.items()},
                           keep={n: v.theta for n, v in q.items()})
    return theta_table(samples, timesteps)


def apply_timesteps(probe: QuantProbe, thetas: dict[str, dict[int, float]],
                    D: dict[str, int]) -> ModelWeights:
    """The probe's model with the given D per layer (θ: own at the reference D, θ*(D) else)."""
    quant = {n: quant_at(probe, thetas, n, D.get(n, q.D)) for n, q in probe.base_quant.items()}
    return with_quant(probe.weights, quant)


def quantize_model(weights: ModelWeights, tokens, budget: float, *, metric: str = "kl",
                   sensitivity: SensitivityReport | None = None,
                   thetas: dict[str, dict[int, float]] | None = None,
                   timesteps=SPIKE_COUNT_SET, log=None, executor: Executor = SERIAL
                   ) -> tuple[ModelWeights, Allocation, SensitivityReport]:
    """Mixed-timestep model under an average-timestep budget (weighted by #weights).

    ``tokens`` is the calibration text. A saved sensitivity report can be passed to skip the
    measurements (its θ table is then used as well).
    """
    check_timesteps(timesteps)
    probe = QuantProbe(weights, tokens)
    if sensitivity is None:
        if thetas is None:
            thetas = calibration_thetas(weights, tokens, timesteps, executor=executor)
        sensitivity = measure_sensitivity(probe, thetas, timesteps, log=log, executor=executor)
    thetas = sensitivity.thetas
    alloc = allocate(sensitivity.cost_table(metric), layer_weights(weights), budget)
    return apply_timesteps(probe, thetas, alloc.D), alloc, sensitivity


def sparsify_model(weights: ModelWeights, tokens, kl_budget: float, deltas=DEFAULT_DELTAS,
                   log=None, executor: Executor = SERIAL, relative: bool = False
                   ) -> tuple[ModelWeights, DeltaChoice, SparsitySweep]:
    """δ per layer minimising the weighted firing rate under a KL budget (nats per position);
    see :func:`nsllm.quant.sparsify.choose_sparsity`. ``relative``: the grid is added to each
    layer's own δ (models trained with learned δ)."""
    check_deltas(deltas)
    probe = QuantProbe(weights, tokens)
    sw = sweep(probe, deltas, log=log, executor=executor, relative=relative)
    choice = choose_sparsity(probe, sw, kl_budget)
    quant = {n: replace(q, delta=choice.delta[n]) for n, q in probe.base_quant.items()}
    return with_quant(probe.weights, quant), choice, sw
