"""Packed ternary weights: 2 bits per trit and 5 trits per byte (1.6 bits per trit).

Both packings are **column-major**: for ``W`` of shape (out, in), column ``j`` (the weights that
input neuron ``j`` drives) is packed on its own, padded with zero trits to whole bytes, so the
packed array has shape (in, bytes_per_column). That is the layout the weight streamer fetches:
a column is read only when its input neuron spiked.

* ``2bit``: trit ``k`` of a byte sits in bits ``2k+1..2k`` (k = 0 in the low bits); codes
  0 → 0, 1 → +1, 2 → −1; code 3 is invalid.
* ``base3``: a byte is ``Σ_k (t_k + 1)·3**k`` over five trits (k = 0 first); bytes above 242
  are invalid.
"""

from __future__ import annotations

import numpy as np

PACKINGS = ("2bit", "base3")
TRITS_PER_BYTE = {"2bit": 4, "base3": 5}


class PackingError(ValueError):
    """Packed trit data that does not decode to valid trits."""


def bytes_per_column(out_features: int, packing: str) -> int:
    per = _per_byte(packing)
    return -(-out_features // per)


def _per_byte(packing: str) -> int:
    if packing not in TRITS_PER_BYTE:
        raise ValueError(f"unknown packing {packing!r}; choose from {PACKINGS}")
    return TRITS_PER_BYTE[packing]


def pack_trits(trits: np.ndarray, packing: str = "base3") -> np.ndarray:
    """Pack an (out, in) trit matrix column-major into uint8 of shape (in, bytes_per_column)."""
    w = np.asarray(trits)
    if w.ndim != 2:
        raise ValueError(f"trits must be a 2-D (out, in) array, not shape {w.shape}")
    if w.size and (w.min() < -1 or w.max() > 1):
        raise PackingError("trits must be in {-1, 0, 1}")
    per = _per_byte(packing)
    out_f, in_f = w.shape
    nbytes = bytes_per_column(out_f, packing)
    cols = np.zeros((in_f, nbytes * per), dtype=np.int64)
    cols[:, :out_f] = w.T
    groups = cols.reshape(in_f, nbytes, per)
    if packing == "2bit":
        codes = np.where(groups < 0, 2, groups)
        weights = 1 << (2 * np.arange(per))
    else:
        codes = groups + 1
        weights = 3 ** np.arange(per)
    return (codes * weights).sum(axis=-1).astype(np.uint8)


def _decode_table(packing: str) -> np.ndarray:
    """(256, per) int8 table of trits per byte value; invalid bytes hold 2 (not a trit)."""
    per = _per_byte(packing)
    b = np.arange(256)[:, None]
    if packing == "2bit":
        codes = (b >> (2 * np.arange(per))) & 3
        table = np.select([codes == 0, codes == 1, codes == 2], [0, 1, -1], 2)
    else:
        digits = (b // 3 ** np.arange(per)) % 3 - 1
        table = np.where(b < 3**per, digits, 2)
    return table.astype(np.int8)


_TABLES = {p: _decode_table(p) for p in PACKINGS}


def unpack_trits(packed: np.ndarray, out_features: int, packing: str = "base3") -> np.ndarray:
    """Inverse of :func:`pack_trits`: (in, bytes_per_column) uint8 → (out, in) int8 trits.

    Raises :class:`PackingError` naming the first invalid byte (column, byte offset, value).
    """
    packed = np.asarray(packed)
    if packed.ndim != 2 or packed.dtype != np.uint8:
        raise PackingError(f"packed trits must be 2-D uint8, not {packed.dtype} {packed.shape}")
    need = bytes_per_column(out_features, packing)
    if packed.shape[1] != need:
        raise PackingError(f"{packing} columns of {out_features} trits take {need} bytes, but "
                           f"the data has {packed.shape[1]}")
    trits = _TABLES[packing][packed]  # (in, nbytes, per)
    bad = trits == 2
    if bad.any():
        col, off, _ = np.argwhere(bad)[0]
        raise PackingError(
            f"trit code out of range in {packing} data: column {col}, byte {off} is "
            f"{packed[col, off]} (valid bytes decode to trits in {{-1, 0, 1}})"
        )
    flat = trits.reshape(packed.shape[0], -1)
    if flat.shape[1] > out_features and np.any(flat[:, out_features:] != 0):
        raise PackingError(f"padding trits after row {out_features} must be zero")
    return np.ascontiguousarray(flat[:, :out_features].T)


def packed_bytes(shapes, packing: str) -> int:
    """Bytes taken by ternary matrices of the given (out, in) shapes, column padding included."""
    return sum(in_f * bytes_per_column(out_f, packing) for out_f, in_f in shapes)
