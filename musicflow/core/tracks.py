"""Track policies: which roll-v1 track each note goes to (docs/encoding.md, "Tracks"), pure numpy.

``merged`` is roll-v1 itself (one roll, drums dropped): nothing here is used for it. The two
multi-track policies split a file's notes into tracks and encode each track with the roll-v1
rules of :mod:`musicflow.core.roll` (so the same-pitch rule applies within a track, not across):

- ``voices``: one track per voice, a (MIDI track, channel) pair holding notes other than
  drums, in file order (by track, then channel); a file with more than :data:`MAX_VOICES` gets
  no windows, and validation quarantines a file whose voice count differs from the dataset's
  (:func:`dataset_voices`) with the reason ``voice_count``;
- ``instruments``: one track per General MIDI family of :data:`FAMILIES` (:func:`family_of`
  maps the 128 programs and channel 10), always all of them, in that order; the drum track is
  a roll on the same grid whose rows are the drum keys (``row = pitch_low + 95 - key``).

A multi-track window is the concatenation of its tracks' packed roll-v1 windows, in track
order (``K × 1152`` bytes); a window is stored when any track has an active cell.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, NamedTuple

import numpy as np

from musicflow.core import roll
from musicflow.core.catalog import TRACKED_MODELS

MERGED = "merged"
VOICES = "voices"
INSTRUMENTS = "instruments"
POLICIES = (MERGED, VOICES, INSTRUMENTS)

#: Most voices a ``voices`` file may have (string octets and double choirs fit); more gives no
#: windows, and bounds a file's encoded size at 8 × 1152 bytes a window.
MAX_VOICES = 8

#: ``instruments`` tracks: (name, first GM programs of the family (0-based), program written on
#: output, output channel index). MuseGAN's five (drums, piano, guitar, bass, strings) plus
#: ``lead`` (brass, reeds, pipes, synth leads: the melody instruments) and ``other`` (synth
#: effects, ethnic, percussive and sound effects), so every program has a family.
FAMILY_TABLE: tuple[tuple[str, tuple[range, ...], int, int], ...] = (
    ("drums", (), 0, roll.DRUM_CHANNEL),
    ("piano", (range(0, 24),), 0, 0),  # piano, chromatic percussion, organ
    ("guitar", (range(24, 32),), 24, 1),
    ("bass", (range(32, 40),), 33, 2),
    ("strings", (range(40, 56), range(88, 96)), 48, 3),  # strings, ensemble, synth pads
    ("lead", (range(56, 88),), 56, 4),  # brass, reed, pipe, synth lead
    ("other", (range(96, 128),), 104, 5),  # synth effects, ethnic, percussive, sound effects
)
FAMILIES = tuple(f[0] for f in FAMILY_TABLE)
DRUMS = 0  # index of the drum family

_FAMILY_OF_PROGRAM = np.zeros(128, dtype=np.int64)
for _index, (_name, _ranges, _program, _channel) in enumerate(FAMILY_TABLE):
    for _r in _ranges:
        _FAMILY_OF_PROGRAM[_r.start : _r.stop] = _index
assert all(_FAMILY_OF_PROGRAM[p] > 0 for p in range(128))  # every program has a family


def refusal(model: str) -> str:
    """What ``train`` says (exit 2) for a model that cannot play a dataset's tracks."""
    able = ", ".join(sorted(TRACKED_MODELS))
    return f"model {model} cannot take tracks (only {able} can); encode with --tracks merged"


def takes_tracks(model: str) -> bool:
    """Whether ``model`` trains on a dataset encoded with tracks (``catalog.TRACKED_MODELS``)."""
    return model in TRACKED_MODELS


def track_count(encoding: dict[str, Any]) -> int:
    """K, a dataset's tracks (its encoding's ``tracks``), 1 for a merged dataset."""
    return max(1, len(encoding.get("tracks") or ()))


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"unknown track policy {policy!r} (use {', '.join(POLICIES)})")
    return policy


def family_of(program: int, channel: int) -> str:
    """The ``instruments`` family of a note: ``drums`` on channel 10 (index 9), else by program."""
    return FAMILIES[int(_families(np.array([program]), np.array([channel]))[0])]


def _families(program: np.ndarray, channel: np.ndarray) -> np.ndarray:
    return np.where(channel == roll.DRUM_CHANNEL, DRUMS, _FAMILY_OF_PROGRAM[program & 127])


class Split(NamedTuple):
    """A file's notes assigned to tracks."""

    track: np.ndarray  # int64 (N,): each kept note's track index (-1: not encoded)
    n_tracks: int  # tracks of the file's encoding (voices: its voice count)
    names: list[str]  # per track: voices: its MIDI track's name ("" when none); instruments: family
    programs: list[int]  # per track: the program most of its notes play (0 for an empty track)


