"""tasks/encode.py: cached windows → shards, manifest and dataset.json (docs/dataset.md)."""

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

from musicflow import roll
from musicflow.errors import DatasetError
from musicflow.scan import scan_file
from musicflow.tasks import encode, parse

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
        parse.store_entry(parse.entry_path(parse.cache_root(cache, PITCH_LOW), sha), scan)
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
        [info.shards[0], "manifest.parquet", "dataset.json"]
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
