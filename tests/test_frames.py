"""musicflow/core/frames.py: the onset/hold frame representation and key normalisation (pure
numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from musicflow.core import frames, metrics, roll


def window(*notes: tuple[int, int, int]) -> np.ndarray:
    """One roll window (96, 96) from (pitch, start, end) notes, pitch_low 21."""
    w = np.zeros((roll.ROWS, roll.COLS), bool)
    for pitch, start, end in notes:
        w[roll.DEFAULT_PITCH_LOW + 95 - pitch, start:end] = True
    return w


def test_states_mark_onsets_holds_and_silence_per_frame() -> None:
    w = window((60, 0, 5), (64, 3, 12), (60, 6, 9))  # C re-struck at step 6, E from step 3
    s = frames.roll_to_states(w[None])[0]
    assert s.shape == (32, 96) and s.dtype == np.int8
    c, e = 60 - 21, 64 - 21  # pitch index, low → high
    assert list(s[:4, c]) == [frames.ONSET, frames.HOLD, frames.ONSET, frames.OFF]
    assert list(s[:5, e]) == [frames.OFF, frames.ONSET, frames.HOLD, frames.HOLD, frames.OFF]
    assert (np.delete(s, [c, e], axis=1) == frames.OFF).all()


def test_grid_aligned_windows_round_trip_and_restruck_notes_keep_their_gap() -> None:
    # on a sixteenth grid, re-struck notes cut one step short as roll-v1 rule 5 leaves them
    w = window((60, 0, 5), (60, 6, 12), (48, 0, 24), (72, 12, 15), (72, 15, 18))
    w[21 + 95 - 72, 14] = False  # 72 re-struck at 15: the encoder cut the first note to 14
    back = frames.states_to_roll(frames.roll_to_states(w[None]))[0]
    assert np.array_equal(back, w)


def test_off_grid_notes_move_to_the_grid_and_are_kept() -> None:
    w = window((60, 4, 10))  # starts on a triplet step
    back = frames.states_to_roll(frames.roll_to_states(w[None]))[0]
    notes = metrics.count_notes(back[None])
    assert notes[0] == 1 and back[21 + 95 - 60, 3:12].all()


def test_windows_laid_end_to_end_convert_as_one_sequence() -> None:
    a, b = window((60, 90, 96)), window((60, 0, 6))  # a note held across the boundary
    song = np.concatenate([a, b], axis=1)[None]
    s = frames.roll_to_states(song)[0]
    assert s.shape == (64, 96) and s[32, 60 - 21] == frames.HOLD
    assert np.array_equal(frames.states_to_roll(s[None])[0], song[0])


def test_bad_shapes_are_value_errors() -> None:
    with pytest.raises(ValueError):
        frames.roll_to_states(np.zeros((2, 90, 96), bool))
    with pytest.raises(ValueError):
        frames.roll_to_states(np.zeros((1, 96, 96), bool), frame_steps=5)
    with pytest.raises(ValueError):
        frames.states_to_roll(np.zeros((1, 32, 12), np.int8))


def test_tonic_is_the_best_major_scale_and_shifts_take_the_short_way() -> None:
    g_major = window(*[(p, 12 * i, 12 * i + 6) for i, p in enumerate([67, 69, 71, 72, 74, 76, 78])])
    c_major = window(*[(p, 12 * i, 12 * i + 6) for i, p in enumerate([60, 62, 64, 65, 67, 69, 71])])
    tonics = frames.window_tonics(np.stack([g_major, c_major, np.zeros_like(c_major)]))
    assert list(tonics) == [7, 0, 0]
    assert list(frames.key_shifts(np.arange(12))) == [0, -1, -2, -3, -4, -5, -6, 5, 4, 3, 2, 1]
    # transposing G major by its shift gives C major; the tonic then reads 0
    moved = frames.transpose_windows(g_major[None], frames.key_shifts(tonics[:1]))
    assert frames.window_tonics(moved)[0] == 0
    assert metrics.count_notes(moved)[0] == 7


def test_the_tonic_follows_the_datasets_pitch_window() -> None:
    w = window(*[(p, 12 * i, 12 * i + 6) for i, p in enumerate([67, 69, 71, 72, 74, 76, 78])])
    # the same rows read with pitch_low 26 are five semitones higher: C major, not G
    assert frames.window_tonics(w[None], pitch_low=26)[0] == 0
    assert frames.window_tonics(w[None], pitch_low=21)[0] == 7


def test_transpose_drops_rows_moved_out_and_inverts() -> None:
    w = window((108, 0, 12), (60, 0, 12))
    up = frames.transpose_windows(w[None], np.array([10]))[0]
    assert metrics.count_notes(up[None])[0] == 1  # 118 is above the window: dropped
    down = frames.transpose_windows(w[None], np.array([-3]))
    assert np.array_equal(frames.transpose_windows(down, np.array([3]))[0], w)
