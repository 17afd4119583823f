"""Integrity of cached simulator builds (the Verilator harness library, the Icarus program).

A build folder is *complete* when its manifest (:data:`MANIFEST`) lists the SHA-256 of every
output file and the name of the folder it was built in; the manifest is written last, atomically,
after the build succeeded, so an interrupted build never looks complete. Reusing a build re-hashes
its outputs (a few milliseconds): a truncated, overwritten or foreign file (copied from another
build folder) does not match and the build is redone — loading a truncated shared library would
kill the process with SIGBUS. Checking needs only reads, so a complete build in a read-only cache
is used as it is; an incomplete or damaged one in a folder that cannot be written raises
:class:`BuildCacheError` naming the folder to delete.

The hook in a build function::

    with buildcache.entry(directory, [LIBRARY]) as cache:
        if cache.complete:
            return BuildInfo(directory / LIBRARY, directory, True, 0.0)
        ...  # build into directory
        cache.record()
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MANIFEST", "BuildCacheError", "BuildCacheWarning", "CacheEntry", "entry", "verify"]

MANIFEST = "build.sha256.json"
_FORMAT = 1


class BuildCacheError(RuntimeError):
    """A cached build that cannot be used or redone; the message names the folder to delete."""


class BuildCacheWarning(UserWarning):
    """A cached build was damaged or foreign and is rebuilt."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(directory: Path, outputs: list[str]) -> str | None:
    """``None`` when ``directory`` holds a complete build of ``outputs``, else what is wrong
    (``"no build"`` when nothing was recorded)."""
    manifest = directory / MANIFEST
    try:
        data = json.loads(manifest.read_text())
    except FileNotFoundError:
        return "no build"
    except (OSError, ValueError) as e:
        return f"its manifest {MANIFEST} is unreadable ({e})"
    if not isinstance(data, dict) or data.get("format") != _FORMAT \
            or not isinstance(data.get("files"), dict):
        return f"its manifest {MANIFEST} is not one this nsllm writes"
    if data.get("directory") != directory.name:
        return f"it was built in another folder ({data.get('directory')!r}): a foreign build"
    files = data["files"]
    for name in outputs:
        if name not in files:
            return f"{name} is not in its manifest"
        try:
            actual = _sha256(directory / name)
        except OSError as e:
            return f"{name} cannot be read ({e.strerror or e})"
        if actual != files[name]:
            return f"{name} does not match the hash recorded when it was built (damaged or " \
                   "replaced)"
    return None


@dataclass
class CacheEntry:
    """One build folder, as handed to the build function by :func:`entry`."""

    directory: Path
    outputs: list[str]
    complete: bool

    def record(self) -> None:
        """Mark the build complete: hash the outputs into the manifest (atomically)."""
        data = {"format": _FORMAT, "directory": self.directory.name,
                "files": {name: _sha256(self.directory / name) for name in self.outputs}}
        tmp = self.directory / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, self.directory / MANIFEST)


def _unusable(directory: Path, problem: str, error: OSError) -> BuildCacheError:
    return BuildCacheError(
        f"the build cache {directory} cannot be used ({problem}) and cannot be rebuilt there "
        f"({error.strerror or error}); delete the folder (rm -rf {directory}), make it writable, "
        "or set NSLLM_BUILD_DIR to a writable folder")


@contextlib.contextmanager
def entry(directory: Path, outputs: list[str]) -> Iterator[CacheEntry]:
    """The build folder ``directory``: complete (use it) or locked for a (re)build.

    A complete build is yielded without taking the lock (read-only caches work). Otherwise the
    folder is created and locked against other processes building the same design, re-checked
    (another process may just have finished), cleared of a damaged build (with a
    :class:`BuildCacheWarning`), and yielded incomplete: build, then call
    :meth:`CacheEntry.record`.
    """
    directory = Path(directory)
    problem = verify(directory, outputs)
    if problem is None:
        yield CacheEntry(directory, outputs, True)
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock = open(directory / ".lock", "w")  # noqa: SIM115 - closed in the finally below
    except OSError as e:
        raise _unusable(directory, "no complete build" if problem == "no build" else problem,
                        e) from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another pytest process may build the same design
        problem = verify(directory, outputs)
        if problem is None:
            yield CacheEntry(directory, outputs, True)
            return
        if not os.access(directory, os.W_OK | os.X_OK):  # the lock file may predate that
            raise _unusable(directory, "no complete build" if problem == "no build" else problem,
                            PermissionError(errno.EACCES, os.strerror(errno.EACCES)))
        if problem != "no build":
            warnings.warn(f"the cached build in {directory} is unusable: {problem}; "
                          "rebuilding it", BuildCacheWarning, stacklevel=3)
        try:
            for name in [MANIFEST, *outputs]:
                with contextlib.suppress(FileNotFoundError):
                    (directory / name).unlink()
        except OSError as e:
            raise _unusable(directory, problem, e) from None
        yield CacheEntry(directory, outputs, False)
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
