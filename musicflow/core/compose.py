"""What a musician directs in ``musicflow generate``, pure: a prompt file read as the dataset
reads its files, keys, and the record of how a piece was made (docs/cli.md).

- :func:`read_prompt`: a user's MIDI file through the project's own reader and grid
  (``scan.scan_file``, ``roll.song_matrix``) in the model's pitch window, judged by the audit's
  own rules (``suite.judge``): a file the audit would quarantine raises
  :class:`~musicflow.core.errors.MidiFormatError` with the audit's reason code.
- :func:`parse_key`, :func:`key_of_tonic`: key names as MIDI key signatures spell them
  (``D``, ``Bb``, ``F#m``) ↔ the tonic the frame models condition on, which is that of the
  key's major scale (a minor key shares its relative major's, ``musicflow/core/frames.py``).
- :data:`STEPS_PER_BAR`: a 4/4 bar on the roll grid, the unit of ``--bars`` and the seam.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

from musicflow.core import roll, scan, suite, tracks
from musicflow.core.defaults import DEFAULT_MAX_BYTES
from musicflow.core.errors import MidiFormatError, UsageError

STEPS_PER_BAR = 4 * roll.STEPS_PER_BEAT  # 4/4: the time signature generated files carry
_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
# the keys a MIDI key signature can spell (at most 7 sharps or flats), major then minor
_MAJOR = ("C", "G", "D", "A", "E", "B", "F#", "C#", "F", "Bb", "Eb", "Ab", "Db", "Gb", "Cb")
_MINOR = ("Am", "Em", "Bm", "F#m", "C#m", "G#m", "D#m", "A#m", "Dm", "Gm", "Cm", "Fm", "Bbm")
KEYS = _MAJOR + _MINOR + ("Ebm", "Abm")
# the signature written for a tonic the model chose: the major key with the fewest accidentals
_TONIC_KEYS = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def parse_key(text: str) -> tuple[str, int]:
    """``(key name, tonic 0–11)`` for a key like ``D``, ``bb``, ``F#m``; ValueError for a name
    no key signature spells. The tonic is that of the key's major scale: ``F#m`` → A (9)."""
    name = text.strip()
    name = name[:1].upper() + name[1:].replace("M", "m")
    if name not in KEYS:
        raise ValueError(f"unknown key {text!r}; choose one of {', '.join(KEYS)}")
    minor = name.endswith("m")
    root = name[:-1] if minor else name
    pc = _LETTERS[root[0]] + root[1:].count("#") - root[1:].count("b")
    return name, (pc + (3 if minor else 0)) % 12


def key_of_tonic(tonic: int) -> str:
    """The key signature written for a piece whose major-scale tonic is ``tonic``."""
    return _TONIC_KEYS[int(tonic) % 12]


def fifths_of_key(name: str) -> int:
    """Sharps (> 0) or flats (< 0) of the key signature ``name`` (one of ``KEYS``), for the
    score (``musicflow/pages/score.py``); a minor key shares its relative major's."""
    order = (*_MINOR, "Ebm", "Abm") if name.endswith("m") else _MAJOR
    i = order.index(name)
    return i if i < 8 else 7 - i


@dataclass
class Prompt:
    """A prompt on the roll grid: ``song`` bool (96, T) in the model's pitch window."""

    song: np.ndarray
    bars: int  # whole 4/4 bars the song spans (its last bar padded with silence)
    tempo_bpm: float | None  # the file's first tempo, None when it sets none
    n_out_of_range: int  # notes outside the pitch window, dropped
    warnings: list[str] = field(default_factory=list)  # the audit's warning codes
    #: read for a model with tracks: bool (K, 96, T), the song's notes split by the model's
    #: track policy (``tracks.split``), each track as a roll; None for a merged model
    parts: np.ndarray | None = None

    def first_bars(self, n: int) -> np.ndarray:
        """The song's first ``n`` bars (96, 48·n), cut at the bar line, padded with silence."""
        out = np.zeros((roll.ROWS, n * STEPS_PER_BAR), bool)
        width = min(self.song.shape[1], out.shape[1])
        out[:, :width] = self.song[:, :width]
        return out

    def first_track_bars(self, n: int) -> np.ndarray:
        """:meth:`first_bars` of each track: bool (K, 96, 48·n) (a prompt read with tracks)."""
        if self.parts is None:
            raise ValueError("this prompt was read without tracks")
        out = np.zeros((len(self.parts), roll.ROWS, n * STEPS_PER_BAR), bool)
        width = min(self.parts.shape[2], out.shape[2])
        out[:, :, :width] = self.parts[:, :, :width]
        return out


