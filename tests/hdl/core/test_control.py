"""``ControlRegisters`` over AXI4-Lite in amaranth.sim: every register of
``nsllm.isa.REGISTER_MAP`` behaves as its access mode says (RW read back word by word, RO
inputs, WO strobes, CONST build values), per-port registers of ports a build lacks read 0,
ap_ctrl_hs CTRL and the ISR/interrupt semantics, and unknown offsets.

One case per (register, build): :func:`register_case` turns it into a testbench by the
register's access mode.
"""

from __future__ import annotations

import pytest

from nsllm.hdl.core import CoreParams
from nsllm.hdl.core.control import ControlRegisters
from nsllm.isa import REGISTER_MAP, Access, Reg
from nsllm.isa.registers import ADDRESS_SPACE, build_register_values

from .axil import AxiLiteMaster
from .sim import simulate

OKAY = 0


def build(ports: int) -> ControlRegisters:
    limits = CoreParams(weight_ports=ports, packings=("2bit", "base3")).build_limits()
    return ControlRegisters(build_register_values(limits), weight_ports=ports)


def present(reg, ports):
    return not isinstance(reg.port, int) or reg.port < ports


def pattern(reg, k):
    """A distinct value per register and word (no two words alike, high bits set)."""
    return (0x9E3779B1 * (reg.offset + 4 * k + 1)) & 0xFFFFFFFF


async def idle_control(ctx, dut):
    ctx.set(dut.busy, 0)
    ctx.set(dut.done, 0)


def register_case(dut, reg, ports):
    """The testbench that checks ``reg`` on ``dut`` according to its access mode."""
    name = reg.name.lower()
    words = reg.words

    async def tb(ctx):
        await idle_control(ctx, dut)
        bus = AxiLiteMaster(ctx, dut.s_axil, stall=0.3, seed=reg.offset)
        if not present(reg, ports):
            assert not hasattr(dut, name), f"{reg.name}: a port for an absent weight port"
            for k, (_, off) in enumerate(words):
                assert (await bus.write(off, pattern(reg, k)))[0] == OKAY
            for _, off in words:
                assert await bus.read(off) == (0, OKAY), f"{reg.name}: absent, must read 0"
        elif reg.access == Access.RW:
            for round_ in range(2):
                values = [pattern(reg, k) ^ (0xFFFFFFFF * round_) for k in range(len(words))]
                for (_, off), v in zip(words, values, strict=True):
                    assert (await bus.write(off, v))[0] == OKAY
                for (wname, off), v in zip(words, values, strict=True):
                    assert await bus.read(off) == (v, OKAY), f"{wname} read back"
                whole = sum(v << (32 * k) for k, v in enumerate(values))
                assert ctx.get(getattr(dut, name)) == whole, f"{reg.name} port"
            if len(words) == 2:  # writing the high word leaves the low one
                await bus.write(words[1][1], 7)
                assert ctx.get(getattr(dut, name)) == (7 << 32) | (values[0])
        elif reg.access == Access.RO:
            whole = sum(pattern(reg, k) << (32 * k) for k in range(len(words)))
            ctx.set(getattr(dut, name), whole)
            for k, (wname, off) in enumerate(words):
                assert await bus.read(off) == (pattern(reg, k), OKAY), wname
            # a write to an RO register is ignored
            assert (await bus.write(words[0][1], 0x1234))[0] == OKAY
            assert await bus.read(words[0][1]) == (pattern(reg, 0), OKAY)
        elif reg.access == Access.WO:
            strobe = getattr(dut, name)
            resp, (during,) = await bus.write(reg.offset, 1, watch=[strobe])
            assert (resp, during) == (OKAY, 1), f"{reg.name}: no strobe"
            assert ctx.get(strobe) == 0, f"{reg.name}: strobe longer than one cycle"
            assert await bus.read(reg.offset) == (0, OKAY)
        elif reg.access == Access.CONST:
            assert await bus.read(reg.offset) == (dut.constants[reg.name], OKAY)
            await bus.write(reg.offset, 0xFFFFFFFF)
            assert await bus.read(reg.offset) == (dut.constants[reg.name], OKAY)
        else:
            raise AssertionError(f"{reg.name}: {reg.access.value} has its own tests below")

    return tb


CASES = [pytest.param(reg, ports, id=f"{reg.name}-{ports}port")
         for ports in (1, 3) for reg in REGISTER_MAP
         if reg.access not in (Access.CTRL, Access.TOGGLE)]


@pytest.mark.parametrize("reg,ports", CASES)
def test_register(reg, ports):
    dut = build(ports)
    simulate(dut, register_case(dut, reg, ports))


def test_every_register_has_a_case():
    """Each register of the map is covered by a case above or by the CTRL/ISR tests."""
    covered = {p.values[0].name for p in CASES} | {"CTRL", "ISR"}
    assert covered == {r.name for r in REGISTER_MAP}


def test_unknown_offsets_read_0_answer_okay_and_change_nothing():
    dut = build(2)
    mapped = {off for r in REGISTER_MAP for _, off in r.words}
    unknown = [off for off in (0x14 + 0x100, 0xC4, 0xC8, 0x200, ADDRESS_SPACE - 4, 0x3FC)
               if off not in mapped]

    async def tb(ctx):
        await idle_control(ctx, dut)
        bus = AxiLiteMaster(ctx, dut.s_axil, stall=0.2, seed=3)
        await bus.write(Reg.PROG_OPS, 77)
        for off in unknown:
            assert (await bus.write(off, 0xFFFFFFFF))[0] == OKAY
            assert await bus.read(off) == (0, OKAY), f"{off:#x}"
        assert await bus.read(Reg.PROG_OPS) == (77, OKAY)
        assert ctx.get(dut.prog_ops) == 77

    simulate(dut, tb)


