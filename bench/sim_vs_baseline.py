"""Simulation speed of the shipped model on this tree's core against an earlier revision's.

    python bench/sim_vs_baseline.py [--baseline REV] [--tokens 32] [--json]
                                    [--out bench/results/sim_vs_baseline.json]

Checks out ``REV`` (default ``18deafd``, the last commit with the single-port core of
issue 5) into a temporary git worktree, and runs the same job in one process per tree: the
default Verilator build (64-bit port, one weight port, 2-bit trits), greedy generation of
``--tokens`` tokens after the prompt "The ". The baseline runs its shipped model, the dense one
that this tree keeps as ``dense.nsllm``; this tree runs that same model (same build, same
tokens: per-cycle simulation speed) and today's shipped model (what a user sees). It reports
cycles per token, tokens per second of wall time and of CPU time (the latter is steadier on a
shared machine) and the ratios new ÷ old. The runs share this machine's load, so the ratios are
the numbers to read.
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
weights = load_model(resolve_model_path(sys.argv[2] if len(sys.argv) > 2 else None))
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


def run_in(tree: Path, tokens: int, model: str | None = None) -> dict:
    env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin",
           "NSLLM_BUILD_DIR": str(tree / "build")}
    out = subprocess.run([sys.executable, "-c", JOB, str(tokens), *([model] if model else [])],
                         cwd=tree, env=env,
                         capture_output=True, text=True, timeout=7200, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the job failed in {tree}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", default="18deafd")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "sim_vs_baseline.json"),
                    help="where the JSON result is written ('' for nowhere)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nsllm-baseline-") as tmp:
        old_tree = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(old_tree), args.baseline],
                       cwd=ROOT, check=True, capture_output=True)
        try:
            old = run_in(old_tree, args.tokens)
            new = run_in(ROOT, args.tokens, "dense")
            shipped = run_in(ROOT, args.tokens)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT,
                           check=False, capture_output=True)
    def ratios(run):
        return {k: round(run[k] / old[k], 3)
                for k in ("tokens_per_s", "tokens_per_cpu_s", "cycles_per_cpu_s")}

    result = {"baseline": args.baseline, "tokens": args.tokens, "old": old,
              "new_same_model": new, "new_shipped_model": shipped,
              "same_model_ratio": ratios(new), "shipped_model_ratio": ratios(shipped),
              "same_text": old["text"] == new["text"]}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for name, run in (("baseline (its shipped model)", old), ("this tree, same model", new),
                          ("this tree, shipped model", shipped)):
            print(f"{name:30s} {run['cycles_per_token']:9,.0f} cycles/token  "
                  f"{run['tokens_per_s']:6.2f} tokens/s  {run['tokens_per_cpu_s']:6.2f} per CPU-s"
                  f"  {run['cycles_per_cpu_s']:9,.0f} cycles per CPU-s")
        print(f"ratios to the baseline (tokens per CPU-s): same model "
              f"{result['same_model_ratio']['tokens_per_cpu_s']}, shipped model "
              f"{result['shipped_model_ratio']['tokens_per_cpu_s']}; same text as the baseline: "
              f"{result['same_text']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
