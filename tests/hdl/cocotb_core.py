"""cocotb testbench of the whole core with third-party bus models (cocotbext-axi).

The control registers are driven by ``AxiLiteMaster``; DRAM is an ``AxiRamRead`` whose read
data channel pauses at random. Run from ``tests/hdl/test_core_cocotb.py``.
"""

import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiRamRead, AxiReadBus

from nsllm.hdl.core import REGISTERS
from nsllm.host.image import build_image
from nsllm.host.program import scratch_layout
from nsllm.model import IntegerModel, load_model
from nsllm.sim.streams import test_parameters

BASE = 0x1000


def stalls(seed, probability):
    rng = random.Random(seed)
    while True:
        yield rng.random() < probability


@cocotb.test()
async def core_generates_golden_tokens(dut):
    params = test_parameters()
    weights = load_model(params["model"])
    image = build_image(weights, port_bytes=params["port_bytes"], base=BASE)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    ram = AxiRamRead(AxiReadBus.from_prefix(dut, "m_axi_"), dut.clk, dut.rst,
                     size=BASE + image.total_bytes + 4096)
    ram.r_channel.set_pause_generator(stalls(1, 0.25))
    ctl = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)
    dut.rst.value = 1
    for _ in range(4):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    ram.write(BASE, image.raw)

    build = {k: await ctl.read_dword(REGISTERS[k]) for k in ("BUILD_PORT_BYTES", "BUILD_MAX_D")}
    assert build["BUILD_PORT_BYTES"] == params["port_bytes"], build

    async def run(prog, ops, token=0):
        await ctl.write_dword(REGISTERS["PROG_ADDR_LO"], prog)
        await ctl.write_dword(REGISTERS["PROG_OPS"], ops)
        await ctl.write_dword(REGISTERS["TOKEN_IN"], token)
        await ctl.write_dword(REGISTERS["CTRL"], 1)
        for _ in range(2000):
            for _ in range(50):
                await RisingEdge(dut.clk)
            if await ctl.read_dword(REGISTERS["CTRL"]) & 2:
                return
        raise AssertionError(f"core hung: STATUS {await ctl.read_dword(REGISTERS['STATUS']):#x}")

    reset_addr = BASE + 2048
    token_addr = reset_addr + 64 * len(image.reset)
    start, n = scratch_layout(weights.config).regions["logits"]
    model = IntegerModel(weights)
    state = model.init_state()
    await run(reset_addr, len(image.reset))
    tok = params["first_token"]
    for t in range(params["tokens"]):
        await run(token_addr, len(image.token), tok)
        want, state = model.step(tok, state)
        got = []
        for i in range(n):
            await ctl.write_dword(REGISTERS["SCRATCH_ADDR"], start + i)
            v = await ctl.read_dword(REGISTERS["SCRATCH_DATA"])
            got.append(v - (1 << 32) if v >> 31 else v)
        diff = np.flatnonzero(np.array(got) != want[0])
        assert diff.size == 0, (f"NSLLMCore: token {t}, lm_head logits index {diff[0]}: "
                                f"expected {want[0][diff[0]]}, got {got[diff[0]]}")
        out = await ctl.read_dword(REGISTERS["TOKEN_OUT"])
        assert out == int(np.argmax(want[0])), (out, int(np.argmax(want[0])))
        tok = out
