"""NSLLMCore in amaranth.sim on micro models: every logit bit-exact to the golden model."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from nsllm.hdl.core import REGISTERS, CoreParams, NSLLMCore
from nsllm.host.image import build_image
from nsllm.host.program import Interpreter, scratch_layout
from nsllm.model import IntegerModel, ModelConfig, random_weights
from nsllm.sim.amaranth_bus import AmaranthBus

BASE = 0x1000


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


def run_core(weights, params, tokens, stall=0.0):
    """Run the reset program, then one token program per token; return per-token results."""
    image = build_image(weights, port_bytes=params.port_bytes, base=BASE)
    image.check_fits(params.build_limits())
    mem = bytearray(BASE + image.total_bytes + 4096)
    mem[BASE:BASE + image.total_bytes] = image.raw
    reset_addr = BASE + 2048
    token_addr = reset_addr + 64 * len(image.reset)
    start, n = scratch_layout(weights.config).regions["logits"]
    dut = NSLLMCore(params)
    results = []

    async def tb(ctx):
        bus = AmaranthBus(ctx, dut, mem, stall=stall, seed=7)

        async def run(prog, ops, token=0):
            await bus.reg_write(REGISTERS["PROG_ADDR_LO"], prog)
            await bus.reg_write(REGISTERS["PROG_OPS"], ops)
            await bus.reg_write(REGISTERS["TOKEN_IN"], token)
            await bus.reg_write(REGISTERS["CTRL"], 1)
            for _ in range(1000):
                for _ in range(40):
                    await bus.cycle()
                if await bus.reg_read(REGISTERS["CTRL"]) & 2:
                    return
            raise AssertionError(f"core hung, STATUS {await bus.reg_read(REGISTERS['STATUS']):#x}")

        await run(reset_addr, len(image.reset))
        for tok in tokens:
            await run(token_addr, len(image.token), tok)
            logits = []
            for i in range(n):
                await bus.reg_write(REGISTERS["SCRATCH_ADDR"], start + i)
                v = await bus.reg_read(REGISTERS["SCRATCH_DATA"])
                logits.append(v - (1 << 32) if v >> 31 else v)
            regs = {name: await bus.reg_read(REGISTERS[name]) for name in
                    ("TOKEN_OUT", "CYCLES_LO", "WEIGHT_BYTES", "BUS_BYTES", "SPIKES_NONZERO",
                     "SPIKES_TOTAL", "STATUS")}
            results.append((np.array(logits), regs))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return image, results


@pytest.mark.parametrize("port_bytes, vector, stall", [(8, 4, 0.0), (4, 2, 0.3), (16, 8, 0.0)])
def test_core_matches_golden_model(port_bytes, vector, stall):
    w = micro_model(seed=port_bytes, D=(15, 3, 7, 1), delta=(0.0, 0.5))
    params = CoreParams(port_bytes=port_bytes, vector=vector, max_vocab=64, max_hidden=32,
                        max_intermediate=64, max_layers=1)
    tokens = [5, 63]
    image, results = run_core(w, params, tokens, stall)
    model = IntegerModel(w)
    state = model.init_state()
    interp = Interpreter(image.raw, image.scratch_entries, image.packing, base=BASE)
    interp.run(image.reset)
    for t, (tok, (logits, regs)) in enumerate(zip(tokens, results, strict=True)):
        want, state = model.step(tok, state)
        first = np.flatnonzero(logits != want[0])
        assert first.size == 0, (f"token {t}: lm_head logits index {first[0]}: expected "
                                 f"{want[0][first[0]]}, got {logits[first[0]]}")
        assert regs["TOKEN_OUT"] == int(np.argmax(want[0]))
        # the core fetched exactly the columns the interpreter says spiked
        stats = interp.run(image.token, token=tok)
        assert regs["WEIGHT_BYTES"] == stats.weight_bytes
        assert regs["SPIKES_NONZERO"] == stats.spikes_nonzero
        assert regs["SPIKES_TOTAL"] == stats.spikes_total
        assert regs["STATUS"] >> 28 == 0  # no error
        assert regs["BUS_BYTES"] >= stats.weight_bytes + stats.table_bytes
