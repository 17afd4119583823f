"""Simulation speed of the spike encoder array: Verilator, Icarus and amaranth.sim.

Two sizes (small = the registry's "sim" size, 8 lanes; larger = 64 lanes), two modes:

* ``stream`` — the cocotb / amaranth.sim stream source and sink models drive and take a beat
  every cycle (valid and ready always high): what a testbench in this project costs per cycle;
* ``free`` — a constant beat is held on the input and only the clock runs: the simulator's own
  speed, without a Python model acting every cycle.

Prints a table of cycles per second (``--json`` for JSON). Build times are reported separately
and not counted. Usage::

    .venv/bin/python bench/sim_speed.py [--json] [--cycles N]
        [--simulators verilator,icarus,amaranth]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cocotb
from cocotb.triggers import ClockCycles

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nsllm.hdl.spike import EncoderArray  # noqa: E402
from nsllm.sim.streams import TB, pack, test_parameters  # noqa: E402

SIZES = {
    "small": {"lanes": 8, "max_D": 15},
    "larger": {"lanes": 64, "max_D": 15},
}
CONFIG = {"D": 15, "delta_q": 64, "shift": 9}  # static ports of the encoder array
MODES = ("stream", "free")


def beats_for(model: EncoderArray, n: int, group: int = 16) -> list[dict]:
    """``n`` words of activations and mantissas (deterministic pseudo-random)."""
    out = []
    for k in range(n):
        out.append({
            "x": [((k * 7919 + i * 104729) % 8191) - 4095 for i in range(model.lanes)],
            "mant": [((k * 31 + i * 17) % 4001) - 2000 for i in range(model.lanes)],
            "index": k % 256, "last": int(k % group == group - 1),
        })
    return out


# --- the cocotb side (this file is also the cocotb test module "sim_speed") --------------------
@cocotb.test()
async def throughput(dut):
    params = test_parameters()
    model = EncoderArray(**params["args"])
    n = params["cycles"]
    tb = TB(dut, "EncoderArray")
    for port, value in CONFIG.items():
        getattr(dut, port).value = value
    await tb.reset()
    if params["mode"] == "free":
        dut.i_stream__payload.value = pack(model.in_layout, {**beats_for(model, 1)[0], "last": 1})
        dut.i_stream__valid.value = 1
        dut.o_stream__ready.value = 1
        start = time.perf_counter()
        await ClockCycles(tb.clk, n)
        seconds = time.perf_counter() - start
    else:
        beats = beats_for(model, n)
        source = tb.source("i_stream", model.in_layout, valid_probability=1.0)
        sink = tb.sink("o_stream", model.out_layout, ready_probability=1.0)
        sink.check = lambda *args: None  # a speed run; correctness is tested in tests/hdl
        sink.expect([None] * len(beats))
        first_cycle = tb.cycle()
        start = time.perf_counter()
        source.send(beats)
        await sink.wait_for(len(beats), timeout_cycles=4 * n + 100)
        seconds = time.perf_counter() - start
        n = tb.cycle() - first_cycle
    Path(params["out"]).write_text(json.dumps({"cycles": n, "seconds": seconds}))


# --- amaranth.sim ---------------------------------------------------------------------------
def amaranth_speed(args: dict, mode: str, cycles: int) -> dict:
    from amaranth.sim import Simulator

    from nsllm.sim.streams import run_amaranth_stream

    model = EncoderArray(**args)

    def setup(ctx):
        for port, value in CONFIG.items():
            ctx.set(getattr(model, port), value)

    if mode == "stream":
        beats = beats_for(model, cycles)
        start = time.perf_counter()
        got = run_amaranth_stream(model, beats, len(beats), setup=setup,
                                  valid_probability=1.0, ready_probability=1.0, settle=0)
        seconds = time.perf_counter() - start
        return {"cycles": got[-1][0], "seconds": seconds}
    beat = {**beats_for(model, 1)[0], "last": 1}

    async def tb(ctx):
        from amaranth.hdl import Value

        setup(ctx)
        ctx.set(Value.cast(model.i_stream.payload), pack(model.in_layout, beat))
        ctx.set(model.i_stream.valid, 1)
        ctx.set(model.o_stream.ready, 1)
        await ctx.tick().repeat(cycles)

    sim = Simulator(model)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    start = time.perf_counter()
    sim.run()
    return {"cycles": cycles, "seconds": time.perf_counter() - start}


def cocotb_speed(simulator: str, size: str, mode: str, cycles: int) -> dict:
    from nsllm.sim.cocotb_runner import run_cocotb

    args = SIZES[size]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        run = run_cocotb(EncoderArray(**args), "sim_speed", simulator, name="EncoderArray",
                         parameters={"args": args, "mode": mode, "cycles": cycles,
                                     "out": str(out)}, timeout=1200)
        result = json.loads(out.read_text())
    result["build_seconds"] = round(run.build_seconds, 1) if run.built else None
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--cycles", type=int, default=4000,
                        help="cycles per stream run (free runs 10×; amaranth.sim and the larger "
                             "size on Icarus 1/4 of that)")
    parser.add_argument("--simulators", default="verilator,icarus,amaranth")
    args = parser.parse_args(argv)
    # cocotb imports this file as the test module "sim_speed"; the runner exports sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent))

    from nsllm.sim import toolchain

    rows = []
    for simulator in args.simulators.split(","):
        if simulator == "icarus" and not toolchain.icarus_available():
            print(f"skipping Icarus: {toolchain.ICARUS_INSTALL_HINT}", file=sys.stderr)
            continue
        for size, params in SIZES.items():
            for mode in MODES:
                cycles = args.cycles * (10 if mode == "free" else 1)
                if simulator == "amaranth" or (simulator == "icarus" and size == "larger"):
                    cycles //= 4  # slow simulators get shorter runs; cycles/s is what counts
                if simulator == "amaranth":
                    result = amaranth_speed(params, mode, cycles)
                    result["build_seconds"] = None
                else:
                    result = cocotb_speed(simulator, size, mode, cycles)
                rows.append({"simulator": simulator, "size": size, "mode": mode,
                             "lanes": params["lanes"],
                             **result,
                             "cycles_per_s": round(result["cycles"] / result["seconds"])})
                print(f"{simulator} {size} {mode}: {rows[-1]['cycles_per_s']} cycles/s",
                      file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print("| simulator | size (encoder lanes) | mode | cycles | cycles/s | build s |")
        print("| --- | --- | --- | ---: | ---: | ---: |")
        for r in rows:
            build = "" if r["build_seconds"] is None else f"{r['build_seconds']}"
            print(f"| {r['simulator']} | {r['size']} ({r['lanes']}) "
                  f"| {r['mode']} | {r['cycles']} | {r['cycles_per_s']:,} | {build} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
