"""The hardware/host contract: the one definition the core (:mod:`nsllm.hdl`) and the host
runtime (:mod:`nsllm.host`) are both derived from, importing neither.

* :mod:`~nsllm.isa.opcodes` — the opcodes, the descriptor field table and :class:`Instr`
  (its ``pack``/``unpack`` are derived from the field table, as is the core's descriptor layout);
* :mod:`~nsllm.isa.registers` — the AXI4-Lite register map as data (name, offset, access,
  fields, doc), from which the core's control registers, the host's :class:`Reg`, ``kernel.xml``
  and the register table of ``docs/runtime.md`` are generated;
* :mod:`~nsllm.isa.errors` — the STATUS error codes;
* :mod:`~nsllm.isa.layout` — build limits, alignment rules, the scratchpad layout, how weight
  columns are spread over the weight ports, and the descriptor checks every implementation
  applies before running an instruction.

``ISA_VERSION`` changes whenever any of these changes; the core reports it in BUILD_ISA.
"""

from .errors import ERROR_DOCS, ErrorCode
from .layout import (
    ALIGN,
    MAX_SHIFT,
    MAX_WEIGHT_PORTS,
    PACKING_CODES,
    TABLE_ALIGN,
    BuildLimits,
    Regions,
    ScratchLayout,
    check_instr,
    column_port,
    column_slot,
    columns_per_port,
    scratch_layout,
)
from .opcodes import (
    DESCRIPTOR_BITS,
    DESCRIPTOR_BYTES,
    DESCRIPTOR_FIELDS,
    FLAG_BASE3,
    FLAG_UNSIGNED,
    Field,
    Instr,
    Op,
    UnknownOpcode,
)
from .registers import (
    CTRL_DONE,
    CTRL_IDLE,
    CTRL_READY,
    CTRL_START,
    ISA_VERSION,
    REGISTER_MAP,
    Access,
    Reg,
    Register,
    RegisterField,
    register,
    status_fields,
)

__all__ = [
    "ALIGN", "Access", "BuildLimits", "CTRL_DONE", "CTRL_IDLE", "CTRL_READY", "CTRL_START",
    "DESCRIPTOR_BITS", "DESCRIPTOR_BYTES", "DESCRIPTOR_FIELDS", "ERROR_DOCS", "ErrorCode",
    "FLAG_BASE3", "FLAG_UNSIGNED", "Field", "ISA_VERSION", "Instr", "MAX_SHIFT",
    "MAX_WEIGHT_PORTS", "Op", "PACKING_CODES", "REGISTER_MAP", "Reg", "Regions", "Register",
    "RegisterField",
    "ScratchLayout", "TABLE_ALIGN", "UnknownOpcode", "check_instr", "column_port", "column_slot",
    "columns_per_port", "register", "scratch_layout", "status_fields",
]
