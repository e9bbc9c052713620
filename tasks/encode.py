"""Encode: accepted files' cached windows → Parquet shards, manifest and dataset digest.

Output (docs/dataset.md) in the dataset folder: ``part-*.parquet``, ``manifest.parquet`` and
``dataset.json``. Every file is written to a temp name and renamed, and ``dataset.json`` (the
digest and the list of shards that training reads) is written last, so a killed run leaves the
previous complete dataset in place and the next run repairs the folder. When the inputs are the
ones recorded in ``dataset.json`` and its shards are all there, no shard is written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NONE

from musicflow import __version__, atomic, roll
from musicflow.errors import DatasetError
from musicflow.tasks.parse import cache_root, entry_path, load_windows

ROWS_PER_SHARD = 8192  # ~9.4 MB of packed rolls per shard: few files, bounded memory

SHARD_SCHEMA = pa.schema(
    [
        ("source_sha256", pa.string()),
        ("source_path", pa.string()),
        ("segment", pa.int32()),
        ("n_active", pa.int32()),
        ("roll", pa.binary(roll.PACKED_BYTES)),
    ]
)
MANIFEST_SCHEMA = pa.schema(
    [
        ("source_path", pa.string()),
        ("source_sha256", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("warnings", pa.list_(pa.string())),
        ("midi_type", pa.int32()),
        ("ticks_per_beat", pa.int32()),
        ("n_tracks", pa.int32()),
        ("n_notes", pa.int32()),
        ("pitch_min", pa.int32()),
        ("pitch_max", pa.int32()),
        ("n_segments", pa.int32()),
    ]
)


def write_manifest(manifest: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(
        manifest[MANIFEST_SCHEMA.names], schema=MANIFEST_SCHEMA, preserve_index=False
    )
    atomic.atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def inputs_key(accepted: pd.DataFrame, encoding: dict) -> str:
    """What the shards depend on: the encoding, the encoder version and the accepted files."""
    payload = {
        "encoding": encoding,
        "encoder_version": roll.ENCODER_VERSION,
        "files": [
            [p, s] for p, s in zip(accepted.source_path, accepted.source_sha256, strict=True)
        ],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass
class DatasetInfo:
    """What ``dataset.json`` records; training keys its cache and lineage on ``digest``, and
    every later stage reads its pitch window from ``encoding``."""

    name: str
    folder: Path
    digest: str
    encoding: dict
    shards: list[str]
    n_windows: int
    n_files: int
    written: bool = False  # False when the folder was already up to date (or only read)
    inputs_key: str | None = None

    @property
    def pitch_low(self) -> int:
        """The lowest pitch of the window the shards were encoded in (row 95)."""
        return int(self.encoding["pitch_low"])

    @property
    def shard_paths(self) -> list[Path]:
        return [Path(self.folder) / s for s in self.shards]

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "digest": self.digest,
            "encoding": self.encoding,
            "encoder_version": roll.ENCODER_VERSION,
            "shards": self.shards,
            "n_windows": self.n_windows,
            "n_files": self.n_files,
        }


def read_dataset_info(folder: Path) -> DatasetInfo | None:
    """``folder``'s ``dataset.json``, or None when it is missing or unreadable."""
    try:
        record = json.loads((Path(folder) / "dataset.json").read_text())
        return DatasetInfo(
            name=record["name"],
            folder=Path(folder),
            digest=record["digest"],
            encoding=record["encoding"],
            shards=list(record["shards"]),
            n_windows=record["n_windows"],
            n_files=record["n_files"],
            inputs_key=record.get("inputs_key"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_dataset(folder: Path) -> DatasetInfo:
    """The encoded dataset in ``folder``; DatasetError (one clear line) when there is none."""
    info = read_dataset_info(folder)
    if info is None:
        raise DatasetError(
            f"no encoded dataset in {folder}; run 'musicflow encode SOURCE --dataset NAME' first"
        )
    return info


def _window_batches(
    accepted: pd.DataFrame, root: Path
) -> Iterator[tuple[str, str, np.ndarray, np.ndarray]]:
    for path, sha in zip(accepted.source_path, accepted.source_sha256, strict=True):
        packed, segments = load_windows(entry_path(root, sha))
        yield path, sha, packed, segments


def _shard_table(parts: list[tuple[str, str, np.ndarray, np.ndarray]]) -> pa.Table:
    packed = np.concatenate([p[2] for p in parts])
    segments = np.concatenate([p[3] for p in parts]).astype(np.int32)
    shas = np.concatenate([np.full(len(p[3]), p[1], dtype=object) for p in parts])
    paths = np.concatenate([np.full(len(p[3]), p[0], dtype=object) for p in parts])
    n_active = roll.count_active(packed)
    rolls = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(roll.PACKED_BYTES),
        len(packed),
        [None, pa.py_buffer(np.ascontiguousarray(packed))],
    )
    return pa.Table.from_arrays(
        [
            pa.array(shas, pa.string()),
            pa.array(paths, pa.string()),
            pa.array(segments),
            pa.array(n_active),
            rolls,
        ],
        schema=SHARD_SCHEMA,
    )


def write_dataset(
    manifest: pd.DataFrame, *, name: str, out_dir: Path, cache_dir: Path, pitch_low: int
) -> DatasetInfo:
    """Write shards for the ``accepted`` rows of ``manifest`` (windows come from the cache).

    Shards stream one at a time (memory is bounded by ROWS_PER_SHARD, not by the corpus); the
    digest hashes the encoding and every window with its source and segment, in shard order.
    """
    out_dir = Path(out_dir)
    encoding = roll.encoding_params(pitch_low)
    accepted = manifest[manifest.status == "accepted"].sort_values("source_path")
    key = inputs_key(accepted, encoding)
    write_manifest(manifest, out_dir / "manifest.parquet")
    previous = read_dataset_info(out_dir)
    if (
        previous is not None
        and previous.inputs_key == key
        and all(p.is_file() for p in previous.shard_paths)
    ):
        return DatasetInfo(
            name=name,
            folder=out_dir,
            digest=previous.digest,
            encoding=encoding,
            shards=previous.shards,
            n_windows=previous.n_windows,
            n_files=previous.n_files,
            written=False,
            inputs_key=key,
        )

    root = cache_root(cache_dir, pitch_low)
    digest = hashlib.sha256(json.dumps(encoding, sort_keys=True).encode())
    metadata = {b"musicflow.encoding": json.dumps(encoding).encode()}
    shards: list[str] = []
    pending: list[tuple[str, str, np.ndarray, np.ndarray]] = []
    n_pending = n_windows = 0

    def flush() -> None:
        nonlocal pending, n_pending
        table = _shard_table(pending).replace_schema_metadata(metadata)
        shard = f"part-{len(shards):05d}.parquet"
        atomic.atomic_write(
            out_dir / shard, lambda tmp: pq.write_table(table, tmp, row_group_size=2048)
        )
        shards.append(shard)
        pending, n_pending = [], 0

    for path, sha, packed, segments in _window_batches(accepted, root):
        for segment, window in zip(segments, packed, strict=True):
            digest.update(bytes.fromhex(sha))
            digest.update(int(segment).to_bytes(4, "little"))
            digest.update(window.tobytes())
        pending.append((path, sha, packed, segments))
        n_pending += len(segments)
        n_windows += len(segments)
        if n_pending >= ROWS_PER_SHARD:
            flush()
    if pending:
        flush()
    for stale in out_dir.glob("part-*.parquet"):
        if stale.name not in shards:
            stale.unlink()

    info = DatasetInfo(
        name=name,
        folder=out_dir,
        digest=digest.hexdigest(),
        encoding=encoding,
        shards=shards,
        n_windows=n_windows,
        n_files=len(accepted),
        written=True,
        inputs_key=key,
    )
    record = info.to_json() | {
        "inputs_key": key,
        "musicflow_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    atomic.write_text(out_dir / "dataset.json", json.dumps(record, indent=2))
    return info


write_shards = task(name="write-shards", cache_policy=NONE, persist_result=False)(write_dataset)
