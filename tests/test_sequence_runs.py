"""The sequence models' training runs (``models/data.sequence_dataset``): runs of consecutive
windows, a short file or stretch as one shorter run, a batch of one run length; and a frame
model trained on such batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from musicflow.models import build_model
from musicflow.models import data as mdata

pytestmark = pytest.mark.integration  # tf.data pipelines and Keras models: TensorFlow


def _write(path: Path, files: dict[str, tuple[list[int], np.ndarray]]) -> None:
    """A shard whose file ``sha`` has windows ``windows`` at segments ``segments``."""
    shas, segments, rolls = [], [], []
    for sha, (segs, windows) in files.items():
        for seg, window in zip(segs, windows, strict=True):
            shas.append(sha)
            segments.append(seg)
            rolls.append(np.packbits(window).tobytes())
    table = pa.table(
        {
            "source_sha256": pa.array(shas, pa.string()),
            "source_path": pa.array([f"{s[:6]}.mid" for s in shas], pa.string()),
            "segment": pa.array(segments, pa.int32()),
            "n_active": pa.array([1] * len(shas), pa.int32()),
            "roll": pa.array(rolls, pa.binary(1152)),
        }
    )
    pq.write_table(table, path, row_group_size=5)


@pytest.fixture(scope="module")
def runs_shard(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """Three files: 6 consecutive windows; 2; and 5 with a gap after the third (0, 1, 2, 4, 5).
    Each window holds one note whose row tells the file and window apart."""
    folder = tmp_path_factory.mktemp("runs")
    layout = {"a" * 64: [0, 1, 2, 3, 4, 5], "b" * 64: [0, 1], "c" * 64: [0, 1, 2, 4, 5]}
    files = {}
    for f, (sha, segs) in enumerate(layout.items()):
        windows = np.zeros((len(segs), 96, 96), bool)
        for k in range(len(segs)):
            windows[k, 10 * f + k, 3 * k : 3 * k + 5] = True
        files[sha] = (segs, windows)
    _write(folder / "part-00000.parquet", files)
    return folder, {sha: w for sha, (_, w) in files.items()}


def _run_key(run: np.ndarray, files: dict[str, np.ndarray]) -> tuple[str, int, int]:
    """(file, first window, length) of a run (96, 96 · L) laid end to end."""
    length = run.shape[1] // 96
    for sha, windows in files.items():
        for k in range(len(windows) - length + 1):
            if np.array_equal(run, np.concatenate(windows[k : k + length], axis=1)):
                return sha[0], k, length
    raise AssertionError("a run that is no stretch of consecutive windows of one file")


def test_runs_of_four_keep_short_files_and_stretches_as_shorter_runs(runs_shard) -> None:
    folder, files = runs_shard
    ds = mdata.sequence_dataset(folder, None, windows=4, batch_size=2, seed=0)
    found = []
    for batch in ds:
        x = batch.numpy()[..., 0] > 0.5
        assert x.shape[1] == 96 and x.shape[2] % 96 == 0  # one run length per batch
        found += [_run_key(run, files) for run in x]
    # a: every run of 4; b: its 2 windows; c: its first stretch (3) and its second (2), whose
    # windows are 3 and 4 of the file's list (segments 4, 5)
    expected = [("a", 0, 4), ("a", 1, 4), ("a", 2, 4), ("b", 0, 2), ("c", 0, 3), ("c", 3, 2)]
    assert sorted(found) == expected


def test_runs_are_reshuffled_each_epoch_but_repeat_for_the_seed(runs_shard) -> None:
    folder, _ = runs_shard

    def order(seed: int) -> list[list[bytes]]:
        ds = mdata.sequence_dataset(folder, None, windows=2, batch_size=3, seed=seed)
        return [[b.numpy().tobytes() for b in ds] for _ in range(2)]

    first, again = order(5), order(5)
    assert first == again
    assert first[0] != first[1]


def test_a_frame_model_trains_on_runs_of_mixed_lengths(runs_shard) -> None:
    folder, _ = runs_shard
    for name, small in (("rnn", {}), ("vae", {"latent_dim": 4, "enc_filters": [8, 8, 8]})):
        model = build_model(name, seed=0, hidden=16, sequence_windows=4, **small)
        ds = mdata.sequence_dataset(folder, None, windows=4, batch_size=2, seed=0)
        metrics = model.fit_epoch(ds)
        assert np.isfinite(metrics["loss"])
