"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file musicflow writes goes through :func:`atomic_write` (shards, the manifest,
``dataset.json``, parse-cache entries, reports, figures, generated MIDI, exported sources,
saved model configs): the content goes to a temp file in the target's folder, which is then
renamed over the target (``os.replace`` is atomic within one filesystem). A killed run leaves
at most a hidden ``.<name>.<host>-<pid>-<random>.tmp`` file, never a truncated target, and
:func:`sweep` removes such leftovers once the process that wrote them is gone.

Files are created with the permissions the user's umask gives (``0o666 & ~umask``, as
``open()`` does), not the 0600 of ``tempfile.mkstemp``.

Public functions: :func:`atomic_write` (any writer that takes a path), :func:`write_bytes`,
:func:`write_text`, :func:`sweep`, :func:`crash_point` and :func:`pause_point` (fault injection
for the tests).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path

from musicflow.adapters.procs import host, pid_alive

#: Temp files without an owner in their name (written by musicflow before 0.1.1, or by a
#: process on another host) are swept only once they are this old.
STALE_AFTER_S = 3600.0

_TEMP = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_-]{1,32})-(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")


def temp_path(target: Path) -> Path:
    """A fresh temp name beside ``target`` that says which process owns it."""
    return target.parent / f".{target.name}.{host()}-{os.getpid()}-{secrets.token_hex(4)}.tmp"


def _create(target: Path) -> Path:
    """Create an empty temp file beside ``target`` (umask permissions), never an existing one."""
    while True:
        tmp = temp_path(target)
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[Path], object],
    *,
    fsync: bool = False,
    mode: int | None = None,
) -> Path:
    """Call ``write(tmp)`` with a temp path beside ``path``, then rename it over ``path``.

    The parent folder is created when missing. With ``fsync`` the data (and the rename) reach
    the disk before this returns (for files a user keeps, and for commit points such as
    ``dataset.json``). ``mode`` sets the permissions instead of the umask's (0o600 for a
    file holding a password). On any error the temp file is removed and the error
    propagates; ``path`` is untouched. Returns ``path``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create(target)
    try:
        if mode is not None:
            os.chmod(tmp, mode)
        write(tmp)
        crash_point(f"tmp:{target.name}")
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(target.parent)
    return target


def write_bytes(
    path: str | os.PathLike[str], data: bytes, *, fsync: bool = False, mode: int | None = None
) -> Path:
    """``data`` as the whole content of ``path``, atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), fsync=fsync, mode=mode)


def write_text(
    path: str | os.PathLike[str], text: str, *, fsync: bool = False, mode: int | None = None
) -> Path:
    """``text`` (UTF-8) as the whole content of ``path``, atomically."""
    return atomic_write(
        path, lambda tmp: tmp.write_text(text, encoding="utf-8"), fsync=fsync, mode=mode
    )


def write_new(path: str | os.PathLike[str], data: bytes) -> bool:
    """``data`` as a new file ``path``, atomically, never replacing one: False (and nothing
    written) when ``path`` exists, also when another process creates it at the same moment
    (the temp file is hard-linked to its name, which fails on an existing name)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create(target)
    try:
        tmp.write_bytes(data)
        crash_point(f"tmp:{target.name}")
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: check, then rename
            if target.exists():
                return False
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def is_stale(path: Path, *, now: float | None = None) -> bool:
    """True for a temp file whose writer is gone: a dead process of this host, or (no owner
    in the name, or another host) older than :data:`STALE_AFTER_S`."""
    match = _TEMP.match(path.name)
    if match and match["host"] == host():
        return not pid_alive(int(match["pid"]))
    if not path.name.startswith(".") or not path.name.endswith(".tmp"):
        return False
    try:
        age = (now or time.time()) - path.lstat().st_mtime
    except OSError:
        return False
    return age > STALE_AFTER_S


def sweep(folder: str | os.PathLike[str], *, recursive: bool = False) -> list[Path]:
    """Remove the stale temp files (:func:`is_stale`) in ``folder``; returns what was removed.

    Live writers' temp files are left alone, so this is safe while other commands run.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    candidates = folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp")
    for path in candidates:
        if is_stale(path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def crash_point(name: str) -> None:
    """Fault injection for the tests: SIGKILL this process when ``MUSICFLOW_CRASH_AT`` names
    this point (``tmp:<file name>`` inside an atomic write, ``encode:<step>`` in the encode
    stage). A real kill, so nothing in the process gets to clean up."""
    wanted = os.environ.get("MUSICFLOW_CRASH_AT")
    if wanted and (wanted == name or (wanted.endswith("*") and name.startswith(wanted[:-1]))):
        os.kill(os.getpid(), signal.SIGKILL)


def pause_point(name: str) -> None:
    """Fault injection for the tests: when ``MUSICFLOW_PAUSE_AT`` is ``<name>=<file>``, write
    ``<file>`` (this process's id) and wait until the test removes it, so a concurrent command
    runs at exactly this point (at most ten minutes)."""
    point, _, flag = os.environ.get("MUSICFLOW_PAUSE_AT", "").partition("=")
    if point != name or not flag:
        return
    write_text(flag, str(os.getpid()))
    deadline = time.monotonic() + 600
    while Path(flag).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
