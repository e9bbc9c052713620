"""Input pipeline: roll-v1 Parquet shards (docs/dataset.md) → tf.data batches.

Public functions:
- ``shard_paths(shards)``: a dataset folder or a list of shard paths → sorted shard paths.
- ``source_shas(shards)``: the distinct source files (sha256) present in the shards.
- ``split_files(shas, heldout_fraction, seed)``: train / held-out split BY SOURCE FILE.
- ``heldout_split(shards)``: THE split of a dataset (``HELDOUT_FRACTION`` of its files, fixed
  ``SPLIT_SEED``), the one every stage uses.
- ``heldout_split_of_files(shas)``: the same split from the files' sha256 (no shards read).
- ``validation_split(train_shas)``: the training files that training itself watches (to keep
  its best epoch), so that the held-out files are never looked at before evaluation.
- ``window_dataset(shards, shas, batch_size=..., seed=...)``: streaming float32 batches
  (B, 96, 96, 1) in [0, 1] for training.
- ``load_windows(shards, shas, limit)``: bool (n, 96, 96) windows for evaluation.

A dataset encoded with K tracks (docs/encoding.md, "Tracks") stores K × 1152 bytes a window;
each function takes ``tracks=K`` and then gives the track axis last in training batches
(B, 96, T, K) and second in ``load_windows`` (n, K, 96, 96).

Why streaming: a collection can be far bigger than memory (16,400 windows are 150 MB as
float32, the pipeline holds 1,152 bytes per window and only a shuffle buffer of them).
Row groups are read one at a time with pyarrow, in a seeded order that changes every epoch,
then mixed by a seeded shuffle buffer; bits are unpacked with TensorFlow ops after batching.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from musicflow.core.errors import DatasetError
from musicflow.core.roll import COLS, PACKED_BYTES, ROWS, unpack_windows

if TYPE_CHECKING:
    import tensorflow as tf

_COLUMNS = ["source_sha256", "roll"]

ShardsLike = str | Path | Sequence[str | Path]

HELDOUT_FRACTION = 0.1
SPLIT_SEED = 0  # fixed, not the model seed: every model of a dataset is judged on the same files
VALIDATION_FRACTION = 0.1
VALIDATION_SEED = 1  # not SPLIT_SEED: which training files validate is drawn independently


def shard_paths(shards: ShardsLike) -> list[Path]:
    """Resolve a dataset folder (its ``part-*.parquet``) or an explicit list of shards."""
    if isinstance(shards, str | Path):
        folder = Path(shards)
        if not folder.is_dir():
            raise DatasetError(f"dataset folder not found: {folder}")
        paths = sorted(folder.glob("part-*.parquet"))
    else:
        paths = sorted(Path(p) for p in shards)
    if not paths:
        raise DatasetError(f"no part-*.parquet shards in {shards}")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"shards not found: {', '.join(missing[:3])}")
    return paths


def source_shas(shards: ShardsLike) -> list[str]:
    """Distinct ``source_sha256`` values over all shards, sorted (reads one column only)."""
    found: set[str] = set()
    for path in shard_paths(shards):
        column = pq.read_table(path, columns=["source_sha256"]).column("source_sha256")
        found.update(pc.unique(column).to_pylist())
    return sorted(found)


def _file_score(sha: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by (sha, seed) alone: adding files never moves others."""
    digest = hashlib.sha256(f"musicflow-split:{seed}:{sha}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_files(
    shas: Iterable[str], heldout_fraction: float = 0.1, seed: int = 0
) -> tuple[set[str], set[str]]:
    """Split source files into (train, held-out) sets, never splitting a file's windows.

    Why by file: windows of one piece share key, motifs and texture; splitting by window would
    leak them into the held-out set and flatter every metric (docs/metrics.md).
    Each file is held out when a hash of (seed, sha) falls below ``heldout_fraction``, so the
    decision for a file never changes when other files are added or removed. With ≥ 2 files at
    least one is held out (the lowest score) and at least one trains (the highest score); only
    these forced corner cases can change when files are added.
    """
    if not 0.0 <= heldout_fraction <= 1.0:
        raise DatasetError(f"heldout_fraction must be in [0, 1], got {heldout_fraction}")
    unique = sorted(set(shas))
    scores = {sha: _file_score(sha, seed) for sha in unique}
    heldout = {sha for sha in unique if scores[sha] < heldout_fraction}
    if len(unique) >= 2:
        if not heldout:
            heldout.add(min(unique, key=scores.__getitem__))
        if len(heldout) == len(unique):
            heldout.discard(max(unique, key=scores.__getitem__))
    return set(unique) - heldout, heldout


def heldout_split(shards: ShardsLike) -> tuple[set[str], set[str]]:
    """The (train, held-out) source files of a dataset's shards: the split training and
    evaluation both use, ``HELDOUT_FRACTION`` of the files with the fixed ``SPLIT_SEED``."""
    return heldout_split_of_files(source_shas(shards))


