"""Simulation speed of the shipped model on this tree's core against an earlier revision's.

    python bench/sim_vs_baseline.py [--baseline REV] [--tokens 32] [--json]

Checks out ``REV`` (default ``18deafd``, the last commit with the single-port core of
issue 5) into a temporary git worktree, and runs the same job in one process per tree: the
shipped model's default Verilator build (64-bit port, one weight port, 2-bit trits), greedy
generation of ``--tokens`` tokens after the prompt "The ". It reports cycles per token,
tokens per second of wall time and of CPU time (the latter is steadier on a shared machine) and
the ratio new ÷ old. Both runs share this machine's load, so the ratio is the number to read.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

JOB = r"""
import json, sys, time
from nsllm.host.generator import Generator
from nsllm.model import load_model, resolve_model_path
from nsllm.model.tokenizer import load_tokenizer
from nsllm.sim.verilator_device import sim_backend
weights = load_model(resolve_model_path(None))
backend = sim_backend(weights, timeout=600)
gen = Generator(backend, load_tokenizer(weights.config.tokenizer))
gen.generate("The ", 2)  # warm up: the program cache and the image load are not timed
c0, t0 = time.process_time(), time.perf_counter()
res = gen.generate("The ", int(sys.argv[1]))
cpu, wall = time.process_time() - c0, time.perf_counter() - t0
runs = backend.summary.per_token
n = len(runs)
print(json.dumps({"tokens": n, "cycles_per_token": sum(r.cycles for r in runs) / n,
                  "tokens_per_s": n / wall, "tokens_per_cpu_s": n / cpu,
                  "cycles_per_cpu_s": sum(r.cycles for r in runs) / cpu,
                  "text": res.text}))
"""


def run_in(tree: Path, tokens: int) -> dict:
    env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin",
           "NSLLM_BUILD_DIR": str(tree / "build")}
    out = subprocess.run([sys.executable, "-c", JOB, str(tokens)], cwd=tree, env=env,
                         capture_output=True, text=True, timeout=7200, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the job failed in {tree}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", default="18deafd")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nsllm-baseline-") as tmp:
        old_tree = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(old_tree), args.baseline],
                       cwd=ROOT, check=True, capture_output=True)
        try:
            old = run_in(old_tree, args.tokens)
            new = run_in(ROOT, args.tokens)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT,
                           check=False, capture_output=True)
    result = {"baseline": args.baseline, "old": old, "new": new,
              "tokens_per_s_ratio": round(new["tokens_per_s"] / old["tokens_per_s"], 3),
              "tokens_per_cpu_s_ratio": round(new["tokens_per_cpu_s"] / old["tokens_per_cpu_s"],
                                              3),
              "same_text": old["text"] == new["text"]}
    print(json.dumps(result, indent=1) if args.json else
          f"old {old['cycles_per_token']:,.0f} cycles/token, {old['tokens_per_s']:.2f} tokens/s "
          f"({old['tokens_per_cpu_s']:.2f} per CPU-s); new {new['cycles_per_token']:,.0f} "
          f"cycles/token, {new['tokens_per_s']:.2f} tokens/s ({new['tokens_per_cpu_s']:.2f} per "
          f"CPU-s); ratio {result['tokens_per_s_ratio']} wall, "
          f"{result['tokens_per_cpu_s_ratio']} CPU; same text: {result['same_text']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
