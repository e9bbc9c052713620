"""The roll-v1 piano-roll encoding (docs/encoding.md), pure numpy.

Other tools compare shards cell by cell with this module's output, so every rule of the contract
is implemented literally here and nowhere else:

- time grid: 12 steps per beat, ``step(tick) = (24*tick + tpb) // (2*tpb)`` (round half up, exact);
  ``end <= start`` becomes ``start + 1``;
- pitch window: 96 rows, ``row = pitch_low + 95 - pitch`` (row 0 is the highest pitch); notes
  outside are dropped and counted, never wrapped; drum notes (channel index 9) are dropped;
- same pitch (across all tracks and channels), in onset order: notes starting on the same step
  merge (union); a note starting at or before the previous one's end cuts it to end at
  ``max(prev_start + 1, start - 1)``;
- song matrix ``S[row, start:end] = 1``, T = max end; window k covers steps [96k, 96k+96),
  the last one zero-padded, windows without an active cell skipped.

Two ways to the same windows: :func:`song_matrix` + :func:`song_windows` (dense, simple, used as
the reference in tests) and :func:`encode_notes` (what the encode stage uses): it only allocates
the windows that hold a note, so a file whose notes lie hours apart, or a hostile file with huge
delta-times, costs memory in proportion to its music, not to its length.

``ENCODER_VERSION`` goes into cache keys: bump it whenever the output of encoding changes.
"""

from __future__ import annotations

import io
import math
from typing import Any, NamedTuple

import numpy as np

ENCODING_NAME = "roll-v1"
STEPS_PER_BEAT = 12
ROWS = 96
COLS = 96
DEFAULT_PITCH_LOW = 21
ENCODER_VERSION = "1"

WINDOW_CELLS = ROWS * COLS
PACKED_BYTES = WINDOW_CELLS // 8  # 1152
MAX_PITCH_LOW = 127 - (ROWS - 1)  # 32: the window must stay inside MIDI pitches 0..127
DRUM_CHANNEL = 9
MAX_SEGMENTS = 4096
"""encode_notes() builds at most this many windows per file (32,768 beats, 4.5 hours at
120 bpm; piano-midi.de's longest piece has 242). A file over it gets its true n_segments but
no windows, so a hostile file cannot exhaust memory: validation should quarantine it too_large."""

_INT32_MAX = 2**31 - 1
_REPEAT_MAX_CELLS = 4_000_000  # (note, byte) pairs; above, a cumulative sum (bounded memory)


def _check_pitch_low(pitch_low: int) -> int:
    if not isinstance(pitch_low, int | np.integer) or not 0 <= pitch_low <= MAX_PITCH_LOW:
        raise ValueError(f"pitch_low must be an integer in 0..{MAX_PITCH_LOW}, got {pitch_low!r}")
    return int(pitch_low)


def _check_tpb(ticks_per_beat: int) -> int:
    if not isinstance(ticks_per_beat, int | np.integer) or ticks_per_beat < 1:
        raise ValueError(f"ticks_per_beat must be a positive integer, got {ticks_per_beat!r}")
    return int(ticks_per_beat)


def encoding_params(pitch_low: int = DEFAULT_PITCH_LOW) -> dict[str, Any]:
    """The encoding as stored in shard metadata (``musicflow.encoding``) and cache keys."""
    return {
        "name": ENCODING_NAME,
        "steps_per_beat": STEPS_PER_BEAT,
        "pitch_low": _check_pitch_low(pitch_low),
        "rows": ROWS,
        "cols": COLS,
    }


def quantize(ticks: np.ndarray, ticks_per_beat: int) -> np.ndarray:
    """Ticks → 12-per-beat steps, ``(24*tick + tpb) // (2*tpb)`` (round half up), int64 exact.

    Computed as ``12*q + (24*r + tpb) // (2*tpb)`` with ``tick = q*tpb + r``, which is the same
    integer without the overflow of ``24*tick`` for huge ticks.
    """
    tpb = _check_tpb(ticks_per_beat)
    t = np.asarray(ticks, dtype=np.int64)
    q, r = np.divmod(t, tpb)
    return 12 * q + (24 * r + tpb) // (2 * tpb)


class _Kept(NamedTuple):
    rows: np.ndarray  # int64 row of each note after the same-pitch rule
    start: np.ndarray  # int64 start step
    end: np.ndarray  # int64 end step (exclusive), > start
    n_kept: int  # notes inside the window before merging
    n_out_of_range: int


