"""One atomic-write helper: the target is the old file or the new one, never half of one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from musicflow.adapters import atomic, procs


def test_write_creates_folders_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "f.txt"
    assert atomic.write_text(target, "one") == target
    atomic.write_bytes(target, b"two", fsync=True)
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic.atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_temp_file_is_hidden_beside_the_target(tmp_path: Path) -> None:
    seen: list[Path] = []
    atomic.atomic_write(tmp_path / "x.parquet", lambda tmp: seen.append(tmp) or tmp.touch())
    assert seen[0].parent == tmp_path
    assert seen[0].name.startswith(".x.parquet.") and seen[0].suffix == ".tmp"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_permissions_of_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        path = atomic.write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


def test_an_explicit_mode_wins(tmp_path: Path) -> None:
    path = atomic.write_text(tmp_path / "secret.json", "{}", mode=0o600)
    assert path.stat().st_mode & 0o777 == 0o600


def test_sweep_removes_only_dead_writers_temp_files(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = procs.host()
    theirs = tmp_path / f".x.parquet.{host}-{dead.pid}-0123abcd.tmp"
    mine = tmp_path / f".y.parquet.{host}-{os.getpid()}-0123abcd.tmp"
    elsewhere = tmp_path / f".z.parquet.otherhost-{dead.pid}-0123abcd.tmp"
    old_style = tmp_path / ".w.parquet.k2j3h4.tmp"
    keep = tmp_path / "part-00000.parquet"
    for p in (theirs, mine, elsewhere, old_style, keep):
        p.write_bytes(b"")
    stale = time.time() - atomic.STALE_AFTER_S - 10
    os.utime(old_style, (stale, stale))
    assert sorted(p.name for p in atomic.sweep(tmp_path)) == sorted([theirs.name, old_style.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [mine.name, elsewhere.name, keep.name]
    )


def test_a_crash_point_is_a_real_sigkill(tmp_path: Path) -> None:
    code = (
        "import sys; from musicflow.adapters import atomic\natomic.write_text(sys.argv[1], 'new')\n"
    )
    target = tmp_path / "part-00000.parquet"
    target.write_text("old")
    done = subprocess.run(
        [sys.executable, "-c", code, str(target)],
        env=dict(os.environ, MUSICFLOW_CRASH_AT="tmp:part-*"),
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL
    assert target.read_text() == "old"
    leftover = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftover) == 1 and atomic.sweep(tmp_path) == leftover
