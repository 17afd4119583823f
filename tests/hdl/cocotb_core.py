"""cocotb testbench of the whole core with third-party bus models (cocotbext-axi).

The control registers are driven by ``AxiLiteMaster``; every AXI read port (the image port and
each weight port) is served by its own ``AxiRamRead`` — each holding a copy of device memory —
whose read data channel pauses at random. Run from ``tests/hdl/test_core_cocotb.py``.
"""

import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiRamRead, AxiReadBus

from nsllm.host.image import build_image
from nsllm.isa import Reg, scratch_layout
from nsllm.model import IntegerModel, load_model
from nsllm.sim.streams import test_parameters

IMAGE = 0x1000


def stalls(seed, probability):
    rng = random.Random(seed)
    while True:
        yield rng.random() < probability


@cocotb.test()
async def core_generates_golden_tokens(dut):
    params = test_parameters()
    weights = load_model(params["model"])
    ports = params["weight_ports"]
    image = build_image(weights, port_bytes=params["port_bytes"], packing=params["packing"],
                        weight_ports=ports)
    # device memory: the image region, then each weight region on a 4 KiB boundary
    region_addrs = []
    addr = IMAGE + image.image_bytes + 128
    for _ in range(ports):
        addr += -addr % 4096
        region_addrs.append(addr)
        addr += image.region_bytes
    size = addr + 4096
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    rams = []
    for k, name in enumerate(["m_axi_ctl"] + [f"m_axi_w{k}" for k in range(ports)]):
        ram = AxiRamRead(AxiReadBus.from_prefix(dut, f"{name}_"), dut.clk, dut.rst, size=size)
        ram.r_channel.set_pause_generator(stalls(k + 1, 0.25))
        ram.write(IMAGE, image.raw)
        for a, region in zip(region_addrs, image.regions, strict=True):
            ram.write(a, region)
        rams.append(ram)
    ctl = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)
    dut.rst.value = 1
    for _ in range(4):
        await RisingEdge(dut.clk)
    dut.rst.value = 0

    build = {k: await ctl.read_dword(Reg[k]) for k in ("BUILD_PORT_BYTES", "BUILD_WEIGHT_PORTS")}
    assert build == {"BUILD_PORT_BYTES": params["port_bytes"], "BUILD_WEIGHT_PORTS": ports}
    await ctl.write_dword(Reg.IMAGE_LO, IMAGE)
    for k, a in enumerate(region_addrs):
        await ctl.write_dword(Reg[f"W{k}_LO"], a)
    await ctl.write_dword(Reg.IMAGE_BYTES, image.image_bytes)
    await ctl.write_dword(Reg.REGION_BYTES, image.region_bytes)

    async def run(offset, ops, token=0):
        await ctl.write_dword(Reg.PROG_OFFSET, offset)
        await ctl.write_dword(Reg.PROG_OPS, ops)
        await ctl.write_dword(Reg.TOKEN_IN, token)
        await ctl.write_dword(Reg.CTRL, 1)
        for _ in range(2000):
            for _ in range(50):
                await RisingEdge(dut.clk)
            if await ctl.read_dword(Reg.CTRL) & 2:
                return
        raise AssertionError(f"core hung: STATUS {await ctl.read_dword(Reg.STATUS):#x}")

    start, n = scratch_layout(weights.config).regions["logits"]
    model = IntegerModel(weights)
    state = model.init_state()
    await run(image.reset_offset, len(image.reset))
    tok = params["first_token"]
    for t in range(params["tokens"]):
        await run(image.token_offset, len(image.token), tok)
        status = await ctl.read_dword(Reg.STATUS)
        assert status >> 28 == 0, f"token {t}: the core stopped with STATUS {status:#x}"
        want, state = model.step(tok, state)
        got = []
        for i in range(n):
            await ctl.write_dword(Reg.SCRATCH_ADDR, start + i)
            v = await ctl.read_dword(Reg.SCRATCH_DATA)
            got.append(v - (1 << 32) if v >> 31 else v)
        diff = np.flatnonzero(np.array(got) != want[0])
        assert diff.size == 0, (f"NSLLMCore: token {t}, lm_head logits index {diff[0]}: "
                                f"expected {want[0][diff[0]]}, got {got[diff[0]]}")
        out = await ctl.read_dword(Reg.TOKEN_OUT)
        assert out == int(np.argmax(want[0])), (out, int(np.argmax(want[0])))
        port_bytes = [await ctl.read_dword(Reg[f"PORT{k}_BYTES"]) for k in range(ports)]
        assert all(port_bytes), f"a weight port fetched nothing: {port_bytes}"
        tok = out
