"""The dataset store: a dataset folder's shards, manifest, ``dataset.json`` and version history.

Output (docs/dataset.md) in the dataset folder: ``part-<n>-<content hash>.parquet``,
``manifest.parquet`` and ``dataset.json``. A dataset is published as a whole, with
``dataset.json`` as the single commit point:

1. new shards get new names (their position and a hash of their content), so no committed
   shard is ever replaced; a shard whose content is unchanged keeps its file;
2. the manifest is staged under a hidden name (``.manifest.parquet.<hash>.pending``);
3. ``dataset.json`` (digest, shard list, the manifest's sha256) is written and synced: from
   here on the new dataset is the committed one;
4. the staged manifest is renamed to ``manifest.parquet``, and shards no committed set lists,
   stale temp files and staged manifests are removed.

A run killed before step 3 leaves the previous dataset committed and readable (its
``dataset.json``, its shards, its manifest); one killed after it is completed by the next
writer (:func:`write_dataset` rolls the staged manifest forward first). Readers go through
``dataset.json`` (:func:`read_dataset`, :func:`read_manifest`), never by globbing. Writers of
one folder take an exclusive lock (``.lock``), so two encodes of one dataset run one after the
other. When the inputs are the ones recorded in ``dataset.json`` and its shards are all there,
no shard is written.

Every committed version is recorded in ``history/versions.json`` (:func:`record_version`, at
the commit point, under the folder's lock): its digest, manifest, file changes, outcome counts
and window statistics; ``v<N>.manifest.parquet`` beside it is version N's manifest. A run killed
between the commit and the record is recorded by the next write.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from musicflow import __version__
from musicflow.adapters import atomic
from musicflow.adapters.parse_cache import cache_root, entry_path, load_windows
from musicflow.adapters.workspace import DatasetFolder
from musicflow.core import roll, tracks
from musicflow.core.errors import DatasetError
from musicflow.core.history import file_changes, window_statistics

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


def shard_schema(window_bytes: int) -> pa.Schema:
    """The shard schema for windows of ``window_bytes`` (1152 per track: the track axis of
    the ``voices`` and ``instruments`` policies); SHARD_SCHEMA for one track."""
    return SHARD_SCHEMA.set(
        SHARD_SCHEMA.get_field_index("roll"), pa.field("roll", pa.binary(window_bytes))
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
#: What the manifest of a ``voices`` or ``instruments`` dataset adds (scan.TRACK_RECORD_KEYS).
TRACK_MANIFEST_SCHEMA = pa.schema(
    [
        *MANIFEST_SCHEMA,
        ("n_voices", pa.int32()),
        ("track_names", pa.list_(pa.string())),
        ("track_programs", pa.list_(pa.int32())),
    ]
)


def manifest_table(manifest: pd.DataFrame) -> pa.Table:
    """The manifest's table; with the track columns when its records have them (a
    ``merged`` manifest never does, so its schema is MANIFEST_SCHEMA exactly)."""
    schema = TRACK_MANIFEST_SCHEMA if "track_names" in manifest.columns else MANIFEST_SCHEMA
    frame = manifest[schema.names]
    if schema is TRACK_MANIFEST_SCHEMA:
        lists = {c: [v if isinstance(v, list) else None for v in frame[c]] for c in _LISTS}
        frame = frame.assign(**lists)
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


_LISTS = ("track_names", "track_programs")


def write_manifest(manifest: pd.DataFrame, path: Path) -> None:
    """The manifest alone (``musicflow audit``), atomically, under the folder's lock."""
    table = manifest_table(manifest)
    with folder_lock(Path(path).parent):
        atomic.atomic_write(path, lambda tmp: pq.write_table(table, tmp))


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Exclusive lock of a dataset folder for one writer (``flock`` on ``.lock``)."""
    folder = DatasetFolder(folder)
    folder.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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
    manifest_sha256: str | None = None  # the manifest published with these shards

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
        record = json.loads(DatasetFolder(folder).info.read_text())
        return DatasetInfo(
            name=record["name"],
            folder=Path(folder),
            digest=record["digest"],
            encoding=record["encoding"],
            shards=list(record["shards"]),
            n_windows=record["n_windows"],
            n_files=record["n_files"],
            inputs_key=record.get("inputs_key"),
            manifest_sha256=record.get("manifest_sha256"),
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


def read_manifest(folder: Path) -> pd.DataFrame:
    """The manifest published with the folder's committed dataset (or, for a folder only
    audited, its ``manifest.parquet``); DatasetError when there is none."""
    files = DatasetFolder(folder)
    info = read_dataset_info(folder)
    path = files.manifest
    if info is not None and info.manifest_sha256:
        pending = files.staged_manifest(info.manifest_sha256)
        if pending.is_file():  # committed, not yet renamed
            path = pending
    if not path.is_file():
        raise DatasetError(f"no manifest in {folder}; run 'musicflow audit SOURCE' first")
    return pq.read_table(path).to_pandas()


def file_windows(info: DatasetInfo, source_path: str) -> tuple[np.ndarray, np.ndarray]:
    """One file's stored windows in ``info``'s shards: packed ``(n, 1152 per track)`` and their
    segments, in segment order (to decode it: ``roll.decode_roll`` or ``tracks.decode_tracks``)."""
    width = tracks.window_bytes(info.encoding)
    packed, segments = [], []
    for shard in info.shard_paths:
        table = pq.read_table(
            shard, columns=["segment", "roll"], filters=[("source_path", "==", source_path)]
        )
        segments.append(table.column("segment").to_numpy())
        packed.append(np.frombuffer(b"".join(table.column("roll").to_pylist()), np.uint8))
    order = np.argsort(np.concatenate(segments), kind="stable")
    all_packed = np.concatenate(packed).reshape(-1, width)
    return all_packed[order], np.concatenate(segments)[order].astype(np.int32)


def _window_batches(
    accepted: pd.DataFrame, root: Path
) -> Iterator[tuple[str, str, np.ndarray, np.ndarray]]:
    for path, sha in zip(accepted.source_path, accepted.source_sha256, strict=True):
        packed, segments = load_windows(entry_path(root, sha))
        yield path, sha, packed, segments


def _shard_table(parts: list[tuple[str, str, np.ndarray, np.ndarray]], width: int) -> pa.Table:
    packed = np.concatenate([p[2].reshape(-1, width) for p in parts])
    segments = np.concatenate([p[3] for p in parts]).astype(np.int32)
    shas = np.concatenate([np.full(len(p[3]), p[1], dtype=object) for p in parts])
    paths = np.concatenate([np.full(len(p[3]), p[0], dtype=object) for p in parts])
    n_active = roll.count_active(packed).reshape(len(packed), -1).sum(axis=1, dtype=np.int32)
    rolls = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width),
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
        schema=shard_schema(width),
    )


@contextlib.contextmanager
def _reader_lease(folder: Path) -> Iterator[None]:
    """A shared lock on ``.readers`` while the block runs: a concurrent encode then leaves
    the shards of the set it replaces for a later run to remove (see :func:`_sweep`)."""
    read_dataset(folder)  # one clear line for a folder that holds no dataset
    fd = os.open(DatasetFolder(folder).readers, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def reading(folder: Path) -> Iterator[DatasetInfo]:
    """The committed dataset of ``folder``, read once, its shards kept on disk while the
    block runs. The DatasetInfo is the version the block works on, whatever is committed
    meanwhile: a training run passes it on to evaluation and registration."""
    with _reader_lease(folder):
        yield read_dataset(folder)  # what is committed now that no sweep can run


@contextlib.contextmanager
def holding(version: DatasetInfo) -> Iterator[DatasetInfo]:
    """``version`` (a DatasetInfo read earlier), its shards kept on disk while the block
    runs; DatasetError when a concurrent encode already removed them."""
    with _reader_lease(version.folder):
        missing = [p.name for p in version.shard_paths if not p.is_file()]
        if missing:
            raise DatasetError(
                f"the version {version.digest[:16]} of dataset '{version.name}' was replaced "
                f"and its shards removed ({missing[0]} is gone); run the command again"
            )
        yield version


def _roll_forward(out_dir: Path) -> None:
    """Finish a publication a killed run committed (``dataset.json`` written) but did not
    complete: rename its staged manifest into place."""
    info = read_dataset_info(out_dir)
    if info is None or not info.manifest_sha256:
        return
    files = DatasetFolder(out_dir)
    pending = files.staged_manifest(info.manifest_sha256)
    if pending.is_file():
        os.replace(pending, files.manifest)


def _sweep(out_dir: Path, keep: list[str]) -> None:
    """Remove what no committed dataset uses: shards not in ``keep`` (unless a reader still
    holds the previous set, see :func:`reading`), staged manifests and the temp files of
    writers that are gone."""
    fd = os.open(DatasetFolder(out_dir).readers, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # a reader streams the previous set: its shards stay until the next run
        else:
            for stale in out_dir.glob("part-*.parquet"):
                if stale.name not in keep:
                    stale.unlink(missing_ok=True)
    finally:
        os.close(fd)
    for pending in DatasetFolder(out_dir).staged_manifests():
        pending.unlink(missing_ok=True)
    atomic.sweep(out_dir)


def _shard_name(index: int, content: Any) -> str:
    return f"part-{index:05d}-{content.hexdigest()[:16]}.parquet"


def write_dataset(
    manifest: pd.DataFrame,
    *,
    name: str,
    out_dir: Path,
    cache_dir: Path,
    pitch_low: int,
    policy: str = tracks.MERGED,
) -> DatasetInfo:
    """Publish shards for the ``accepted`` rows of ``manifest`` (windows come from the cache),
    the manifest and ``dataset.json``, as one set (see the module docstring).

    ``policy``: the track policy the files were parsed with; for ``voices`` and
    ``instruments`` the encoding names the dataset's tracks (:func:`tracks.describe`).

    Shards stream one at a time (memory is bounded by ROWS_PER_SHARD, not by the corpus); the
    digest hashes the encoding and every window with its source and segment, in shard order.
    """
    out_dir = Path(out_dir)
    with folder_lock(out_dir):
        _roll_forward(out_dir)
        previous = read_dataset_info(out_dir)
        atomic.sweep(out_dir)
        info = _publish(manifest, name, out_dir, cache_dir, pitch_low, policy, previous)
        _sweep(out_dir, info.shards)
        record_version(out_dir, info, manifest)  # the dataset's history (below)
    return info


def _publish(
    manifest: pd.DataFrame,
    name: str,
    out_dir: Path,
    cache_dir: Path,
    pitch_low: int,
    policy: str,
    previous: DatasetInfo | None,
) -> DatasetInfo:
    accepted = manifest[manifest.status == "accepted"].sort_values("source_path")
    encoding = _encoding(accepted, pitch_low, policy)
    key = inputs_key(accepted, encoding)
    sink = pa.BufferOutputStream()
    pq.write_table(manifest_table(manifest), sink)
    manifest_bytes = sink.getvalue().to_pybytes()
    manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
    files = DatasetFolder(out_dir)
    pending = files.staged_manifest(manifest_sha)
    written: list[Path] = []  # shard files this call created
    try:
        atomic.write_bytes(pending, manifest_bytes)
        atomic.crash_point("encode:manifest-staged")
        info = _stage(
            accepted, name, out_dir, cache_dir, pitch_low, encoding, key, previous, written
        )
        info.manifest_sha256 = manifest_sha
    except BaseException:
        # nothing was committed: leave the folder as the committed dataset describes it
        committed = set(previous.shards) if previous is not None else set()
        for path in [pending, *written]:
            if path.name not in committed:
                path.unlink(missing_ok=True)
        raise
    if info.written or previous is None or previous.manifest_sha256 != manifest_sha:
        record = info.to_json() | {
            "inputs_key": key,
            "manifest_sha256": manifest_sha,
            "musicflow_version": __version__,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        atomic.write_text(files.info, json.dumps(record, indent=2), fsync=True)
        atomic.crash_point("encode:committed")
    os.replace(pending, files.manifest)
    return info


def _encoding(accepted: pd.DataFrame, pitch_low: int, policy: str) -> dict:
    """roll-v1's parameters, with the track axis for ``voices`` and ``instruments``."""
    if tracks.check_policy(policy) == tracks.MERGED:
        return roll.encoding_params(pitch_low)
    files = list(zip(accepted.track_names, accepted.track_programs, strict=True))
    n_voices = tracks.dataset_voices(accepted.n_voices.tolist()) if policy == tracks.VOICES else 0
    described = tracks.describe(policy, [(list(n), list(p)) for n, p in files], n_voices)
    return tracks.encoding_params(pitch_low, policy, described)