def _kept_notes(notes: np.ndarray, ticks_per_beat: int, pitch_low: int) -> _Kept:
    """Apply items 2-5 of the contract to ``(N, 5)`` notes (track, channel, pitch, on, off)."""
    pitch_low = _check_pitch_low(pitch_low)
    notes = np.asarray(notes, dtype=np.int64)
    if notes.ndim != 2 or notes.shape[1] != 5:
        raise ValueError(f"notes must have shape (N, 5), got {notes.shape}")
    drums = notes[:, 1] == DRUM_CHANNEL
    if drums.any():
        notes = notes[~drums]
    pitch = notes[:, 2]
    inside = (pitch >= pitch_low) & (pitch <= pitch_low + ROWS - 1)
    n_kept = int(np.count_nonzero(inside))
    n_out = len(notes) - n_kept
    if n_out:
        notes = notes[inside]
        pitch = notes[:, 2]
    start = quantize(notes[:, 3], ticks_per_beat)
    end = np.maximum(quantize(notes[:, 4], ticks_per_beat), start + 1)
    pitch, start, end = _same_pitch_rule(pitch, start, end)
    return _Kept(pitch_low + ROWS - 1 - pitch, start, end, n_kept, n_out)


def _same_pitch_rule(
    pitch: np.ndarray, start: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encoding rule 5, vectorised: returns notes sorted by (pitch, start), disjoint per pitch.

    After merging same-start notes, the cut of a note depends only on the next note of the same
    pitch, so one pass over consecutive pairs does it. The cut never lengthens a note, and leaves
    notes of one pitch disjoint (adjacent only when there is no room for the gap).
    """
    if len(pitch) == 0:
        return pitch, start, end
    if np.all(start[1:] >= start[:-1]):
        # scan_midi's order (by on_tick) is by start already: a stable radix sort on pitch suffices
        order = np.argsort(pitch.astype(np.uint8), kind="stable")
    else:
        order = np.lexsort((start, pitch))
    p, s, e = pitch[order], start[order], end[order]
    first = np.ones(len(p), dtype=bool)
    first[1:] = (p[1:] != p[:-1]) | (s[1:] != s[:-1])
    if not first.all():
        idx = np.flatnonzero(first)
        e = np.maximum.reduceat(e, idx)
        p, s = p[idx], s[idx]
    cut = (p[1:] == p[:-1]) & (s[1:] <= e[:-1])
    if cut.any():
        at = np.flatnonzero(cut)
        e[at] = np.maximum(s[at] + 1, s[at + 1] - 1)
    return p, s, e


def song_matrix(
    notes: np.ndarray, ticks_per_beat: int, pitch_low: int = DEFAULT_PITCH_LOW
) -> tuple[np.ndarray, int]:
    """Dense song matrix S (bool, 96 × T, T = max end) and the number of notes out of range.

    ``notes`` as returned by :func:`musicflow.core.midi.scan_midi` (track, channel, pitch, on, off).
    Memory is 96·T bytes: for untrusted files use :func:`encode_notes`.
    """
    kept = _kept_notes(notes, ticks_per_beat, pitch_low)
    t_len = int(kept.end.max()) if len(kept.end) else 0
    song = np.zeros((ROWS, t_len), dtype=bool)
    if len(kept.end):
        flat = _cell_indices(kept.rows * t_len + kept.start, kept.end - kept.start)
        song.reshape(-1)[flat] = True
    return song, kept.n_out_of_range


def _cell_indices(first: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat indices ``first[i] + 0 .. first[i] + lengths[i] - 1`` for all i, concatenated."""
    total = int(lengths.sum())
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(first - offsets, lengths) + np.arange(total, dtype=np.int64)


def song_windows(song: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut a song matrix into 96-step windows: (segments int32 (n,), windows bool (n, 96, 96)).

    Window k covers steps [96k, 96k+96); the last is zero-padded; windows with no active cell
    are skipped, and ``segments`` holds the k of each window kept.
    """
    song = np.asarray(song, dtype=bool)
    if song.ndim != 2 or song.shape[0] != ROWS:
        raise ValueError(f"song must have shape (96, T), got {song.shape}")
    n_win = math.ceil(song.shape[1] / COLS)
    padded = np.zeros((ROWS, n_win * COLS), dtype=bool)
    padded[:, : song.shape[1]] = song
    windows = padded.reshape(ROWS, n_win, COLS).transpose(1, 0, 2)
    keep = np.flatnonzero(windows.any(axis=(1, 2)))
    return keep.astype(np.int32), np.ascontiguousarray(windows[keep])


class Encoded(NamedTuple):
    """Windows of one file as the encode stage stores them."""

    segments: np.ndarray  # int32 (n,): k of each window
    packed: np.ndarray  # uint8 (n, 1152)
    n_segments: int  # windows with an active cell (== n unless over max_segments)
    n_notes: int  # notes inside the pitch window (before same-pitch merging)
    n_out_of_range: int
    complete: bool  # False when n_segments > max_segments (or k ≥ 2^31): no windows returned


def encode_notes(
    notes: np.ndarray,
    ticks_per_beat: int,
    pitch_low: int = DEFAULT_PITCH_LOW,
    max_segments: int = MAX_SEGMENTS,
) -> Encoded:
    """Notes → packed non-empty windows; same result as song_matrix + song_windows + pack_windows.

    Only windows holding a note are allocated: windows covered by a note form runs of
    consecutive k, and each run is laid out contiguously in a compact time axis, so a note keeps
    its length there and maps back to its k exactly.
    """
    kept = _kept_notes(notes, ticks_per_beat, pitch_low)
    empty = np.zeros((0, PACKED_BYTES), dtype=np.uint8)
    no_segments = np.zeros(0, dtype=np.int32)
    if len(kept.start) == 0:
        return Encoded(no_segments, empty, 0, kept.n_kept, kept.n_out_of_range, True)
    rows, s, e = kept.rows, kept.start, kept.end
    w0 = s // COLS
    w1 = (e - 1) // COLS + 1  # exclusive: the note covers windows w0 .. w1-1
    n_windows = int(w1.max())
    if n_windows <= 8 * len(s) + 4096:
        # usual case: count coverage over every k, O(N + K), no sort
        edges = np.bincount(w0, minlength=n_windows + 1) - np.bincount(w1, minlength=n_windows + 1)
        covered = np.cumsum(edges[:n_windows]) > 0
        segments64 = np.flatnonzero(covered)
        compact = np.cumsum(covered) - 1  # compact index of each covered k
        shift = compact[w0] - w0
    else:
        # sparse case (notes far apart, or hostile delta-times): union of the ranges [w0, w1)
        # by sorting; a new run of windows starts past the running max of the ends
        order = np.argsort(w0, kind="stable")
        a, b = w0[order], np.maximum.accumulate(w1[order])
        new_run = np.ones(len(a), dtype=bool)
        new_run[1:] = a[1:] >= b[:-1]
        run_first = np.flatnonzero(new_run)
        run_start = a[run_first]
        run_len = b[np.append(run_first[1:], len(a)) - 1] - run_start
        if int(run_len.sum()) > max_segments:
            return Encoded(
                no_segments, empty, int(run_len.sum()), kept.n_kept, kept.n_out_of_range, False
            )
        segments64 = _cell_indices(run_start, run_len)
        run_offset = np.cumsum(run_len) - run_len  # compact index of each run's first window
        note_run = np.searchsorted(run_start, w0, side="right") - 1
        shift = run_offset[note_run] - run_start[note_run]
    n_segments = len(segments64)
    if n_segments > max_segments or n_windows - 1 > _INT32_MAX:
        return Encoded(no_segments, empty, n_segments, kept.n_kept, kept.n_out_of_range, False)
    segments = segments64.astype(np.int32)
    cs = s + COLS * shift  # start step on the compact time axis (covered windows end to end)
    lengths = e - s
    ce = cs + lengths
    # 96 is a multiple of 8, so the packed bytes of a row tile the compact time axis: byte
    # column g holds steps 8g .. 8g+7, in window g // 12 at byte g % 12 of the row
    g0 = cs >> 3
    n_bytes = ((ce - 1) >> 3) - g0 + 1
    if int(n_bytes.sum()) <= _REPEAT_MAX_CELLS:
        # one (note, byte) pair per byte a note touches: full bytes inside, partial masks at
        # both ends; notes of one row are disjoint, so summing the masks of a byte ORs them
        g = _cell_indices(g0, n_bytes)
        last = np.cumsum(n_bytes) - 1
        first = last - n_bytes + 1
        mask = np.full(len(g), 0xFF, dtype=np.int64)
        mask[first] = 0xFF >> (cs & 7)
        mask[last] &= (0xFF00 >> (((ce - 1) & 7) + 1)) & 0xFF
        wg = g // (COLS // 8)
        byte = wg * PACKED_BYTES + (g - wg * (COLS // 8)) + np.repeat(rows * (COLS // 8), n_bytes)
        flat = np.bincount(byte, weights=mask, minlength=n_segments * PACKED_BYTES)
        packed = flat.astype(np.uint8).reshape(n_segments, PACKED_BYTES)
    else:
        # long notes: a cumulative sum over the compact axis, memory bounded by the windows;
        # notes of one row are disjoint, so (row, start) and (row, end) pairs are unique
        diff = np.zeros((ROWS, n_segments * COLS + 1), dtype=np.int8)
        diff[rows, cs] += 1
        diff[rows, ce] -= 1
        song = np.cumsum(diff[:, :-1], axis=1, dtype=np.int8) > 0
        windows = song.reshape(ROWS, n_segments, COLS).transpose(1, 0, 2)
        packed = np.packbits(windows.reshape(n_segments, WINDOW_CELLS), axis=1)
    return Encoded(segments, packed, n_segments, kept.n_kept, kept.n_out_of_range, True)


def pack_windows(windows: np.ndarray) -> np.ndarray:
    """bool (n, 96, 96) → uint8 (n, 1152): ``np.packbits`` of each window, row-major, big-endian."""
    w = np.asarray(windows, dtype=bool)
    if w.ndim != 3 or w.shape[1:] != (ROWS, COLS):
        raise ValueError(f"windows must have shape (n, 96, 96), got {w.shape}")
    return np.packbits(w.reshape(len(w), WINDOW_CELLS), axis=1)


def unpack_windows(packed: np.ndarray) -> np.ndarray:
    """uint8 (n, 1152) → bool (n, 96, 96), the inverse of :func:`pack_windows`."""
    p = np.asarray(packed, dtype=np.uint8)
    if p.ndim == 1 and p.size % PACKED_BYTES == 0:
        p = p.reshape(-1, PACKED_BYTES)
    if p.ndim != 2 or p.shape[1] != PACKED_BYTES:
        raise ValueError(f"packed must have shape (n, {PACKED_BYTES}), got {p.shape}")
    return np.unpackbits(p, axis=1).view(bool).reshape(len(p), ROWS, COLS)


def count_active(packed: np.ndarray) -> np.ndarray:
    """Active cells of each packed window, int32 (n,) (the shards' ``n_active`` column)."""
    p = np.asarray(packed, dtype=np.uint8).reshape(-1, PACKED_BYTES)
    return np.bitwise_count(p).sum(axis=1, dtype=np.int32)


def decode_roll(
    roll: np.ndarray,
    pitch_low: int = DEFAULT_PITCH_LOW,
    segments: np.ndarray | None = None,
) -> np.ndarray:
    """Notes of a roll: int64 (N, 3) pitch, start_step, end_step, sorted by (start, pitch).

    A note is a maximal run of 1s in one row. ``roll`` is a song matrix (96, T) or windows
    (n, 96, 96). Windows are laid end to end in time: window i starts at step ``96*segments[i]``
    when ``segments`` is given (so decoding a file's windows gives its song's notes, and a run
    continues across two windows only when their k are consecutive), else at ``96*i``.
    """
    pitch_low = _check_pitch_low(pitch_low)
    r = np.asarray(roll, dtype=bool)
    if r.ndim == 2:
        if r.shape[0] != ROWS:
            raise ValueError(f"roll must have shape (96, T) or (n, 96, 96), got {r.shape}")
        if segments is not None:
            raise ValueError("segments only apply to windows (n, 96, 96)")
        n_win, song = 1, r
        seg = np.zeros(1, dtype=np.int64)
        width = r.shape[1]
    elif r.ndim == 3 and r.shape[1:] == (ROWS, COLS):
        n_win, width = len(r), COLS
        seg = (
            np.arange(n_win, dtype=np.int64) if segments is None else np.asarray(segments, np.int64)
        )
        if seg.shape != (n_win,):
            raise ValueError(f"segments must have shape ({n_win},), got {seg.shape}")
        if n_win > 1 and np.any(np.diff(seg) <= 0):
            raise ValueError("segments must be strictly increasing")
        song = r.transpose(1, 0, 2).reshape(ROWS, n_win * COLS)
    else:
        raise ValueError(f"roll must have shape (96, T) or (n, 96, 96), got {r.shape}")
    if song.shape[1] == 0:
        return np.zeros((0, 3), dtype=np.int64)
    # a run may continue from window i-1 into window i only when their k are consecutive
    joins = np.ones(n_win, dtype=bool)
    joins[0] = False
    joins[1:] = np.diff(seg) == 1
    prev = np.zeros_like(song)
    prev[:, 1:] = song[:, :-1]
    nxt = np.zeros_like(song)
    nxt[:, :-1] = song[:, 1:]
    if n_win > 1:
        prev[:, np.flatnonzero(~joins) * width] = False
        nxt[:, np.flatnonzero(~joins[1:]) * width + width - 1] = False
    start_row, start_col = np.nonzero(song & ~prev)
    _, end_col = np.nonzero(song & ~nxt)  # row-major: the k-th end closes the k-th start

    def to_time(col: np.ndarray) -> np.ndarray:
        return seg[col // width] * width + col % width

    out = np.empty((len(start_row), 3), dtype=np.int64)
    out[:, 0] = pitch_low + ROWS - 1 - start_row
    out[:, 1] = to_time(start_col)
    out[:, 2] = to_time(end_col) + 1
    return out[np.lexsort((out[:, 0], out[:, 1]))]


def conductor_track(
    tpb: int,
    tempo_bpm: float,
    key: str | None = None,
    text: str | None = None,
    markers: tuple[tuple[int, str], ...] = (),
):
    """Track 0 of the files this project writes (a ``mido.MidiTrack``): tempo, 4/4, and when
    given a key signature, a text event and markers ``(step, text)``, a step at tick
    ``round_half_up(step * tpb / 12)`` as the notes are."""
    import mido

    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0))
    meta.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    if key is not None:
        meta.append(mido.MetaMessage("key_signature", key=key, time=0))
    if text is not None:
        meta.append(mido.MetaMessage("text", text=text, time=0))
    now = 0
    for step, label in sorted(markers):
        t = (2 * int(step) * tpb + STEPS_PER_BEAT) // (2 * STEPS_PER_BEAT)
        meta.append(mido.MetaMessage("marker", text=label, time=t - now))
        now = t
    return meta


def notes_to_midi(
    notes: np.ndarray,
    *,
    ticks_per_beat: int = 96,
    tempo_bpm: float = 100,
    program: int = 0,
    velocity: int = 80,
    track_name: str | None = None,
    text: str | None = None,
    key: str | None = None,
    markers: tuple[tuple[int, str], ...] = (),
) -> bytes:
    """Decoded notes (pitch, start_step, end_step) → type-1 SMF bytes (via mido).

    Track 0: tempo, a 4/4 time signature, and when given a key signature (``key`` as mido
    spells it: ``D``, ``F#m``), a text event (``text``) and markers ``(step, text)``; track 1:
    its name (``track_name``), program change and the notes on channel 0.
    A step becomes tick ``round_half_up(step * tpb / 12)``, which maps back to the same step for
    every tpb ≥ 12, so encoding the result gives back the same roll (for notes with disjoint runs
    per pitch, as decode_roll returns). Note-offs sort before note-ons at the same tick.
    """
    import mido  # only here: the encoder path must not pay for importing mido

    tpb = _check_tpb(ticks_per_beat)
    if tpb < STEPS_PER_BEAT or tpb > 32767:
        raise ValueError(f"ticks_per_beat must be in 12..32767 to keep every step, got {tpb}")
    if not 0 <= program <= 127 or not 1 <= velocity <= 127:
        raise ValueError("program must be in 0..127 and velocity in 1..127")
    arr = np.asarray(notes, dtype=np.int64).reshape(-1, 3)
    if len(arr) and (
        arr[:, 0].min() < 0
        or arr[:, 0].max() > 127
        or arr[:, 1].min() < 0
        or np.any(arr[:, 2] <= arr[:, 1])
    ):
        raise ValueError("notes need pitch in 0..127, start >= 0 and end > start")

    def tick(step: np.ndarray) -> np.ndarray:
        return (2 * step * tpb + STEPS_PER_BEAT) // (2 * STEPS_PER_BEAT)

    on, off = tick(arr[:, 1]), tick(arr[:, 2])
    # (tick, kind 0 = off before 1 = on, pitch)
    events = sorted(
        [(int(t), 0, int(p)) for t, p in zip(off, arr[:, 0], strict=True)]
        + [(int(t), 1, int(p)) for t, p in zip(on, arr[:, 0], strict=True)]
    )
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    meta = conductor_track(tpb, tempo_bpm, key, text, markers)
    music = mido.MidiTrack()
    if track_name is not None:
        music.append(mido.MetaMessage("track_name", name=track_name, time=0))
    music.append(mido.Message("program_change", program=program, channel=0, time=0))
    now = 0
    for t, kind, p in events:
        kind_name = "note_on" if kind else "note_off"
        music.append(mido.Message(kind_name, note=p, velocity=velocity, channel=0, time=t - now))
        now = t
    mid.tracks.extend([meta, music])
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()
