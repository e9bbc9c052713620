"""tasks/generate.py: pieces from a model's ``sample_pieces``, binarised and written as MIDI in
the dataset's pitch window; the pyfunc wrapper's ``predict``. A fake model (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musicflow.core import roll
from musicflow.core.midi import scan_midi
from musicflow.tasks import generate as gen

PITCH_LOW = 30


class FakeModel:
    name = kind = "gan"
    config: dict = {}  # noqa: RUF012 - a GAN samples without a temperature

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
        "sample-001.json",
        "sample-001.mid",
        "sample-001.musicxml",
        "sample-002.json",
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


def _digests(folder: Path) -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_a_second_generate_changes_no_existing_file(tmp_path: Path) -> None:
    first = gen.generate_midi(
        "models:/d-gan/1", n=2, out_dir=tmp_path, seed=3, sampler=_sampler(), audio_preview=False
    )
    (tmp_path / "sample-007.ogg").write_bytes(b"a user's file")  # numbers go past any file
    before = _digests(tmp_path)
    second = gen.generate_midi(
        "models:/d-gan/1", n=2, out_dir=tmp_path, seed=3, sampler=_sampler(), audio_preview=False
    )
    after = _digests(tmp_path)
    assert {k: after[k] for k in before} == before
    assert [p.name for p in first.midi_files] == ["sample-001.mid", "sample-002.mid"]
    assert [p.name for p in second.midi_files] == ["sample-008.mid", "sample-009.mid"]
    assert sorted(set(after) - set(before)) == [
        "sample-008.json",
        "sample-008.mid",
        "sample-008.musicxml",
        "sample-009.json",
        "sample-009.mid",
        "sample-009.musicxml",
    ]


def test_a_name_taken_meanwhile_is_skipped_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # another generate writes sample-001.mid between this one's look and its write
    monkeypatch.setattr(gen, "next_number", lambda folder: 1)
    (tmp_path / "sample-001.mid").write_bytes(b"theirs")
    result = gen.generate_midi(
        "models:/d-gan/1", n=1, out_dir=tmp_path, sampler=_sampler(), audio_preview=False
    )
    assert (tmp_path / "sample-001.mid").read_bytes() == b"theirs"
    assert [p.name for p in result.midi_files] == ["sample-002.mid"]


def test_length_tempo_and_instrument_land_in_the_file(tmp_path: Path) -> None:
    import json

    import mido

    from musicflow.core.compose import Direction

    direction = Direction(bars=5, tempo_bpm=132.0, program=40)
    result = gen.generate_midi(
        "models:/d-gan/4",
        n=1,
        out_dir=tmp_path,
        seed=9,
        sampler=_sampler(),
        audio_preview=False,
        direction=direction,
        version="4",
    )
    path = result.midi_files[0]
    assert result.songs[0].shape == (96, 5 * 48)
    mid = mido.MidiFile(path)
    msgs = [m for t in mid.tracks for m in t]
    tempo = [m.tempo for m in msgs if m.type == "set_tempo"]
    assert tempo == [mido.bpm2tempo(132.0)]
    assert [m.program for m in msgs if m.type == "program_change"] == [40]
    assert [m.name for m in msgs if m.type == "track_name"] == [
        "musicflow models:/d-gan/4 sample-001"
    ]
    (key,) = [m.key for m in msgs if m.type == "key_signature"]
    (text,) = [m.text for m in msgs if m.type == "text"]
    recorded = json.loads(text.removeprefix("musicflow "))
    beside = json.loads(path.with_suffix(".json").read_text())
    assert recorded == beside
    assert beside["model_uri"] == "models:/d-gan/4" and beside["version"] == "4"
    assert (beside["seed"], beside["bars"], beside["tempo_bpm"], beside["program"]) == (
        9,
        5,
        132.0,
        40,
    )
    assert beside["key"] == key and beside["seam"] is None and beside["temperature"] is None
