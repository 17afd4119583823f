"""The NSLLM core: a composition of units, one file each.

* :mod:`~nsllm.hdl.core.params` — :class:`CoreParams`, the generator parameters;
* :mod:`~nsllm.hdl.core.control` — ``ControlRegisters``, generated from :mod:`nsllm.isa`;
* :mod:`~nsllm.hdl.core.sequencer` — program cache, descriptor checks, dispatch;
* :mod:`~nsllm.hdl.core.axi` — bus signatures, ``BurstSplitter``, ``ReadArbiter``;
* :mod:`~nsllm.hdl.core.tables` — ``TableLoader``;
* :mod:`~nsllm.hdl.core.vector` — ``VectorUnit`` (lanes of the elementwise units);
* :mod:`~nsllm.hdl.core.linear`, :mod:`~nsllm.hdl.core.streamer` — the spiking linear chain;
* :mod:`~nsllm.hdl.core.top` — :class:`NSLLMCore`, the wiring.
"""

from .axi import axi_read_signature, axil_signature
from .params import CoreParams
from .top import NSLLMCore, axi_port_names

__all__ = ["CoreParams", "NSLLMCore", "axi_port_names", "axi_read_signature", "axil_signature"]
