"""Scores of generated pieces: decoded notes → MusicXML (pure), MusicXML → SVG (verovio).

:func:`to_musicxml` writes a grand staff (treble and bass, one keyboard part) on the encoding's
grid (``roll.STEPS_PER_BEAT`` steps per beat, 4/4), written directly rather than through
music21, so ``generate`` pays milliseconds per piece and imports nothing:

- **staves**: a note at or above :data:`SPLIT_PITCH` (middle C) goes to the treble staff, the
  rest to the bass staff; each staff is one voice of chords, a note held across another's
  onset becomes tied notes (a keyboard reduction, as a pianist reads it). A piece with tracks
  (:func:`tracks_to_musicxml`) is an open score instead: a named part on one staff per voice
  or instrument, its clef by its notes' median (:func:`clef_for`); drums are left to the MIDI.
- **rhythm**: notes are cut at bar lines and at every onset and end in their staff. Whole beats
  merge into quarter, half, dotted half or whole notes where the metre allows; a beat cut
  inside is written in the coarsest subdivision that holds all its cuts: eighths or sixteenths,
  eighth triplets (3:2), sixteenth sextuplets (6:4) or 32nd duodecuplets (12:8), with ties
  where one value does not fit. ``<divisions>`` is 12 per quarter, so every duration is the
  exact step count and a reader gets back the same grid.
- **articulation gaps**: the encoding shortens a note by one step when the same pitch is struck
  again (docs/encoding.md), and models learn such gaps; a note that ends one step short of the
  sixteenth or eighth-triplet grid is written up to it (:func:`snap_ends`), so a repeated
  quarter reads as a quarter, not a tuplet of a dotted eighth and a 32nd. The MIDI file keeps
  the exact lengths; ``snap=False`` writes them exactly too.
- **key**: the best-fitting major scale of the notes' onsets (``frames.MAJOR_STEPS``) gives
  the key signature and whether black keys are spelled as sharps or flats; accidentals follow
  the key and hold to the end of the bar, as in print.
- **seam**: a continuation's prompt/continuation boundary (``seam_step``) is marked "prompt"
  at the start and "continuation" at the seam, with a double bar line when it falls on one.

:func:`render_svg` engraves MusicXML with verovio (imported inside it: it is only needed by
the report).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from musicflow.adapters import atomic
from musicflow.core.frames import MAJOR_STEPS
from musicflow.core.roll import STEPS_PER_BEAT

SUFFIX = ".musicxml"
BEATS_PER_BAR = 4  # the pieces are 4/4 (roll.notes_to_midi writes that time signature)
BAR = BEATS_PER_BAR * STEPS_PER_BEAT
SPLIT_PITCH = 60  # middle C: this and above on the treble staff
SVG_WIDTH = 2400  # verovio page width (tenths of a staff space at scale 100): ~4 bars a line
SVG_SCALE = 40

#: A cut beat's subdivision: grid unit (steps, the gcd of its cuts) → (step of the base
#: value, base type, tuplet (actual, normal) or None).
_SUBDIVISION = {
    6: (3, "16th", None),
    3: (3, "16th", None),
    4: (4, "eighth", (3, 2)),
    2: (2, "16th", (6, 4)),
    1: (1, "32nd", (12, 8)),
}
_LONGER = ["32nd", "16th", "eighth", "quarter", "half", "whole"]
#: Multiples of a base value that one note can show: multiple → (steps up the ladder, dots).
_MULTIPLES = {8: (3, 0), 6: (2, 1), 4: (2, 0), 3: (1, 1), 2: (1, 0), 1: (0, 0)}
#: Whole beats from a beat position: the longest value allowed there (beats → type, dots).
_BEAT_VALUES = {4: ("whole", 0), 3: ("half", 1), 2: ("half", 0), 1: ("quarter", 0)}
_SHARP_NAMES = [("C", 0), ("C", 1), ("D", 0), ("D", 1), ("E", 0), ("F", 0), ("F", 1),
                ("G", 0), ("G", 1), ("A", 0), ("A", 1), ("B", 0)]  # fmt: skip
_FLAT_NAMES = [("C", 0), ("D", -1), ("D", 0), ("E", -1), ("E", 0), ("F", 0), ("G", -1),
               ("G", 0), ("A", -1), ("A", 0), ("B", -1), ("B", 0)]  # fmt: skip
_ACCIDENTAL = {-1: "flat", 0: "natural", 1: "sharp"}
_BEAMED = {"eighth", "16th", "32nd"}
_STEP_ORDER_SHARP = "FCGDAEB"


@dataclass(frozen=True)
class Value:
    """One written note value: its length in steps, type, dots and tuplet."""

    steps: int
    type: str
    dots: int = 0
    tuplet: tuple[int, int] | None = None  # (actual, normal): 3 in the time of 2


def key_fifths(notes: np.ndarray) -> int:
    """The key signature (fifths, -5 … 6) of the major scale that fits the most onsets;
    0 (C major) for no notes or a tie with C."""
    arr = np.asarray(notes, dtype=np.int64).reshape(-1, 3)
    if not len(arr):
        return 0
    counts = np.bincount(arr[:, 0] % 12, minlength=12)
    fits = [sum(counts[(tonic + s) % 12] for s in MAJOR_STEPS) for tonic in range(12)]
    tonic = int(np.argmax(fits))
    fifths = (tonic * 7) % 12  # C 0, G 1, D 2 …, F 11
    return fifths - 12 if fifths > 6 else fifths


@cache
def spell(pitch: int, fifths: int) -> tuple[str, int, int]:
    """(step letter, alter, octave) of a MIDI pitch in a key: sharps in sharp keys, flats in
    flat keys (E# in 6 sharps, Cb in 6 flats)."""
    pc, octave = pitch % 12, pitch // 12 - 1
    if fifths >= 6 and pc == 5:
        return "E", 1, octave
    if fifths <= -6 and pc == 11:
        return "C", -1, octave + 1
    step, alter = (_SHARP_NAMES if fifths >= 0 else _FLAT_NAMES)[pc]
    return step, alter, octave


def _key_alters(fifths: int) -> dict[str, int]:
    """The alteration of each step letter in a key signature."""
    if fifths >= 0:
        return {s: 1 for s in _STEP_ORDER_SHARP[:fifths]}
    return {s: -1 for s in _STEP_ORDER_SHARP[::-1][:-fifths]}


@cache
def beat_values(length: int, unit: int) -> tuple[Value, ...]:
    """The written values of ``length`` steps inside one beat whose cuts have the grid
    ``unit`` (a divisor of 12 other than 12)."""
    base, base_type, tuplet = _SUBDIVISION[unit]
    out, left = [], length
    while left:
        multiple = max(m for m in _MULTIPLES if m * base <= left)
        up, dots = _MULTIPLES[multiple]
        out.append(Value(multiple * base, _LONGER[_LONGER.index(base_type) + up], dots, tuplet))
        left -= multiple * base
    return tuple(out)


def whole_beat_values(start: int, length: int) -> list[Value]:
    """Written values of whole beats from the bar-relative beat start ``start``: a whole note
    only from beat 1, half notes from beats 1 and 3, a dotted half from beat 1."""
    out, pos, left = [], start // STEPS_PER_BEAT, length // STEPS_PER_BEAT
    while left:
        allowed = {0: 4, 1: 1, 2: 2, 3: 1}[pos]
        beats = max(b for b in _BEAT_VALUES if b <= min(left, allowed))
        kind, dots = _BEAT_VALUES[beats]
        out.append(Value(beats * STEPS_PER_BEAT, kind, dots))
        pos, left = pos + beats, left - beats
    return out


def snap_ends(notes: np.ndarray) -> np.ndarray:
    """Notes whose end lies one step before the sixteenth or eighth-triplet grid (and off
    both), lengthened by that step unless the same pitch starts there."""
    out = np.array(notes, dtype=np.int64).reshape(-1, 3)
    end = out[:, 2]
    on_grid = (end % 3 == 0) | (end % 4 == 0)
    short = ((end + 1) % 3 == 0) | ((end + 1) % 4 == 0)
    struck = {(int(p), int(s)) for p, s, _ in out}
    for i in np.flatnonzero(short & ~on_grid):
        if (int(out[i, 0]), int(out[i, 2])) not in struck:
            out[i, 2] += 1
    return out


@dataclass
class _Event:
    """A stretch of one staff with the same sounding pitches, cut into written values."""

    start: int
    values: list[Value]
    pitches: tuple[int, ...]
    tied_from: frozenset[int]  # pitches held from before ``start``
    tied_to: frozenset[int]  # pitches held past the end


def _staff_events(notes: np.ndarray, length: int, cuts: Sequence[int]) -> list[_Event]:
    """One staff's notes (pitch, start, end) as events covering [0, length)."""
    bounds = set(range(0, length + 1, BAR)) | set(int(c) for c in cuts if 0 < c < length)
    for _, s, e in notes:
        bounds.update((int(s), int(e)))
    edges = sorted(b for b in bounds if 0 <= b <= length)
    # the grid unit of each beat: the gcd of its cuts (12 when it has none)
    units: dict[int, int] = {}
    for b in edges:
        beat, off = divmod(b, STEPS_PER_BEAT)
        units[beat] = math.gcd(units.get(beat, STEPS_PER_BEAT), off)
    # the pitches sounding in each stretch between two edges: each note covers a run of them
    sounding: list[set[int]] = [set() for _ in edges]
    starting: list[set[int]] = [set() for _ in edges]  # pitches struck at edge i
    ending: list[set[int]] = [set() for _ in edges]  # pitches released at edge i
    where = {b: i for i, b in enumerate(edges)}
    for p, s, e in notes.tolist():
        starting[where[s]].add(p)
        ending[where[e]].add(p)
        for i in range(where[s], where[e]):
            sounding[i].add(p)
    events = []
    for i, (a, b) in enumerate(itertools.pairwise(edges)):
        values: list[Value] = []
        pos = a
        while pos < b:
            beat, off = divmod(pos, STEPS_PER_BEAT)
            if off or b - pos < STEPS_PER_BEAT:  # inside a cut beat
                stop = min(b, (beat + 1) * STEPS_PER_BEAT)
                values += beat_values(stop - pos, units[beat])
            else:
                stop = b - (b % STEPS_PER_BEAT)
                values += whole_beat_values(pos % BAR, stop - pos)
            pos = stop
        here = sounding[i]
        events.append(
            _Event(
                a,
                values,
                tuple(sorted(here)),
                frozenset(here - starting[i]),
                frozenset(here - ending[i + 1]),
            )
        )
    return events


def _time_modification(v: Value) -> str:
    if not v.tuplet:
        return ""
    actual, normal = v.tuplet
    base = _SUBDIVISION[{(3, 2): 4, (6, 4): 2, (12, 8): 1}[v.tuplet]][1]
    return (
        f"<time-modification><actual-notes>{actual}</actual-notes>"
        f"<normal-notes>{normal}</normal-notes><normal-type>{base}</normal-type>"
        "</time-modification>"
    )


def _beams(events: list[_Event]) -> list[list[str]]:
    """The beam state of each written value (``begin``, ``continue``, ``end`` or ""):
    the notes shorter than a quarter inside one beat, two or more in a row, share a beam."""
    flat = []  # (beat, beamable) of every value, in order
    for ev in events:
        pos = ev.start
        for v in ev.values:
            flat.append((pos // STEPS_PER_BEAT, bool(ev.pitches) and v.type in _BEAMED))
            pos += v.steps
    states = [""] * len(flat)
    i = 0
    while i < len(flat):
        j = i
        while flat[i][1] and j + 1 < len(flat) and flat[j + 1] == flat[i]:
            j += 1
        if j > i:
            states[i], states[j] = "begin", "end"
            states[i + 1 : j] = ["continue"] * (j - i - 1)
        i = j + 1
    out, k = [], 0
    for ev in events:
        out.append(states[k : k + len(ev.values)])
        k += len(ev.values)
    return out


def _staff_xml(
    events: list[_Event], bar: int, staff: int, fifths: int, marks: dict[int, str]
) -> Iterator[str]:
    """The notes of one staff in one bar (``events``: that bar's)."""
    lo = bar * BAR
    voice = 1 if staff == 1 else 5
    alters = _key_alters(fifths)
    shown: dict[tuple[str, int], int] = {}  # accidentals in force in this bar
    in_tuplet = False
    for ev, beams in zip(events, _beams(events), strict=True):
        if ev.start in marks and staff == 1:
            yield (
                '<direction placement="above"><direction-type><words font-weight="bold">'
                f"{escape(marks[ev.start])}</words></direction-type></direction>"
            )
        if not ev.pitches and ev.start == lo and sum(v.steps for v in ev.values) == BAR:
            yield (
                f'<note><rest measure="yes"/><duration>{BAR}</duration>'
                f"<voice>{voice}</voice><staff>{staff}</staff></note>"
            )
            continue
        pos = ev.start
        for i, v in enumerate(ev.values):
            first, last = i == 0, i == len(ev.values) - 1
            beat_end = (pos // STEPS_PER_BEAT + 1) * STEPS_PER_BEAT
            tuplet_mark = ""
            if v.tuplet and not in_tuplet:
                tuplet_mark, in_tuplet = '<tuplet type="start" bracket="yes"/>', True
            if v.tuplet and pos + v.steps == beat_end:
                tuplet_mark += '<tuplet type="stop"/>'
                in_tuplet = False
            for j, pitch in enumerate(ev.pitches or (None,)):
                parts = ["<note>"]
                if j:
                    parts.append("<chord/>")
                ties, tied = [], []
                if pitch is None:
                    parts.append("<rest/>")
                else:
                    step, alter, octave = spell(pitch, fifths)
                    parts.append(
                        f"<pitch><step>{step}</step>"
                        + (f"<alter>{alter}</alter>" if alter else "")
                        + f"<octave>{octave}</octave></pitch>"
                    )
                    held_in = not first or pitch in ev.tied_from
                    held_on = not last or pitch in ev.tied_to
                    for kind, on in (("stop", held_in), ("start", held_on)):
                        if on:
                            ties.append(f'<tie type="{kind}"/>')
                            tied.append(f'<tied type="{kind}"/>')
                parts.append(f"<duration>{v.steps}</duration>")
                parts += ties
                parts.append(f"<voice>{voice}</voice>")
                parts.append(f"<type>{v.type}</type>" + "<dot/>" * v.dots)
                if pitch is not None and not (not first or pitch in ev.tied_from):
                    current = shown.get((step, octave), alters.get(step, 0))
                    if current != alter:
                        parts.append(f"<accidental>{_ACCIDENTAL[alter]}</accidental>")
                        shown[(step, octave)] = alter
                parts.append(_time_modification(v))
                parts.append(f"<staff>{staff}</staff>")
                if beams[i] and j == 0:
                    parts.append(f'<beam number="1">{beams[i]}</beam>')
                notations = tied + ([tuplet_mark] if tuplet_mark and j == 0 else [])
                if notations:
                    parts.append("<notations>" + "".join(notations) + "</notations>")
                parts.append("</note>")
                yield "".join(parts)
            pos += v.steps


#: (sign, line, octave change) of the clefs a one-staff part may get, by its notes' median.
TREBLE, TREBLE_8VB, BASS = ("G", 2, 0), ("G", 2, -1), ("F", 4, 0)


def clef_for(notes: np.ndarray) -> tuple[str, int, int]:
    """The clef of a one-staff part, as an SATB open score has them: treble for a median from
    D4 up (sopranos and altos), the tenor's octave treble from G3, else bass (a chorale's
    tenor sits around C4, its bass around E3)."""
    arr = np.asarray(notes, dtype=np.int64).reshape(-1, 3)
    median = float(np.median(arr[:, 0])) if len(arr) else SPLIT_PITCH + 2
    if median >= SPLIT_PITCH + 2:
        return TREBLE
    return TREBLE_8VB if median >= SPLIT_PITCH - 5 else BASS


def _clef_xml(number: int, clef: tuple[str, int, int]) -> str:
    sign, line, octave = clef
    shift = f"<clef-octave-change>{octave}</clef-octave-change>" if octave else ""
    return f'<clef number="{number}"><sign>{sign}</sign><line>{line}</line>{shift}</clef>'


def _checked(notes: np.ndarray, snap: bool) -> np.ndarray:
    arr = np.asarray(notes, dtype=np.int64).reshape(-1, 3)
    if len(arr) and (arr[:, 1].min() < 0 or np.any(arr[:, 2] <= arr[:, 1])):
        raise ValueError("notes need start >= 0 and end > start")
    return snap_ends(arr) if snap else arr


def _part_measures(
    staves: Sequence[tuple[np.ndarray, tuple[str, int, int]]],
    n_bars: int,
    fifths: int,
    seam_step: int | None,
    *,
    first_part: bool,
    tempo_bpm: float | None,
) -> list[str]:
    """One part's measures: its staves (notes, clef) bar by bar; the first part carries the
    tempo and the prompt/continuation marks."""
    length = n_bars * BAR
    cuts = [seam_step] if seam_step else []
    marks = {0: "prompt", int(seam_step): "continuation"} if seam_step and first_part else {}
    by_staff = []
    for notes, _clef in staves:
        by_bar: list[list[_Event]] = [[] for _ in range(n_bars)]
        for ev in _staff_events(notes, length, cuts):
            by_bar[ev.start // BAR].append(ev)
        by_staff.append(by_bar)
    measures = []
    for bar in range(n_bars):
        parts = [f'<measure number="{bar + 1}">']
        if bar == 0:
            parts.append(
                f"<attributes><divisions>{STEPS_PER_BEAT}</divisions>"
                f"<key><fifths>{fifths}</fifths></key>"
                f"<time><beats>{BEATS_PER_BAR}</beats><beat-type>4</beat-type></time>"
                + (f"<staves>{len(staves)}</staves>" if len(staves) > 1 else "")
                + "".join(_clef_xml(i + 1, clef) for i, (_, clef) in enumerate(staves))
                + "</attributes>"
            )
            if tempo_bpm and first_part:
                parts.append(
                    '<direction placement="above"><direction-type><metronome>'
                    f"<beat-unit>quarter</beat-unit><per-minute>{tempo_bpm:g}</per-minute>"
                    f'</metronome></direction-type><sound tempo="{tempo_bpm:g}"/></direction>'
                )
        for i, by_bar in enumerate(by_staff):
            if i:
                parts.append(f"<backup><duration>{BAR}</duration></backup>")
            parts += _staff_xml(by_bar[bar], bar, i + 1, fifths, marks)
        if seam_step and seam_step % BAR == 0 and seam_step // BAR == bar + 1:
            parts.append('<barline location="right"><bar-style>light-light</bar-style></barline>')
        if bar == n_bars - 1:
            parts.append('<barline location="right"><bar-style>light-heavy</bar-style></barline>')
        parts.append("</measure>")
        measures.append("".join(parts))
    return measures


def _document(title: str, parts: Sequence[tuple[str, int, int, list[str]]]) -> str:
    """A score-partwise document of parts (name, GM program 0…127, channel index, measures)."""
    listed, bodies = [], []
    for i, (name, program, channel, measures) in enumerate(parts, start=1):
        listed.append(
            f'<score-part id="P{i}"><part-name>{escape(name)}</part-name>'
            f'<score-instrument id="P{i}-I1"><instrument-name>General MIDI</instrument-name>'
            f'</score-instrument><midi-instrument id="P{i}-I1">'
            f"<midi-channel>{channel + 1}</midi-channel>"  # 1-based in MusicXML
            f"<midi-program>{program + 1}</midi-program></midi-instrument></score-part>"
        )
        bodies.append(f'<part id="P{i}">' + "\n".join(measures) + "</part>")
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
        '<!DOCTYPE score-partwise PUBLIC "-//Recordare//DTD MusicXML 3.1 Partwise//EN" '
        '"http://www.musicxml.org/dtds/partwise.dtd">\n'
        '<score-partwise version="3.1">'
        + (f"<work><work-title>{escape(title)}</work-title></work>" if title else "")
        + "<identification><encoding><software>musicflow</software></encoding></identification>"
        + "<part-list>"
        + "".join(listed)
        + "</part-list>"
        + "".join(bodies)
        + "</score-partwise>\n"
    )


def _bars(arrays: Sequence[np.ndarray], length_steps: int | None, seam_step: int | None) -> int:
    ends = [int(a[:, 2].max()) for a in arrays if len(a)]
    return -(-max([*ends, length_steps or 0, seam_step or 0, 1]) // BAR)


def to_musicxml(
    notes: np.ndarray,
    *,
    length_steps: int | None = None,
    seam_step: int | None = None,
    title: str = "",
    tempo_bpm: float | None = None,
    fifths: int | None = None,
    snap: bool = True,
    program: int = 0,
) -> str:
    """Notes (pitch, start_step, end_step), as ``roll.decode_roll`` gives them, as a MusicXML
    3.1 score-partwise document: one keyboard part on two staves, ``length_steps`` long
    (default: to the end of the last note), in whole bars of 4/4. ``seam_step`` marks a
    continuation's seam; ``fifths`` sets the key signature (default: :func:`key_fifths`);
    ``snap`` writes one-step articulation gaps legato (:func:`snap_ends`); ``program`` is the
    General MIDI instrument (0…127) the MIDI file plays, so a notation program plays it too."""
    arr = _checked(notes, snap)
    fifths = key_fifths(arr) if fifths is None else int(fifths)
    staves = [(arr[arr[:, 0] >= SPLIT_PITCH], TREBLE), (arr[arr[:, 0] < SPLIT_PITCH], BASS)]
    n_bars = _bars([arr], length_steps, seam_step)
    measures = _part_measures(
        staves, n_bars, fifths, seam_step, first_part=True, tempo_bpm=tempo_bpm
    )
    # GM programs 0-7 are the pianos; other instruments are named by their number
    name = "Piano" if program < 8 else f"GM program {program}"
    return _document(title, [(name, program, 0, measures)])


def tracks_to_musicxml(
    parts: Sequence[np.ndarray],
    specs: Sequence[dict],
    *,
    length_steps: int | None = None,
    seam_step: int | None = None,
    title: str = "",
    tempo_bpm: float | None = None,
    fifths: int | None = None,
    snap: bool = True,
) -> str:
    """A piece with tracks (``parts``: each track's notes as :func:`to_musicxml` takes them;
    ``specs``: the dataset's tracks, ``musicflow/core/tracks.describe``) as an open score: one
    part on one staff per pitched track, named, with its program and channel, its clef from
    its notes' median (:func:`clef_for`), all in one key (default: :func:`key_fifths` of every
    note). A drum track has no pitches to write and is left out of the score (the MIDI file
    plays it)."""
    if len(parts) != len(specs):
        raise ValueError(f"{len(parts)} tracks of notes for {len(specs)} track specs")
    pitched = [
        (_checked(notes, snap), spec)
        for notes, spec in zip(parts, specs, strict=True)
        if not spec.get("drums", False)
    ]
    every = np.concatenate([a for a, _ in pitched] or [np.zeros((0, 3), np.int64)])
    fifths = key_fifths(every) if fifths is None else int(fifths)
    n_bars = _bars([a for a, _ in pitched], length_steps, seam_step)
    return _document(
        title,
        [
            (
                str(spec["name"]),
                int(spec["program"] or 0),
                int(spec["channel"]),
                _part_measures(
                    [(arr, clef_for(arr))],
                    n_bars,
                    fifths,
                    seam_step,
                    first_part=i == 0,
                    tempo_bpm=tempo_bpm,
                ),
            )
            for i, (arr, spec) in enumerate(pitched)
        ],
    )


def write_musicxml(path: str | os.PathLike[str], notes: np.ndarray, **options) -> Path:
    """Write :func:`to_musicxml` of ``notes`` atomically to ``path``; returns the path."""
    return atomic.write_text(path, to_musicxml(notes, **options))


def write_tracks_musicxml(
    path: str | os.PathLike[str], parts: Sequence[np.ndarray], specs: Sequence[dict], **options
) -> Path:
    """Write :func:`tracks_to_musicxml` atomically to ``path``; returns the path."""
    return atomic.write_text(path, tracks_to_musicxml(parts, specs, **options))


def render_svg(musicxml: str, *, width: int = SVG_WIDTH, scale: int = SVG_SCALE) -> str:
    """The engraved score of a MusicXML document as one SVG (every system on one page, no
    title header), by verovio. Raises ValueError when verovio cannot read the document."""
    import verovio

    verovio.enableLog(verovio.LOG_OFF)
    tk = verovio.toolkit()
    tk.setOptions(
        {
            "pageWidth": width,
            "pageHeight": 60000,
            "adjustPageHeight": True,
            "scale": scale,
            "header": "none",
            "footer": "none",
            "breaks": "auto",
            "svgViewBox": True,
            "svgFormatRaw": True,
        }
    )
    if not tk.loadData(musicxml):
        raise ValueError("verovio could not read the MusicXML")
    return tk.renderToSVG(1)
