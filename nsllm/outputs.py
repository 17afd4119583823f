"""Output files, written atomically: a temporary file in the destination folder, then a rename.

Every file a command writes goes through :func:`atomic_write` (or :func:`write_bytes`,
:func:`write_text`, :func:`write_json`): the data goes to a hidden temporary file beside the
destination (``.<name>.<random>.tmp<suffix>``; the suffix is kept because matplotlib and NumPy
choose the format by it) and is renamed over the destination when complete, so a reader never sees
a half-written file and a failure leaves the old file as it was.

Inside a :func:`transaction` the renames wait until the whole block has succeeded: a command that
writes a model, a report and a plot changes either all of them or none (the CLI runs every
command in one). Folders created for the outputs are removed again when the block fails, and no
temporary file is left behind either way.

:func:`check_output` reports an unusable ``--out`` (a folder where a file is expected, a path
under a file, a folder that cannot be written) before any work starts.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["OutputError", "atomic_write", "check_output", "transaction", "write_bytes",
           "write_json", "write_text"]


class OutputError(ValueError):
    """An output path that cannot be written; the message names the option and the fix."""


class _Transaction:
    def __init__(self) -> None:
        self.staged: dict[Path, Path] = {}  # destination → finished temporary file
        self.created: list[Path] = []  # folders made for the outputs, parents first

    def commit(self) -> None:
        for final, tmp in self.staged.items():
            os.replace(tmp, final)
        self.staged.clear()

    def discard(self) -> None:
        for tmp in self.staged.values():
            _unlink(tmp)
        self.staged.clear()
        for folder in reversed(self.created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when still empty


_current: contextvars.ContextVar[_Transaction | None] = contextvars.ContextVar(
    "nsllm_output_transaction", default=None)


@contextlib.contextmanager
def transaction() -> Iterator[None]:
    """Defer the renames of every :func:`atomic_write` in the block until it succeeds.

    Files written inside appear together when the block ends normally; if it raises (or is
    interrupted) the temporary files are deleted and folders made for them removed, so the
    destinations are unchanged. Nested transactions join the outermost one. Files are not
    visible under their names until the end: do not read back what the block wrote.
    """
    if _current.get() is not None:
        yield
        return
    tx = _Transaction()
    token = _current.set(tx)
    try:
        yield
    except BaseException:
        tx.discard()
        raise
    else:
        try:
            tx.commit()
        except BaseException:
            tx.discard()
            raise
    finally:
        _current.reset(token)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _make_parents(folder: Path, tx: _Transaction | None) -> None:
    missing = []
    p = folder
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        d.mkdir()
        if tx is not None:
            tx.created.append(d)


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, join: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it replaces ``path``.

    Write the file at the yielded path (with ``open``, ``savefig``, ``np.savez`` …). On success
    the temporary file is renamed over ``path`` — at once, or at the end of the enclosing
    :func:`transaction` when ``join`` is true; on failure it is deleted. Missing parent folders
    are created (and removed again if the transaction fails).
    """
    path = Path(path)
    tx = _current.get() if join else None
    _make_parents(path.parent, tx)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    tmp = _temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies, like open()
    os.close(fd)
    try:
        yield tmp
    except BaseException:
        _unlink(tmp)
        raise
    if tx is None:
        try:
            os.replace(tmp, path)
        except BaseException:
            _unlink(tmp)
            raise
    else:
        old = tx.staged.pop(path.resolve(), None)
        if old is not None:  # written twice in one transaction: the last version wins
            _unlink(old)
        tx.staged[path.resolve()] = tmp


def write_bytes(path: str | os.PathLike, data: bytes, *, join: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, join=join) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, *, join: bool = True) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"), join=join)


def write_json(path: str | os.PathLike, data, *, indent: int | None = 1, join: bool = True,
               **dump_options) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (serialised first: a value JSON cannot hold
    fails before anything is written)."""
    return write_text(path, json.dumps(data, indent=indent, **dump_options) + "\n", join=join)


def check_output(path: str | os.PathLike | None, option: str = "--out",
                 kind: str = "file") -> Path | None:
    """Raise :class:`OutputError` when ``path`` cannot be written as a ``kind`` (``file`` or
    ``folder``), naming ``option``; ``None`` passes. Nothing is created.

    Checks: a file output must not be an existing folder, a folder output not an existing file;
    no part of the path above it may be a file; the nearest existing folder must be writable.
    """
    if path is None:
        return None
    p = Path(path)
    if kind not in ("file", "folder"):
        raise ValueError(f"kind must be 'file' or 'folder', not {kind!r}")
    if str(path) == "":
        raise OutputError(f"{option + ': ' if option else ''}the path is empty; give a file name")
    label = f"{option} {p}" if option else str(p)
    if kind == "file" and p.is_dir():
        raise OutputError(f"{label} is a folder; give a file name (inside it or elsewhere)")
    if kind == "folder" and p.exists() and not p.is_dir():
        raise OutputError(f"{label} is a file; give a folder for the outputs")
    probe = p.parent
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if kind == "folder" and p.is_dir():
        probe = p
    if probe.exists() and not probe.is_dir():
        raise OutputError(f"{label}: {probe} is a file, so nothing can be created under it; "
                          "choose another path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{label}: the folder {probe} is not writable (permission denied or "
                          "read-only); choose another path or fix its permissions")
    return p
