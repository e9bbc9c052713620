"""musicflow/adapters/store.py: cached windows → shards, manifest and dataset.json
(docs/dataset.md)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import write_midi

from musicflow.adapters import parse_cache
from musicflow.adapters import store as encode
from musicflow.adapters.store import read_history
from musicflow.core import roll
from musicflow.core.errors import DatasetError
from musicflow.core.scan import scan_file

PITCH_LOW = 30


@pytest.fixture
def cached(tmp_path: Path) -> tuple[pd.DataFrame, Path]:
    """Two accepted files and a quarantined one, their windows in the parse cache."""
    cache = tmp_path / "cache"
    rows = []
    for name, pitches, status in (
        ("b.mid", [60, 64, 67] * 40, "accepted"),
        ("a.mid", [50, 55] * 10, "accepted"),
        ("bad.mid", [], "quarantined"),
    ):
        path = tmp_path / name
        write_midi(path, pitches)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        scan = scan_file(path.read_bytes(), pitch_low=PITCH_LOW)
        parse_cache.store_entry(
            parse_cache.entry_path(parse_cache.cache_root(cache, PITCH_LOW), sha), scan
        )
        rows.append(
            {
                "source_path": name,
                "source_sha256": sha,
                "status": status,
                "reason": None if status == "accepted" else "no_notes",
                "warnings": [],
                "midi_type": 1,
                "ticks_per_beat": 96,
                "n_tracks": 1,
                "n_notes": len(pitches),
                "pitch_min": min(pitches, default=None),
                "pitch_max": max(pitches, default=None),
                "n_segments": len(scan.segments),
            }
        )
    return pd.DataFrame(rows), cache


def _write(manifest: pd.DataFrame, cache: Path, out: Path) -> encode.DatasetInfo:
    return encode.write_dataset(
        manifest, name="d", out_dir=out, cache_dir=cache, pitch_low=PITCH_LOW
    )


def test_shards_follow_the_schema_and_record_the_pitch_window(cached, tmp_path: Path) -> None:
    manifest, cache = cached
    out = tmp_path / "out"
    info = _write(manifest, cache, out)
    assert info.written and info.n_files == 2 and len(info.shards) == 1
    assert re.fullmatch(r"part-00000-[0-9a-f]{16}\.parquet", info.shards[0])
    table = pq.read_table(out / info.shards[0])
    assert table.schema.remove_metadata() == encode.SHARD_SCHEMA
    meta = json.loads(table.schema.metadata[b"musicflow.encoding"])
    assert meta == roll.encoding_params(PITCH_LOW) and meta["pitch_low"] == PITCH_LOW
    assert table.column("source_path").to_pylist()[0] == "a.mid"  # sorted by path
    packed = np.stack([np.frombuffer(b, np.uint8) for b in table.column("roll").to_pylist()])
    assert table.column("n_active").to_pylist() == roll.count_active(packed).tolist()
    assert info.n_windows == table.num_rows
    assert pq.read_table(out / "manifest.parquet").num_rows == 3

    back = encode.read_dataset(out)
    assert (back.digest, back.shards, back.pitch_low) == (info.digest, info.shards, PITCH_LOW)
    assert back.shard_paths == [out / info.shards[0]]
    assert (
        back.manifest_sha256 == hashlib.sha256((out / "manifest.parquet").read_bytes()).hexdigest()
    )
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        [info.shards[0], "manifest.parquet", "dataset.json", "history"]
    )


def test_an_up_to_date_folder_is_not_rewritten(cached, tmp_path: Path) -> None:
    manifest, cache = cached
    out = tmp_path / "out"
    first = _write(manifest, cache, out)
    stamp = (out / first.shards[0]).stat().st_mtime_ns
    again = _write(manifest, cache, out)
    assert not again.written and again.digest == first.digest
    assert (out / first.shards[0]).stat().st_mtime_ns == stamp
    fewer = manifest[manifest.source_path != "b.mid"]
    third = _write(fewer, cache, out)
    assert third.written and third.digest != first.digest and third.n_files == 1


def test_no_dataset_is_one_clear_error(tmp_path: Path) -> None:
    assert encode.read_dataset_info(tmp_path) is None
    (tmp_path / "dataset.json").write_text("{not json")
    assert encode.read_dataset_info(tmp_path) is None
    with pytest.raises(DatasetError, match="no encoded dataset"):
        encode.read_dataset(tmp_path)


def _write_in_a_process(crash_at: str, manifest: pd.DataFrame, cache: Path, out: Path) -> int:
    """``write_dataset`` in a child process that SIGKILLs itself at ``crash_at``."""
    import os
    import subprocess
    import sys

    manifest_path = out.parent / "input-manifest.parquet"
    manifest.to_parquet(manifest_path)
    code = (
        "import sys, pandas as pd; from pathlib import Path\n"
        "from musicflow.adapters import store\n"
        "store.write_dataset(pd.read_parquet(sys.argv[1]), name='d', out_dir=Path(sys.argv[2]),"
        " cache_dir=Path(sys.argv[3]), pitch_low=int(sys.argv[4]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(manifest_path), str(out), str(cache), str(PITCH_LOW)],
        env=dict(os.environ, MUSICFLOW_CRASH_AT=crash_at),
        timeout=300,
    )
    return done.returncode


@pytest.mark.parametrize(
    "crash_at",
    ["encode:manifest-staged", "tmp:part-*", "encode:shards-written", "tmp:dataset.json"],
)
def test_a_kill_before_the_commit_leaves_the_previous_dataset_whole(
    cached, tmp_path: Path, crash_at: str
) -> None:
    manifest, cache = cached
    out = tmp_path / "out"
    fewer = manifest[manifest.source_path != "b.mid"]
    first = _write(fewer, cache, out)
    assert _write_in_a_process(crash_at, manifest, cache, out) == -9  # a real SIGKILL
    back = encode.read_dataset(out)
    assert (back.digest, back.shards) == (first.digest, first.shards)
    assert encode.read_manifest(out).source_path.tolist() == fewer.source_path.tolist()
    tables = pq.read_table([out / s for s in back.shards])
    assert set(tables.column("source_path").to_pylist()) == {"a.mid"}

    again = _write(manifest, cache, out)  # the next run completes and sweeps
    assert again.written and again.n_files == 2
    names = sorted(p.name for p in out.iterdir())
    names_ = [".lock", ".readers", "dataset.json", "history", "manifest.parquet", *again.shards]
    assert names == sorted(names_)


def test_a_kill_after_the_commit_is_completed_by_the_next_run(cached, tmp_path: Path) -> None:
    manifest, cache = cached
    out = tmp_path / "out"
    first = _write(manifest[manifest.source_path != "b.mid"], cache, out)
    assert _write_in_a_process("encode:committed", manifest, cache, out) == -9
    back = encode.read_dataset(out)
    assert back.digest != first.digest and back.n_files == 2  # committed: the new set
    assert len(encode.read_manifest(out)) == 3  # its manifest, although not renamed yet
    assert list(out.glob(".manifest.parquet.*.pending"))
    again = _write(manifest, cache, out)
    assert again.digest == back.digest and not list(out.glob(".*.pending"))
    assert hashlib.sha256((out / "manifest.parquet").read_bytes()).hexdigest() == (
        again.manifest_sha256
    )
    # the version the killed run committed is in the history, recorded by the next run
    records = read_history(out)
    assert [r["digest"] for r in records] == [first.digest, back.digest]
    assert records[1]["changes"] == {"added": 1, "removed": 0, "changed": 0}


def test_a_failing_write_removes_what_it_wrote(
    cached, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    manifest, cache = cached
    out = tmp_path / "out"
    first = _write(manifest[manifest.source_path != "b.mid"], cache, out)
    before = sorted(p.name for p in out.iterdir())
    real = encode.atomic.crash_point

    def disk_full(name: str) -> None:
        real(name)
        if name == "encode:shards-written":
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(encode.atomic, "crash_point", disk_full)
    with pytest.raises(OSError, match="No space"):
        _write(manifest, cache, out)
    assert sorted(p.name for p in out.iterdir()) == before
    assert encode.read_dataset(out).digest == first.digest


def test_readers_keep_their_shards_while_a_new_set_is_published(cached, tmp_path: Path) -> None:
    manifest, cache = cached
    out = tmp_path / "out"
    first = _write(manifest[manifest.source_path != "b.mid"], cache, out)
    with encode.reading(out) as info:
        assert info.shards == first.shards
        second = _write(manifest, cache, out)
        assert all((out / s).is_file() for s in first.shards)  # still there for the reader
    _write(manifest, cache, out)  # the next writer removes them
    assert sorted(p.name for p in out.glob("part-*.parquet")) == sorted(second.shards)
