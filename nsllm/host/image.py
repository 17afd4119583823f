"""The model image: a quantized model's bytes in device memory, versioned and checksummed.

Layout (version 1, little-endian; offsets are from the image's start, which the host places at a
DRAM base address ``base``; every address inside descriptors is absolute = base + offset):

====== ====================================================================================
offset contents
====== ====================================================================================
0      header (:data:`HEADER`, 128 bytes): magic ``NSLLMIMG``, version, total bytes, CRC-32,
       packing, port bytes, shapes, scratchpad size, largest D and accumulator width, the two
       programs' offsets and lengths, the data offset and length, the weights' offset and length
2 KiB  reset program (descriptors, 64 bytes each), then the per-token program
…      data: embedding (int32 rows), int16/uint16 tables, then packed weight columns, each column
       padded to a whole number of port words (the weights start port-aligned)
====== ====================================================================================

The CRC-32 covers the whole image with the CRC field set to zero. :func:`parse_image` checks the
magic, version, length, checksum and descriptors; :meth:`ModelImage.check_fits` checks the model
against a core build's maxima and says which parameter to raise.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ..model.integer import IntegerParams
from ..model.weights import ModelWeights
from .program import DESCRIPTOR_BYTES, CompiledModel, Instr, Op, ProgramError, compile_program

MAGIC = b"NSLLMIMG"
IMAGE_VERSION = 1
#: magic, version, header bytes, total bytes, crc32, packing (0 = 2bit, 1 = base3), port bytes,
#: vocab, hidden, intermediate, layers, scratch entries, max D, accumulator bits,
#: reset program offset, reset ops, token program offset, token ops, data offset, data bytes,
#: weights offset, weights bytes, base address
HEADER = struct.Struct("<8sIIQIIIIIIIIIIQIQIQQQQQ")
HEADER_BYTES = 128
PROGRAM_OFFSET = 2048
PACKING_CODES = {"2bit": 0, "base3": 1}
CRC_OFFSET = 24
assert HEADER.size <= HEADER_BYTES


class ImageError(ValueError):
    """An image the core cannot run; the message says what is wrong and how to fix it."""


@dataclass
class BuildLimits:
    """The maxima a core build supports (generator parameters)."""

    port_bytes: int
    max_vocab: int
    max_hidden: int
    max_intermediate: int
    max_layers: int
    max_D: int
    scratch_entries: int
    acc_bits: int
    packings: tuple[str, ...] = ("2bit",)


@dataclass
class ModelImage:
    """A parsed (or freshly built) image."""

    raw: bytes
    version: int
    packing: str
    port_bytes: int
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    scratch_entries: int
    max_D: int
    acc_bits: int
    reset: list[Instr]
    token: list[Instr]
    weights_offset: int
    weights_bytes: int
    base: int

    @property
    def total_bytes(self) -> int:
        return len(self.raw)

    def check_fits(self, build: BuildLimits) -> None:
        """Raise :class:`ImageError` naming every maximum this model exceeds."""
        problems = []
        for what, need, have, flag in [
            ("vocabulary", self.vocab, build.max_vocab, "--max-vocab"),
            ("hidden size", self.hidden, build.max_hidden, "--max-hidden"),
            ("intermediate size", self.intermediate, build.max_intermediate, "--max-intermediate"),
            ("layers", self.layers, build.max_layers, "--max-layers"),
            ("largest D", self.max_D, build.max_D, "--max-d"),
            ("scratchpad entries", self.scratch_entries, build.scratch_entries,
             "maxima that cover the model's shape"),
            ("accumulator bits", self.acc_bits, build.acc_bits, "--max-d / --max-intermediate"),
        ]:
            if need > have:
                hint = f"{flag} ≥ {need}" if flag.startswith("--") else flag
                problems.append(f"{what} {need} > {have} (rebuild with {hint})")
        if self.port_bytes != build.port_bytes:
            problems.append(f"image is laid out for {self.port_bytes}-byte words, the core reads "
                            f"{build.port_bytes}-byte words (rebuild the image with "
                            f"port_bytes={build.port_bytes})")
        if self.packing not in build.packings:
            problems.append(f"packing {self.packing} is not supported by this build "
                            f"({', '.join(build.packings)})")
        if problems:
            raise ImageError("the model does not fit this core build: " + "; ".join(problems))


def build_image(weights: ModelWeights, port_bytes: int = 64, packing: str = "2bit",
                base: int = 0) -> ModelImage:
    """Compile a model into a device image placed at DRAM address ``base``."""
    if port_bytes < 1 or port_bytes & (port_bytes - 1):
        raise ImageError(f"port_bytes must be a power of two, not {port_bytes}")
    params = IntegerParams(weights)
    cfg = weights.config
    n_ops_guess = 1 + 18 * cfg.num_layers + 5 + cfg.num_layers + 1
    data_offset = PROGRAM_OFFSET + DESCRIPTOR_BYTES * n_ops_guess
    data_offset += -data_offset % max(port_bytes, 64)
    try:
        comp: CompiledModel = compile_program(params, port_bytes, packing,
                                              base=base + data_offset)
    except ProgramError as e:
        raise ImageError(str(e)) from None
    reset_off = PROGRAM_OFFSET
    token_off = reset_off + DESCRIPTOR_BYTES * len(comp.reset)
    assert token_off + DESCRIPTOR_BYTES * len(comp.token) <= data_offset
    max_D = max(lp.D for lp in params.linears.values())
    acc_bits = max(lp.acc_bits for lp in params.linears.values())
    weights_offset = data_offset + len(comp.data) - comp.weight_bytes
    body = bytearray(data_offset + len(comp.data))
    for k, ins in enumerate(comp.reset):
        body[reset_off + k * DESCRIPTOR_BYTES: reset_off + (k + 1) * DESCRIPTOR_BYTES] = ins.pack()
    for k, ins in enumerate(comp.token):
        body[token_off + k * DESCRIPTOR_BYTES: token_off + (k + 1) * DESCRIPTOR_BYTES] = ins.pack()
    body[data_offset:] = comp.data
    header = HEADER.pack(
        MAGIC, IMAGE_VERSION, HEADER_BYTES, len(body), 0, PACKING_CODES[packing], port_bytes,
        cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size, cfg.num_layers, comp.scratch.size,
        max_D, acc_bits, reset_off, len(comp.reset), token_off, len(comp.token), data_offset,
        len(comp.data), weights_offset, comp.weight_bytes, base)
    body[:HEADER.size] = header
    crc = zlib.crc32(bytes(body))
    body[CRC_OFFSET:CRC_OFFSET + 4] = struct.pack("<I", crc)
    image = parse_image(bytes(body))
    for parsed, ins in zip(image.token, comp.token, strict=True):  # keep host-side labels
        parsed.name = ins.name
    for parsed, ins in zip(image.reset, comp.reset, strict=True):
        parsed.name = ins.name
    return image


def parse_image(raw: bytes) -> ModelImage:
    """Parse and validate an image (magic, version, length, CRC-32, descriptors)."""
    if len(raw) < HEADER_BYTES:
        raise ImageError(f"image is {len(raw)} bytes, shorter than its {HEADER_BYTES}-byte "
                         "header")
    f = HEADER.unpack(raw[: HEADER.size])
    (magic, version, _hdr, total, crc, packing_code, port_bytes, vocab, hidden, inter, layers,
     scratch, max_D, acc_bits, reset_off, reset_n, token_off, token_n, _data_off, _data_n,
     weights_off, weights_n, base) = f
    if magic != MAGIC:
        raise ImageError(f"not an nsllm model image (magic {magic!r}, expected {MAGIC!r})")
    if version != IMAGE_VERSION:
        raise ImageError(f"image version {version} is not supported (this runtime builds and "
                         f"reads version {IMAGE_VERSION}); rebuild the image from the .nsllm file")
    if total != len(raw):
        raise ImageError(f"image length {len(raw)} does not match its header ({total}): truncated "
                         "or padded in transfer")
    zeroed = raw[:CRC_OFFSET] + b"\0\0\0\0" + raw[CRC_OFFSET + 4:]
    if zlib.crc32(zeroed) != crc:
        raise ImageError(f"image checksum mismatch (header {crc:#010x}, contents "
                         f"{zlib.crc32(zeroed):#010x}): the image is corrupt; rebuild or "
                         "re-copy it")
    packing = {v: k for k, v in PACKING_CODES.items()}.get(packing_code)
    if packing is None:
        raise ImageError(f"unknown packing code {packing_code}")

    def program(off, n):
        ops = [Instr.unpack(raw[off + k * DESCRIPTOR_BYTES: off + (k + 1) * DESCRIPTOR_BYTES])
               for k in range(n)]
        if not ops or ops[-1].op != Op.END:
            raise ImageError("program does not end with END")
        return ops

    return ModelImage(raw, version, packing, port_bytes, vocab, hidden, inter, layers, scratch,
                      max_D, acc_bits, program(reset_off, reset_n), program(token_off, token_n),
                      weights_off, weights_n, base)
