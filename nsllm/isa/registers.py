"""The AXI4-Lite register map as data: name, offset, access, fields, kernel argument, doc.

One list, :data:`REGISTER_MAP`, from which are derived

* the core's ``ControlRegisters`` unit (storage for RW registers, inputs for RO ones, strobes
  for WO ones — :mod:`nsllm.hdl.core.control`);
* the host's :class:`Reg` (byte offsets of every 32-bit word, 64-bit registers as ``_LO``/``_HI``);
* ``kernel.xml`` for Vitis (the registers with ``arg`` set are the kernel's arguments);
* the register table of ``docs/runtime.md`` (:func:`markdown_table`; a test keeps them equal).

Offsets 0x00–0x0C are Vitis ``ap_ctrl_hs``; kernel arguments start at 0x10 as Vitis expects
(pointers are 64 bits, scalars 32). Per-port registers (``port`` set) exist for weight ports
0 … :data:`~nsllm.isa.layout.MAX_WEIGHT_PORTS` − 1; a build with fewer ports reads them as 0
and kernel.xml lists only the ports the build has.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum

from .errors import ERROR_DOCS
from .layout import MAX_WEIGHT_PORTS

__all__ = ["Access", "CTRL_DONE", "CTRL_IDLE", "CTRL_READY", "CTRL_START", "ISA_VERSION",
           "ISA_MAGIC", "REGISTER_MAP", "Reg", "Register", "RegisterField", "build_register_values",
           "markdown_table",
           "register", "status_fields"]

#: Version of the instruction set, descriptor layout and register map (BUILD_ISA low half).
ISA_VERSION = 3
#: BUILD_ISA high half: "NS".
ISA_MAGIC = 0x4E53

CTRL_START, CTRL_DONE, CTRL_IDLE, CTRL_READY = 1, 2, 4, 8


class Access(str, Enum):  # noqa: UP042 (a str mixin keeps `access == "RW"` working)
    RW = "RW"  #: written by the host, read back
    RO = "RO"  #: driven by the core
    WO = "WO"  #: a write is a strobe (reads 0)
    CTRL = "CTRL"  #: ap_ctrl_hs (see the CTRL entry)
    TOGGLE = "TOGGLE"  #: ISR: writing 1 toggles the bit
    CONST = "CONST"  #: a build parameter (RO, fixed at generation)


@dataclass(frozen=True)
class RegisterField:
    name: str
    lsb: int
    bits: int
    doc: str = ""


@dataclass(frozen=True)
class Register:
    """One register.

    ``bits`` is 32, or 64 for a pointer (two words: ``<name>_LO`` at ``offset``, ``_HI`` at
    ``offset + 4``). ``arg`` names the Vitis kernel argument it carries (``None``: not an
    argument); ``port`` is the weight port a per-port register belongs to (``"ctl"`` for the
    image port).
    """

    name: str
    offset: int
    access: Access
    doc: str
    bits: int = 32
    fields: tuple[RegisterField, ...] = ()
    arg: str | None = None
    port: int | str | None = None

    @property
    def words(self) -> list[tuple[str, int]]:
        """(name, offset) of each 32-bit word."""
        if self.bits == 64:
            return [(f"{self.name}_LO", self.offset), (f"{self.name}_HI", self.offset + 4)]
        return [(self.name, self.offset)]

    @property
    def pointer(self) -> bool:
        return self.bits == 64 and self.arg is not None


def status_fields() -> tuple[RegisterField, ...]:
    codes = ", ".join(f"{int(c)} {d.split(' (')[0]}" for c, d in ERROR_DOCS.items())
    return (
        RegisterField("pc", 0, 16, "descriptor index being executed (or that failed)"),
        RegisterField("opcode", 16, 8, "its opcode byte"),
        RegisterField("busy", 24, 1, "a run is in progress"),
        RegisterField("error", 28, 4, f"why the last run stopped: {codes}"),
    )


def _port_registers() -> list[Register]:
    regs = []
    for k in range(MAX_WEIGHT_PORTS):
        regs.append(Register(
            f"W{k}", 0x18 + 8 * k, Access.RW, f"weight region {k}: byte address of the buffer "
            f"read by weight port {k} (m_axi_w{k})", bits=64, arg=f"weights{k}", port=k))
    return regs


REGISTER_MAP: tuple[Register, ...] = (
    Register("CTRL", 0x00, Access.CTRL, "Vitis ap_ctrl_hs: write 1 to bit 0 to start; bit 0 "
             "reads 1 while running, bit 1 ap_done and bit 3 ap_ready (both clear on read), "
             "bit 2 ap_idle",
             fields=(RegisterField("ap_start", 0, 1), RegisterField("ap_done", 1, 1),
                     RegisterField("ap_idle", 2, 1), RegisterField("ap_ready", 3, 1))),
    Register("GIE", 0x04, Access.RW, "bit 0: global interrupt enable"),
    Register("IER", 0x08, Access.RW, "bit 0: ap_done interrupt enable"),
    Register("ISR", 0x0C, Access.TOGGLE, "bit 0: ap_done interrupt status (write 1 to toggle)"),
    Register("IMAGE", 0x10, Access.RW, "image region: byte address of the model image (header, "
             "programs, tables), read by the image port m_axi_ctl", bits=64, arg="image",
             port="ctl"),
    *_port_registers(),
    Register("IMAGE_BYTES", 0x38, Access.RW, "bytes of the image region (bounds every program "
             "and table read)", arg="image_bytes"),
    Register("REGION_BYTES", 0x3C, Access.RW, "bytes of each weight region (bounds every "
             "column read)", arg="region_bytes"),
    Register("PROG_OFFSET", 0x40, Access.RW, "byte offset of the program in the image region",
             arg="prog_offset"),
    Register("PROG_OPS", 0x44, Access.RW, "descriptors in the program (the core caches the "
             "program it ran last)", arg="prog_ops"),
    Register("TOKEN_IN", 0x48, Access.RW, "input token of the token program", arg="token_in"),
    Register("CACHE_FLUSH", 0x4C, Access.WO, "any write forgets the cached program (after "
             "rewriting a program in memory)"),
    Register("TOKEN_OUT", 0x50, Access.RO, "ARGMAX result of the last run"),
    Register("STATUS", 0x54, Access.RO, "state of the sequencer", fields=status_fields()),
    Register("ERROR_INFO", 0x58, Access.RO, "detail of a DATAPATH error: bit 0 invalid trit "
             "code, bit 1 accumulator contract (spike count out of range), bit 2 encoder "
             "(D or shift out of range), bit 3 memory port conflict (a core bug), bit 4 SLA "
             "operand (a q/k count outside [0, 15], v outside [−15, 15] or a decay shift "
             "outside [1, 12]); 0 otherwise"),
    Register("CYCLES", 0x5C, Access.RO, "cycles from start to done of the last run", bits=64),
    Register("WEIGHT_BYTES", 0x64, Access.RO, "bytes of weight columns fetched in the last run "
             "(all ports)"),
    Register("BUS_BYTES", 0x68, Access.RO, "all bytes read in the last run (all ports: "
             "descriptors, tables, weights)"),
    Register("SPIKES_NONZERO", 0x6C, Access.RO, "non-zero spike counts of LINEAR inputs in the "
             "last run"),
    Register("SPIKES_TOTAL", 0x70, Access.RO, "spike counts of LINEAR inputs in the last run"),
    Register("SCRATCH_ADDR", 0x74, Access.RW, "scratchpad entry for the debug readback"),
    Register("SCRATCH_DATA", 0x78, Access.RO, "that entry, sign-extended (valid two cycles "
             "after SCRATCH_ADDR is written, while idle)"),
    Register("WEIGHT_CYCLES", 0x7C, Access.RO, "cycles of the last run in which a weight port "
             "delivered a beat"),
    *(Register(f"PORT{k}_BYTES", 0x80 + 4 * k, Access.RO, f"weight bytes read by weight port "
               f"{k} in the last run", port=k) for k in range(MAX_WEIGHT_PORTS)),
    Register("BUILD_ISA", 0x90, Access.CONST, f"0x{ISA_MAGIC:04X} << 16 | ISA version "
             f"({ISA_VERSION})"),
    Register("BUILD_PORT_BYTES", 0x94, Access.CONST, "AXI data width of every port, bytes"),
    Register("BUILD_WEIGHT_PORTS", 0x98, Access.CONST, "weight ports N"),
    Register("BUILD_PACKINGS", 0x9C, Access.CONST, "weight packings decoded: bit 0 2bit, "
             "bit 1 base3"),
    Register("BUILD_VECTOR", 0xA0, Access.CONST, "elements per cycle of the vector unit and "
             "the encoder"),
    Register("BUILD_SCRATCH", 0xA4, Access.CONST, "scratchpad entries"),
    Register("BUILD_MAX_D", 0xA8, Access.CONST, "largest spike count D"),
    Register("BUILD_ACC_BITS", 0xAC, Access.CONST, "accumulator width"),
    Register("BUILD_MAX_VOCAB", 0xB0, Access.CONST, "largest vocabulary"),
    Register("BUILD_MAX_HIDDEN", 0xB4, Access.CONST, "largest hidden size"),
    Register("BUILD_MAX_INTER", 0xB8, Access.CONST, "largest intermediate size"),
    Register("BUILD_MAX_LAYERS", 0xBC, Access.CONST, "most layers"),
    Register("BUILD_MAX_OPS", 0xC0, Access.CONST, "program cache capacity, descriptors"),
    Register("BUILD_SLA_SLOTS", 0xC4, Access.CONST, "SLA state slots (most SLA layers; 0: no "
             "SLA unit)"),
    Register("BUILD_SLA_HEAD", 0xC8, Access.CONST, "largest SLA head size d_h"),
    Register("BUILD_SLA_LANES", 0xCC, Access.CONST, "SLA state entries updated per cycle"),
)

#: Bytes of the AXI4-Lite address space (kernel.xml's s_axi_control range).
ADDRESS_SPACE = 0x1000
ADDRESS_BITS = 12


def _check_map() -> None:
    seen: dict[int, str] = {}
    for reg in REGISTER_MAP:
        for name, off in reg.words:
            if off % 4 or off >= ADDRESS_SPACE:
                raise AssertionError(f"register {name} at {off:#x} is not a word in the map")
            if off in seen:
                raise AssertionError(f"registers {seen[off]} and {name} share offset {off:#x}")
            seen[off] = name


_check_map()

#: Byte offset of every 32-bit word, by name (64-bit registers as NAME_LO / NAME_HI).
Reg = IntEnum("Reg", {name: off for reg in REGISTER_MAP for name, off in reg.words})
Reg.__doc__ = "Byte offsets of the core's 32-bit register words (generated from REGISTER_MAP)."


def build_register_values(build) -> dict[str, int]:
    """The CONST (BUILD_*) register values of a build (a :class:`~nsllm.isa.BuildLimits`)."""
    values = {
        "BUILD_ISA": ISA_MAGIC << 16 | ISA_VERSION, "BUILD_PORT_BYTES": build.port_bytes,
        "BUILD_WEIGHT_PORTS": build.weight_ports, "BUILD_PACKINGS": build.packing_bits,
        "BUILD_VECTOR": build.vector, "BUILD_SCRATCH": build.scratch_entries,
        "BUILD_MAX_D": build.max_D, "BUILD_ACC_BITS": build.acc_bits,
        "BUILD_MAX_VOCAB": build.max_vocab, "BUILD_MAX_HIDDEN": build.max_hidden,
        "BUILD_MAX_INTER": build.max_intermediate, "BUILD_MAX_LAYERS": build.max_layers,
        "BUILD_MAX_OPS": build.max_ops, "BUILD_SLA_SLOTS": build.max_sla_layers,
        "BUILD_SLA_HEAD": build.max_head_dim, "BUILD_SLA_LANES": build.sla_lanes,
    }
    assert set(values) == {r.name for r in REGISTER_MAP if r.access == Access.CONST}
    return values


def register(name: str) -> Register:
    """The :class:`Register` called ``name`` (a 64-bit one by its base name)."""
    for reg in REGISTER_MAP:
        if reg.name == name:
            return reg
    raise KeyError(f"no register {name!r}; the map has {', '.join(r.name for r in REGISTER_MAP)}")


def markdown_table() -> str:
    """The register table of docs/runtime.md, generated from the map."""
    rows = ["| offset | name | access | meaning |", "| --- | --- | --- | --- |"]
    for reg in REGISTER_MAP:
        access = {"CTRL": "RW", "TOGGLE": "RW", "CONST": "RO"}.get(reg.access.value,
                                                                  reg.access.value)
        doc = reg.doc
        if reg.fields and reg.name != "CTRL":
            doc += ": " + ", ".join(
                f"{f.lsb + f.bits - 1}:{f.lsb} {f.name}" if f.bits > 1 else f"{f.lsb} {f.name}"
                for f in reg.fields)
        if reg.arg:
            doc += f" (kernel argument `{reg.arg}`)"
        for name, off in reg.words:
            rows.append(f"| 0x{off:02X} | {name} | {access} | {doc} |")
            doc = "high word" if reg.bits == 64 else doc
    return "\n".join(rows)
