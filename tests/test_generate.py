"""tasks/generate.py: pieces from a model's ``sample_pieces``, binarised and written as MIDI in
the dataset's pitch window; the pyfunc wrapper's ``predict``. A fake model (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musicflow import roll
from musicflow.midi import scan_midi
from musicflow.tasks import generate as gen

PITCH_LOW = 30


class FakeModel:
    kind = "gan"

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        probs = np.zeros((n, 96, 96), np.float32)
        for i in range(n):
            for row in rng.choice(96, size=3, replace=False):
                start = int(rng.integers(0, 80))
                probs[i, row, start : start + 8] = 0.9
        return probs

    def sample_pieces(self, n: int, n_windows: int, seed: int) -> np.ndarray:
        self.calls.append((n, n_windows, seed))
        return np.stack([self.sample(n_windows, seed * 100_003 + i) for i in range(n)])


def _sampler() -> gen.RollSampler:
    sampler = gen.RollSampler()
    sampler.model = FakeModel()
    sampler.sampling = {"threshold": 0.5, "encoding": roll.encoding_params(PITCH_LOW)}
    return sampler


def test_pieces_come_from_sample_pieces_and_decode_in_the_datasets_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sampler = _sampler()
    monkeypatch.setattr(gen, "load_sampler", lambda uri: sampler)
    result = gen.generate_midi(
        "models:/d-gan/1", n=2, out_dir=tmp_path, seed=3, audio_preview=False
    )
    assert sampler.model.calls == [(2, 8, 3)]
    assert [p.name for p in result.midi_files] == ["sample-001.mid", "sample-002.mid"]
    for path, song in zip(result.midi_files, result.songs, strict=True):
        assert song.shape == (96, 8 * 96) and song.any()
        scan = scan_midi(path.read_bytes())
        again, _ = roll.song_matrix(scan.notes, scan.ticks_per_beat, pitch_low=PITCH_LOW)
        assert np.array_equal(again, song[:, : again.shape[1]])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "sample-001.mid",
        "sample-001.musicxml",
        "sample-002.mid",
        "sample-002.musicxml",
    ]
    assert result.audio_files == [] and result.audio_note is None


def test_each_piece_gets_an_audio_preview_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gen, "load_sampler", lambda uri: _sampler())
    result = gen.generate_midi("models:/d-gan/1", n=2, out_dir=tmp_path, seed=3)
    assert [p.name for p in result.audio_files] == ["sample-001.ogg", "sample-002.ogg"]
    assert all(p.stat().st_size > 1000 for p in result.audio_files)


def test_a_bad_soundfont_skips_previews_but_keeps_the_midi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gen, "load_sampler", lambda uri: _sampler())
    result = gen.generate_midi(
        "models:/d-gan/1", n=2, out_dir=tmp_path, soundfont=str(tmp_path / "none.sf2")
    )
    assert len(result.midi_files) == 2 and result.audio_files == []
    assert "soundfont not found" in result.audio_note


def test_predict_gives_binary_windows() -> None:
    out = _sampler().predict(None, pd.DataFrame({"n": [3], "seed": [1]}))
    assert out.shape == (3, 96 * 96) and out.dtype == np.uint8
    assert set(np.unique(out)) <= {0, 1} and out.any()


def test_each_piece_gets_its_score_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import xml.etree.ElementTree as ET

    monkeypatch.setattr(gen, "load_sampler", lambda uri: _sampler())
    result = gen.generate_midi("models:/d-gan/1", n=1, out_dir=tmp_path, audio_preview=False)
    xml = result.midi_files[0].with_suffix(".musicxml").read_text()
    root = ET.fromstring(xml.split("\n", 2)[2])
    assert len(root.findall(".//measure")) == 16  # the whole piece, silent bars included
    onsets = [
        n
        for n in root.iter("note")
        if n.find("pitch") is not None and n.find("tie[@type='stop']") is None
    ]
    notes = roll.decode_roll(result.songs[0], pitch_low=PITCH_LOW)
    assert len(onsets) == len(notes)  # one onset per note; the rest are tied on