def _stage(
    accepted: pd.DataFrame,
    name: str,
    out_dir: Path,
    cache_dir: Path,
    pitch_low: int,
    encoding: dict,
    key: str,
    previous: DatasetInfo | None,
    written: list[Path],
) -> DatasetInfo:
    """The shards of the new set: the previous ones when its inputs are unchanged, else new
    ones (their files appended to ``written``)."""
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
    info = _write_shards(accepted, name, out_dir, cache_dir, pitch_low, encoding, key, written)
    atomic.crash_point("encode:shards-written")
    return info


def _write_shards(
    accepted: pd.DataFrame,
    name: str,
    out_dir: Path,
    cache_dir: Path,
    pitch_low: int,
    encoding: dict,
    key: str,
    written: list[Path],
) -> DatasetInfo:
    """Write the shards of a new dataset under content-addressed names (an unchanged shard
    keeps its file); nothing committed refers to them until ``dataset.json`` does. Files
    created here are appended to ``written``."""
    root = cache_root(cache_dir, pitch_low, tracks.policy_of(encoding))
    width = tracks.window_bytes(encoding)
    digest = hashlib.sha256(json.dumps(encoding, sort_keys=True).encode())
    metadata = {b"musicflow.encoding": json.dumps(encoding).encode()}
    shards: list[str] = []
    pending: list[tuple[str, str, np.ndarray, np.ndarray]] = []
    content = hashlib.sha256(json.dumps(encoding, sort_keys=True).encode())
    n_pending = n_windows = 0

    def flush() -> None:
        nonlocal pending, n_pending, content
        table = _shard_table(pending, width).replace_schema_metadata(metadata)
        shard = _shard_name(len(shards), content)
        path = out_dir / shard
        if not _complete_shard(path, table.num_rows):
            written.append(path)
            atomic.atomic_write(path, lambda tmp: pq.write_table(table, tmp, row_group_size=2048))
        shards.append(shard)
        pending, n_pending = [], 0
        content = hashlib.sha256(json.dumps(encoding, sort_keys=True).encode())

    for path, sha, packed, segments in _window_batches(accepted, root):
        for segment, window in zip(segments, packed, strict=True):
            for h in (digest, content):
                h.update(bytes.fromhex(sha))
                h.update(int(segment).to_bytes(4, "little"))
                h.update(window.tobytes())
        content.update(path.encode())
        pending.append((path, sha, packed, segments))
        n_pending += len(segments)
        n_windows += len(segments)
        if n_pending >= ROWS_PER_SHARD:
            flush()
    if pending:
        flush()
    return DatasetInfo(
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


def _complete_shard(path: Path, n_rows: int) -> bool:
    """True when ``path`` is a readable shard of ``n_rows`` rows (so it need not be rewritten:
    its name says its content)."""
    try:
        return pq.read_metadata(path).num_rows == n_rows
    except (OSError, pa.ArrowException):
        return False


# The dataset's history: one record per committed version.

CHANGED_SHOWN = 20  # paths listed per kind of change in a record; the counts are exact
BATCH_ROWS = 2048  # windows unpacked at a time for the statistics (~19 MB as bool)


def read_history(folder: Path) -> list[dict]:
    """The dataset's version records, oldest first ([] before its first commit)."""
    path = DatasetFolder(folder).versions
    if not path.is_file():
        return []
    try:
        records = json.loads(path.read_text())
        if not isinstance(records, list):
            raise ValueError("not a list")
    except (OSError, ValueError) as err:
        raise DatasetError(f"the dataset history {path} is unreadable: {err}") from err
    return records


def _windows(shards: list[Path], n_tracks: int = 1) -> Iterator[np.ndarray]:
    """Every window of the shards; a multi-track window as its tracks laid over each other."""
    for shard in shards:
        for batch in pq.ParquetFile(shard).iter_batches(BATCH_ROWS, columns=["roll"]):
            packed = np.frombuffer(b"".join(batch.column(0).to_pylist()), dtype=np.uint8)
            windows = roll.unpack_windows(packed.reshape(-1, roll.PACKED_BYTES))
            if n_tracks > 1:
                windows = windows.reshape(-1, n_tracks, roll.ROWS, roll.COLS).any(axis=1)
            yield windows


def _files(manifest: pd.DataFrame) -> dict[str, str]:
    return dict(zip(manifest.source_path, manifest.source_sha256, strict=True))


def record_version(folder: Path, info, manifest: pd.DataFrame) -> dict | None:
    """Record the committed version ``info`` (a :class:`DatasetInfo`, its manifest
    ``manifest``) unless it is the last one recorded; returns the new record, or None."""
    files = DatasetFolder(folder)
    atomic.sweep(files.history)  # the temp files of a history write that was killed
    records = read_history(folder)
    if records and (records[-1]["digest"], records[-1].get("manifest_sha256")) == (
        info.digest,
        info.manifest_sha256,
    ):
        return None
    number = records[-1]["version"] + 1 if records else 1
    before: dict[str, str] = {}
    if records:
        previous = files.version_manifest(records[-1]["version"])
        if previous.is_file():
            before = _files(
                pq.read_table(previous, columns=["source_path", "source_sha256"]).to_pandas()
            )
    changes = file_changes(before, _files(manifest))
    quarantined = manifest[manifest.status == "quarantined"]
    accepted = manifest[manifest.status == "accepted"]
    try:
        committed_at = json.loads(files.info.read_text()).get("created_at")
    except (OSError, ValueError):
        committed_at = None
    # the newest validation: GX names each page's folder by its run time (and rewrites every
    # page on each build, so file times say nothing)
    docs = sorted((files.data_docs / "validations").glob("**/*.html"), key=lambda p: p.parent.name)
    record = {
        "version": number,
        "digest": info.digest,
        "manifest_sha256": info.manifest_sha256,
        "committed_at": committed_at,
        "n_files_in": len(manifest),
        "n_files": info.n_files,
        "n_windows": info.n_windows,
        "changes": {k: len(v) for k, v in changes.items()},
        "changed_files": {k: v[:CHANGED_SHOWN] for k, v in changes.items()},
        "status": dict(Counter(manifest.status)),
        "quarantine_reasons": dict(Counter(quarantined.reason)),
        "warnings": dict(Counter(w for ws in accepted.warnings for w in ws)),
        "statistics": window_statistics(
            _windows(info.shard_paths, tracks.window_bytes(info.encoding) // roll.PACKED_BYTES),
            pitch_low=info.pitch_low,
        ),
        "validation_page": docs[-1].relative_to(files.root).as_posix() if docs else None,
    }
    table = manifest_table(manifest)
    atomic.atomic_write(files.version_manifest(number), lambda tmp: pq.write_table(table, tmp))
    atomic.write_text(files.versions, json.dumps([*records, record], indent=1), fsync=True)
    return record
