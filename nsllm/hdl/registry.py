"""The registry of generated components: names, sizes, and Verilog generation.

Each component module (``trits``, ``accumulator``, ``spike``, ``norm``, ``mlgru``, ``gate``,
``sla``, ``argmax``, and the ``core`` package: the core itself and its units) defines a module-level
``COMPONENTS: dict[str, ComponentSpec]``. A spec names the component and gives two factories:
``sim`` (small, fast to simulate and lint) and ``board`` (the parameterisation the VCK190 core
uses: 512-bit weight words, 256 lanes, ...).

Example
-------
>>> from nsllm.hdl import registry
>>> names = sorted(registry.components())                        # every registered name
>>> dut = registry.build("TernaryAccumulatorArray", "sim")       # a wiring.Component
>>> path = registry.write_verilog("TernaryAccumulatorArray", "sim", "build/verilog")

Adding a component: in its module,

.. code-block:: python

    COMPONENTS = {
        "MyUnit": ComponentSpec("MyUnit", sim=lambda: MyUnit(lanes=4),
                                board=lambda: MyUnit(lanes=256), summary="what it does"),
    }

and add the module name to :data:`COMPONENT_MODULES` if it is a new module.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

#: Modules of :mod:`nsllm.hdl` that define ``COMPONENTS``.
COMPONENT_MODULES = ("trits", "accumulator", "spike", "norm", "mlgru", "gate", "argmax", "sla",
                     "core")
SIZES = ("sim", "board")


@dataclass(frozen=True)
class ComponentSpec:
    """A generated component and its two standard parameterisations.

    Parameters
    ----------
    name : str
        Verilog module name (and registry key).
    sim, board : callable
        Zero-argument factories returning a fresh ``wiring.Component``: ``sim`` is small enough
        for quick simulation, ``board`` is what the VCK190 core would instantiate.
    summary : str
        One line for ``nsllm verilog`` listings and docs.
    """

    name: str
    sim: Callable[[], wiring.Component]
    board: Callable[[], wiring.Component]
    summary: str = ""

    def build(self, size: str = "sim") -> wiring.Component:
        """A fresh component at ``size`` ("sim" or "board")."""
        if size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, not {size!r}")
        return self.sim() if size == "sim" else self.board()


_missing: list[str] = []


def components(strict: bool = True) -> dict[str, ComponentSpec]:
    """All registered components, by name, in module order.

    Every module of :data:`COMPONENT_MODULES` must exist; with ``strict=False`` (for work in
    progress) a missing one is skipped and listed by :func:`missing_modules`. Any other import
    error propagates.
    """
    found: dict[str, ComponentSpec] = {}
    _missing.clear()
    for mod_name in COMPONENT_MODULES:
        full = f"{__package__}.{mod_name}"
        try:
            module = importlib.import_module(full)
        except ModuleNotFoundError as exc:
            if exc.name != full or strict:
                raise
            _missing.append(mod_name)
            continue
        specs = getattr(module, "COMPONENTS", None)
        if not isinstance(specs, dict):
            raise TypeError(f"{full} must define COMPONENTS: dict[str, ComponentSpec]")
        for name, spec in specs.items():
            if not isinstance(spec, ComponentSpec) or spec.name != name:
                raise TypeError(
                    f"{full}.COMPONENTS[{name!r}] must be a ComponentSpec named {name!r}")
            if name in found:
                raise ValueError(f"component {name!r} is registered twice (again in {full})")
            found[name] = spec
    return found


def missing_modules() -> list[str]:
    """Component modules that :func:`components` could not find on its last call."""
    return list(_missing)


def get(name: str) -> ComponentSpec:
    """The spec registered as ``name``; the error lists the known names."""
    specs = components()
    if name not in specs:
        raise KeyError(f"no component named {name!r}; registered: {', '.join(specs)}")
    return specs[name]


def build(name: str, size: str = "sim") -> wiring.Component:
    """A fresh instance of the registered component ``name`` at ``size``."""
    return get(name).build(size)


def verilog_text(component: wiring.Component, name: str) -> str:
    """Verilog for ``component`` as module ``name`` (ports from its signature, plus clk/rst).

    Uses the Yosys that ships with Amaranth (``AMARANTH_USE_YOSYS=builtin``) so the output
    does not depend on whatever Yosys happens to be installed on the machine.
    """
    saved = os.environ.get("AMARANTH_USE_YOSYS")
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    try:
        return verilog.convert(component, name=name, emit_src=False)
    finally:
        if saved is None:
            del os.environ["AMARANTH_USE_YOSYS"]
        else:
            os.environ["AMARANTH_USE_YOSYS"] = saved


def write_verilog(name: str, size: str, out_dir: str | os.PathLike) -> Path:
    """Write ``<out_dir>/<name>.v`` for the registered component at ``size``; returns the path."""
    from nsllm.outputs import write_text

    path = Path(out_dir) / f"{name}.v"
    return write_text(path, verilog_text(build(name, size), name))


def write_all(out_dir: str | os.PathLike, size: str = "sim") -> list[Path]:
    """Write Verilog for every registered component at ``size``."""
    return [write_verilog(name, size, out_dir) for name in components()]
