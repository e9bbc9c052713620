"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file musicflow writes goes through :func:`atomic_write` (shards, the manifest,
``dataset.json``, parse-cache entries, reports, figures, generated MIDI, exported sources,
saved model configs): the content goes to a temp file in the target's folder, which is then
renamed over the target (``os.replace`` is atomic within one filesystem). A killed run leaves
at most a hidden ``.<name>.*.tmp`` file, never a truncated target.

Public functions: :func:`atomic_write` (any writer that takes a path), :func:`write_bytes`,
:func:`write_text`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[Path], object], *, fsync: bool = False
) -> Path:
    """Call ``write(tmp)`` with a temp path beside ``path``, then rename it over ``path``.

    The parent folder is created when missing. With ``fsync`` the data reach the disk before
    the rename (for files a user keeps, such as reports). On any error the temp file is
    removed and the error propagates; ``path`` is untouched. Returns ``path``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = False) -> Path:
    """``data`` as the whole content of ``path``, atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), fsync=fsync)


def write_text(path: str | os.PathLike[str], text: str, *, fsync: bool = False) -> Path:
    """``text`` (UTF-8) as the whole content of ``path``, atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), fsync=fsync)