def split(notes: np.ndarray, policy: str, track_names: list[bytes] | None = None) -> Split:
    """Assign notes ``(N, 6)`` (track, channel, pitch, on, off, program) to the policy's tracks.

    ``voices``: drum notes are not encoded (-1). ``track_names``: the file's MIDI track names,
    as the reader returns them.
    """
    notes = np.asarray(notes, dtype=np.int64).reshape(-1, 6)
    channel, program = notes[:, 1], notes[:, 5]
    if check_policy(policy) == VOICES:
        drums = channel == roll.DRUM_CHANNEL
        key = notes[:, 0] * 16 + channel
        voices, index = np.unique(key[~drums], return_inverse=True)
        track = np.full(len(notes), -1, dtype=np.int64)
        track[~drums] = index
        n = len(voices)
        raw = track_names or []
        names = [
            _text(raw[int(v) // 16]) if int(v) // 16 < len(raw) else "" for v in voices.tolist()
        ]
    elif policy == INSTRUMENTS:
        track = _families(program, channel)
        n = len(FAMILIES)
        names = list(FAMILIES)
    else:
        raise ValueError("the merged policy has no tracks: use roll.encode_notes")
    programs = []
    for t in range(n):
        played = program[track == t]
        programs.append(int(np.bincount(played).argmax()) if len(played) else 0)
    return Split(track, n, names, programs)


def _text(raw: bytes) -> str:
    """A track name as text: MIDI text has no declared encoding, so UTF-8 with a fallback."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


class Encoded(NamedTuple):
    """A file's multi-track windows: ``packed`` is ``(n, n_tracks × 1152)``."""

    segments: np.ndarray  # int32 (n,)
    packed: np.ndarray  # uint8 (n, n_tracks * PACKED_BYTES)
    n_segments: int
    n_notes: int  # encoded notes inside the pitch window
    n_out_of_range: int
    complete: bool


def encode_tracks(
    notes: np.ndarray,
    tracks: Split,
    ticks_per_beat: int,
    pitch_low: int = roll.DEFAULT_PITCH_LOW,
    max_segments: int = roll.MAX_SEGMENTS,
) -> Encoded:
    """Each track's notes → roll-v1 windows (roll.encode_notes), laid side by side.

    The windows stored are the union of the tracks' windows; a track with nothing in a stored
    window holds zeros there. Drum notes are given channel 0 here so the roll-v1 rule that drops
    channel 10 does not apply to the drum track.
    """
    notes = np.asarray(notes, dtype=np.int64).reshape(-1, 6)
    k = tracks.n_tracks
    order = np.argsort(tracks.track, kind="stable")  # each track's notes, still in onset order
    bounds = np.searchsorted(tracks.track[order], np.arange(k + 1))
    per_track: dict[int, roll.Encoded] = {}
    n_notes = n_out = 0
    for t in range(k):
        if bounds[t] == bounds[t + 1]:
            continue  # an empty track: zeros in every window
        mine = notes[order[bounds[t] : bounds[t + 1]], :5]
        mine[:, 1] = 0  # (a copy) drums too are encoded here
        enc = roll.encode_notes(mine, ticks_per_beat, pitch_low, max_segments)
        n_notes += enc.n_notes
        n_out += enc.n_out_of_range
        if not enc.complete:
            return _incomplete(k, enc.n_segments, n_notes, n_out)
        per_track[t] = enc
    found = [e.segments for e in per_track.values()]
    segments = found[0] if len(found) == 1 else np.unique(np.concatenate(found or [[]]))
    if len(segments) > max_segments:
        return _incomplete(k, len(segments), n_notes, n_out)
    packed = np.zeros((len(segments), k, roll.PACKED_BYTES), dtype=np.uint8)
    for t, enc in per_track.items():
        packed[np.searchsorted(segments, enc.segments), t] = enc.packed
    return Encoded(
        segments.astype(np.int32),
        packed.reshape(len(segments), k * roll.PACKED_BYTES),
        len(segments),
        n_notes,
        n_out,
        True,
    )


def _incomplete(k: int, n_segments: int, n_notes: int, n_out: int) -> Encoded:
    return Encoded(
        np.zeros(0, np.int32),
        np.zeros((0, k * roll.PACKED_BYTES), np.uint8),
        n_segments,
        n_notes,
        n_out,
        False,
    )


def dataset_voices(counts: list[int | None]) -> int:
    """The voice count of a ``voices`` dataset: the most common count among files with 1 …
    MAX_VOICES voices (a tie goes to the smaller count); 0 when no file has one."""
    seen = Counter(int(c) for c in counts if c is not None and 1 <= int(c) <= MAX_VOICES)
    if not seen:
        return 0
    return min(seen, key=lambda c: (-seen[c], c))


def output_channel(index: int) -> int:
    """Voice ``index``'s MIDI channel on output: 0, 1, … skipping channel 10 (index 9)."""
    return index if index < roll.DRUM_CHANNEL else index + 1


def describe(
    policy: str, files: list[tuple[list[str], list[int]]], n_voices: int = 0
) -> list[dict]:
    """The dataset's tracks, as the encoding records them: ``name``, ``program``, ``channel``
    (output channel index) and ``drums``, in track order.

    ``files``: each accepted file's per-track names and programs (the manifest's
    ``track_names``/``track_programs``). ``voices``: a voice's name is its most common non-empty
    track name (else ``Voice N``) and its program the most common one; ``instruments``: the
    family's name, its most common program in the files (else the family's default).
    """
    out = []
    if check_policy(policy) == VOICES:
        for i in range(n_voices):
            names = Counter(n[i] for n, _ in files if i < len(n) and n[i])
            programs = Counter(p[i] for _, p in files if i < len(p))
            out.append(
                {
                    "name": _mode(names) or f"Voice {i + 1}",
                    "program": _mode(programs) or 0,
                    "channel": output_channel(i),
                    "drums": False,
                }
            )
        return out
    if policy != INSTRUMENTS:
        raise ValueError("the merged policy has no tracks")
    for name, _ranges, default, channel in FAMILY_TABLE:
        programs = Counter(
            p[n.index(name)] for n, p in files if name in n and n.index(name) < len(p)
        )
        chosen = _mode(programs) if name != FAMILIES[DRUMS] else None
        out.append(
            {
                "name": name,
                "program": default if chosen is None else chosen,
                "channel": channel,
                "drums": name == FAMILIES[DRUMS],
            }
        )
    return out


def _mode(counts: Counter) -> Any:
    """The most common value, the smallest of a tie (so the choice does not depend on order)."""
    if not counts:
        return None
    return min(counts, key=lambda v: (-counts[v], v))


def encoding_params(pitch_low: int, policy: str, tracks: list[dict]) -> dict[str, Any]:
    """roll-v1's parameters plus the track axis: ``policy`` and the ``tracks`` list."""
    return roll.encoding_params(pitch_low) | {"policy": check_policy(policy), "tracks": tracks}


def policy_of(encoding: dict[str, Any]) -> str:
    """The track policy of a dataset's encoding (``merged`` when it has no track axis)."""
    return str(encoding.get("policy", MERGED))


def window_bytes(encoding: dict[str, Any]) -> int:
    """Bytes of one stored window: 1152 per track."""
    return roll.PACKED_BYTES * max(1, len(encoding.get("tracks", ())))


def decode_tracks(
    packed: np.ndarray, segments: np.ndarray, n_tracks: int, pitch_low: int
) -> list[np.ndarray]:
    """A file's stored windows ``(n, n_tracks × 1152)`` → each track's notes
    ``(pitch, start_step, end_step)`` as :func:`roll.decode_roll` gives them."""
    p = np.asarray(packed, dtype=np.uint8).reshape(len(segments), n_tracks, roll.PACKED_BYTES)
    return [
        roll.decode_roll(roll.unpack_windows(p[:, t]), pitch_low, segments=segments)
        for t in range(n_tracks)
    ]


def tracks_to_midi(
    notes: list[np.ndarray],
    tracks: list[dict],
    *,
    ticks_per_beat: int = 96,
    tempo_bpm: float = 100,
    velocity: int = 80,
    key: str | None = None,
    text: str | None = None,
    markers: tuple[tuple[int, str], ...] = (),
) -> bytes:
    """Decoded notes of each track → a type-1 SMF: track 0 the tempo and meter (and, when
    given, a key signature ``key`` as mido spells it, a text event ``text`` and markers
    ``(step, text)``, as :func:`roll.notes_to_midi` writes them), then one
    track per encoded track that holds notes, named, its program set on its own channel
    (drums on channel 10). Steps map to ticks as in :func:`roll.notes_to_midi`."""
    import io

    import mido  # only here: the encoder path must not pay for importing mido

    if len(notes) != len(tracks):
        raise ValueError(f"{len(notes)} note arrays for {len(tracks)} tracks")
    if ticks_per_beat < roll.STEPS_PER_BEAT or ticks_per_beat > 32767:
        raise ValueError("ticks_per_beat must be in 12..32767 to keep every step")
    mid = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    mid.tracks.append(roll.conductor_track(ticks_per_beat, tempo_bpm, key, text, markers))
    for arr, spec in zip(notes, tracks, strict=True):
        arr = np.asarray(arr, dtype=np.int64).reshape(-1, 3)
        if not len(arr):
            continue
        channel = roll.DRUM_CHANNEL if spec["drums"] else int(spec["channel"])
        on = (2 * arr[:, 1] * ticks_per_beat + roll.STEPS_PER_BEAT) // (2 * roll.STEPS_PER_BEAT)
        off = (2 * arr[:, 2] * ticks_per_beat + roll.STEPS_PER_BEAT) // (2 * roll.STEPS_PER_BEAT)
        events = sorted(
            [(int(t), 0, int(p)) for t, p in zip(off, arr[:, 0], strict=True)]
            + [(int(t), 1, int(p)) for t, p in zip(on, arr[:, 0], strict=True)]
        )
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=str(spec["name"]), time=0))
        track.append(
            mido.Message("program_change", program=int(spec["program"]), channel=channel, time=0)
        )
        now = 0
        for t, kind, p in events:
            name = "note_on" if kind else "note_off"
            track.append(
                mido.Message(name, note=p, velocity=velocity, channel=channel, time=t - now)
            )
            now = t
        mid.tracks.append(track)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()
