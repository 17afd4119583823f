"""One executor interface for the sweeps that grow with model size.

Sensitivity measurements, δ sweeps and calibration over many texts are lists of independent
evaluations of one model. They are written as ``executor.map(fn, context, items)``: ``fn(context,
item)`` for every item, results in the order of ``items``. ``context`` is the large shared object
(a :class:`~nsllm.quant.probe.QuantProbe` holding the weights and the reference outputs); it is
sent to each worker once, not once per item.

* :class:`SerialExecutor` (the default) runs the calls in this process, one after the other.
* :class:`RayExecutor` (``--ray [ADDRESS]``, optional extra ``ray``) runs them as Ray tasks: the
  context is put in Ray's object store once, every item is one task. Without an address it starts
  a local Ray instance; ``--ray auto`` joins the cluster this machine belongs to (``ray start``),
  ``--ray ray://HOST:10001`` connects a Ray client to a remote cluster's head.

Both give the same results: the evaluations are deterministic functions of (context, item), and
the results are assembled in item order whatever order the tasks finish in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


class Executor:
    """``map(fn, context, items)`` → ``[fn(context, item) for item in items]``."""

    name = "executor"

    def map(self, fn: Callable[[Any, Any], Any], context: Any, items: Iterable,
            progress: Callable[[int, int], None] | None = None) -> list:
        """``progress(done, total)`` is called as results arrive."""
        raise NotImplementedError

    def close(self) -> None:
        """Release workers (nothing to do for the serial executor)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SerialExecutor(Executor):
    """Every call in this process, in order."""

    name = "serial"

    def map(self, fn, context, items, progress=None) -> list:
        items = list(items)
        out = []
        for item in items:
            out.append(fn(context, item))
            if progress:
                progress(len(out), len(items))
        return out


SERIAL = SerialExecutor()


class RayExecutor(Executor):
    """Every call as a Ray task (one task per item; the context shared through the object store).

    Parameters
    ----------
    address : str or None
        ``None``: start a local Ray instance (or use the one already initialised in this process);
        ``"auto"``: join the running cluster on this machine; ``"ray://host:10001"``: a remote
        cluster through the Ray client.
    num_cpus : int or None
        CPUs of a local instance (ignored when joining a cluster).
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 runtime_env: dict | None = None):
        try:
            import ray
        except ModuleNotFoundError:
            raise ValueError("--ray needs Ray: install the optional extra with "
                             "`.venv/bin/pip install -e '.[ray]'`") from None
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                kwargs["address"] = address
            elif num_cpus:
                kwargs["num_cpus"] = num_cpus
            if runtime_env:
                kwargs["runtime_env"] = runtime_env
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError) as e:
                raise ValueError(f"cannot connect to Ray at {address or 'a new local instance'}: "
                                 f"{e}") from None
            self.started = True
        self._task = ray.remote(_call)

    def map(self, fn, context, items, progress=None) -> list:
        items = list(items)
        if not items:
            return []
        ctx = self.ray.put(context)
        refs = [self._task.remote(fn, ctx, item) for item in items]
        if progress:
            pending, done = list(refs), 0
            while pending:
                ready, pending = self.ray.wait(pending, num_returns=1)
                done += len(ready)
                progress(done, len(refs))
        return self.ray.get(refs)  # in item order, whatever order the tasks finished in

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False


def _call(fn, context, item):
    return fn(context, item)


def log_progress(log, what: str = "evaluations"):
    """A ``progress`` callback for :meth:`Executor.map` that logs about every 10 % (None without
    a log)."""
    if not log:
        return None

    def report(done: int, total: int) -> None:
        if done == total or done % max(1, total // 10) == 0:
            log(f"  {done}/{total} {what}")

    return report


def make_executor(ray: str | bool | None = None) -> Executor:
    """The executor of a ``--ray [ADDRESS]`` option: ``None``/``False`` serial, ``True`` or ``""``
    a local Ray instance, a string an address."""
    if ray is None or ray is False:
        return SERIAL
    return RayExecutor(None if ray is True or ray in ("", "local") else ray)


def add_ray_arg(p) -> None:
    """The ``--ray [ADDRESS]`` option of the commands that run sweeps."""
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run the evaluations as Ray tasks (optional extra `ray`): alone, a local "
                        "Ray instance; 'auto' the cluster this machine joined; ray://HOST:10001 a "
                        "remote cluster (default: serial, in this process)")
