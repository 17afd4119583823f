"""The model image: a quantized model's bytes in device memory, versioned and checksummed.

An image is one *image region* (read by the core's image port ``m_axi_ctl``) and ``N`` *weight
regions* (one per weight port ``m_axi_w<k>``; on the board each in its own buffer and memory
bank). Descriptors hold byte offsets into these regions, so the host may place them anywhere.

Image region (version 2, little-endian):

====== ====================================================================================
offset contents
====== ====================================================================================
0      header (:data:`HEADER`, 256 bytes): magic ``NSLLMIMG``, version, header bytes, image
       bytes, CRC-32 of the image region, packing, port bytes, weight ports, region bytes,
       shapes, scratchpad size, largest D, accumulator width, the two programs' offsets and
       lengths, the tables' offset and length, the weight bytes, and the CRC-32 of every
       weight region
2 KiB  reset program (64-byte descriptors), then the per-token program
…      tables (64-byte aligned int32): embedding rows (each padded to a power of two bytes),
       norm weights, encoder multipliers, lower bounds
====== ====================================================================================

Weight regions: every LINEAR at the same offset in each region, :func:`~nsllm.isa.layout.
columns_per_port` column slots of ``stride`` bytes (column ``j`` in region ``j mod N``).

The image CRC covers the image region with its CRC field zeroed; each weight region has its own
CRC in the header, so a read-back check (:func:`verify_regions`) needs one pass per region.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ..isa import (
    DESCRIPTOR_BYTES,
    MAX_WEIGHT_PORTS,
    PACKING_CODES,
    TABLE_ALIGN,
    BuildLimits,
    Instr,
    Op,
    UnknownOpcode,
)
from ..model.integer import IntegerParams
from ..model.packing import PACKINGS
from ..model.weights import ModelWeights
from .program import CompiledModel, ProgramError, compile_program, program_outline

__all__ = ["HEADER", "IMAGE_VERSION", "ImageError", "ModelImage", "build_image", "parse_image",
           "verify_regions"]

MAGIC = b"NSLLMIMG"
IMAGE_VERSION = 2
#: magic, version, header bytes, image bytes, image crc32, packing code, port bytes, weight
#: ports, region bytes, vocab, hidden, intermediate, layers, scratch entries, max D, accumulator
#: bits, reset offset, reset ops, token offset, token ops, tables offset, tables bytes, weight
#: bytes, then one crc32 per weight region (MAX_WEIGHT_PORTS)
HEADER = struct.Struct("<8sIIQIIIIQIIIIIIIQIQIQQQ" + "I" * MAX_WEIGHT_PORTS)
HEADER_BYTES = 256
PROGRAM_OFFSET = 2048
CRC_OFFSET = 24
assert HEADER.size <= HEADER_BYTES and struct.calcsize("<8sIIQ") == CRC_OFFSET
_PACKING_BY_CODE = {code: name for name, code in PACKING_CODES.items()}


class ImageError(ValueError):
    """An image the core cannot run; the message says what is wrong and how to fix it."""


@dataclass
class ModelImage:
    """A parsed (or freshly built) image: the image region and the weight regions."""

    raw: bytes  #: the image region
    regions: list[bytes]  #: the weight regions, one per weight port
    version: int
    packing: str
    port_bytes: int
    weight_ports: int
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    scratch_entries: int
    max_D: int
    acc_bits: int
    reset: list[Instr]
    token: list[Instr]
    reset_offset: int
    token_offset: int
    weight_bytes: int  #: packed weight bytes in all regions
    region_crcs: tuple[int, ...]

    @property
    def image_bytes(self) -> int:
        return len(self.raw)

    @property
    def region_bytes(self) -> int:
        return len(self.regions[0]) if self.regions else 0

    @property
    def total_bytes(self) -> int:
        return self.image_bytes + self.weight_ports * self.region_bytes

    @property
    def image_crc(self) -> int:
        return struct.unpack_from("<I", self.raw, CRC_OFFSET)[0]

    def files(self) -> dict[str, bytes]:
        """One file per buffer (memory bank): ``image.bin``, ``weights0.bin`` …"""
        return {"image.bin": self.raw,
                **{f"weights{k}.bin": r for k, r in enumerate(self.regions)}}

    @property
    def sla_layers(self) -> int:
        """SLA state slots the programs use (the model's SLA layers)."""
        return max((ins.slot + 1 for ins in self.reset + self.token
                    if ins.op in (Op.SLA, Op.SLACLEAR)), default=0)

    @property
    def sla_head_dims(self) -> set[int]:
        """Head sizes of the model's SLA layers."""
        return {ins.m for ins in self.token if ins.op == Op.SLA}

    def check_fits(self, build: BuildLimits) -> None:
        """Raise :class:`ImageError` naming every maximum this model exceeds."""
        problems = []
        if self.sla_layers:
            head = max(self.sla_head_dims, default=0)
            if build.max_sla_layers == 0:
                problems.append(f"the model has {self.sla_layers} SLA layers, the core has no "
                                f"SLA unit (rebuild the core with CoreParams.max_sla_layers ≥ "
                                f"{self.sla_layers} and max_head_dim ≥ {head})")
            else:
                if self.sla_layers > build.max_sla_layers:
                    problems.append(f"SLA layers {self.sla_layers} > {build.max_sla_layers} "
                                    f"(rebuild the core with CoreParams.max_sla_layers ≥ "
                                    f"{self.sla_layers})")
                if head > build.max_head_dim:
                    problems.append(f"SLA head size {head} > {build.max_head_dim} (rebuild the "
                                    f"core with CoreParams.max_head_dim ≥ {head})")
                small = sorted(h for h in self.sla_head_dims
                               if h < max(build.sla_lanes, build.align))
                if small:
                    problems.append(f"SLA head size {small[0]} below the build's "
                                    f"{max(build.sla_lanes, build.align)} (SLA lanes "
                                    f"{build.sla_lanes}, vector width {build.align}; rebuild "
                                    f"the core with fewer CoreParams.sla_lanes or a smaller "
                                    f"--vector)")
        for what, need, have, flag in [
            ("vocabulary", self.vocab, build.max_vocab, "--max-vocab"),
            ("hidden size", self.hidden, build.max_hidden, "--max-hidden"),
            ("intermediate size", self.intermediate, build.max_intermediate, "--max-intermediate"),
            ("layers", self.layers, build.max_layers, "--max-layers"),
            ("largest D", self.max_D, build.max_D, "--max-d"),
            ("scratchpad entries", self.scratch_entries, build.scratch_entries,
             "maxima that cover the model's shape"),
            ("accumulator bits", self.acc_bits, build.acc_bits, "--max-d / --max-intermediate"),
            ("program descriptors", max(len(self.reset), len(self.token)), build.max_ops,
             "a larger program cache (CoreParams.max_ops) or more layers"),
        ]:
            if need > have:
                hint = f"{flag} ≥ {need}" if flag.startswith("--") else flag
                problems.append(f"{what} {need} > {have} (rebuild the core with {hint})")
        odd = [f"{what} {n}" for what, n in (("hidden size", self.hidden),
                                              ("intermediate size", self.intermediate),
                                              ("vocabulary", self.vocab)) if n % build.align]
        if odd:
            problems.append(f"{', '.join(odd)} not a multiple of the build's vector width "
                            f"{build.align} (rebuild the core with a smaller --vector)")
        if self.port_bytes != build.port_bytes:
            problems.append(f"image is laid out for {self.port_bytes}-byte words, the core reads "
                            f"{build.port_bytes}-byte words (rebuild the image with "
                            f"port_bytes={build.port_bytes})")
        if self.weight_ports != build.weight_ports:
            problems.append(f"image has {self.weight_ports} weight regions, the core has "
                            f"{build.weight_ports} weight ports (rebuild the image with "
                            f"weight_ports={build.weight_ports})")
        if self.packing not in build.packings:
            problems.append(f"packing {self.packing} is not decoded by this build (it decodes "
                            f"{', '.join(build.packings)}; rebuild the image with "
                            f"packing={build.packings[0]!r} or the core with both packings)")
        if problems:
            raise ImageError("the model does not fit this core build: " + "; ".join(problems))


def build_image(weights: ModelWeights, port_bytes: int = 64, packing: str = "2bit",
                weight_ports: int = 1) -> ModelImage:
    """Compile a model into a device image for a core with ``weight_ports`` ports of
    ``port_bytes`` bytes decoding ``packing``."""
    if packing not in PACKINGS:
        raise ImageError(f"packing must be one of {', '.join(PACKINGS)}, not {packing!r}")
    if not 1 <= weight_ports <= MAX_WEIGHT_PORTS:
        raise ImageError(f"weight_ports must be in [1, {MAX_WEIGHT_PORTS}], not {weight_ports}")
    cfg = weights.config
    try:
        reset, token = program_outline(cfg, port_bytes, packing, weight_ports)
        params = IntegerParams(weights)
        tables_offset = PROGRAM_OFFSET + DESCRIPTOR_BYTES * (len(reset) + len(token))
        tables_offset += -tables_offset % TABLE_ALIGN
        comp: CompiledModel = compile_program(params, port_bytes, packing, weight_ports,
                                              tables_offset)
    except ProgramError as e:
        raise ImageError(str(e)) from None
    reset_off = PROGRAM_OFFSET
    token_off = reset_off + DESCRIPTOR_BYTES * len(comp.reset)
    max_D = max(lp.D for lp in params.linears.values())
    acc_bits = max(lp.acc_bits for lp in params.linears.values())
    body = bytearray(tables_offset + len(comp.tables))
    for k, ins in enumerate(comp.reset):
        body[reset_off + k * DESCRIPTOR_BYTES: reset_off + (k + 1) * DESCRIPTOR_BYTES] = ins.pack()
    for k, ins in enumerate(comp.token):
        body[token_off + k * DESCRIPTOR_BYTES: token_off + (k + 1) * DESCRIPTOR_BYTES] = ins.pack()
    body[tables_offset:] = comp.tables
    body.extend(b"\0" * (-len(body) % TABLE_ALIGN))
    crcs = [zlib.crc32(r) for r in comp.regions] + [0] * (MAX_WEIGHT_PORTS - weight_ports)
    header = HEADER.pack(
        MAGIC, IMAGE_VERSION, HEADER_BYTES, len(body), 0, PACKING_CODES[packing], port_bytes,
        weight_ports, len(comp.regions[0]), cfg.vocab_size, cfg.hidden_size,
        cfg.intermediate_size, cfg.num_layers, comp.scratch.size, max_D, acc_bits, reset_off,
        len(comp.reset), token_off, len(comp.token), tables_offset, len(comp.tables),
        comp.weight_bytes, *crcs)
    body[:HEADER.size] = header
    body[CRC_OFFSET:CRC_OFFSET + 4] = struct.pack("<I", zlib.crc32(bytes(body)))
    image = parse_image(bytes(body), comp.regions)
    for parsed, ins in zip(image.token + image.reset, comp.token + comp.reset, strict=True):
        parsed.name = ins.name  # keep the host-side labels
    return image


def _image_crc(raw: bytes) -> int:
    return zlib.crc32(raw[:CRC_OFFSET] + b"\0\0\0\0" + raw[CRC_OFFSET + 4:])


def verify_regions(image: ModelImage, raw: bytes, regions: list[bytes]) -> list[str]:
    """Compare a read-back copy with the image's checksums; returns the damaged regions' names
    (empty when everything matches)."""
    bad = []
    if (len(raw) != image.image_bytes or _image_crc(raw) != image.image_crc
            or struct.unpack_from("<I", raw, CRC_OFFSET)[0] != image.image_crc):
        bad.append("image region")
    for k, (region, crc) in enumerate(zip(regions, image.region_crcs, strict=False)):
        if len(region) != image.region_bytes or zlib.crc32(region) != crc:
            bad.append(f"weight region {k}")
    return bad


def parse_image(raw: bytes, regions: list[bytes] | None = None) -> ModelImage:
    """Parse and validate an image (magic, version, lengths, CRCs, descriptors).

    ``regions`` are the weight regions; without them only the image region is checked and the
    image has empty regions (enough to inspect programs)."""
    if len(raw) < HEADER_BYTES:
        raise ImageError(f"image is {len(raw)} bytes, shorter than its {HEADER_BYTES}-byte "
                         "header")
    f = HEADER.unpack(raw[: HEADER.size])
    (magic, version, _hdr, total, crc, packing_code, port_bytes, ports, region_bytes, vocab,
     hidden, inter, layers, scratch, max_D, acc_bits, reset_off, reset_n, token_off, token_n,
     _tables_off, _tables_n, weight_bytes) = f[:23]
    crcs = tuple(f[23:23 + MAX_WEIGHT_PORTS])
    if magic != MAGIC:
        raise ImageError(f"not an nsllm model image (magic {magic!r}, expected {MAGIC!r})")
    if version != IMAGE_VERSION:
        raise ImageError(f"image version {version} is not supported (this runtime builds and "
                         f"reads version {IMAGE_VERSION}); rebuild the image from the .nsllm file")
    if total != len(raw):
        raise ImageError(f"image length {len(raw)} does not match its header ({total}): truncated "
                         "or padded in transfer")
    if _image_crc(raw) != crc:
        raise ImageError(f"image checksum mismatch (header {crc:#010x}, contents "
                         f"{_image_crc(raw):#010x}): the image is corrupt; rebuild or re-copy it")
    packing = _PACKING_BY_CODE.get(packing_code)
    if packing is None:
        raise ImageError(f"unknown packing code {packing_code}")
    if not 1 <= ports <= MAX_WEIGHT_PORTS:
        raise ImageError(f"image has {ports} weight regions; 1 to {MAX_WEIGHT_PORTS} are valid")
    if regions is not None:
        regions = [bytes(r) for r in regions]
        if len(regions) != ports:
            raise ImageError(f"image has {ports} weight regions, {len(regions)} were given")
        for k, region in enumerate(regions):
            if len(region) != region_bytes or zlib.crc32(region) != crcs[k]:
                raise ImageError(f"weight region {k} is corrupt or truncated ({len(region)} "
                                 f"bytes, header says {region_bytes}; CRC "
                                 f"{zlib.crc32(region):#010x}, header {crcs[k]:#010x}); rebuild "
                                 "or re-copy it")

    def program(off, n):
        try:
            ops = [Instr.unpack(raw[off + k * DESCRIPTOR_BYTES: off + (k + 1) * DESCRIPTOR_BYTES])
                   for k in range(n)]
        except UnknownOpcode as e:
            raise ImageError(f"{e}: the image was built for another instruction set") from None
        if not ops or ops[-1].op != Op.END:
            raise ImageError("program does not end with END")
        return ops

    return ModelImage(raw, regions or [], version, packing, port_bytes, ports, vocab, hidden,
                      inter, layers, scratch, max_D, acc_bits, program(reset_off, reset_n),
                      program(token_off, token_n), reset_off, token_off, weight_bytes, crcs)
