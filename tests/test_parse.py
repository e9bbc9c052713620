"""tasks/parse.py: each new file read once into a content-addressed cache entry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_midi
from prefect import flow

from musicflow.adapters import parse_cache
from musicflow.core import roll, scan
from musicflow.core.errors import DatasetError
from musicflow.core.scan import scan_file
from musicflow.tasks import parse
from musicflow.tasks.ingest import ingest_files


def test_cache_folder_is_per_encoding(tmp_path: Path) -> None:
    a = parse_cache.cache_root(tmp_path, roll.DEFAULT_PITCH_LOW)
    assert a.name == f"roll-v1-v{roll.ENCODER_VERSION}-p21"
    assert parse_cache.cache_root(tmp_path, 30) != a  # another window never reuses stale windows
    assert parse_cache.entry_path(a, "ab" * 32) == a / "ab" / f"{'ab' * 32}.npz"


def test_entry_round_trip_and_unreadable_entries(tmp_path: Path) -> None:
    midi = tmp_path / "x.mid"
    write_midi(midi, [60, 62, 64] * 20)
    scan = scan_file(midi.read_bytes())
    entry = tmp_path / "cache" / "ab" / "entry.npz"
    parse_cache.store_entry(entry, scan)
    assert parse_cache.load_record(entry) == scan.record
    packed, segments = parse_cache.load_windows(entry)
    assert np.array_equal(packed, scan.packed) and np.array_equal(segments, scan.segments)
    assert [p.name for p in entry.parent.iterdir()] == ["entry.npz"]  # no temp file left
    entry.write_bytes(b"half an entry")
    assert parse_cache.load_record(entry) is None  # re-parsed, never trusted
    assert parse_cache.load_record(tmp_path / "missing.npz") is None


def test_an_entry_of_other_record_fields_is_parsed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    midi = tmp_path / "x.mid"
    write_midi(midi, [60, 62, 64] * 20)
    entry = tmp_path / "entry.npz"
    parse_cache.store_entry(entry, scan_file(midi.read_bytes()))
    assert parse_cache.load_record(entry) is not None
    # a validation field added to the record: the entry written before it is stale
    monkeypatch.setattr(scan, "RECORD_KEYS", (*scan.RECORD_KEYS, "n_new_field"))
    assert parse_cache.load_record(entry) is None
    monkeypatch.undo()
    # and a field removed or renamed
    old = scan_file(midi.read_bytes())
    del old.record["windows_complete"]
    parse_cache.store_entry(entry, old)
    assert parse_cache.load_record(entry) is None


def test_an_entry_with_tracks_is_read_back_under_its_own_policy(tmp_path: Path) -> None:
    midi = tmp_path / "x.mid"
    write_midi(midi, [60, 62, 64] * 20)
    entry = tmp_path / "entry.npz"
    parse_cache.store_entry(entry, scan_file(midi.read_bytes(), policy="voices"))
    assert parse_cache.load_record(entry, "voices") is not None  # a warm run parses nothing
    assert parse_cache.load_record(entry) is None  # never taken for a merged record


def test_chunks_cover_every_job_once() -> None:
    chunks = parse.chunked(list(range(10)), 4)
    assert sorted(x for c in chunks for x in c) == list(range(10)) and len(chunks) == 4
    assert parse.chunked([1], 8) == [[1]]


@pytest.mark.integration
def test_only_new_files_are_parsed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    write_midi(src / "a.mid", [60, 64, 67] * 8)
    write_midi(src / "b.mid", [48, 52] * 8)
    (src / "copy.mid").write_bytes((src / "a.mid").read_bytes())
    (src / "huge.mid").write_bytes(b"MThd" + b"\0" * 5000)
    cache = tmp_path / "cache"

    @flow
    def run():  # parsing fans out over the flow's task runner
        return parse.parse_files(
            ingest_files(src), cache_dir=cache, pitch_low=21, max_bytes=1000, workers=2
        )

    first = run()
    assert (first.n_parsed, first.n_cached) == (2, 0)  # the copy and the huge file: never read
    rows = first.records.set_index("source_path")
    assert rows.loc["a.mid", "n_notes"] == 24 and rows.loc["b.mid", "n_notes"] == 16
    assert np.isnan(rows.loc["huge.mid", "n_notes"])
    write_midi(src / "c.mid", [72] * 8)
    again = run()
    assert (again.n_parsed, again.n_cached) == (1, 2)
    assert again.records.set_index("source_path").loc["c.mid", "n_notes"] == 8
    sha = again.records.set_index("source_path").loc["c.mid", "source_sha256"]
    entry = parse_cache.entry_path(parse_cache.cache_root(cache, 21), sha)
    stale = scan_file((src / "c.mid").read_bytes())
    del stale.record["windows_complete"]  # an entry of the code before that field
    parse_cache.store_entry(entry, stale)
    third = run()
    assert (third.n_parsed, third.n_cached) == (1, 2)  # read again, not served stale
    assert parse_cache.load_record(entry) is not None


def test_a_file_that_cannot_be_read_gets_an_unreadable_record(tmp_path: Path) -> None:
    (tmp_path / "dir.mid").mkdir()  # open() fails with an OSError other than "not found"
    jobs = [
        parse.ParseJob(path=str(tmp_path / "dir.mid"), sha="ab" * 32, entry=str(tmp_path / "e"))
    ]
    (record,) = parse.parse_chunk_files(jobs, pitch_low=21)
    assert record["error"] == "unreadable" and record["error_detail"]
    assert not (tmp_path / "e").exists()  # never cached: it may be readable next time


def test_a_file_gone_from_a_worker_stops_the_run_with_one_line(tmp_path: Path) -> None:
    # a Dask worker without the source folder must not quarantine the whole collection
    jobs = [
        parse.ParseJob(path=str(tmp_path / "gone.mid"), sha="ab" * 32, entry=str(tmp_path / "e"))
    ]
    with pytest.raises(DatasetError, match="not readable on"):
        parse.parse_chunk_files(jobs, pitch_low=21)
