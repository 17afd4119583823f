"""The training corpus every Python installation has: the text of ``pydoc_data.topics``.

The split is by topic, so no held-out text is seen in training even partially: topics are
sorted by name, and every tenth one (index 9, 19, 29, …) is held out. Each topic's text ends with
a blank line, so the concatenation reads like one document per topic.
"""

from __future__ import annotations

HELDOUT_EVERY = 10  #: one topic in ten is held out


def pydoc_topics() -> list[tuple[str, str]]:
    """``(name, text)`` of every pydoc topic, sorted by name (the order is the split's input)."""
    from pydoc_data.topics import topics

    return sorted(topics.items())


def pydoc_corpus() -> tuple[str, str]:
    """``(train_text, heldout_text)``: every tenth topic (sorted by name) is held out."""
    train, held = [], []
    for k, (_, text) in enumerate(pydoc_topics()):
        (held if k % HELDOUT_EVERY == HELDOUT_EVERY - 1 else train).append(text.strip() + "\n\n")
    return "".join(train), "".join(held)


#: Calibration text for θ, sensitivity and δ sweeps: a contiguous slice of the training split
#: (never the held-out text, which is kept for the reported numbers).
CALIB_OFFSET = 200_000
CALIB_BYTES = 4096


def calibration_text(n_bytes: int = CALIB_BYTES, offset: int = CALIB_OFFSET) -> str:
    """``n_bytes`` of the training split starting at ``offset`` (decoded leniently)."""
    train, _ = pydoc_corpus()
    raw = train.encode("utf-8")[offset:offset + n_bytes]
    return raw.decode("utf-8", errors="ignore")
