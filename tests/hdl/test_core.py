"""NSLLMCore in amaranth.sim on micro models: every logit bit-exact to the golden model, and the
bytes fetched per port and the spike counts equal to the interpreter's — with random stalls on
every port, for one to three weight ports and both trit packings."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from nsllm.hdl.core import CoreParams, NSLLMCore
from nsllm.host.image import build_image
from nsllm.host.program import Interpreter
from nsllm.host.runtime import DEBUG_SLOT
from nsllm.isa import Op, Reg, scratch_layout
from nsllm.model import IntegerModel, ModelConfig, random_weights
from nsllm.sim.amaranth_bus import AmaranthBus


def micro_model(seed=1, layers=1, D=(15,), delta=(0.0,)):
    cfg = ModelConfig(vocab_size=64, hidden_size=32, num_layers=layers, intermediate_size=64,
                      tokenizer="hf")
    for k, name in enumerate(cfg.ternary_layers()):
        cfg.quant[name].D = D[k % len(D)]
        cfg.quant[name].delta = delta[k % len(delta)]
    w = random_weights(cfg, seed)
    if cfg.use_lower_bound:
        w.tensors["lower_bounds"][:] = np.random.default_rng(seed).standard_normal(
            w.tensors["lower_bounds"].shape)
    return w


def micro_params(port_bytes=8, vector=4, weight_ports=1, packings=("2bit",)):
    return CoreParams(port_bytes=port_bytes, vector=vector, max_vocab=64, max_hidden=32,
                      max_intermediate=64, max_layers=1, weight_ports=weight_ports,
                      packings=packings)


async def place(bus, image):
    """Load the image into the bus's memory and point the region registers at it."""
    addr = bus.alloc(image.image_bytes + DEBUG_SLOT, "image")
    bus.write(addr, image.raw)
    await bus.reg_write(Reg.IMAGE_LO, addr)
    for k, region in enumerate(image.regions):
        a = bus.alloc(len(region), f"weights{k}")
        bus.write(a, region)
        await bus.reg_write(Reg[f"W{k}_LO"], a)
    await bus.reg_write(Reg.IMAGE_BYTES, image.image_bytes + DEBUG_SLOT)
    await bus.reg_write(Reg.REGION_BYTES, image.region_bytes)


