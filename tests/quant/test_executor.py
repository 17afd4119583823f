"""The sweeps' executor: serial by default, Ray when asked; both must give the same results."""

import numpy as np
import pytest

from nsllm.model import ModelConfig, random_weights
from nsllm.quant.calibrate import record_inputs_many
from nsllm.quant.executor import Executor, SerialExecutor, make_executor
from nsllm.quant.probe import QuantProbe
from nsllm.quant.quantize import calibration_thetas
from nsllm.quant.sensitivity import measure_sensitivity, sensitivity_evaluations
from nsllm.quant.sparsify import sweep

TEXT = (b"Return the value of the named attribute of object. The name must be a string. "
        b"If the string is the name of one of the object's attributes, the result is the value.")


class ShuffledExecutor(Executor):
    """Runs the items in reverse order (as a cluster may finish them) and returns them in order."""

    name = "shuffled"

    def __init__(self):
        self.calls = 0

    def map(self, fn, context, items, progress=None):
        items = list(items)
        self.calls += len(items)
        out = {k: fn(context, items[k]) for k in reversed(range(len(items)))}
        return [out[k] for k in range(len(items))]


@pytest.fixture(scope="module")
def small():
    cfg = ModelConfig(name="small", hidden_size=32, num_layers=2, intermediate_size=64)
    return random_weights(cfg, seed=3)


@pytest.fixture(scope="module")
def tokens():
    return np.frombuffer(TEXT, np.uint8).astype(np.int64)


def test_serial_map_keeps_order_and_reports_progress():
    seen = []
    out = SerialExecutor().map(lambda c, x: c * x, 3, [1, 2, 5], progress=lambda d, t:
                               seen.append((d, t)))
    assert out == [3, 6, 15] and seen == [(1, 3), (2, 3), (3, 3)]
    assert make_executor(None).name == "serial"


def test_sensitivity_and_sweep_do_not_depend_on_the_execution_order(small, tokens):
    probe = QuantProbe(small, tokens)
    thetas = calibration_thetas(small, tokens)
    ex = ShuffledExecutor()
    a = measure_sensitivity(probe, thetas)
    b = measure_sensitivity(probe, thetas, executor=ex)
    assert a.to_json() == b.to_json()
    assert ex.calls == sensitivity_evaluations(small.config) == (2 * 9 + 1) * 3
    assert sweep(probe, (0.0, 0.5)).to_json() == sweep(probe, (0.0, 0.5), executor=ex).to_json()


def test_relative_sweep_adds_the_grid_to_each_layers_own_delta(small, tokens):
    from dataclasses import replace

    from nsllm.quant.calibrate import with_quant

    w = with_quant(small, {n: replace(q, delta=0.25 if "mlp" in n else 0.0)
                           for n, q in small.config.quant.items()})
    probe = QuantProbe(w, tokens)
    rel = sweep(probe, (0.0, 0.5), relative=True, per_layer=False)
    assert rel.global_curve[0]["kl"] == 0.0  # +0 is the model itself
    assert rel.delta_of("layers.0.mlp.down_proj", 0.5) == 0.75
    assert rel.delta_of("lm_head", 0.5) == 0.5


def test_calibration_over_many_texts_is_bounded_and_deterministic(small, tokens):
    texts = [tokens[:100], tokens[50:], tokens[::-1].copy()]
    a = record_inputs_many(small, texts, max_samples=500)
    b = record_inputs_many(small, texts, max_samples=500, executor=ShuffledExecutor())
    assert all(len(v) <= 500 for v in a.values())
    assert all(np.array_equal(a[n], b[n]) for n in a)
    assert calibration_thetas(small, texts) == calibration_thetas(small, texts)


@pytest.mark.slow
def test_ray_gives_the_serial_results(small, tokens):
    ray = pytest.importorskip("ray", reason="the Ray path needs the optional extra: "
                                            "pip install -e '.[ray]' (make test-slow does it)")
    from nsllm.quant.executor import RayExecutor

    probe = QuantProbe(small, tokens)
    thetas = calibration_thetas(small, tokens)
    serial = measure_sensitivity(probe, thetas)
    texts = [tokens[:100], tokens[50:]]
    with RayExecutor(num_cpus=2) as ex:
        assert ray.is_initialized()
        remote = measure_sensitivity(probe, thetas, executor=ex)
        sw_remote = sweep(probe, (0.0, 0.5), executor=ex)
        th_remote = calibration_thetas(small, texts, executor=ex)
    assert not ray.is_initialized()
    assert remote.to_json() == serial.to_json()
    assert sw_remote.to_json() == sweep(probe, (0.0, 0.5)).to_json()
    assert th_remote == calibration_thetas(small, texts)