# --- CTRL: ap_ctrl_hs ---------------------------------------------------------------------------
def test_ctrl_start_pulses_while_idle_and_is_ignored_while_busy():
    dut = build(1)

    async def tb(ctx):
        await idle_control(ctx, dut)
        bus = AxiLiteMaster(ctx, dut.s_axil)
        assert await bus.read(Reg.CTRL) == (0b0100, OKAY)  # idle
        resp, (start,) = await bus.write(Reg.CTRL, 1, watch=[dut.start])
        assert (resp, start) == (OKAY, 1)
        assert ctx.get(dut.start) == 0  # one cycle
        _, (start,) = await bus.write(Reg.CTRL, 0, watch=[dut.start])
        assert start == 0  # bit 0 clear: no start
        ctx.set(dut.busy, 1)
        assert await bus.read(Reg.CTRL) == (0b0001, OKAY)  # running, not idle
        _, (start,) = await bus.write(Reg.CTRL, 1, watch=[dut.start])
        assert start == 0, "start while busy"

    simulate(dut, tb)


def test_ctrl_done_sets_done_and_ready_which_clear_on_read():
    dut = build(1)

    async def tb(ctx):
        await idle_control(ctx, dut)
        bus = AxiLiteMaster(ctx, dut.s_axil, stall=0.3, seed=1)
        ctx.set(dut.busy, 1)
        await ctx.tick()
        ctx.set(dut.busy, 0)
        ctx.set(dut.done, 1)
        await ctx.tick()
        ctx.set(dut.done, 0)
        assert await bus.read(Reg.STATUS) == (0, OKAY)  # another register keeps ap_done
        assert await bus.read(Reg.CTRL) == (0b1110, OKAY)  # done, idle, ready
        assert await bus.read(Reg.CTRL) == (0b0100, OKAY)  # cleared by the read

    simulate(dut, tb)


def test_ctrl_done_in_the_cycle_ctrl_is_read_is_not_lost():
    dut = build(1)
    seen = []

    async def reader(ctx):
        await idle_control(ctx, dut)
        bus = AxiLiteMaster(ctx, dut.s_axil)
        seen.append(await bus.read(Reg.CTRL))
        seen.append(await bus.read(Reg.CTRL))

    async def done_pulse(ctx):
        # the read's data is registered in the cycle after arvalid is taken: pulse done then
        await ctx.tick().until(dut.s_axil.arvalid & dut.s_axil.arready)
        ctx.set(dut.done, 1)
        await ctx.tick()
        ctx.set(dut.done, 0)

    simulate(dut, reader, background=[done_pulse])
    assert seen == [(0b0100, OKAY), (0b1110, OKAY)]


# --- ISR, GIE, IER and irq ------------------------------------------------------------------
async def pulse_done(ctx, dut):
    ctx.set(dut.done, 1)
    await ctx.tick()
    ctx.set(dut.done, 0)


# one line per case: GIE, IER, ISR toggles written before done, done pulses → ISR, irq
ISR_CASES = [
    (1, 1, 0, 1, 1, 1), (0, 1, 0, 1, 1, 0), (1, 0, 0, 1, 0, 0), (1, 1, 0, 0, 0, 0),
    (1, 1, 1, 0, 1, 1),  # a write of 1 toggles ISR on
    (1, 1, 2, 0, 0, 0),  # and off again
    (1, 1, 1, 1, 1, 1),  # done sets, never clears
    (1, 0, 1, 0, 1, 0),  # ISR set by the host, but IER masks irq
]


@pytest.mark.parametrize("gie,ier,toggles,dones,isr,irq", ISR_CASES)
def test_isr_and_irq(gie, ier, toggles, dones, isr, irq):
    dut = build(1)

    async def tb(ctx):
        await idle_control(ctx, dut)
        bus = AxiLiteMaster(ctx, dut.s_axil, stall=0.2, seed=toggles)
        await bus.write(Reg.GIE, gie)
        await bus.write(Reg.IER, ier)
        for _ in range(toggles):
            await bus.write(Reg.ISR, 1)
        await bus.write(Reg.ISR, 0)  # writing 0 changes nothing
        for _ in range(dones):
            await pulse_done(ctx, dut)
        await ctx.tick()
        assert await bus.read(Reg.ISR) == (isr, OKAY)
        assert ctx.get(dut.irq) == irq

    simulate(dut, tb)


def test_isr_write_of_1_clears_a_pending_interrupt():
    dut = build(1)

    async def tb(ctx):
        await idle_control(ctx, dut)
        bus = AxiLiteMaster(ctx, dut.s_axil)
        await bus.write(Reg.GIE, 1)
        await bus.write(Reg.IER, 1)
        await pulse_done(ctx, dut)
        await ctx.tick()
        assert ctx.get(dut.irq) == 1
        await bus.write(Reg.ISR, 1)
        assert ctx.get(dut.irq) == 0
        assert await bus.read(Reg.ISR) == (0, OKAY)

    simulate(dut, tb)


def test_missing_build_constant_is_an_error():
    values = build_register_values(CoreParams().build_limits())
    del values["BUILD_MAX_D"]
    with pytest.raises(ValueError, match=r"^no value for the build register\(s\) BUILD_MAX_D$"):
        ControlRegisters(values, weight_ports=1)