def read_prompt(
    data: bytes,
    name: str,
    pitch_low: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
    size_bytes: int | None = None,
    role: str = "prompt",
    policy: str = tracks.MERGED,
    n_tracks: int = 1,
) -> Prompt:
    """Read a prompt file's bytes as the audit and the encoder read a dataset's files.

    Raises MidiFormatError (``code`` the audit's quarantine reason, e.g. ``not_midi``) for a
    file the audit would quarantine in this pitch window. ``size_bytes``: the file's size when
    its bytes were not read (over ``max_bytes``: ``too_large``, as the audit judges it unread).
    ``role`` names the file in the error (``prompt``, ``--interpolate``).

    ``policy``, ``n_tracks``: a model with tracks (docs/encoding.md "Tracks") also gets the
    prompt's notes split as its dataset's were (``Prompt.parts``); UsageError when the prompt
    has another number of voices than the model's ``n_tracks``.
    """
    record = {"size_bytes": len(data) if size_bytes is None else size_bytes}
    if record["size_bytes"] <= max_bytes:
        record.update(scan.scan_file(data, pitch_low).record)
    reason, warnings = suite.judge(record, {"pitch_low": pitch_low, "max_bytes": max_bytes})
    if reason is not None:
        detail = record.get("error_detail") or f"the audit would quarantine it ({reason})"
        raise MidiFormatError(reason, f"{role} {name}: {detail}")
    from musicflow.core.midi import scan_midi

    midi = scan_midi(data)
    song, n_out = roll.song_matrix(midi.notes, midi.ticks_per_beat, pitch_low)
    parts = None
    if tracks.check_policy(policy) != tracks.MERGED:
        parts, n_out = _track_parts(
            data, midi.ticks_per_beat, pitch_low, policy, n_tracks, f"{role} {name}"
        )
        parts = _pad_steps(parts, max(parts.shape[2], song.shape[1]))
        song = _pad_steps(song[None], parts.shape[2])[0]
        song |= parts[[not t for t in _drum_mask(policy, len(parts))]].any(axis=0)
    bars = max(1, -(-song.shape[1] // STEPS_PER_BAR))
    return Prompt(song, bars, _first_tempo(data), int(n_out), warnings, parts)


def _drum_mask(policy: str, k: int) -> list[bool]:
    return [policy == tracks.INSTRUMENTS and t == tracks.DRUMS for t in range(k)]


def _pad_steps(x: np.ndarray, steps: int) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (0, steps - x.shape[2])))


def _track_parts(
    data: bytes, tpb: int, pitch_low: int, policy: str, n_tracks: int, role: str
) -> tuple[np.ndarray, int]:
    """A prompt's notes split by ``policy`` (``tracks.split``): bool (K, 96, T) and the notes
    out of the pitch window. UsageError when it has another number of tracks than the
    model's."""
    from musicflow.core.midi import _parse

    raw = _parse(data, with_tracks=True)
    split = tracks.split(raw.notes, policy, raw.track_names)
    if split.n_tracks != n_tracks:
        raise UsageError(
            f"{role} has {split.n_tracks} voices and the model plays {n_tracks}: give a prompt "
            f"with {n_tracks}"
        )
    rolls, n_out = [], 0
    for t in range(n_tracks):
        mine = raw.notes[split.track == t, :5].copy()
        mine[:, 1] = 0  # a drum track's notes too (channel 10 is otherwise dropped)
        song, out = roll.song_matrix(mine, tpb, pitch_low)
        rolls.append(song)
        n_out += int(out)
    steps = max(r.shape[1] for r in rolls)
    return np.stack([_pad_steps(r[None], steps)[0] for r in rolls]), n_out


