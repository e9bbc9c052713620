"""Read the notes of a Standard MIDI File, fast and safely (docs/encoding.md rule 2).

The byte loop lives in the private C extension ``musicflow.core._smf`` because a pure-Python parser
is ~50x too slow for the encode stage; it bounds-checks every read and releases the GIL, so
threads scale. This module gives it a typed face and turns its error codes into
:class:`~musicflow.core.errors.MidiFormatError` (quarantine codes ``not_midi`` and ``truncated``,
docs/dataset.md).

The parser does not judge the header: format 2, SMPTE divisions and division 0 are returned as
read, validation decides what to quarantine.

Reading choices the contract leaves open:

- unknown chunk types are skipped; exactly the number of ``MTrk`` chunks the header declares is
  read and anything after the last one is ignored; fewer than declared is ``truncated``;
- parsing of a track stops at its End of Track meta event (the rest of its chunk is ignored);
- meta events keep running status (as mido does), sysex events cancel it (as the SMF spec says);
- delta-times and lengths are at most 4 bytes; a longer one, a data byte above 127, a system
  status byte other than F0/F7/FF, or running status with no previous status is ``truncated``;
- drum notes (channel index 9) are only counted, and their note-offs never count as orphans
  (with ``with_tracks``, for the track policies, they are kept as notes: :func:`_parse`).

Per-file resource limits (docs/dataset.md): a file with more than :data:`MAX_NOTES` notes or
:data:`MAX_EVENTS` events is stopped there with error ``too_large`` (validation quarantines
it), so a small hostile file (millions of notes at one tick) cannot take gigabytes of memory
or seconds of CPU per worker; with the byte cap of ``--max-bytes`` and the window cap
(``roll.MAX_SEGMENTS``) this bounds the memory of one parse.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from musicflow.core.errors import MidiFormatError

try:
    from musicflow.core import _smf
except ImportError as exc:  # pragma: no cover - only when the package was not built
    raise ImportError(
        "musicflow's C MIDI reader (musicflow.core._smf) is not built: reinstall with "
        "`pip install -e .` (needs a C compiler and the Python headers)"
    ) from exc


#: Most notes read from one file (drums excluded): 32 MB in the reader, ~40 MB in the result.
#: Real pieces have thousands (piano-midi.de's largest: under 20,000); "black MIDI" stunt files
#: with millions are quarantined ``too_large``.
MAX_NOTES = 500_000

#: Most events (all tracks, meta and sysex included) read from one file.
MAX_EVENTS = 5_000_000


class MidiScan(NamedTuple):
    """Everything the encoder and the validator need from one file."""

    midi_type: int
    n_tracks: int
    division: int
    ticks_per_beat: int | None
    notes: np.ndarray
    n_drum_notes: int
    n_orphan_note_off: int
    n_unterminated: int


class _Raw(NamedTuple):
    error: str | None
    detail: str | None
    midi_type: int | None
    n_tracks: int | None
    division: int | None
    notes: np.ndarray
    n_drum_notes: int
    n_orphan_note_off: int
    n_unterminated: int
    track_names: list[bytes]  # with_tracks only: each track's first name, at most 64 bytes


def ticks_per_beat_of(division: int) -> int | None:
    """Metrical ticks per beat of a header division, None for SMPTE (top bit set)."""
    return None if division & 0x8000 else division


def _parse(
    data: bytes,
    max_notes: int = MAX_NOTES,
    max_events: int = MAX_EVENTS,
    *,
    with_tracks: bool = False,
) -> _Raw:
    """Run the C parser; never raises for bad input (the error is in the result).

    On error the header fields are those read before the failure (None when not read), so the
    manifest can still show e.g. the division of a truncated file.

    ``with_tracks`` (the track policies, docs/encoding.md "Tracks"): drum notes are kept, notes
    get a sixth column, the program in force at their onset, and ``track_names`` is filled.
    """
    err, detail, midi_type, n_tracks, division, notes, n_drum, n_orphan, n_unterm, names = (
        _smf.parse(data, max_notes, max_events, with_tracks)
    )
    arr = np.frombuffer(notes, dtype=np.int64).reshape(-1, 6 if with_tracks else 5)
    return _Raw(
        error=err,
        detail=detail,
        midi_type=None if midi_type < 0 else midi_type,
        n_tracks=None if err is not None or n_tracks < 0 else n_tracks,
        division=None if division < 0 else division,
        notes=arr,
        n_drum_notes=n_drum,
        n_orphan_note_off=n_orphan,
        n_unterminated=n_unterm,
        track_names=names,
    )


def scan_midi(data: bytes) -> MidiScan:
    """Parse SMF bytes into header values and paired notes.

    ``notes`` is int64 ``(N, 5)``: track, channel, pitch, on_tick, off_tick (absolute ticks of
    the note's track), drums excluded, sorted by (on_tick, pitch, track) and then by channel and
    off_tick so the order is fully deterministic.

    Raises MidiFormatError with code ``not_midi`` (no ``MThd`` at the start), ``truncated``
    (a chunk or event cut short, or garbage where events should be) or ``too_large`` (over
    :data:`MAX_NOTES` or :data:`MAX_EVENTS`).
    """
    raw = _parse(data)
    if raw.error is not None:
        if raw.error not in ("not_midi", "truncated", "too_large"):  # pragma: no cover
            raise RuntimeError(f"unexpected parser error {raw.error}: {raw.detail}")
        raise MidiFormatError(raw.error, raw.detail or raw.error)
    assert raw.midi_type is not None and raw.division is not None and raw.n_tracks is not None
    return MidiScan(
        midi_type=raw.midi_type,
        n_tracks=raw.n_tracks,
        division=raw.division,
        ticks_per_beat=ticks_per_beat_of(raw.division),
        notes=raw.notes,
        n_drum_notes=raw.n_drum_notes,
        n_orphan_note_off=raw.n_orphan_note_off,
        n_unterminated=raw.n_unterminated,
    )
