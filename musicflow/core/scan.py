"""One MIDI file's bytes → manifest numbers and packed roll-v1 windows, in one pass.

The encode stage calls :func:`scan_file` once per new file (it is the unit that is cached), and
the validation stage turns the record's numbers into quarantine codes and warnings
(docs/dataset.md): this module never decides, it only measures, and never raises for bad MIDI.

Windows are computed only when the file is encodable by encoding rule 1 and has a kept note:
no parser error, a metrical division with 1 ≤ tpb ≤ 32767, and n_notes > 0 (format 2 is still
encoded: refusing it is validation's call, which also keeps the record complete). A file whose
notes would need more than :data:`musicflow.core.roll.MAX_SEGMENTS` windows gets its true
``n_segments`` but no windows (``windows_complete`` False): validation should quarantine it
``too_large``.

With a track policy other than ``merged`` (:mod:`musicflow.core.tracks`) the record gains
:data:`TRACK_RECORD_KEYS` and the windows are multi-track; ``merged`` is untouched by them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from musicflow.core import roll, tracks
from musicflow.core.midi import _parse, ticks_per_beat_of

MAX_TICKS_PER_BEAT = 32767

RECORD_KEYS = (
    "error",
    "error_detail",
    "midi_type",
    "ticks_per_beat",
    "smpte",
    "n_tracks",
    "n_notes",
    "n_notes_total",
    "pitch_min",
    "pitch_max",
    "n_out_of_range",
    "n_unterminated",
    "n_orphan_note_off",
    "n_drum_notes",
    "n_segments",
    "windows_complete",
)

#: What a multi-track record adds: ``n_voices`` (``voices``: the file's voice count, judged
#: against the dataset's; None for ``instruments``), and per track of the file that holds notes
#: (voices: every voice; instruments: every family played) its name and main program.
TRACK_RECORD_KEYS = ("n_voices", "track_names", "track_programs")


class FileScan(NamedTuple):
    """The record of one file and its windows (empty when not encodable)."""

    record: dict[str, Any]
    packed: np.ndarray  # uint8 (n, 1152)
    segments: np.ndarray  # int32 (n,)


def _empty() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, roll.PACKED_BYTES), dtype=np.uint8), np.zeros(0, dtype=np.int32)


def scan_file(
    data: bytes, pitch_low: int = roll.DEFAULT_PITCH_LOW, policy: str = tracks.MERGED
) -> FileScan:
    """Parse and encode one file. Values are plain Python ints/bools/str, None where unknown.

    ``windows_complete`` is False only when the windows were due but over the size cap; it is
    None when no windows were due.
    """
    roll.encoding_params(pitch_low)  # validates pitch_low before any work
    if tracks.check_policy(policy) != tracks.MERGED:
        return _scan_tracks(data, pitch_low, policy)
    raw = _parse(data)
    record = _header(raw, RECORD_KEYS)
    packed, segments = _empty()
    if raw.error is not None:
        return FileScan(record, packed, segments)

    notes = raw.notes
    record.update(_note_counts(raw, notes[:, 2], pitch_low, int(raw.n_drum_notes)))
    tpb = record["ticks_per_beat"]
    if not _encodable(record):
        return FileScan(record, packed, segments)
    enc = roll.encode_notes(notes, tpb, pitch_low)
    record["n_segments"] = enc.n_segments
    record["windows_complete"] = enc.complete
    return FileScan(record, enc.packed, enc.segments)


def _header(raw: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """The record's fields known from the header: the outcome, the type and the grid."""
    record: dict[str, Any] = dict.fromkeys(keys)
    record.update(error=raw.error, error_detail=raw.detail, midi_type=raw.midi_type)
    if raw.division is not None:
        tpb = ticks_per_beat_of(raw.division)
        record["ticks_per_beat"] = tpb
        record["smpte"] = tpb is None
    return record


def _note_counts(raw: Any, pitch: np.ndarray, pitch_low: int, n_drum_notes: int) -> dict:
    """The record's note counts over ``pitch`` (the notes that would be encoded)."""
    window = (pitch >= pitch_low) & (pitch <= pitch_low + roll.ROWS - 1)
    n_total = len(pitch)
    n_kept = int(np.count_nonzero(window))
    return {
        "n_tracks": raw.n_tracks,
        "n_notes": n_kept,
        "n_notes_total": n_total,
        "pitch_min": int(pitch.min()) if n_total else None,
        "pitch_max": int(pitch.max()) if n_total else None,
        "n_out_of_range": n_total - n_kept,
        "n_unterminated": int(raw.n_unterminated),
        "n_orphan_note_off": int(raw.n_orphan_note_off),
        "n_drum_notes": n_drum_notes,
        "n_segments": 0 if n_kept == 0 else None,  # None: not encodable, so unknown
    }


def _encodable(record: dict[str, Any]) -> bool:
    """A grid the encoder takes and notes in the window: windows are due."""
    tpb = record["ticks_per_beat"]
    return tpb is not None and 1 <= tpb <= MAX_TICKS_PER_BEAT and record["n_notes"] > 0


def _scan_tracks(data: bytes, pitch_low: int, policy: str) -> FileScan:
    """:func:`scan_file` for ``voices`` and ``instruments``: the same record, counted over the
    notes the policy encodes, plus :data:`TRACK_RECORD_KEYS`."""
    raw = _parse(data, with_tracks=True)
    record = _header(raw, RECORD_KEYS + TRACK_RECORD_KEYS)
    k = 0 if policy == tracks.VOICES else len(tracks.FAMILIES)
    packed = np.zeros((0, max(k, 1) * roll.PACKED_BYTES), dtype=np.uint8)
    segments = np.zeros(0, dtype=np.int32)
    if raw.error is not None:
        return FileScan(record, packed, segments)
    split = tracks.split(raw.notes, policy, raw.track_names)
    held = [t for t in range(split.n_tracks) if np.any(split.track == t)]
    # drum notes not encoded: voices leaves them out, instruments keeps them
    n_drum_notes = int(raw.n_drum_notes) if policy == tracks.VOICES else 0
    record.update(
        _note_counts(raw, raw.notes[split.track >= 0, 2], pitch_low, n_drum_notes),
        n_voices=split.n_tracks if policy == tracks.VOICES else None,
        track_names=[split.names[t] for t in held],
        track_programs=[split.programs[t] for t in held],
    )
    tpb = record["ticks_per_beat"]
    if not _encodable(record):
        return FileScan(record, packed, segments)
    if split.n_tracks > tracks.MAX_VOICES and policy == tracks.VOICES:
        return FileScan(record, packed, segments)  # quarantined voice_count: never stored
    enc = tracks.encode_tracks(raw.notes, split, tpb, pitch_low)
    record["n_segments"] = enc.n_segments
    record["windows_complete"] = enc.complete
    return FileScan(record, enc.packed, enc.segments)
