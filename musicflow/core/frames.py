"""The frame representation of the sequence models, and key normalisation (pure numpy).

Public functions: :func:`roll_to_states`, :func:`states_to_roll`, :func:`window_tonics`,
:func:`key_shifts`, :func:`transpose_windows`. See docs/models.md.

A roll-v1 window (96 pitch rows × 96 steps, 12 steps per beat; docs/encoding.md) is read as
``96 // frame_steps`` frames of ``frame_steps`` steps (default 3: four frames per beat, a
sixteenth-note grid). Each (frame, pitch) is in one of three states:

- ``OFF``: silent in the frame;
- ``ONSET``: a note starts in the frame (a roll cell whose left neighbour is off, or the
  window's first step);
- ``HOLD``: sounding, started in an earlier frame.

Why: a model that decides every 12-step cell on its own breaks held notes into flicker
(measured here: 30–40 notes per beat where the data has 4.5). Onset and hold are separate
decisions in this representation, so a held note is one decision per frame and a re-struck
note is an explicit onset. Decoding gives every note whole frames, and a re-struck pitch keeps
the one-step gap the encoder leaves (roll-v1 rule 5). On the Bach chorales 99.96 % of onsets
lie on the sixteenth-note grid; on piano-midi.de 86 % (triplets and expressive timing are
moved to the grid).

Key normalisation: every window is transposed so that its best-fitting major scale (over note
onsets; a minor key shares its relative major's scale) is C, by at most six semitones either
way. A model then learns harmony once instead of in twelve keys; it samples in C and a tonic
drawn from the training data's tonic counts moves the result back.
"""

from __future__ import annotations

import numpy as np

from musicflow.core.roll import COLS, DEFAULT_PITCH_LOW, ROWS

OFF, ONSET, HOLD = 0, 1, 2
DEFAULT_FRAME_STEPS = 3
MAJOR_STEPS = (0, 2, 4, 5, 7, 9, 11)


def _frames(steps: int, frame_steps: int) -> int:
    if frame_steps < 1 or steps % frame_steps:
        raise ValueError(f"frame_steps must divide {steps}, got {frame_steps}")
    return steps // frame_steps


def roll_to_states(windows: np.ndarray, frame_steps: int = DEFAULT_FRAME_STEPS) -> np.ndarray:
    """bool (n, 96 rows, T steps) → int8 states (n, T // frame_steps, 96), pitches low → high.

    A frame is ONSET for a pitch when a note of that pitch starts in any of its steps, else
    HOLD when the pitch sounds in any of its steps, else OFF.
    """
    x = np.asarray(windows, dtype=bool)
    if x.ndim != 3 or x.shape[1] != ROWS:
        raise ValueError(f"expected windows of shape (n, {ROWS}, T), got {x.shape}")
    n, rows, steps = x.shape
    f = _frames(steps, frame_steps)
    prev = np.zeros_like(x)
    prev[:, :, 1:] = x[:, :, :-1]
    onset = (x & ~prev).reshape(n, rows, f, frame_steps).any(axis=3)
    active = x.reshape(n, rows, f, frame_steps).any(axis=3)
    states = np.where(onset, ONSET, np.where(active, HOLD, OFF)).astype(np.int8)
    return np.ascontiguousarray(states[:, ::-1, :].transpose(0, 2, 1))


def states_to_roll(states: np.ndarray, frame_steps: int = DEFAULT_FRAME_STEPS) -> np.ndarray:
    """int states (n, F, 96) → bool (n, 96, F · frame_steps), the inverse of
    :func:`roll_to_states` on the grid.

    A sounding frame fills all its steps, except that a note followed at once by an onset of
    the same pitch ends one step early, as roll-v1 cuts re-struck notes. A HOLD after an OFF
    (never produced by the models) is read as an onset.
    """
    s = np.asarray(states)
    if s.ndim != 3 or s.shape[2] != ROWS:
        raise ValueError(f"expected states of shape (n, F, {ROWS}), got {s.shape}")
    n, f, pitches = s.shape
    active = s != OFF
    restruck = np.zeros_like(active)
    restruck[:, :-1] = active[:, :-1] & (s[:, 1:] == ONSET)
    cells = np.repeat(active[:, :, None, :], frame_steps, axis=2)
    cells[:, :, frame_steps - 1, :] &= ~restruck
    roll = cells.reshape(n, f * frame_steps, pitches)
    return np.ascontiguousarray(roll.transpose(0, 2, 1)[:, ::-1, :])


def _major_masks() -> np.ndarray:
    """(12 tonics, 12 pitch classes) 0/1: the major scale on each tonic."""
    masks = np.zeros((12, 12))
    for tonic in range(12):
        masks[tonic, [(tonic + i) % 12 for i in MAJOR_STEPS]] = 1.0
    return masks


def window_tonics(windows: np.ndarray, pitch_low: int = DEFAULT_PITCH_LOW) -> np.ndarray:
    """int (n,): the tonic (0 = C) of each window's best-fitting major scale, counted over note
    onsets; ties go to the lowest tonic, an empty window gets 0."""
    x = np.asarray(windows, dtype=bool)
    prev = np.zeros_like(x)
    prev[:, :, 1:] = x[:, :, :-1]
    per_row = (x & ~prev).sum(axis=2).astype(np.float64)  # (n, rows)
    pcs = (pitch_low + ROWS - 1 - np.arange(ROWS)) % 12
    per_pc = per_row @ np.eye(12)[pcs]
    return np.argmax(per_pc @ _major_masks().T, axis=1)


def key_shifts(tonics: np.ndarray) -> np.ndarray:
    """Semitones in [-6, 5] that move each tonic to C (the shortest way, up or down)."""
    return (6 - np.asarray(tonics)) % 12 - 6


def transpose_windows(windows: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Each window (n, 96, T) moved up by ``shifts[i]`` semitones (row 0 is the highest
    pitch); rows moved out are dropped, rows moved in are silent."""
    x = np.asarray(windows)
    out = np.zeros_like(x)
    for i, s in enumerate(np.asarray(shifts, dtype=int)):
        if s > 0:
            out[i, : ROWS - s] = x[i, s:]
        elif s < 0:
            out[i, -s:] = x[i, : ROWS + s]
        else:
            out[i] = x[i]
    return out


__all__ = [
    "COLS",
    "DEFAULT_FRAME_STEPS",
    "HOLD",
    "OFF",
    "ONSET",
    "key_shifts",
    "roll_to_states",
    "states_to_roll",
    "transpose_windows",
    "window_tonics",
]
