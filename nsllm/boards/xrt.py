"""``XrtDevice``: the :class:`~nsllm.host.device.Device` protocol on a board, through XRT.

XRT's C API in ``libxrt_coreutil.so`` is called through ctypes: it is on every XRT install,
including the embedded (PetaLinux) one of the VCK190 image, where the Python binding ``pyxrt``
is not built — and ``pyxrt`` cannot read a kernel's registers anyway (it lost
``read_register`` in 2021), which the runtime needs for the counters and the status. When
``pyxrt`` is importable it is used to find the library of the same XRT install.

How the protocol maps onto XRT (BOARD_FLOW.md, docs/board.md):

``alloc(nbytes, arg)``     ``xrtBOAlloc`` in the memory bank of the kernel argument
                           (``xrtKernelArgGroupId``): ``image`` in the image port's bank, each
                           ``weights<k>`` in its weight port's; returns ``xrtBOAddress``
``write`` / ``read``       ``xrtBOWrite`` + ``xrtBOSync`` (to device) / ``xrtBOSync`` (from
                           device) + ``xrtBORead``, on the buffer holding the address
``reg_write``              a kernel argument's register (IMAGE, W<k>, IMAGE_BYTES …): kept and
                           passed with ``xrtRunSetArg`` at the next start (a pointer as its
                           buffer); any other register: ``xrtKernelWriteRegister``
``reg_read``               ``xrtKernelReadRegister`` (the kernel is opened exclusively, as XRT
                           requires); CTRL is XRT's (ap_done is clear-on-read and XRT's
                           scheduler consumes it), so it is reported from the run's state
``start`` / ``wait``       ``xrtRunStart`` / ``xrtRunWaitFor`` with a timeout in ms

At open, the argument offsets the xclbin carries (``xrtKernelArgOffset``, from kernel.xml)
are checked against :data:`nsllm.isa.REGISTER_MAP`. Every failing XRT call raises
:class:`~nsllm.host.device.DeviceError` naming the call, its return value and errno.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from nsllm.host.device import (
    CTRL_IDLE,
    CTRL_START,
    DeviceError,
    Reg,
    timeout_error,
)
from nsllm.isa import MAX_WEIGHT_PORTS
from nsllm.isa.registers import ISA_MAGIC, REGISTER_MAP, Access

from .kernel import KERNEL_NAME, KernelArg, kernel_arguments

__all__ = ["ERT_STATES", "LIBRARY", "XrtDevice", "find_library", "run_host_folder",
           "xrt_backend"]

LIBRARY = "libxrt_coreutil.so"
#: ``enum ert_cmd_state`` (XRT's ert.h).
ERT_STATES = {1: "NEW", 2: "QUEUED", 3: "RUNNING", 4: "COMPLETED", 5: "ERROR", 6: "ABORT",
              7: "SUBMITTED", 8: "TIMEOUT", 9: "NORESPONSE", 10: "SKERROR", 11: "SKCRASHED"}
COMPLETED, TIMEOUT = 4, 8
IN_FLIGHT = {1, 2, 3, 7}  #: states of a run that has not finished
SYNC_TO_DEVICE, SYNC_FROM_DEVICE = 0, 1  #: ``enum xclBOSyncDirection``
BO_FLAGS_NONE = 0
NO_OFFSET = 0xFFFFFFFF  #: xrtKernelArgOffset's error value

_p, _i, _u32, _u64, _sz = (ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_uint64,
                           ctypes.c_size_t)
_UUID = ctypes.c_ubyte * 16
#: The XRT C functions XrtDevice calls: name → (result, argument types). xrtRunSetArg is
#: variadic (the value after the index: a buffer handle or a 32-bit scalar).
FUNCTIONS = {
    "xrtDeviceOpen": (_p, [ctypes.c_uint]),
    "xrtDeviceClose": (_i, [_p]),
    "xrtDeviceLoadXclbinFile": (_i, [_p, ctypes.c_char_p]),
    "xrtDeviceGetXclbinUUID": (_i, [_p, ctypes.POINTER(ctypes.c_ubyte)]),
    "xrtPLKernelOpenExclusive": (_p, [_p, ctypes.POINTER(ctypes.c_ubyte), ctypes.c_char_p]),
    "xrtKernelClose": (_i, [_p]),
    "xrtKernelArgGroupId": (_i, [_p, _i]),
    "xrtKernelArgOffset": (_u32, [_p, _i]),
    "xrtKernelReadRegister": (_i, [_p, _u32, ctypes.POINTER(_u32)]),
    "xrtKernelWriteRegister": (_i, [_p, _u32, _u32]),
    "xrtRunOpen": (_p, [_p]),
    "xrtRunSetArg": (_i, None),
    "xrtRunStart": (_i, [_p]),
    "xrtRunWaitFor": (_i, [_p, ctypes.c_uint]),
    "xrtRunState": (_i, [_p]),
    "xrtRunClose": (_i, [_p]),
    "xrtBOAlloc": (_p, [_p, _sz, _u64, _u32]),
    "xrtBOFree": (_i, [_p]),
    "xrtBOAddress": (_u64, [_p]),
    "xrtBOWrite": (_i, [_p, _p, _sz, _sz]),
    "xrtBORead": (_i, [_p, _p, _sz, _sz]),
    "xrtBOSync": (_i, [_p, _i, _sz, _sz]),
}

_INSTALL_HINT = ("install XRT 2023.2 and `source /opt/xilinx/xrt/setup.sh` (on the VCK190 it is "
                 "part of the Versal common image), or set NSLLM_XRT_LIBRARY to the library")


def _candidates(explicit: str | os.PathLike | None) -> list[str]:
    found = []
    if explicit:
        found.append(str(explicit))
    if os.environ.get("NSLLM_XRT_LIBRARY"):
        found.append(os.environ["NSLLM_XRT_LIBRARY"])
    try:  # pyxrt sits in <xrt>/python, the library in <xrt>/lib
        import pyxrt  # type: ignore[import-not-found]

        found.append(str(Path(pyxrt.__file__).resolve().parents[1] / "lib" / LIBRARY))
    except ImportError:
        pass
    if os.environ.get("XILINX_XRT"):
        found.append(str(Path(os.environ["XILINX_XRT"]) / "lib" / LIBRARY))
    found += [f"/opt/xilinx/xrt/lib/{LIBRARY}", f"/usr/lib/{LIBRARY}"]
    name = ctypes.util.find_library("xrt_coreutil")
    if name:
        found.append(name)
    return found


def find_library(explicit: str | os.PathLike | None = None) -> str:
    """The XRT core library to load: ``explicit``, ``$NSLLM_XRT_LIBRARY``, beside an importable
    ``pyxrt``, ``$XILINX_XRT/lib``, ``/opt/xilinx/xrt/lib``, ``/usr/lib``, the linker's path."""
    tried = _candidates(explicit)
    for path in tried:
        if "/" not in path or Path(path).is_file():
            return path
    if explicit or os.environ.get("NSLLM_XRT_LIBRARY"):
        raise DeviceError(f"the XRT library {tried[0]} does not exist; {_INSTALL_HINT}")
    raise DeviceError(f"XRT is not installed ({LIBRARY} not found in "
                      f"{', '.join(dict.fromkeys(p for p in tried if '/' in p))}); "
                      f"{_INSTALL_HINT}")