def heldout_split_of_files(shas: Iterable[str]) -> tuple[set[str], set[str]]:
    """:func:`heldout_split` from the source files themselves (the audit page, which knows
    them from the manifest before any shard exists)."""
    return split_files(shas, HELDOUT_FRACTION, seed=SPLIT_SEED)


def validation_split(train_shas: Iterable[str]) -> tuple[set[str], set[str]]:
    """The (fit, validation) files out of a dataset's training files: ``VALIDATION_FRACTION``
    of them (at least one) validate every epoch, the rest are fitted. A single training file
    cannot spare one: (that file, no validation)."""
    unique = set(train_shas)
    if len(unique) < 2:
        return unique, set()
    return split_files(unique, VALIDATION_FRACTION, seed=VALIDATION_SEED)


def _packed_rows(table: pa.Table, shas: set[str] | None, tracks: int = 1) -> np.ndarray:
    """The ``roll`` column of ``table`` (rows of ``shas`` only) as uint8 (n, 1152 · tracks)."""
    width = PACKED_BYTES * tracks
    if shas is not None:
        mask = pc.is_in(
            table.column("source_sha256"), value_set=pa.array(sorted(shas), pa.string())
        )
        table = table.filter(mask)
    if table.num_rows == 0:
        return np.zeros((0, width), np.uint8)
    roll = table.column("roll").combine_chunks()
    if roll.type != pa.binary(width):
        raise DatasetError(f"roll column has type {roll.type}, expected fixed_size_binary({width})")
    if roll.null_count:
        raise DatasetError("roll column has null values")
    data = np.frombuffer(roll.buffers()[1], dtype=np.uint8)
    start = roll.offset * width
    return data[start : start + len(roll) * width].reshape(-1, width)


def _units(paths: list[Path]) -> list[tuple[Path, int]]:
    """(shard, row group) pairs: the unit of reading, small enough to stream."""
    return [(p, g) for p in paths for g in range(pq.ParquetFile(p).num_row_groups)]


def _iter_packed(
    paths: list[Path], shas: set[str] | None, order_seed: Sequence[int] | None, tracks: int = 1
) -> Iterator[np.ndarray]:
    units = _units(paths)
    if order_seed is not None:
        np.random.default_rng(list(order_seed)).shuffle(units)
    for path, group in units:
        table = pq.ParquetFile(path).read_row_group(group, columns=_COLUMNS)
        rows = _packed_rows(table, shas, tracks)
        if len(rows):
            yield rows


def load_windows(
    shards: ShardsLike,
    shas: Iterable[str] | None,
    limit: int | None = None,
    tracks: int = 1,
    index: np.ndarray | None = None,
) -> np.ndarray:
    """Windows of the files in ``shas`` (all when None) as bool (n, 96, 96), in shard order;
    with ``tracks`` > 1, (n, tracks, 96, 96). ``index``: only these windows of that order,
    picked while still packed (a sample of a big dataset unpacks only itself)."""
    wanted = None if shas is None else set(shas)
    chunks: list[np.ndarray] = []
    count = 0
    for rows in _iter_packed(shard_paths(shards), wanted, None, tracks):
        chunks.append(rows)
        count += len(rows)
        if limit is not None and count >= limit:
            break
    shape = (ROWS, COLS) if tracks == 1 else (tracks, ROWS, COLS)
    if not chunks:
        return np.zeros((0, *shape), bool)
    packed = np.concatenate(chunks)
    if limit is not None:
        packed = packed[:limit]
    if index is not None:
        packed = packed[index]
    return unpack_windows(packed.reshape(-1, PACKED_BYTES)).reshape(-1, *shape)


def load_window_sources(shards: ShardsLike, shas: Iterable[str] | None) -> np.ndarray:
    """The source sha256 of each window ``load_windows(shards, shas)`` returns, same order
    (so evaluation can tell windows of the same file apart)."""
    wanted = None if shas is None else pa.array(sorted(set(shas)), pa.string())
    found: list[np.ndarray] = []
    for path, group in _units(shard_paths(shards)):
        column = pq.ParquetFile(path).read_row_group(group, columns=["source_sha256"]).column(0)
        if wanted is not None:
            column = column.filter(pc.is_in(column, value_set=wanted))
        found.append(column.to_numpy(zero_copy_only=False))
    return np.concatenate(found) if found else np.zeros(0, object)


def unpack_batch(packed: tf.Tensor, tracks: int = 1) -> tf.Tensor:
    """TF op: uint8 (B, 1152 · tracks) → float32 (B, 96, 96, tracks) in {0, 1}, big bit
    order (the tracks, stored one after the other, on the last axis)."""
    import tensorflow as tf

    # in int32: oneDNN has no uint8 kernels on most CPUs and says so on stderr at every train
    shifts = tf.constant([7, 6, 5, 4, 3, 2, 1, 0], tf.int32)
    wide = tf.cast(packed, tf.int32)[..., None]
    bits = tf.bitwise.bitwise_and(tf.bitwise.right_shift(wide, shifts), 1)
    if tracks == 1:
        return tf.cast(tf.reshape(bits, (-1, ROWS, COLS, 1)), tf.float32)
    x = tf.transpose(tf.reshape(bits, (-1, tracks, ROWS, COLS)), (0, 2, 3, 1))
    return tf.cast(x, tf.float32)


