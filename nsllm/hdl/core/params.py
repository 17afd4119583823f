"""``CoreParams``: the generator parameters of one core build."""

from __future__ import annotations

from dataclasses import dataclass

from nsllm.isa import MAX_WEIGHT_PORTS, BuildLimits, scratch_layout
from nsllm.isa.layout import TRITS_PER_BYTE, sla_head_problem
from nsllm.model import numerics as nx
from nsllm.model.config import ModelConfig
from nsllm.model.packing import PACKINGS

__all__ = ["CoreParams"]


@dataclass(frozen=True)
class CoreParams:
    """Generator parameters of one core build.

    ``port_bytes`` is the AXI data width of every port in bytes (64 = 512 bits on the board);
    ``weight_ports`` the number of weight ports (AXI4 read masters ``m_axi_w<k>``, each with its
    own accumulator bank); ``vector`` the elements per cycle of the vector unit and the encoder;
    ``packings`` the weight packings the streamer decodes. One build runs every model within the
    maxima (:meth:`nsllm.host.image.ModelImage.check_fits`). ``max_sla_layers`` state slots of
    ``max_hidden · max_head_dim`` entries give the SLA unit (0: none, the build runs MLGRU
    layers only); it updates ``sla_lanes`` state entries per cycle.
    """

    port_bytes: int = 8
    vector: int = 8
    weight_ports: int = 1
    packings: tuple[str, ...] = ("2bit",)
    max_vocab: int = 256
    max_hidden: int = 128
    max_intermediate: int = 512
    max_layers: int = 4
    max_D: int = 15
    fifo_depth: int = 64  #: spiking columns queued per weight port (hides DRAM latency)
    max_ops: int = 0  #: program cache size in descriptors (0: enough for max_layers)
    max_sla_layers: int = 0  #: SLA state slots (0: no SLA unit)
    max_head_dim: int = 0  #: largest SLA head size d_h (a power of two)
    sla_lanes: int = 8  #: SLA state entries updated per cycle (a power of two)

    def __post_init__(self):
        pb, v = self.port_bytes, self.vector
        if pb not in (4, 8, 16, 32, 64):
            raise ValueError(f"port_bytes must be 4, 8, 16, 32 or 64, not {pb}")
        if v not in (1, 2, 4, 8, 16, 32) or v < pb // 4:
            raise ValueError(f"vector must be a power of two ≤ 32 and ≥ port_bytes/4 (tables "
                             f"arrive port_bytes/4 entries per beat), not {v} with port_bytes {pb}")
        if not 1 <= self.weight_ports <= MAX_WEIGHT_PORTS:
            raise ValueError(f"weight_ports must be in [1, {MAX_WEIGHT_PORTS}], not "
                             f"{self.weight_ports}")
        packings = tuple(self.packings)
        if not packings or any(p not in PACKINGS for p in packings):
            raise ValueError(f"packings must be a non-empty tuple of {PACKINGS}, not "
                             f"{self.packings!r}")
        object.__setattr__(self, "packings", tuple(p for p in PACKINGS if p in packings))
        for p in self.packings:
            if (TRITS_PER_BYTE[p] * pb) % v:
                raise ValueError(f"vector {v} must divide the {TRITS_PER_BYTE[p] * pb} trits of "
                                 f"a {p} beat of {pb} bytes")
        align = self.build_limits().align
        for name in ("max_vocab", "max_hidden", "max_intermediate"):
            if getattr(self, name) % align:
                raise ValueError(f"{name} must be a multiple of {align} (the vector width, at "
                                 f"least 16), not {getattr(self, name)}")
        if not 1 <= self.max_D <= nx.MAX_TIMESTEPS:
            raise ValueError(f"max_D must be in [1, {nx.MAX_TIMESTEPS}], not {self.max_D}")
        if self.fifo_depth < 2:
            raise ValueError(f"fifo_depth must be at least 2, not {self.fifo_depth}")
        if self.sla_lanes not in (1, 2, 4, 8, 16, 32, 64):
            raise ValueError(f"sla_lanes must be a power of two ≤ 64, not {self.sla_lanes}")
        if self.max_sla_layers < 0:
            raise ValueError(f"max_sla_layers must be ≥ 0, not {self.max_sla_layers}")
        if self.max_sla_layers:
            dh = self.max_head_dim
            if (dh < max(align, self.sla_lanes) or dh & (dh - 1) or dh > self.max_hidden
                    or dh > 256):
                raise ValueError(f"max_head_dim must be a power of two in [max(vector width "
                                 f"{align}, sla_lanes {self.sla_lanes}), min(max_hidden, 256)] "
                                 f"with SLA layers, not {dh}")

    @classmethod
    def for_model(cls, cfg, port_bytes: int = 8, vector: int = 8, **overrides) -> CoreParams:
        """The smallest build that runs a model of this config (maxima = its shapes)."""
        sla = [cfg.sla_params(li) for li in cfg.sla_layers()]
        for li, sp in zip(cfg.sla_layers(), sla, strict=True):
            if problem := sla_head_problem(sp.head_dim):  # the model's fault, named as such
                raise ValueError(f"layers.{li}: {problem}")
        counts = [D for sp in sla for D in (sp.D_q, sp.D_k, sp.D_v)]
        values = dict(port_bytes=port_bytes, vector=vector, max_vocab=cfg.vocab_size,
                      max_hidden=cfg.hidden_size, max_intermediate=cfg.intermediate_size,
                      max_layers=cfg.num_layers,
                      max_D=max([q.D for q in cfg.quant.values()] + counts))
        if sla:
            head = max(sp.head_dim for sp in sla)
            values.update(max_sla_layers=len(sla), max_head_dim=head,
                          sla_lanes=min(cls.sla_lanes, head))
        values.update(overrides)
        return cls(**values)

    @property
    def program_ops(self) -> int:
        """Descriptors the program cache holds (the longest program of a max-size model: 18 per
        MLGRU layer, and per SLA layer 3 more plus one NORM per head of ``max_head_dim``)."""
        extra = (3 + self.max_hidden // self.max_head_dim) * self.max_sla_layers \
            if self.max_sla_layers and self.max_head_dim else 0
        return self.max_ops or 18 * self.max_layers + 8 + extra

    @property
    def max_out(self) -> int:
        return max(2 * self.max_intermediate, self.max_vocab, self.max_hidden)

    @property
    def max_in(self) -> int:
        return max(self.max_hidden, self.max_intermediate)

    @property
    def acc_bits(self) -> int:
        return nx.accumulator_bits(self.max_in, self.max_D)

    @property
    def lanes(self) -> int:
        """Accumulator lanes (rows per beat of the densest packing)."""
        return max(TRITS_PER_BYTE[p] for p in self.packings) * self.port_bytes

    @property
    def acc_words(self) -> int:
        return self.build_limits().acc_words

    @property
    def table_bank_words(self) -> int:
        """Words per table bank: the longest table, rounded up to a power of two."""
        words = -(-self.max_in // self.vector)
        return 1 << (words - 1).bit_length()

    @property
    def scratch_entries(self) -> int:
        cfg = ModelConfig(vocab_size=self.max_vocab, hidden_size=self.max_hidden,
                          num_layers=self.max_layers, intermediate_size=self.max_intermediate,
                          tokenizer="byte" if self.max_vocab >= 256 else "hf")
        return scratch_layout(cfg, sla=self.max_sla_layers > 0).size

    @property
    def sla_slot_words(self) -> int:
        """State memory words of one SLA slot (``sla_lanes`` entries a word)."""
        return self.max_hidden * self.max_head_dim // self.sla_lanes

    @property
    def sla_state_bytes(self) -> int:
        """Bytes of SLA state on chip (24-bit entries, all slots)."""
        return self.max_sla_layers * self.max_hidden * self.max_head_dim * nx.SLA_STATE_BITS // 8

    @property
    def scratch_words(self) -> int:
        return -(-self.scratch_entries // self.vector)

    @classmethod
    def board(cls, preset_name: str = "nsllm-1.5b", *, sla: bool = False,
              **overrides) -> CoreParams:
        """The VCK190 build: 512-bit ports, vector 16, three weight ports (DDR4 and both
        LPDDR4 controllers), both packings, the maxima of ``preset_name``. With ``sla``, an SLA
        unit for a hybrid of that shape: one SLA layer in four (7 of 28 for ``nsllm-1.5b``) of
        d_h = 128, 32 state entries per cycle (:attr:`sla_state_bytes`: 5.25 MiB on chip for
        ``nsllm-1.5b``)."""
        from nsllm.model.config import preset

        cfg = preset(preset_name)
        values = dict(port_bytes=64, vector=16, weight_ports=3, packings=("2bit", "base3"),
                      max_D=max(nx.SPIKE_COUNT_SET))
        if sla:
            values.update(max_sla_layers=cfg.num_layers // 4, max_head_dim=128, sla_lanes=32)
        values.update(overrides)
        return cls.for_model(cfg, **values)

    @classmethod
    def sim(cls, **overrides) -> CoreParams:
        """A small build for simulation and lint: the shipped models' maxima (the default model
        and the hybrid: two SLA layers of d_h = 64), 64-bit ports, two weight ports, both
        packings."""
        values = dict(port_bytes=8, vector=8, weight_ports=2, packings=("2bit", "base3"),
                      max_vocab=256, max_hidden=192, max_intermediate=512, max_layers=4,
                      max_D=max(nx.SPIKE_COUNT_SET), max_sla_layers=2, max_head_dim=64,
                      sla_lanes=8)
        values.update(overrides)
        return cls(**values)

    def build_limits(self) -> BuildLimits:
        return BuildLimits(port_bytes=self.port_bytes, max_vocab=self.max_vocab,
                           max_hidden=self.max_hidden, max_intermediate=self.max_intermediate,
                           max_layers=self.max_layers, max_D=self.max_D,
                           scratch_entries=self.scratch_entries, acc_bits=self.acc_bits,
                           weight_ports=self.weight_ports, vector=self.vector,
                           packings=self.packings, max_ops=self.program_ops,
                           max_sla_layers=self.max_sla_layers, max_head_dim=self.max_head_dim,
                           sla_lanes=self.sla_lanes)
