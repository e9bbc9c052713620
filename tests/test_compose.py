"""musicflow/core/compose.py: prompts read as the audit reads files, key names, the direction's
checks. Real MIDI files written with mido; no model."""

from __future__ import annotations

import mido
import numpy as np
import pytest

from musicflow.core import compose, frames, roll
from musicflow.core.compose import Direction, Prompt
from musicflow.core.errors import MidiFormatError, UsageError


def _midi(notes: list[tuple[int, int, int]], tempo_bpm: float = 72, tpb: int = 480) -> bytes:
    """Type-1 bytes of (pitch, start beat×4, end beat×4) notes: sixteenths."""
    import io

    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    meta = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm))])
    events = sorted(
        [(s * tpb // 4, 1, p) for p, s, _ in notes] + [(e * tpb // 4, 0, p) for p, _, e in notes]
    )
    track, now = mido.MidiTrack(), 0
    for t, on, p in events:
        track.append(mido.Message("note_on" if on else "note_off", note=p, time=t - now))
        now = t
    mid.tracks.extend([meta, track])
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def test_keys_name_the_tonic_of_their_major_scale() -> None:
    assert compose.parse_key("D") == ("D", 2)
    assert compose.parse_key("bb") == ("Bb", 10)
    assert compose.parse_key("F#m") == ("F#m", 9)  # A major's scale
    assert compose.parse_key("Am") == ("Am", 0)
    for bad in ("H", "A#", "", "Cmaj"):
        with pytest.raises(ValueError, match="unknown key"):
            compose.parse_key(bad)
    for tonic in range(12):
        name = compose.key_of_tonic(tonic)
        assert compose.parse_key(name)[1] == tonic
        mido.MetaMessage("key_signature", key=name)  # a name a MIDI file can hold


def test_a_prompt_is_read_on_the_grid_in_the_models_window() -> None:
    # two bars and a beat; one note below the window of pitch_low 30
    data = _midi([(60, 0, 4), (64, 4, 16), (67, 32, 36), (25, 0, 4)])
    prompt = compose.read_prompt(data, "p.mid", pitch_low=30)
    assert prompt.bars == 3 and prompt.tempo_bpm == 72.0
    assert prompt.n_out_of_range == 1 and prompt.warnings == ["notes_out_of_range"]
    notes = roll.decode_roll(prompt.song, pitch_low=30)
    assert notes.tolist() == [[60, 0, 12], [64, 12, 48], [67, 96, 108]]
    assert prompt.first_bars(2).shape == (96, 96) and not prompt.first_bars(2)[:, 96:].any()
    assert prompt.first_bars(4)[:, prompt.song.shape[1] :].sum() == 0


@pytest.mark.parametrize(
    "data, code",
    [
        (b"", "not_midi"),
        (b"hello, this is text\n" * 10, "not_midi"),
        (b"MThd\x00\x00\x00\x06\x00\x01\x00\x02", "truncated"),
    ],
)
def test_a_prompt_the_audit_would_quarantine_gets_its_reason(data: bytes, code: str) -> None:
    with pytest.raises(MidiFormatError) as exc:
        compose.read_prompt(data, "p.mid", pitch_low=21)
    assert exc.value.code == code and str(exc.value).startswith(f"{code}: prompt p.mid")
    with pytest.raises(MidiFormatError, match=f"^{code}: --interpolate p.mid"):
        compose.read_prompt(data, "p.mid", pitch_low=21, role="--interpolate")


def test_a_prompt_without_notes_in_the_window_is_no_notes() -> None:
    with pytest.raises(MidiFormatError) as exc:
        compose.read_prompt(_midi([(10, 0, 4)]), "low.mid", pitch_low=21)
    assert exc.value.code == "no_notes"


def _prompt() -> Prompt:
    return Prompt(np.ones((96, 48), bool), 1, None, 0)


def test_what_a_model_cannot_do_is_a_usage_error() -> None:
    compose.check_direction("vae", Direction(prompt=_prompt(), temperature=0.5))
    compose.check_direction("vae", Direction(ends=(_prompt(), _prompt())))
    compose.check_direction("gan", Direction(prompt=_prompt(), temperature=0.5))
    compose.check_direction("gan-thesis", Direction(bars=5, tempo_bpm=90, program=40))
    with pytest.raises(UsageError, match=r"rnn model cannot interpolate.*use a vae or gan model"):
        compose.check_direction("rnn", Direction(ends=(_prompt(), _prompt())))
    with pytest.raises(UsageError, match=r"gan-thesis model cannot continue.*rnn or vae or gan"):
        compose.check_direction("gan-thesis", Direction(prompt=_prompt()))
    with pytest.raises(UsageError, match="cannot interpolate"):  # before the files are read
        compose.check_direction("rnn", Direction(end_names=("a.mid", "b.mid")))
    with pytest.raises(UsageError, match="temperature"):
        compose.check_direction("vae-thesis", Direction(temperature=0.8))
    with pytest.raises(UsageError, match="--key"):
        compose.check_direction("rnn", Direction(prompt=_prompt(), key="D"))


def test_key_estimation_matches_the_models_tonic() -> None:
    # a D major scale: the tonic the models condition on is D
    song = np.zeros((96, 96), bool)
    for i, pitch in enumerate([62, 64, 66, 67, 69, 71, 73, 74]):
        song[roll.DEFAULT_PITCH_LOW + 95 - pitch, 12 * i : 12 * i + 10] = True
    assert compose.key_of_tonic(frames.window_tonics(song[None])[0]) == "D"


def test_a_prompt_over_the_size_cap_is_too_large_unread() -> None:
    with pytest.raises(MidiFormatError) as exc:
        compose.read_prompt(b"", "huge.mid", pitch_low=21, size_bytes=2**40)
    assert exc.value.code == "too_large"