class _Xrt:
    """The XRT C functions of :data:`FUNCTIONS`, bound with their signatures."""

    def __init__(self, path: str):
        try:
            self.lib = ctypes.CDLL(path, use_errno=True)
        except OSError as exc:
            raise DeviceError(f"cannot load the XRT library {path}: {exc}; {_INSTALL_HINT}"
                              ) from None
        self.path = path
        for name, (res, args) in FUNCTIONS.items():
            try:
                fn = getattr(self.lib, name)
            except AttributeError:
                raise DeviceError(f"{path} has no {name}: XRT is older than this runtime "
                                  "supports (2021.1 or newer needed)") from None
            fn.restype = res
            if args is not None:
                fn.argtypes = args
            setattr(self, name, fn)

    def call(self, name: str, *args, check=lambda r: r == 0, what: str = ""):
        """Call ``name``; a result failing ``check`` raises :class:`DeviceError` with the XRT
        status (the return value and errno, which XRT sets from its error code)."""
        ctypes.set_errno(0)
        result = getattr(self, name)(*args)
        if not check(result):
            err = abs(ctypes.get_errno())
            reason = f"errno {err}: {os.strerror(err)}" if err else "no errno set"
            shown = "NULL" if result is None else result
            raise DeviceError(f"XRT {name} failed (returned {shown}, {reason})"
                              + (f": {what}" if what else ""))
        return result


