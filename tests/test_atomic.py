"""One atomic-write helper: the target is the old file or the new one, never half of one."""

from __future__ import annotations

from pathlib import Path

import pytest

from musicflow import atomic


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
