"""Ingestion: which files are found, how they are fingerprinted, how duplicates are marked."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from musicflow.core.errors import DatasetError
from musicflow.tasks.ingest import find_midi_files, ingest_files


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_finds_midi_in_any_case_nested_and_odd_names(tmp_path: Path) -> None:
    _write(tmp_path / "a.mid", b"1")
    _write(tmp_path / "B.MID", b"2")
    _write(tmp_path / "deep" / "er" / "c.MiDi", b"3")
    _write(tmp_path / "ünï cödé & spaces.midi", b"4")
    _write(tmp_path / "notes.txt", b"5")
    _write(tmp_path / "mid", b"6")  # no suffix
    found = [f.source_path for f in find_midi_files(tmp_path)]
    assert found == sorted(["a.mid", "B.MID", "deep/er/c.MiDi", "ünï cödé & spaces.midi"])


def test_sha256_and_duplicates_point_at_first_sorted_path(tmp_path: Path) -> None:
    _write(tmp_path / "z" / "copy.mid", b"same bytes")
    _write(tmp_path / "a.mid", b"same bytes")
    _write(tmp_path / "m.mid", b"other")
    files = ingest_files(tmp_path).set_index("source_path")
    assert files.loc["a.mid", "source_sha256"] == hashlib.sha256(b"same bytes").hexdigest()
    assert not isinstance(files.loc["a.mid", "duplicate_of"], str)
    assert files.loc["z/copy.mid", "duplicate_of"] == "a.mid"
    assert not isinstance(files.loc["m.mid", "duplicate_of"], str)
    assert files.loc["m.mid", "size_bytes"] == 5


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        find_midi_files(tmp_path / "nope")


def test_a_file_given_as_the_source_says_so(tmp_path: Path) -> None:
    _write(tmp_path / "a.mid", b"1")
    with pytest.raises(DatasetError, match="is a file, not a folder"):
        find_midi_files(tmp_path / "a.mid")


def test_an_unreadable_file_is_kept_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from musicflow.tasks import ingest

    _write(tmp_path / "a.mid", b"fine")
    _write(tmp_path / "b.mid", b"locked")
    real = ingest.sha256_file

    def sha(path: Path) -> str:
        if path.name == "b.mid":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(ingest, "sha256_file", sha)
    files = ingest_files(tmp_path).set_index("source_path")
    assert files.loc["b.mid", "read_error"] == "Permission denied"
    assert pd.isna(files.loc["b.mid", "source_sha256"])
    assert pd.isna(files.loc["a.mid", "read_error"])