@dataclass
class Buffer:
    """One buffer object: the buffer of kernel argument ``arg``."""

    arg: str
    handle: int
    address: int
    size: int
    group: int  #: memory group of the argument (bank index in the low 16 bits)


#: Registers XRT drives itself for ap_ctrl_hs.
_XRT_OWNED = {r.name for r in REGISTER_MAP if r.access in (Access.CTRL, Access.TOGGLE)} | {
    "GIE", "IER"}


class XrtDevice:
    """A :class:`~nsllm.host.device.Device`: the kernel of an xclbin on an XRT device.

    Parameters
    ----------
    xclbin : path
        The xclbin ``nsllm build`` + ``make`` produced (``build/nsllm.xclbin``).
    device_index : int
        XRT device index (0 on a VCK190).
    timeout : float
        Default seconds of :meth:`wait`.
    library : path, optional
        ``libxrt_coreutil.so`` to use (default: :func:`find_library`).
    kernel : str
        Kernel name in the xclbin.

    Raises
    ------
    DeviceError
        XRT missing, no device, an xclbin that does not load or lacks the kernel, or argument
        offsets that disagree with the register map.
    """

    name = "xrt"

    def __init__(self, xclbin: str | os.PathLike, *, device_index: int = 0,
                 timeout: float = 10.0, library: str | os.PathLike | None = None,
                 kernel: str = KERNEL_NAME):
        self._dev = self._kernel = self._run = None
        self.buffers: dict[str, Buffer] = {}
        xclbin = Path(xclbin)
        if not xclbin.is_file():
            raise DeviceError(f"xclbin {xclbin} does not exist: build it with `nsllm build "
                              "--board vck190 --out DIR` and `make -C DIR` (docs/board.md)")
        self.xrt = _Xrt(find_library(library))
        self.timeout = timeout
        self.xclbin = xclbin
        try:
            self._open(xclbin, device_index, kernel)
        except BaseException:
            self.close()
            raise

    def _open(self, xclbin: Path, device_index: int, kernel: str) -> None:
        x = self.xrt
        self._dev = x.call("xrtDeviceOpen", device_index, check=bool,
                           what=f"no XRT device {device_index} (check the board is up and "
                                "`xbutil examine` lists it)")
        x.call("xrtDeviceLoadXclbinFile", self._dev, os.fsencode(xclbin),
               what=f"XRT could not load {xclbin} (not an xclbin, or built for another "
                    "platform)")
        uuid = _UUID()
        x.call("xrtDeviceGetXclbinUUID", self._dev, uuid)
        self._kernel = x.call("xrtPLKernelOpenExclusive", self._dev, uuid,
                              kernel.encode(), check=bool,
                              what=f"the xclbin has no kernel {kernel} (or another process "
                                   "holds it)")
        self._run = x.call("xrtRunOpen", self._kernel, check=bool)
        self._started = False
        isa, ports = self._read(Reg.BUILD_ISA), self._read(Reg.BUILD_WEIGHT_PORTS)
        if isa >> 16 != ISA_MAGIC or not 1 <= ports <= MAX_WEIGHT_PORTS:
            raise DeviceError(f"kernel {kernel} of {xclbin} does not answer as an NSLLM core "
                              f"(BUILD_ISA {isa:#x}, BUILD_WEIGHT_PORTS {ports})")
        self.args = kernel_arguments(ports)
        self._check_offsets()
        self._words: dict[int, tuple[KernelArg, int]] = {}
        for a in self.args:
            for half in range(a.size // 4):
                self._words[a.offset + 4 * half] = (a, half)
        self._values: dict[str, int] = {}
        self._dirty: set[str] = set()

    def _check_offsets(self) -> None:
        for a in self.args:
            off = self.xrt.xrtKernelArgOffset(self._kernel, a.id)
            if off == NO_OFFSET:
                raise DeviceError(f"the xclbin's kernel has no argument {a.id} ({a.name}): it "
                                  "was built from another register map; rebuild it (nsllm build, "
                                  "make)")
            if off != a.offset:
                raise DeviceError(f"the xclbin puts kernel argument {a.id} ({a.name}) at offset "
                                  f"{off:#x}, the register map at {a.offset:#x}: rebuild the "
                                  "xclbin with this nsllm (nsllm build, make)")

    # ---- lifetime
    def close(self) -> None:
        x = getattr(self, "xrt", None)
        if x is None:
            return
        for buf in self.buffers.values():
            x.xrtBOFree(buf.handle)
        self.buffers = {}
        if self._run:
            x.xrtRunClose(self._run)
        if self._kernel:
            x.xrtKernelClose(self._kernel)
        if self._dev:
            x.xrtDeviceClose(self._dev)
        self._dev = self._kernel = self._run = None

    def __enter__(self) -> XrtDevice:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    # ---- memory
    def _arg(self, name: str) -> KernelArg:
        for a in self.args:
            if a.name == name:
                return a
        raise DeviceError(f"kernel {KERNEL_NAME} has no argument {name!r} (its arguments: "
                          f"{', '.join(a.name for a in self.args)})")

    def alloc(self, nbytes: int, arg: str) -> int:
        """A buffer in the memory bank of pointer argument ``arg``; returns its address."""
        a = self._arg(arg)
        if not a.pointer:
            raise DeviceError(f"kernel argument {arg} is a scalar, not a buffer")
        old = self.buffers.get(arg)
        if old is not None and nbytes <= old.size:
            return old.address
        x = self.xrt
        group = x.call("xrtKernelArgGroupId", self._kernel, a.id, check=lambda g: g >= 0,
                       what=f"no memory bank for argument {arg} ({a.port})")
        handle = x.call("xrtBOAlloc", self._dev, max(nbytes, 64), BO_FLAGS_NONE, group,
                        check=bool, what=f"{nbytes} bytes for {arg} in memory group "
                                         f"{group:#x} (bank full?)")
        if old is not None:
            x.xrtBOFree(old.handle)
        buf = Buffer(arg, handle, x.xrtBOAddress(handle), max(nbytes, 64), group)
        self.buffers[arg] = buf
        return buf.address

    def _buffer_at(self, addr: int, n: int) -> Buffer:
        for buf in self.buffers.values():
            if buf.address <= addr and addr + n <= buf.address + buf.size:
                return buf
        raise DeviceError(f"[{addr:#x}, {addr + n:#x}) is not inside a buffer of this device "
                          "(alloc() it first)")

    def write(self, addr: int, data: bytes) -> None:
        data = bytes(data)
        buf = self._buffer_at(addr, len(data))
        off = addr - buf.address
        self.xrt.call("xrtBOWrite", buf.handle, data, len(data), off)
        self.xrt.call("xrtBOSync", buf.handle, SYNC_TO_DEVICE, len(data), off,
                      what=f"copying {buf.arg} to the device")

    def read(self, addr: int, n: int) -> bytes:
        buf = self._buffer_at(addr, n)
        off = addr - buf.address
        self.xrt.call("xrtBOSync", buf.handle, SYNC_FROM_DEVICE, n, off,
                      what=f"copying {buf.arg} from the device")
        out = ctypes.create_string_buffer(n)
        self.xrt.call("xrtBORead", buf.handle, out, n, off)
        return out.raw

    # ---- registers
    def _read(self, offset: int) -> int:
        value = _u32()
        self.xrt.call("xrtKernelReadRegister", self._kernel, offset, ctypes.byref(value),
                      what=f"register {offset:#x}")
        return value.value

    def reg_write(self, offset: int, value: int) -> None:
        value &= 0xFFFFFFFF
        name = Reg(offset).name if offset in Reg._value2member_map_ else f"{offset:#x}"
        if name in _XRT_OWNED:
            raise DeviceError(f"register {name} belongs to XRT's ap_ctrl_hs handling; use "
                              "start() and wait()")
        if offset in self._words:
            a, half = self._words[offset]
            old = self._values.get(a.name, 0)
            shift = 32 * half
            self._values[a.name] = old & ~(0xFFFFFFFF << shift) | value << shift
            self._dirty.add(a.name)
            return
        self.xrt.call("xrtKernelWriteRegister", self._kernel, offset, value,
                      what=f"register {name}")

    def reg_read(self, offset: int) -> int:
        if offset == Reg.CTRL:
            return self._ctrl()
        if offset in self._words:
            a, half = self._words[offset]
            return self._values.get(a.name, 0) >> 32 * half & 0xFFFFFFFF
        return self._read(offset)

    def _state(self) -> int:
        return self.xrt.xrtRunState(self._run)

    def _ctrl(self) -> int:
        """CTRL as the runtime reads it, from the run's state (XRT consumes ap_done)."""
        if self._started and self._state() in IN_FLIGHT:
            return CTRL_START
        return CTRL_IDLE

    # ---- runs
    def start(self) -> None:
        if self._started and self._state() in IN_FLIGHT:
            raise DeviceError(f"start() while the kernel is running (XRT run state "
                              f"{ERT_STATES[self._state()]}); wait() for the previous run first")
        x = self.xrt
        for name in sorted(self._dirty, key=lambda n: self._arg(n).id):
            a = self._arg(name)
            value = self._values[name]
            if a.pointer:
                buf = next((b for b in self.buffers.values() if b.address == value), None)
                if buf is None:
                    raise DeviceError(f"argument {name} ({a.register}) is {value:#x}, which is "
                                      "not the address of a buffer of this device")
                arg = ctypes.c_void_p(buf.handle)
            else:
                arg = ctypes.c_uint32(value)
            x.call("xrtRunSetArg", ctypes.c_void_p(self._run), ctypes.c_int(a.id), arg,
                   what=f"argument {a.id} ({name})")
        self._dirty.clear()
        x.call("xrtRunStart", self._run)
        self._started = True

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the run (``xrtRunWaitFor``); :class:`~nsllm.host.device.DeviceTimeout`
        after ``timeout`` seconds (the run keeps going: wait again to resume)."""
        timeout = self.timeout if timeout is None else timeout
        ms = max(1, math.ceil(timeout * 1000))  # 0 would mean "forever" to XRT
        t0 = time.perf_counter()
        state = self.xrt.xrtRunWaitFor(self._run, ms)
        self.last_wait_seconds = time.perf_counter() - t0
        if state == COMPLETED:
            return
        what = f"XRT run state ERT_CMD_STATE_{ERT_STATES.get(state, state)} ({state})"
        if state == TIMEOUT or state in IN_FLIGHT:
            raise timeout_error(self, f"{timeout:g} s ({what})")
        from nsllm.host.device import read_status

        try:
            status = read_status(self).describe()
        except DeviceError as exc:
            status = f"status registers unreadable: {exc}"
        raise DeviceError(f"the kernel run ended in {what}; {status}")


def xrt_backend(weights, xclbin, *, packing: str = "2bit", read_logits: bool = False,
                **device_options):
    """A :class:`~nsllm.host.runtime.CoreBackend` running ``weights`` on the board: the image
    is built for the build the kernel reports (port width, weight ports) and loaded into
    per-bank buffers."""
    from nsllm.host.image import build_image
    from nsllm.host.runtime import CoreBackend, CoreRunner, read_build_limits

    device = XrtDevice(xclbin, **device_options)
    try:
        build = read_build_limits(device)
        image = build_image(weights, port_bytes=build.port_bytes, packing=packing,
                            weight_ports=build.weight_ports)
        runner = CoreRunner(device, image)
    except BaseException:
        device.close()
        raise
    return CoreBackend(runner, read_logits=read_logits, name="xrt")


def _default_xclbin(folder: Path) -> Path:
    for p in (folder / "nsllm.xclbin", folder.parent / "nsllm.xclbin",
              folder.parent / "build" / "nsllm.xclbin"):
        if p.is_file():
            return p
    raise DeviceError(f"no nsllm.xclbin beside {folder} or in ../build; give --xclbin")


def run_host_folder(folder, prompt: str, max_new_tokens: int = 64, *, xclbin=None,
                    device_index: int = 0, timeout: float = 10.0, **device_options) -> dict:
    """Generate from the image files of a build's ``host/`` folder (what ``host/run.py`` does)."""
    import json

    from nsllm.host.generator import Generator
    from nsllm.host.image import parse_image
    from nsllm.host.runtime import CoreBackend, CoreRunner
    from nsllm.model.tokenizer import load_tokenizer

    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    if not manifest.get("buffers"):
        raise DeviceError(f"{folder} has no model image (the build was made from a preset); "
                          "rebuild with --model")
    files = {b["arg"]: (folder / b["file"]).read_bytes() for b in manifest["buffers"]}
    ports = manifest["weight_ports"]
    image = parse_image(files["image"], [files[f"weights{k}"] for k in range(ports)])
    tok = load_tokenizer(manifest["tokenizer"], folder)
    device = XrtDevice(xclbin or _default_xclbin(folder), device_index=device_index,
                       timeout=timeout, **device_options)
    with device:
        backend = CoreBackend(CoreRunner(device, image), name="xrt")
        res = Generator(backend, tok).generate(prompt, max_new_tokens)
        return {"text": res.text, "tokens": res.tokens, "tokens_per_s": round(res.tokens_per_s, 3),
                **backend.summary.as_dict()}
