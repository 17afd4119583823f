"""Interpretability: spike recordings, firing rates, entropies, mutual information, the
clear-vs-ambiguous text study, and an HTML report (``nsllm analyze``).

* :mod:`.recording` — :class:`SpikeRecording` (per layer/neuron/token spike counts, npz
  storage, spike trains on request, :meth:`~SpikeRecording.compare` for cross-checks) and
  :func:`record` (from the golden model).
* :mod:`.measures` — the estimators (Miller–Madow entropy, shuffle-corrected MI with block-
  bootstrap intervals, block-entropy and Lempel–Ziv entropy rates, permutation tests).
* :mod:`.layers` — every measure of every layer of a recording.
* :mod:`.study` — the matched clear/ambiguous passages and their paired comparison.
* :mod:`.report`, :mod:`.analyze` — plots, JSON, ``index.html``.

See ``docs/interpretability.md``.
"""

from .analyze import analyze, cross_check
from .layers import LayerMeasures, measure_recording
from .measures import mutual_information
from .recording import SpikeMismatch, SpikeRecording, record

__all__ = ["LayerMeasures", "SpikeMismatch", "SpikeRecording", "analyze", "cross_check",
           "measure_recording", "mutual_information", "record"]
