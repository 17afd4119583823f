"""Icarus Verilog back end of :class:`~nsllm.sim.verilator_device.SimDevice`.

``SimDevice(verilog, simulator="icarus")`` compiles the core with the testbench
``nsllm/sim/harness/icarus_tb.v`` (clock, DRAM model, AXI4-Lite master: the Verilog twin of the
C++ harness) using ``iverilog -g2012``, caches ``sim.vvp`` under
``build/sim/icarus-harness/nsllm_core_<hash>/`` (hash of the Verilog, the testbench, the port
width, the DRAM array size and the Icarus version), and runs it in a ``vvp`` subprocess that
takes one command per line on stdin and answers on stdout (the protocol is in the testbench's
header). Bulk DRAM transfers go through a hex file read with ``$readmemh``.

Icarus is the independent second simulator: it shares no code with Verilator, so a core that
passes on both does not rely on one simulator's reading of the Verilog. Without rvalid stalls
(the two draw different random numbers) both give the same cycle counts. Icarus is much slower:
measured on a 2-core machine (Icarus 11), the default ``CoreParams()`` core runs ~1 000
cycles/s while busy on a token of the ``tiny`` preset (Verilator: ~200 000) and ~25 000
cycles/s idle.

Example
-------
>>> dev = SimDevice(core_verilog(params), simulator="icarus", mem_bytes=1 << 20)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from ..host.device import DeviceError
from . import buildcache, toolchain
from .cocotb_runner import build_root
from .verilator_device import HARNESS_DIR, TOP, BuildInfo, check_ports, port_bytes_of

__all__ = ["ICARUS_TESTBENCH", "IcarusProcess", "build_icarus", "dram_words", "testbench_text"]

ICARUS_TESTBENCH = HARNESS_DIR / "icarus_tb.v"
TESTBENCH_TOP = "icarus_tb"
PROGRAM = "sim.vvp"
#: Bursts the testbench's DRAM queue holds (``QUEUE`` in icarus_tb.v).
MAX_OUTSTANDING = 256
#: Largest rvalid-gap threshold: the testbench draws 24 random bits per decision.
MAX_DRAW = (1 << 24) - 1
#: Smallest DRAM array compiled in, in words (tiny devices share one build).
MIN_DRAM_WORDS = 1 << 12


def testbench_text(masters: list[str]) -> str:
    """The testbench with the core's AXI read masters connected (element k of each per-port
    array is master k) and named for its messages."""
    signals = ("arid", "araddr", "arlen", "arsize", "arburst", "arvalid", "arready", "rid",
               "rdata", "rresp", "rlast", "rvalid", "rready")
    ports = [f".{name}__{sig}(m_{sig}[{k}])" for k, name in enumerate(masters) for sig in signals]
    names = [f'port_name[{k}] = "{name}";' for k, name in enumerate(masters)]
    return (ICARUS_TESTBENCH.read_text()
            .replace("// @AXI_PORTS@", "".join(f",\n    {p}" for p in ports))
            .replace("// @PORT_NAMES@", "\n    ".join(names)))


def dram_words(mem_bytes: int, port_bytes: int) -> int:
    """Words of the compiled DRAM array for ``mem_bytes``: a power of two, so few builds exist."""
    words = max(-(-mem_bytes // port_bytes), MIN_DRAM_WORDS)
    return 1 << (words - 1).bit_length()


@functools.cache
def icarus_version() -> str:
    """First line of ``iverilog -V`` (part of the build cache key)."""
    toolchain.require_icarus()
    result = subprocess.run(["iverilog", "-V"], capture_output=True, text=True, check=False)
    return (result.stdout or result.stderr).splitlines()[0] if result.stdout or result.stderr \
        else "unknown"


def build_icarus(verilog_text: str, mem_bytes: int, root: Path | None = None) -> BuildInfo:
    """Compile ``verilog_text`` with the testbench into a ``vvp`` program (cached by content).

    Parameters
    ----------
    verilog_text : str
        The core's Verilog (top module ``nsllm_core``), as Yosys writes it; the
        :func:`~nsllm.sim.toolchain.icarus_compatible` rewrite is applied here.
    mem_bytes : int
        DRAM the device will have; the compiled array is :func:`dram_words` words.
    root : Path, optional
        Cache directory (default ``build/sim/icarus-harness``).

    Returns
    -------
    BuildInfo
        ``library`` is the ``sim.vvp`` file.

    Raises
    ------
    DeviceError
        When iverilog rejects the design; the message holds the tail of its log.
    nsllm.sim.toolchain.ToolchainError
        When Icarus is not installed.
    """
    toolchain.require_icarus()
    masters = check_ports(verilog_text)
    port_bytes = port_bytes_of(verilog_text)
    words = dram_words(mem_bytes, port_bytes)
    text = toolchain.icarus_compatible(verilog_text)
    testbench = testbench_text(masters)
    key = hashlib.sha256("\0".join([text, testbench, str(port_bytes), str(words),
                                    icarus_version()]).encode()).hexdigest()[:16]
    directory = (root or build_root() / "sim" / "icarus-harness") / f"{TOP}_{key}"
    program = directory / PROGRAM
    with buildcache.entry(directory, [PROGRAM]) as cache:  # verified by content hash
        if cache.complete:
            return BuildInfo(program, directory, True, 0.0)
        t0 = time.perf_counter()
        (directory / f"{TOP}.v").write_text(text)
        (directory / "icarus_tb.v").write_text(testbench)
        args = ["iverilog", "-g2012", "-o", PROGRAM, "-s", TESTBENCH_TOP,
                "-P", f"{TESTBENCH_TOP}.PORT_BYTES={port_bytes}",
                "-P", f"{TESTBENCH_TOP}.NPORTS={len(masters)}",
                "-P", f"{TESTBENCH_TOP}.MEM_WORDS={words}", "icarus_tb.v", f"{TOP}.v"]
        result = subprocess.run(args, cwd=directory, capture_output=True, text=True,
                                timeout=3600, check=False)
        log = directory / "build.log"
        log.write_text(" ".join(args) + "\n" + result.stdout + result.stderr)
        if result.returncode != 0 or not program.is_file():
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
            raise DeviceError(f"the Icarus build of the core failed (exit {result.returncode}); "
                              f"full log: {log}\n{tail}")
        cache.record()
        return BuildInfo(program, directory, False, time.perf_counter() - t0)


class IcarusProcess:
    """The testbench running in ``vvp``: the Icarus implementation of SimDevice's back end.

    Same methods and results as the Verilator library (``_Simulation`` in
    :mod:`nsllm.sim.verilator_device`); each call is one command line to the testbench.

    Parameters
    ----------
    build : BuildInfo
        From :func:`build_icarus`.
    mem_bytes, latency, stall_prob, seed, max_outstanding
        The DRAM model's settings (see :class:`~nsllm.sim.verilator_device.SimDevice`).
    trace : path, optional
        Write a VCD of the core there.
    """

    #: Icarus runs ~10^3-10^5 cycles/s: a small first slice keeps short wall-clock budgets honest
    first_chunk = 1 << 8

    def __init__(self, build: BuildInfo, mem_bytes: int, latency: int, stall_prob: float,
                 seed: int, max_outstanding: int, trace: str | os.PathLike | None = None):
        if max_outstanding > MAX_OUTSTANDING:
            raise ValueError(f"the Icarus DRAM model queues at most {MAX_OUTSTANDING} bursts, "
                             f"not max_outstanding={max_outstanding}")
        self._mem_bytes = mem_bytes
        self._proc: subprocess.Popen | None = None
        self._workdir = Path(tempfile.mkdtemp(prefix="nsllm-icarus-"))
        self._transfer = self._workdir / "transfer.hex"
        self._log_path = self._workdir / "vvp.log"
        args = ["vvp", "-n", str(build.library), f"+mem_bytes={mem_bytes}",
                f"+latency={latency}", f"+stall={min(round(stall_prob * (1 << 24)), MAX_DRAW)}",
                f"+seed={seed & (2**64 - 1)}", f"+outstanding={max_outstanding}",
                f"+transfer={self._transfer}"]
        if trace is not None:
            args.append(f"+vcd={Path(trace).resolve()}")
        with open(self._log_path, "w") as log:  # vvp's own messages (e.g. $readmemh warnings)
            self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=log, cwd=self._workdir, text=True, bufsize=1)
        try:
            self.port_bytes = int(self._answer("READY")[0])
        except BaseException:
            self.close()  # no orphaned vvp or transfer directory
            raise

    # ---- the pipe
    def _answer(self, tag: str) -> list[str]:
        """Fields of the next answer line, which must start with ``=tag``."""
        proc = self._proc
        if proc is None:
            raise DeviceError("the Icarus simulation is closed")
        while True:
            line = proc.stdout.readline()
            if not line:
                raise DeviceError(f"the Icarus simulation (vvp) exited unexpectedly (code "
                                  f"{proc.poll()}); its log: {self._log_tail()}")
            if line.startswith("="):
                break
            # anything else is the core's own $display output: keep it with the log
            with open(self._log_path, "a") as log:
                log.write(line)
        fields = line[1:].rstrip("\n").split(" ")
        if fields[0] != tag:
            raise DeviceError(f"the Icarus testbench answered {line.strip()!r} where "
                              f"{'=' + tag!r} was expected (log: {self._log_tail()})")
        return fields[1:]

    def _ask(self, command: str, tag: str = "OK") -> list[str]:
        try:
            self._proc.stdin.write(command + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, AttributeError, ValueError):
            raise DeviceError(f"the Icarus simulation (vvp) is not running; its log: "
                              f"{self._log_tail()}") from None
        return self._answer(tag)

    def _log_tail(self) -> str:
        try:
            lines = self._log_path.read_text().splitlines()[-10:]
        except OSError:
            return "(no log)"
        return "\n".join(lines) or "(empty)"

    # ---- DRAM: whole words through the transfer file; the testbench's array is word-wide
    def _write_words(self, first: int, data: bytes) -> None:
        pb = self.port_bytes
        # $readmemh reads a word as one big-endian hex number; lane k is byte k of the word
        text = np.frombuffer(data, np.uint8).reshape(-1, pb)[:, ::-1].tobytes().hex()
        width = 2 * pb
        self._transfer.write_text("\n".join(text[i:i + width]
                                            for i in range(0, len(text), width)) + "\n")
        self._ask(f"W {first:x} {len(data) // pb:x}")

    def _read_words(self, first: int, count: int) -> bytes:
        self._ask(f"R {first:x} {count:x}")
        lines = [x for x in self._transfer.read_text().splitlines()
                 if x and not x.startswith("//")]  # $writememh heads the dump with a comment
        pb = self.port_bytes
        raw = np.frombuffer(bytes.fromhex("".join(lines)), np.uint8)
        return raw.reshape(-1, pb)[:, ::-1].tobytes()

    def mem_bytes(self) -> int:
        return self._mem_bytes

    def mem_write(self, addr: int, data: bytes) -> bool:
        n = len(data)
        if addr + n > self._mem_bytes:
            return False
        if n == 0:
            return True
        pb = self.port_bytes
        first, last = addr // pb, (addr + n - 1) // pb
        head = addr - first * pb
        words = bytearray((last - first + 1) * pb)
        # partial words at either end keep their other bytes
        if head:
            words[:pb] = self._read_words(first, 1)
        if (head + n) % pb and not (head and last == first):
            words[-pb:] = self._read_words(last, 1)
        words[head:head + n] = data
        self._write_words(first, bytes(words))
        return True

    def mem_read(self, addr: int, n: int) -> bytes | None:
        if addr + n > self._mem_bytes:
            return None
        if n == 0:
            return b""
        pb = self.port_bytes
        first, last = addr // pb, (addr + n - 1) // pb
        words = self._read_words(first, last - first + 1)
        return words[addr - first * pb:addr - first * pb + n]

    # ---- registers and runs
    def reg_write(self, offset: int, value: int) -> int:
        return int(self._ask(f"RW {offset:x} {value:x}", "B")[0])

    def reg_read(self, offset: int) -> tuple[int, int]:
        resp, value = self._ask(f"RR {offset:x}", "D")
        return int(resp), int(value)

    def clear_done(self) -> None:
        self._ask("CLR")

    def run_until_done(self, max_cycles: int, poll_interval: int) -> tuple[int, int]:
        result, ran = self._ask(f"RUN {max_cycles:x} {poll_interval:x}", "RUN")
        return int(result), int(ran)

    def step(self, n: int) -> None:
        self._ask(f"STEP {n:x}")

    def cycles(self) -> int:
        return int(self._ask("CYC", "C")[0])

    def counters(self) -> tuple[int, int, int, int, int]:
        served, bursts, stalls, slverr, pending = (int(x) for x in self._ask("CNT", "N"))
        return served, bursts, stalls, slverr, pending

    def error(self) -> str:
        return " ".join(self._ask("ERR", "E")).strip()

    def close(self) -> None:
        """End ``vvp`` (which flushes the VCD) and remove the transfer directory."""
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.stdin.write("QUIT\n")
                proc.stdin.close()
                proc.wait(timeout=30)
            except (BrokenPipeError, OSError, ValueError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
            proc.stdout.close()
        shutil.rmtree(self._workdir, ignore_errors=True)