async def run_program(bus, offset, ops, token=0, budget=200_000):
    await bus.reg_write(Reg.PROG_OFFSET, offset)
    await bus.reg_write(Reg.PROG_OPS, ops)
    await bus.reg_write(Reg.TOKEN_IN, token)
    await bus.reg_write(Reg.CTRL, 1)
    for _ in range(budget // 40):
        for _ in range(40):
            await bus.cycle()
        if await bus.reg_read(Reg.CTRL) & 2:
            return
    raise AssertionError(f"core hung, STATUS {await bus.reg_read(Reg.STATUS):#x}")


def run_core(weights, params, tokens, stall=0.0, latency=0, packing="2bit"):
    """Run the reset program, then one token program per token; return per-token results."""
    image = build_image(weights, port_bytes=params.port_bytes, packing=packing,
                        weight_ports=params.weight_ports)
    image.check_fits(params.build_limits())
    mem = bytearray(0x1000 + image.total_bytes + 0x8000)
    start, n = scratch_layout(weights.config).regions["logits"]
    dut = NSLLMCore(params)
    results = []

    async def tb(ctx):
        bus = AmaranthBus(ctx, dut, mem, stall=stall, seed=7, latency=latency)
        await place(bus, image)
        await run_program(bus, image.reset_offset, len(image.reset))
        for tok in tokens:
            await run_program(bus, image.token_offset, len(image.token), tok)
            logits = []
            for i in range(n):
                await bus.reg_write(Reg.SCRATCH_ADDR, start + i)
                v = await bus.reg_read(Reg.SCRATCH_DATA)
                logits.append(v - (1 << 32) if v >> 31 else v)
            regs = {name: await bus.reg_read(Reg[name]) for name in
                    ("TOKEN_OUT", "WEIGHT_BYTES", "BUS_BYTES", "SPIKES_NONZERO", "SPIKES_TOTAL",
                     "STATUS", *(f"PORT{k}_BYTES" for k in range(params.weight_ports)))}
            results.append((np.array(logits), regs))
        assert not bus.protocol_error, bus.protocol_error

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return image, results


def check_against_golden(w, params, image, tokens, results):
    model = IntegerModel(w)
    state = model.init_state()
    interp = Interpreter(image.raw, image.regions, params.build_limits())
    interp.run(image.reset)
    for t, (tok, (logits, regs)) in enumerate(zip(tokens, results, strict=True)):
        want, state = model.step(tok, state)
        first = np.flatnonzero(logits != want[0])
        assert first.size == 0, (f"token {t}: lm_head logits index {first[0]}: expected "
                                 f"{want[0][first[0]]}, got {logits[first[0]]}")
        assert regs["TOKEN_OUT"] == int(np.argmax(want[0]))
        assert regs["STATUS"] >> 28 == 0, f"error {regs['STATUS'] >> 28}"
        # the core fetched exactly the columns the interpreter says spiked, port by port
        stats = interp.run(image.token, token=tok)
        assert regs["WEIGHT_BYTES"] == stats.weight_bytes
        assert [regs[f"PORT{k}_BYTES"] for k in range(params.weight_ports)] == stats.port_bytes
        assert regs["SPIKES_NONZERO"] == stats.spikes_nonzero
        assert regs["SPIKES_TOTAL"] == stats.spikes_total
        assert regs["BUS_BYTES"] >= stats.weight_bytes + stats.table_bytes


# one line per case: port width, vector lanes, weight ports, packing(s) built, image packing,
# read stalls (every port), DRAM latency
CASES = [
    (8, 4, 1, ("2bit",), "2bit", 0.0, 0),
    (4, 2, 1, ("2bit",), "2bit", 0.3, 3),
    (16, 8, 1, ("2bit",), "2bit", 0.0, 0),
    (8, 4, 2, ("2bit",), "2bit", 0.25, 2),
    (8, 4, 3, ("2bit", "base3"), "2bit", 0.2, 0),
    (8, 4, 3, ("2bit", "base3"), "base3", 0.3, 5),
    (8, 8, 1, ("base3",), "base3", 0.0, 0),
    (32, 32, 2, ("2bit", "base3"), "base3", 0.1, 2),
]


@pytest.mark.parametrize("port_bytes, vector, ports, packings, packing, stall, latency", CASES)
def test_core_matches_golden_model(port_bytes, vector, ports, packings, packing, stall, latency):
    w = micro_model(seed=port_bytes + ports, D=(15, 3, 7, 1), delta=(0.0, 0.5))
    params = micro_params(port_bytes, vector, ports, packings)
    tokens = [5, 63]
    image, results = run_core(w, params, tokens, stall, latency, packing)
    check_against_golden(w, params, image, tokens, results)


def micro_hybrid(seed=3):
    """Two layers, MLGRU then SLA (two heads of 16), random weights and θ."""
    from nsllm.model.config import SLAParams

    cfg = ModelConfig(vocab_size=64, hidden_size=32, num_layers=2, intermediate_size=64,
                      tokenizer="hf", token_mixer=["mlgru", "sla"],
                      sla={"layers.1.attn": SLAParams(head_dim=16, decay_shifts=[9, 2], D_q=3,
                                                      D_k=2, D_v=4)})
    return random_weights(cfg, seed)


# one line per case: SLA lanes, vector lanes, weight ports, read stalls, DRAM latency. ≈ 15 s
# each, so slow: the default tier runs the hybrid on the Verilator core instead
# (tests/host/test_core_hybrid_model.py) and the SLA unit alone (tests/hdl/core/test_sla.py).
HYBRID_CASES = [(16, 4, 2, 0.3, 3), (4, 4, 1, 0.0, 0), (8, 8, 1, 0.2, 1)]


@pytest.mark.slow
@pytest.mark.parametrize("lanes, vector, ports, stall, latency", HYBRID_CASES)
def test_core_with_sla_unit_matches_golden_model(lanes, vector, ports, stall, latency):
    """A hybrid micro model on the whole core (the SLA unit beside the MLGRU path), with read
    stalls and latency on every port: every logit of every token equals the golden model's, so
    the SLA state carries over tokens as in numerics.sla_q."""
    w = micro_hybrid(seed=lanes + vector)
    params = CoreParams(port_bytes=8, vector=vector, max_vocab=64, max_hidden=32,
                        max_intermediate=64, max_layers=2, weight_ports=ports,
                        max_sla_layers=1, max_head_dim=16, sla_lanes=lanes)
    tokens = [5, 63, 17]
    image, results = run_core(w, params, tokens, stall, latency)
    assert any(ins.op == Op.SLA for ins in image.token)
    check_against_golden(w, params, image, tokens, results)
