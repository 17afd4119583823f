"""The synthetic recall tasks: their structure, and the scores of models that know everything
(an oracle) or nothing (uniform)."""

import re

import numpy as np
import pytest

from nsllm.quant.recall import copy_recall, copy_sequences, kv_corpus, kv_recall, kv_sequences


class _Fixed:
    """A stand-in LanguageModel whose next-token logits are a function of the tokens."""

    def __init__(self, fn):
        self.fn = fn

    def prefill(self, tokens, state=None):
        return self.fn(np.asarray(tokens)), None


def test_kv_sequences_score_the_looked_up_values():
    task = kv_sequences(5, seed=7)
    assert task.tokens.shape == (5, 242)
    for i in range(5):
        text = task.text(i)
        pairs, queries = text.rstrip("\n").split(" | ")
        table = dict(re.findall(r"([a-z]{2})=(\d)", pairs))
        asked = re.findall(r"([a-z]{2})=(\d)", queries)
        assert len(table) == 24 and sorted(k for k, _ in asked) == sorted(table)
        assert all(table[k] == v for k, v in asked)
        scored = bytes(task.tokens[i][task.scored[i]].astype(np.uint8)).decode()
        assert scored == "".join(v for _, v in asked)
    assert not np.array_equal(kv_sequences(1, 1).tokens, kv_sequences(1, 2).tokens)
    assert kv_corpus(10_000, 3).dtype == np.uint8


def test_copy_sequences_score_the_second_copy_against_the_first():
    task = copy_sequences(4, seed=1)
    for i in range(4):
        a = task.tokens[i][task.baseline[i]]
        b = task.tokens[i][task.scored[i]]
        assert np.array_equal(a, b) and len(a) > 50


@pytest.mark.parametrize("kind", ["kv", "copy"])
def test_an_oracle_scores_perfectly_and_a_uniform_model_does_not(kind):
    task = kv_sequences(6, 0) if kind == "kv" else copy_sequences(6, 0)
    full = task.tokens

    def oracle(tokens):  # knows the next byte of every sequence
        logits = np.full(tokens.shape + (256,), -50.0)
        nxt = full[:, 1:tokens.shape[1] + 1]
        np.put_along_axis(logits, nxt[..., None], 50.0, -1)
        return logits

    uniform = _Fixed(lambda t: np.zeros(t.shape + (256,)))
    if kind == "kv":
        good, bad = kv_recall(_Fixed(oracle), task), kv_recall(uniform, task)
        assert good["accuracy"] == 1.0 and good["bits_per_value"] < 1e-6
        assert bad["bits_per_value"] == pytest.approx(8.0) and bad["accuracy"] == 0.0
    else:
        good, bad = copy_recall(_Fixed(oracle), task), copy_recall(uniform, task)
        assert good["second_copy_bits_per_byte"] < 1e-6
        assert bad["copy_gain"] == pytest.approx(0.0)
