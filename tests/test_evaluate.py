"""The evaluate step: scores in the dataset's own pitch window, windows saved for read-back,
model-provided metrics. A fake model stands in for a trained one (no TensorFlow)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_midi

from musicflow.adapters.store import read_dataset
from musicflow.core import metrics, track_metrics
from musicflow.tasks import evaluate as ev

PITCH_LOW = 30
C_PITCHES = (48, 60, 72)


def tonic(windows: np.ndarray, pitch_low: int) -> int:
    """A metric that depends on absolute pitch: the most common pitch class of the active
    cells (0 = C), reading rows in the window ``pitch_low`` says."""
    per_row = np.asarray(windows, bool).sum(axis=(0, 2))
    pcs = metrics.pitch_class_of_rows(pitch_low)
    return int(np.bincount(pcs, weights=per_row, minlength=12).argmax())


class CModel:
    """Samples only Cs, in the rows the dataset's window puts them (graded, so a calibrated
    threshold keeps some cells)."""

    kind = "gan"

    def __init__(self) -> None:
        self.seeds: list[int] = []

    def sample(self, n: int, seed: int) -> np.ndarray:
        self.seeds.append(seed)
        probs = np.full((n, 96, 96), 0.01, np.float32)
        for pitch in C_PITCHES:
            probs[:, PITCH_LOW + 95 - pitch, :] = np.linspace(0.5, 0.9, 96)
        return probs

    def sample_pieces(self, n: int, n_windows: int, seed: int) -> np.ndarray:
        return self.sample(n * n_windows, seed).reshape(n, n_windows, 96, 96)

    def heldout_c_share(self, heldout: np.ndarray) -> float:
        return 1.0


@pytest.fixture(scope="module")
def c_dataset(tmp_path_factory: pytest.TempPathFactory):
    """Four files of Cs, encoded with ``--pitch-low 30`` (not the default 21)."""
    from musicflow.flows.dataset import encode_flow

    home = tmp_path_factory.mktemp("c")
    src = home / "src"
    src.mkdir()
    for i in range(4):
        write_midi(src / f"c{i}.mid", [C_PITCHES[b % 3] for b in range(24 + 8 * i)])
    out = home / "rolls"
    encode_flow(source=src, dataset="c", out_dir=out, cache_dir=home / "cache", pitch_low=PITCH_LOW)
    return read_dataset(out)


@pytest.mark.integration
def test_evaluation_computes_metrics_in_the_datasets_pitch_window(
    c_dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails when the evaluation reads rows in any window but the dataset's (issue #10: it
    used to assume pitch_low 21, so every C came out as a D#)."""
    seen = {}
    real_evaluate = metrics.evaluate

    def spy(generated, heldout, train_sample, *, pitch_low=metrics.DEFAULT_PITCH_LOW, **kw):
        seen["generated"], seen["heldout"] = tonic(generated, pitch_low), tonic(heldout, pitch_low)
        return real_evaluate(generated, heldout, train_sample, pitch_low=pitch_low, **kw)

    monkeypatch.setattr(metrics, "evaluate", spy)
    assert c_dataset.pitch_low == PITCH_LOW
    evaluation, _ = ev.evaluate_model(CModel(), c_dataset, seed=0, n_generated=16)
    assert seen == {"generated": 0, "heldout": 0}  # C, in the window the data was encoded in
    assert evaluation.pitch_low == PITCH_LOW


@pytest.mark.integration
def test_evaluation_scores_the_seed_plus_one_samples_and_keeps_the_windows(
    c_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = CModel()
    evaluation, windows = ev.evaluate_model(model, c_dataset, seed=4, n_generated=16)
    assert model.seeds == [5]
    assert set(metrics.METRIC_NAMES) <= set(evaluation.scores)
    assert not any(track_metrics.is_track_metric(k) for k in evaluation.scores)  # merged
    assert evaluation.n_generated == len(windows.generated) == 16
    assert evaluation.n_heldout == len(windows.heldout) > 0
    assert windows.latents is None  # a GAN has no encoder
    assert 0.0 < evaluation.target_density < 1.0
    as_json = json.loads(json.dumps(dataclasses.asdict(evaluation)))  # cached: plain data only
    assert as_json["pitch_low"] == PITCH_LOW and as_json["n_generated"] == 16

    path = tmp_path / "windows.npz"
    windows.save(path)
    back = ev.EvaluationWindows.load(path)
    assert np.array_equal(back.generated, windows.generated)
    assert np.array_equal(back.heldout, windows.heldout)
    assert back.latents is None

    # a model-provided metric: declared once, computed for the models that have the method
    monkeypatch.setitem(ev.MODEL_METRICS, "heldout_c_share", "heldout_c_share")
    evaluation, _ = ev.evaluate_model(model, c_dataset, seed=4, n_generated=16)
    assert evaluation.scores["heldout_c_share"] == 1.0


def test_track_scores_read_the_encodings_tracks() -> None:
    """The evaluate hook's track metrics: names, voices and the drum track from the dataset's
    encoding (docs/encoding.md "Tracks"); crossing only for voices, no drum in a pair."""
    from types import SimpleNamespace

    rng = np.random.default_rng(0)

    def windows(n: int, k: int) -> np.ndarray:
        x = np.zeros((n, k, 96, 96), bool)
        for t in range(k):
            x[:, t, 40 + 6 * t, :] = rng.random((n, 96)) < 0.7
        return x

    def dataset(policy: str, drums: list[bool]) -> SimpleNamespace:
        described = [{"name": f"t{i}", "drums": d} for i, d in enumerate(drums)]
        return SimpleNamespace(encoding={"policy": policy, "tracks": described}, pitch_low=21)

    train, sources = windows(12, 3), np.array(["a"] * 6 + ["b"] * 6)
    voices = ev.track_scores(dataset("voices", [False] * 3), windows(6, 3), windows(5, 3),
                             train, sources, 0)  # fmt: skip
    assert "tracks.voice_crossing_rate" in voices and "tracks.0-2.crossing_rate" in voices
    assert "tracks.0-1.tonal_distance" in voices
    band = ev.track_scores(dataset("instruments", [True, False, False]), windows(6, 3),
                           windows(5, 3), train, sources, 0)  # fmt: skip
    assert not any("crossing" in k for k in band)
    assert {k for k in band if k.endswith(".tonal_distance")} == {"tracks.1-2.tonal_distance"}
    assert all(track_metrics.is_track_metric(k) for k in band)