def _first_tempo(data: bytes) -> float | None:
    """The first Set Tempo of a file the reader accepted, or None (mido reads it: the C reader
    keeps notes only; a file mido refuses just keeps the default tempo)."""
    import mido

    try:
        for msg in mido.MidiFile(file=io.BytesIO(data)).merged_track:
            if msg.type == "set_tempo":
                return round(float(mido.tempo2bpm(msg.tempo)), 3)
    except Exception:  # any failure to parse: no tempo known
        return None
    return None


@dataclass
class Direction:
    """What a user asked ``generate`` for (docs/cli.md); None: the model's own choice."""

    bars: int = 16
    temperature: float | None = None
    key: str | None = None  # a name of :data:`KEYS`
    tempo_bpm: float | None = None  # None: the prompt's tempo, else the default
    program: int = 0  # General MIDI program, 0 = Acoustic Grand Piano
    prompt: Prompt | None = None
    prompt_name: str | None = None
    prompt_bars: int | None = None  # None: all the prompt's bars, up to the model's context
    ends: tuple[Prompt, Prompt] | None = None  # --interpolate A B
    end_names: tuple[str, str] | None = None

    def settings(self) -> dict[str, object]:
        """The settings as recorded in each piece (its text event and JSON)."""
        out: dict[str, object] = {
            "bars": self.bars,
            "temperature": self.temperature,
            "key": self.key,
            "tempo_bpm": self.tempo_bpm,
            "program": self.program,
        }
        if self.prompt is not None:
            out["prompt"] = {"file": self.prompt_name, "bars": self.prompt_bars}
        if self.end_names is not None:
            out["interpolate"] = list(self.end_names)
        return out


def check_tracks(model: str, n_tracks: int, direction: Direction) -> None:
    """UsageError when a model that plays ``n_tracks`` > 1 tracks is asked to interpolate
    (docs/models.md, "Tracks"): the ends would need a track split of their own, not done yet.
    A prompt is fine: it is read with the model's tracks (``read_prompt``)."""
    if n_tracks > 1 and (direction.ends is not None or direction.end_names is not None):
        raise UsageError(
            f"a {model} model trained on {n_tracks} tracks cannot interpolate (--interpolate) "
            "yet; use a model trained with --tracks merged"
        )


def check_direction(model: str, direction: Direction) -> None:
    """UsageError when ``model`` (a name of ``MODEL_NAMES``) cannot do what ``direction``
    asks: a prompt, an interpolation (their file names suffice: checked before reading them),
    a temperature or a key."""
    from musicflow.core.catalog import DIRECTABLE

    can = DIRECTABLE.get(model, frozenset())
    asked = {
        "prompt": (
            direction.prompt is not None or direction.prompt_name is not None,
            "continue a prompt (--prompt)",
        ),
        "interpolate": (
            direction.ends is not None or direction.end_names is not None,
            "interpolate (--interpolate)",
        ),
        "temperature": (direction.temperature is not None, "take a --temperature"),
        "key": (direction.key is not None, "take a --key"),
    }
    for what, (wanted, verb) in asked.items():
        if wanted and what not in can:
            who = " or ".join(m for m, c in DIRECTABLE.items() if what in c)
            raise UsageError(f"a {model} model cannot {verb}; use a {who} model")
    if direction.key is not None and (asked["prompt"][0] or asked["interpolate"][0]):
        raise UsageError("--key applies to new pieces: a prompt or --interpolate sets the key")


def silent_bars(song: np.ndarray) -> np.ndarray:
    """bool (bars,): which 4/4 bars of a song (96, T) have no sounding note (the last bar
    padded with silence). The measure of "drift into silence" (docs/models.md)."""
    x = np.asarray(song, bool)
    bars = -(-x.shape[1] // STEPS_PER_BAR)
    padded = np.zeros((x.shape[0], bars * STEPS_PER_BAR), bool)
    padded[:, : x.shape[1]] = x
    return ~padded.reshape(x.shape[0], bars, STEPS_PER_BAR).any(axis=(0, 2))
