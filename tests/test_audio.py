"""musicflow/adapters/audio.py: audio previews from PyPI wheels alone (no FluidSynth, no system
soundfont): a non-silent, loudness-normalised OGG/Vorbis file beside a generated MIDI file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from musicflow.adapters import audio
from musicflow.core import roll


def _piece(path: Path) -> Path:
    """Two bars of chords as roll.notes_to_midi writes generated pieces."""
    notes = [(60 + d, 12 * b, 12 * b + 10) for b in range(8) for d in (0, 4, 7)]
    path.write_bytes(roll.notes_to_midi(np.array(notes)))
    return path


def test_preview_of_a_generated_midi_is_loud_enough_and_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(audio.SOUNDFONT_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no fluidsynth, no system tool of any kind
    midi = _piece(tmp_path / "sample-001.mid")
    preview = audio.render_preview(midi)
    assert preview.path == tmp_path / "sample-001.ogg"
    assert preview.renderer == "midirenderer"
    assert preview.soundfont == audio.default_soundfont()
    info = soundfile.info(preview.path)
    assert info.format == "OGG" and info.subtype == "VORBIS"
    data, rate = soundfile.read(preview.path, always_2d=True)
    assert data.shape[0] / rate > 4.0  # 8 beats at 100 bpm, and the release
    rms_dbfs = 20 * np.log10(np.sqrt(np.mean(data**2)))
    assert rms_dbfs > -30, rms_dbfs  # the raw render sits near -35 dBFS
    assert abs(audio.loudness(data, rate) - audio.TARGET_LUFS) < 1.0
    assert np.max(np.abs(data)) <= 10 ** (-0.5 / 20)  # no clipping after Vorbis' overshoot
    assert preview.path.stat().st_size < 200_000


def test_soundfont_from_the_environment_or_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    font = audio.default_soundfont()
    assert font is not None and font.stat().st_size > 1_000_000
    monkeypatch.setenv(audio.SOUNDFONT_ENV, str(font))
    assert audio.resolve_soundfont() == font.resolve()
    monkeypatch.setenv(audio.SOUNDFONT_ENV, str(tmp_path / "missing.sf2"))
    with pytest.raises(audio.AudioError, match="MUSICFLOW_SOUNDFONT"):
        audio.resolve_soundfont()
    text = tmp_path / "notes.txt"
    text.write_text("x")
    with pytest.raises(audio.AudioError, match="--soundfont"):
        audio.resolve_soundfont(tmp_path / "missing.sf2")
    with pytest.raises(audio.AudioError, match="not a SoundFont"):
        audio.resolve_soundfont(text)


def test_normalise_leaves_silence_alone_and_limits_peaks() -> None:
    silence = np.zeros((48_000, 2), np.float32)
    out, gain = audio.normalise(silence, 48_000)
    assert gain == 0.0 and not out.any()
    # A quiet signal with loud spikes: the limiter holds the spikes at the ceiling and the
    # rest still reaches the loudness target.
    t = np.arange(96_000)
    x = (0.001 * np.sin(t / 10))[:, None].repeat(2, axis=1).astype(np.float32)
    x[100:110] = 0.5
    x[50_000:50_010] = -0.7
    out, gain = audio.normalise(x, 48_000)
    ceiling = 10 ** (audio.PEAK_CEILING_DBFS / 20)
    assert np.max(np.abs(out)) <= ceiling + 1e-6
    assert abs(audio.loudness(out, 48_000) - audio.TARGET_LUFS) < 0.5
    # away from the spikes the gain is the same everywhere (no pumping)
    ratio = out[20_000:40_000, 0] / x[20_000:40_000, 0]
    assert np.allclose(ratio[np.abs(x[20_000:40_000, 0]) > 1e-4], ratio.max(), rtol=1e-3)


def test_a_long_piece_gets_its_preview(tmp_path: Path) -> None:
    """80 s of music: libsndfile's Vorbis encoder crashed on it in one write."""
    notes = np.array([[60 + (i % 12), 24 * i, 24 * i + 20] for i in range(67)])  # 80 s at 100
    midi = tmp_path / "long.mid"
    midi.write_bytes(roll.notes_to_midi(notes))
    preview = audio.render_preview(midi)
    assert preview.seconds > 79 and preview.path.stat().st_size > 10_000
