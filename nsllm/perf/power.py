"""Power estimate of the core on a board, without vendor tools — always an **estimate**.

The formula of POWER.md::

    P = P_static
      + f · Σ_groups (LUT_g · E_lut + FF_g · E_ff) · a_g          logic: Yosys counts × energy
                                                                  per transition × toggles per
                                                                  cycle measured in Verilator
      + f · n_FF · E_ff_clock + P_gclk(f)                         clock tree
      + Σ_memories accesses/s · ⌈width / 72⌉ · E_access            BRAM / URAM enables
      + f · n_BRAM · E_bram_clock                                 BRAM clocking
      + f · Σ_groups DSP_g · duty_g · E_dsp                        DSP multiplies
      + Σ_DRAM bytes/s · E_byte(type) + P_background(type)        DRAM (+ DDRMC, NoC shown apart)

Every coefficient is one entry of :data:`COEFFICIENTS` with its typical value, range and
source; the band is every coefficient at its low, typical and high value. ``dynamic`` is what
the NSLLM paper's 13.849 W compares with (everything but static power and the memories'
background); tokens/J are tokens/s ÷ dynamic watts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["BANDS", "COEFFICIENTS", "Coefficient", "MemoryAccesses", "PowerEstimate",
           "PowerInputs", "coefficient_table", "dram_kind", "estimate_power"]

BANDS = ("low", "typical", "high")


@dataclass(frozen=True)
class Coefficient:
    """One energy (or power) coefficient: low / typical / high, its unit and its source."""

    low: float
    typical: float
    high: float
    unit: str
    source: str

    def at(self, band: str) -> float:
        return getattr(self, band)

    def as_dict(self) -> dict:
        return {"low": self.low, "typical": self.typical, "high": self.high, "unit": self.unit,
                "source": self.source}


_FIT = ("fit to three public Vivado routed power reports of a 16 nm ZU7EV design at 300 MHz, "
        "scaled × 0.55 (0.35–0.7) to 7 nm (POWER.md)")

#: THE coefficient table (POWER.md, "Coefficients"): 7 nm Versal, VCCINT 0.80 V.
COEFFICIENTS: dict[str, Coefficient] = {
    "lut_pj": Coefficient(0.25, 0.40, 0.6, "pJ per LUT output transition (with its net)", _FIT),
    "ff_pj": Coefficient(0.2, 0.30, 0.5, "pJ per FF data transition", _FIT),
    "ff_clock_fj": Coefficient(6.0, 9.0, 17.0, "fJ per FF per cycle (clock pin, leaf clock)",
                               _FIT + "; 16.6 fJ at 16 nm"),
    "gclk_mw_per_mhz": Coefficient(0.5, 0.75, 1.0, "mW per MHz (global clock tree)",
                                   _FIT + "; 0.46 mW/MHz for the ZU7EV, a larger die"),
    "bram_pj": Coefficient(2.5, 4.0, 6.0, "pJ per enabled 72-bit BRAM36 access", _FIT),
    "bram_clock_pj": Coefficient(0.5, 0.5, 0.5, "pJ per BRAM36 per cycle (clocked)", _FIT),
    "uram_pj": Coefficient(5.0, 8.0, 10.0, "pJ per enabled 72-bit URAM288 access", _FIT),
    "dsp_pj": Coefficient(1.5, 1.5, 4.0, "pJ per DSP58 multiply (≈12 % toggle; 4 pJ at 50 %)",
                          _FIT),
    "ddr4_pj_per_byte": Coefficient(120.0, 160.0, 216.0,
                                    "pJ per byte read (DDR4-3200, streaming; 15–27 pJ/bit)",
                                    "Micron IDD currents (DRAMSys memspecs, TN-40-07 method): "
                                    "14 pJ/bit DRAM + 6 pJ/bit controller/PHY (a guess)"),
    "lpddr4_pj_per_byte": Coefficient(48.0, 80.0, 112.0,
                                      "pJ per byte read (LPDDR4, streaming; 6–14 pJ/bit)",
                                      "Micron IDD currents: 7 pJ/bit DRAM + 3 controller/PHY"),
    "ddr4_row_pj_per_bit": Coefficient(23.0, 23.0, 23.0,
                                       "pJ per bit of a 64-byte burst that opens a row (DDR4)",
                                       "Micron IDD: random-access penalty"),
    "lpddr4_row_pj_per_bit": Coefficient(2.4, 2.4, 2.4,
                                         "pJ per bit of a 64-byte burst that opens a row "
                                         "(LPDDR4)", "Micron IDD: random-access penalty"),
    "ddr4_background_w": Coefficient(0.42, 0.42, 0.42, "W per DDR4 rank (active standby)",
                                     "Micron IDD"),
    "lpddr4_background_w": Coefficient(0.076, 0.076, 0.076,
                                       "W per LPDDR4 controller (2 × 38 mW per x16 channel)",
                                       "Micron IDD; two x16 channels per controller assumed"),
    "ddrmc_w": Coefficient(0.3, 0.4, 0.5, "W per active DDR memory controller", "a guess"),
    "noc_pj_per_bit_hop": Coefficient(0.1, 0.2, 0.3, "pJ per bit per NoC switch",
                                      "no public figure: a guess, shown separately"),
    "noc_hops": Coefficient(2.0, 4.0, 8.0, "NoC switches from a PL master to a DDRMC",
                            "a guess (the VC1902's NoC columns and rows)"),
    "static_w": Coefficient(3.0, 5.0, 10.0, "W (XCVC1902 at T_j ≈ 50 °C; 2–4× at 100 °C)",
                            "extrapolated from the ZU7EV's PL static ≈ 0.6 W; no public Versal "
                            "figure"),
}


def dram_kind(memory: dict) -> str:
    """``ddr4`` or ``lpddr4`` from a board memory entry (its ``kind`` or ``name``)."""
    text = f"{memory.get('kind', '')} {memory.get('name', '')}".upper()
    if "LPDDR4" in text:
        return "lpddr4"
    if "DDR4" in text:
        return "ddr4"
    raise ValueError(f"memory {memory.get('name')!r} of kind {memory.get('kind')!r}: the power "
                     "model knows DDR4 and LPDDR4 only")


@dataclass
class MemoryAccesses:
    """One on-chip memory: accesses per second, word width and the block type it maps to."""

    name: str
    per_s: float
    width_bits: int
    kind: str  #: "BRAM" or "URAM"


@dataclass
class PowerInputs:
    """Everything the estimate multiplies: resources, activity, accesses, DRAM traffic."""

    clock_hz: float
    resources: dict[str, dict[str, float]]  #: group → {LUT, FF, BRAM, URAM, DSP}
    toggle_rate: dict[str, float]  #: group → transitions per net per cycle (at this build)
    dsp_duty: dict[str, float]  #: group → fraction of cycles its DSPs multiply
    memories: list[MemoryAccesses]
    dram_bytes_per_s: dict[str, float]  #: board memory name → bytes/s read
    dram_kinds: dict[str, str]  #: board memory name → ddr4 / lpddr4
    row_open_fraction: dict[str, float] = field(default_factory=dict)
    """board memory name → fraction of 64-byte bursts that open a DRAM row"""
    activity_source: str = ""


@dataclass
class PowerEstimate:
    """Watts at low / typical / high coefficients, by term; always an estimate."""

    terms: dict[str, dict[str, float]]  #: term → {band: watts}
    kinds: dict[str, str]  #: term → static | clock | activity | dram | background |
    #: controller | noc

    def total(self, band: str = "typical") -> float:
        return sum(t[band] for t in self.terms.values())

    def dynamic(self, band: str = "typical") -> float:
        """Without static power and the memories' background (what the NSLLM paper's 13.849 W
        is compared with)."""
        return sum(t[band] for k, t in self.terms.items()
                   if self.kinds[k] not in ("static", "background"))

    def as_dict(self) -> dict:
        return {
            "estimate": True,
            "total": {b: round(self.total(b), 3) for b in BANDS},
            "dynamic": {b: round(self.dynamic(b), 3) for b in BANDS},
            "breakdown": {k: {"kind": self.kinds[k], **{b: round(v[b], 4) for b in BANDS}}
                          for k, v in self.terms.items()},
        }


def estimate_power(inp: PowerInputs, coefficients: dict[str, Coefficient] = COEFFICIENTS
                   ) -> PowerEstimate:
    """The estimate of :class:`PowerInputs` (formula in the module docstring)."""
    c = coefficients
    f = inp.clock_hz
    terms: dict[str, dict[str, float]] = {}
    kinds: dict[str, str] = {}

    def add(name: str, kind: str, fn) -> None:
        terms[name] = {b: fn(b) for b in BANDS}
        kinds[name] = kind

    add("static", "static", lambda b: c["static_w"].at(b))
    n_ff = sum(r.get("FF", 0) for r in inp.resources.values())
    n_bram = sum(r.get("BRAM", 0) for r in inp.resources.values())
    add("clock tree", "clock", lambda b: f * n_ff * c["ff_clock_fj"].at(b) * 1e-15
        + c["gclk_mw_per_mhz"].at(b) * 1e-3 * f / 1e6)
    for g, res in inp.resources.items():
        a = inp.toggle_rate.get(g, 0.0)
        add(f"logic: {g}", "activity", lambda b, res=res, a=a: f * a * (
            res.get("LUT", 0) * c["lut_pj"].at(b) + res.get("FF", 0) * c["ff_pj"].at(b)) * 1e-12)
    dsp = {g: r.get("DSP", 0) * inp.dsp_duty.get(g, 0.0) for g, r in inp.resources.items()}
    add("DSP", "activity", lambda b: f * sum(dsp.values()) * c["dsp_pj"].at(b) * 1e-12)
    for mem in inp.memories:
        key = "uram_pj" if mem.kind == "URAM" else "bram_pj"
        units = math.ceil(mem.width_bits / 72)
        add(f"{mem.kind}: {mem.name}", "activity",
            lambda b, mem=mem, key=key, units=units: mem.per_s * units * c[key].at(b) * 1e-12)
    add("BRAM clocking", "clock", lambda b: f * n_bram * c["bram_clock_pj"].at(b) * 1e-12)
    for name, per_s in inp.dram_bytes_per_s.items():
        kind = inp.dram_kinds[name]
        add(f"DRAM reads: {name}", "dram",
            lambda b, per_s=per_s, kind=kind: per_s * c[f"{kind}_pj_per_byte"].at(b) * 1e-12)
        opened = inp.row_open_fraction.get(name, 0.0)
        if opened:
            add(f"DRAM row activations: {name}", "dram",
                lambda b, per_s=per_s, kind=kind, opened=opened:
                per_s * opened * 8 * c[f"{kind}_row_pj_per_bit"].at(b) * 1e-12)
        bg = c[f"{kind}_background_w"]
        add(f"DRAM background: {name}", "background", lambda b, bg=bg: bg.at(b))
        add(f"DDRMC: {name}", "controller", lambda b: c["ddrmc_w"].at(b))
    total_bytes = sum(inp.dram_bytes_per_s.values())
    add("NoC", "noc", lambda b: total_bytes * 8 * c["noc_pj_per_bit_hop"].at(b)
        * c["noc_hops"].at(b) * 1e-12)
    return PowerEstimate(terms, kinds)


def coefficient_table() -> str:
    """:data:`COEFFICIENTS` as the markdown table docs/performance.md shows (a test keeps the
    two equal)."""
    rows = ["| coefficient | low | typical | high | unit | source |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name, c in COEFFICIENTS.items():
        rows.append(f"| `{name}` | {c.low:g} | {c.typical:g} | {c.high:g} | {c.unit} | "
                    f"{c.source} |")
    return "\n".join(rows)
