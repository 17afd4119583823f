"""``nsllm demo`` / ``make demo``: the main job on the shipped default model.

Today the main job runs on the golden model: it generates a continuation of a prompt with the
bit-exact integer model (text appears as it is produced), checks it against a second, independent
evaluation of the same model in spike-train form (every count expanded into D binary/ternary
timesteps), and reports speed and firing rate.
"""

from __future__ import annotations

import sys
import time

import numpy as np

DEMO_PROMPT = "The "


def run_demo(model: str | None = None, max_new_tokens: int = 64, prompt: str = DEMO_PROMPT,
             out=sys.stdout) -> int:
    from .cli import load_weights, tokenizer_for
    from .host.generator import Generator, ModelBackend
    from .model import IntegerModel, Trace, resolve_model_path

    path = resolve_model_path(model)
    weights = load_weights(model)
    cfg = weights.config
    tok = tokenizer_for(weights, model)
    print(f"model   {cfg.name}: {cfg.num_parameters():,} parameters "
          f"({cfg.num_ternary_weights():,} ternary), {path}", file=out)
    print(f"prompt  {prompt!r}\n", file=out)
    golden = IntegerModel(weights)
    gen = Generator(ModelBackend(golden, "golden"), tok)
    out.write(prompt)
    for t in gen.stream(prompt, max_new_tokens):
        out.write(t.text)
        out.flush()
    res = gen.result
    out.write("\n\n")

    # The same tokens through the spike-train form must give the same greedy choices.
    t0 = time.perf_counter()
    seq = np.asarray([res.prompt_tokens + res.tokens[:-1]])
    trace = Trace(only={"layers.", "lm_head."})
    logits, _ = IntegerModel(weights, spike_form="train").prefill(seq, trace=trace)
    train_tokens = logits[0, len(res.prompt_tokens) - 1:].argmax(-1).tolist()
    agree = train_tokens == res.tokens
    check_s = time.perf_counter() - t0
    spikes = [v for k, v in trace.records.items() if k.endswith(".spikes")]
    nonzero = sum(int(np.count_nonzero(s[0])) for s in spikes)
    total = sum(s[0].size for s in spikes)

    print(f"golden model   {len(res.tokens)} tokens at {res.tokens_per_s:.1f} tokens/s "
          f"(prefill {len(res.prompt_tokens)} tokens in {res.prefill_seconds * 1e3:.1f} ms)",
          file=out)
    print(f"spike trains   {'identical' if agree else 'DIFFERENT'} tokens when every count is "
          f"expanded into binary spike trains ({check_s:.2f} s)", file=out)
    print(f"firing rate    {nonzero / max(total, 1):.1%} of spike counts are non-zero", file=out)
    return 0 if agree else 1