def window_dataset(
    shards: ShardsLike,
    shas: Iterable[str] | None,
    *,
    batch_size: int,
    seed: int,
    shuffle: bool = True,
    shuffle_buffer: int = 8192,
    drop_remainder: bool = False,
    tracks: int = 1,
) -> tf.data.Dataset:
    """Stream the windows of files ``shas`` as float32 (B, 96, 96, 1) batches in [0, 1].

    One iteration is one epoch. With ``shuffle`` the row-group order (numpy, seeded by
    ``[seed, epoch]``) and a ``shuffle_buffer`` of windows (``tf.data`` shuffle, seeded) change
    every epoch but repeat exactly for the same seed.
    """
    import tensorflow as tf

    paths = shard_paths(shards)
    wanted = None if shas is None else set(shas)
    epochs = itertools.count()

    def generate() -> Iterator[np.ndarray]:
        epoch = next(epochs)
        yield from _iter_packed(paths, wanted, (seed, epoch) if shuffle else None, tracks)

    ds = tf.data.Dataset.from_generator(
        generate, output_signature=tf.TensorSpec((None, PACKED_BYTES * tracks), tf.uint8)
    ).unbatch()
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(lambda packed: unpack_batch(packed, tracks))
    return ds.prefetch(2)


def _runs(path: Path, shas: set[str] | None, length: int, tracks: int = 1) -> list[np.ndarray]:
    """The runs of consecutive windows of the files in one shard, grouped by length: one uint8
    array (n, L, 1152) per run length L. A stretch of a file's consecutive windows (shards keep
    a file's windows together and in segment order; a skipped empty window ends a stretch) gives
    every run of ``length`` windows in it, or, when shorter than ``length``, one run of all of
    them: a short file still trains, on what it has, and no run is padded with silence."""
    table = pq.read_table(path, columns=["source_sha256", "segment", "roll"])
    if shas is not None:
        wanted = pa.array(sorted(shas), pa.string())
        table = table.filter(pc.is_in(table.column("source_sha256"), value_set=wanted))
    packed = _packed_rows(table, None, tracks)
    if not len(packed):
        return []
    sha = table.column("source_sha256").to_numpy(zero_copy_only=False)
    segment = table.column("segment").to_numpy()
    breaks = np.ones(len(packed), bool)
    breaks[1:] = (sha[1:] != sha[:-1]) | (segment[1:] != segment[:-1] + 1)
    edges = [*np.flatnonzero(breaks), len(packed)]
    starts: dict[int, list[int]] = {}
    for first, end in itertools.pairwise(edges):
        size = min(length, end - first)
        starts.setdefault(size, []).extend(range(first, end - size + 1))
    return [
        packed[np.asarray(at)[:, None] + np.arange(size)[None, :]]
        for size, at in sorted(starts.items())
    ]


def sequence_dataset(
    shards: ShardsLike,
    shas: Iterable[str] | None,
    *,
    windows: int,
    batch_size: int,
    seed: int,
    shuffle_buffer: int = 4096,
    tracks: int = 1,
) -> tf.data.Dataset:
    """Stream runs of ``windows`` consecutive windows of the files ``shas`` as float32
    (B, 96, 96 · L, 1) batches: the windows laid end to end in time, as they are in the
    piece. The training input of the sequence models, which learn to continue a piece across
    window boundaries. L is ``windows``, or fewer for a file (or a stretch of one) shorter than
    that, which gives one run of its own length (``_runs``); a batch holds runs of one length.
    Shards in a seeded order per epoch, runs shuffled per shard and through a seeded buffer.
    """
    import tensorflow as tf

    if windows < 1:
        raise DatasetError(f"windows must be at least 1, got {windows}")
    paths = shard_paths(shards)
    wanted = None if shas is None else set(shas)
    epochs = itertools.count()

    def generate() -> Iterator[np.ndarray]:
        rng = np.random.default_rng([seed, next(epochs)])
        for i in rng.permutation(len(paths)):
            for runs in _runs(paths[i], wanted, windows, tracks):
                yield runs[rng.permutation(len(runs))]

    width = PACKED_BYTES * tracks

    def unpack(packed: tf.Tensor) -> tf.Tensor:
        length = tf.shape(packed)[1]
        x = unpack_batch(tf.reshape(packed, (-1, width)), tracks)  # (B · L, 96, 96, K)
        x = tf.reshape(x, (-1, length, ROWS, COLS, tracks))
        return tf.reshape(tf.transpose(x, (0, 2, 1, 3, 4)), (-1, ROWS, length * COLS, tracks))

    ds = tf.data.Dataset.from_generator(
        generate, output_signature=tf.TensorSpec((None, None, width), tf.uint8)
    ).unbatch()
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.group_by_window(
        key_func=lambda run: tf.cast(tf.shape(run)[0], tf.int64),
        reduce_func=lambda _, runs: runs.batch(batch_size),
        window_size=batch_size,
    )
    return ds.map(unpack).prefetch(2)
