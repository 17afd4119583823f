"""STATUS error codes (STATUS bits 31:28): why the core stopped.

Every implementation — the RTL, the interpreter behind ``ModelDevice`` — stops at the first
failing check of a descriptor with the same code, in the order of
:func:`nsllm.isa.layout.check_instr`, and leaves the failing descriptor's index in STATUS.pc.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ERROR_DOCS", "ErrorCode"]


class ErrorCode(IntEnum):
    NONE = 0
    OPCODE = 1
    AXI = 2
    PROGRAM = 3
    TABLE = 4
    WEIGHT = 5
    SCRATCH = 6
    TOKEN = 7
    FIELD = 8
    PACKING = 9
    DATAPATH = 10


#: What each code means and what to check: the text ``DeviceError`` shows.
ERROR_DOCS = {
    ErrorCode.NONE: "none",
    ErrorCode.OPCODE: "unknown opcode (the image and the core disagree on the instruction set, "
                      "or the program is corrupt: rebuild the image)",
    ErrorCode.AXI: "AXI read error (a read answered SLVERR/DECERR: a buffer address outside "
                   "device memory)",
    ErrorCode.PROGRAM: "bad program (PROG_OPS 0 or above BUILD_MAX_OPS, the program outside the "
                       "image region, or no END)",
    ErrorCode.TABLE: "table outside the image region (or misaligned): corrupt descriptor or "
                     "IMAGE_BYTES too small",
    ErrorCode.WEIGHT: "weight columns outside their weight region (or misaligned): corrupt "
                      "descriptor or REGION_BYTES too small",
    ErrorCode.SCRATCH: "scratchpad region out of range, empty or misaligned: corrupt descriptor "
                       "or an image built for a larger core",
    ErrorCode.TOKEN: "TOKEN_IN is outside the vocabulary",
    ErrorCode.FIELD: "descriptor field out of range (D above BUILD_MAX_D, a shift outside "
                     "[1, 63], or a length above the build's capacity)",
    ErrorCode.PACKING: "the LINEAR's weight packing is not decoded by this build "
                       "(see BUILD_PACKINGS)",
    ErrorCode.DATAPATH: "a datapath range check fired (invalid trit code, spike count or shift "
                        "out of contract; ERROR_INFO names the unit)",
}
