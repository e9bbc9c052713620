"""musicflow/pages/score.py: MusicXML on the encoding's grid, on two staves, read back by music21
and
by the engraver (verovio) as the same notes."""

from __future__ import annotations

import base64
import io
import xml.etree.ElementTree as ET
from fractions import Fraction

import mido
import numpy as np
import pytest

from musicflow.core import roll
from musicflow.pages import score

# pitch, start step, end step (12 steps per beat): a bar of a C major chord and a melody over a
# held bass, then eighth triplets, sixteenths and a note tied over the bar line.
KNOWN = np.array(
    [
        (48, 0, 48),  # C3 whole note, bass staff
        (60, 0, 12),  # C4 quarter: middle C goes to the treble staff
        (64, 0, 12),
        (67, 12, 18),  # G4 eighth
        (69, 18, 24),  # A4 eighth
        (72, 24, 48),  # C5 half
        (72, 48, 52),  # eighth triplet C5 D5 E5
        (74, 52, 56),
        (76, 56, 60),
        (77, 60, 63),  # sixteenths F5 E5, then an eighth D5
        (76, 63, 66),
        (74, 66, 72),
        (70, 72, 108),  # B-flat 4 from beat 3 of bar 2, tied into bar 3
        (43, 48, 96),  # G2 whole note
    ]
)


def _parts():
    music21 = pytest.importorskip("music21")
    return music21.converter.parseData(score.to_musicxml(KNOWN), format="musicxml").parts


def test_music21_reads_two_staves_with_the_right_clefs() -> None:
    parts = _parts()
    assert len(parts) == 2
    treble, bass = parts
    assert treble.recurse().getElementsByClass("Clef").first().sign == "G"
    assert bass.recurse().getElementsByClass("Clef").first().sign == "F"


def test_music21_reads_back_every_note_on_the_grid() -> None:
    parts = _parts()
    found = []
    for part in parts:
        for n in part.stripTies().flatten().notes:
            for p in n.pitches:
                start = Fraction(n.offset) * score.STEPS_PER_BEAT
                length = Fraction(n.duration.quarterLength) * score.STEPS_PER_BEAT
                found.append((p.midi, int(start), int(start + length)))
    assert sorted(found) == sorted(map(tuple, KNOWN.tolist()))
    treble_pitches = {p.midi for n in parts[0].flatten().notes for p in n.pitches}
    assert min(treble_pitches) == 60 and max(p for p, *_ in found if p < 60) == 48


def test_key_and_spelling_follow_the_notes() -> None:
    xml = score.to_musicxml(KNOWN)
    root = ET.fromstring(xml.split("\n", 2)[2])
    assert root.findtext(".//key/fifths") == "-1"  # B-flat with C, F, G, A … : F major
    bflat = [n for n in root.iter("note") if n.findtext("pitch/step") == "B"]
    assert len(bflat) == 2 and all(n.findtext("pitch/alter") == "-1" for n in bflat)
    assert all(n.find("accidental") is None for n in bflat)  # in the key signature
    assert score.key_fifths(np.array([(62 + s, 0, 1) for s in (0, 2, 4, 5, 7, 9, 11)])) == 2


def test_rhythm_is_written_in_the_beats_own_subdivision() -> None:
    root = ET.fromstring(score.to_musicxml(KNOWN).split("\n", 2)[2])
    bar2 = root.findall(".//measure")[1]
    treble = [n for n in bar2.iter("note") if n.findtext("staff") == "1"]
    written = [
        (n.findtext("type"), len(n.findall("dot")), n.findtext(".//actual-notes")) for n in treble
    ]
    assert written[:3] == [("eighth", 0, "3")] * 3  # a triplet
    assert written[3:6] == [("16th", 0, None), ("16th", 0, None), ("eighth", 0, None)]
    assert written[6] == ("half", 0, None)  # B-flat from beat 3, tied on
    assert treble[6].find("tie").get("type") == "start"
    ends = [t.get("type") for t in root.iter("tuplet")]
    assert ends == ["start", "stop"]


def test_the_seam_of_a_continuation_is_marked() -> None:
    xml = score.to_musicxml(KNOWN, seam_step=48, length_steps=96)
    root = ET.fromstring(xml.split("\n", 2)[2])
    bars = root.findall(".//measure")
    assert bars[0].find("barline/bar-style").text == "light-light"  # before the continuation
    assert [w.text for w in root.iter("words")] == ["prompt", "continuation"]
    assert bars[1].find("direction/direction-type/words").text == "continuation"
    mid_bar = ET.fromstring(score.to_musicxml(KNOWN, seam_step=30).split("\n", 2)[2])
    assert "continuation" in [w.text for w in mid_bar.iter("words")]


def test_length_pads_with_whole_bar_rests() -> None:
    root = ET.fromstring(score.to_musicxml(KNOWN, length_steps=4 * 48).split("\n", 2)[2])
    bars = root.findall(".//measure")
    assert len(bars) == 4
    rests = [n for n in bars[3].iter("note") if n.find("rest") is not None]
    assert [r.find("rest").get("measure") for r in rests] == ["yes", "yes"]
    empty = ET.fromstring(score.to_musicxml(np.zeros((0, 3), int)).split("\n", 2)[2])
    assert len(empty.findall(".//measure")) == 1


def _verovio_notes(xml: str) -> np.ndarray:
    """What the engraver understood, as (pitch, start, end) steps, from its MIDI export."""
    verovio = pytest.importorskip("verovio")
    tk = verovio.toolkit()
    assert tk.loadData(xml)
    mid = mido.MidiFile(file=io.BytesIO(base64.b64decode(tk.renderToMIDI())))
    tpb, found, held = mid.ticks_per_beat, [], {}
    now, step = 0, score.STEPS_PER_BEAT / tpb
    for msg in mido.merge_tracks(mid.tracks):
        now += msg.time
        if msg.type == "note_on" and msg.velocity:
            held[msg.note] = now
        elif msg.type in ("note_on", "note_off") and msg.note in held:
            found.append((msg.note, round(held.pop(msg.note) * step), round(now * step)))
    return np.array(sorted(found, key=lambda n: (n[1], n[0])))


def test_the_engraver_reads_a_random_piece_as_the_same_notes() -> None:
    rng = np.random.default_rng(1)
    song = np.zeros((roll.ROWS, 16 * score.BAR), bool)
    for _ in range(150):  # every length 1 … 24 steps at every position: all subdivisions
        start, length = int(rng.integers(0, song.shape[1] - 24)), int(rng.integers(1, 25))
        song[int(rng.integers(0, roll.ROWS)), start : start + length] = True
    notes = roll.decode_roll(song, pitch_low=roll.DEFAULT_PITCH_LOW)
    xml = score.to_musicxml(notes, length_steps=song.shape[1], seam_step=5 * score.BAR, snap=False)
    np.testing.assert_array_equal(_verovio_notes(xml), notes)
    # written legato, the one-step gaps close and nothing else changes
    snapped = score.snap_ends(notes)
    np.testing.assert_array_equal(_verovio_notes(score.to_musicxml(notes)), snapped)
    moved = snapped[:, 2] != notes[:, 2]
    assert moved.any() and np.all(snapped[moved, 2] - notes[moved, 2] == 1)


def test_a_repeated_note_cut_by_the_encoding_is_written_as_its_beat() -> None:
    # three quarter-note Gs as the encoding stores them: each cut one step before the next
    notes = np.array([(67, 0, 11), (67, 12, 23), (67, 24, 36), (48, 0, 5)])
    snapped = score.snap_ends(notes)
    assert snapped[:, 2].tolist() == [12, 24, 36, 6]
    root = ET.fromstring(score.to_musicxml(notes).split("\n", 2)[2])
    assert [n.findtext("type") for n in root.iter("note") if n.findtext("pitch/step") == "G"] == [
        "quarter"
    ] * 3
    # the same pitch struck exactly at the end keeps the end
    assert score.snap_ends(np.array([(67, 0, 11), (67, 11, 20)]))[:, 2].tolist() == [11, 20]


def test_render_svg_engraves_every_bar(tmp_path) -> None:
    pytest.importorskip("verovio")
    path = score.write_musicxml(tmp_path / "a.musicxml", KNOWN, length_steps=16 * score.BAR)
    svg = score.render_svg(path.read_text())
    assert svg.startswith("<svg") and 'class="measure"' in svg
    assert svg.count('class="measure"') == 16
    with pytest.raises(ValueError):
        score.render_svg("<not-music/>")


@pytest.mark.parametrize(
    ("unit", "length", "expected"),
    [
        (4, 8, [("quarter", 0, (3, 2))]),
        (2, 10, [("quarter", 0, (6, 4)), ("16th", 0, (6, 4))]),
        (1, 7, [("eighth", 1, (12, 8)), ("32nd", 0, (12, 8))]),
        (3, 9, [("eighth", 1, None)]),
    ],
)
def test_beat_values(unit: int, length: int, expected: list) -> None:
    values = score.beat_values(length, unit)
    assert [(v.type, v.dots, v.tuplet) for v in values] == expected
    assert sum(v.steps for v in values) == length


def test_the_score_plays_the_instrument_the_midi_file_plays() -> None:
    music21 = pytest.importorskip("music21")
    xml = score.to_musicxml(KNOWN, program=19)  # Church Organ, as generate --program 19
    instrument = music21.converter.parseData(xml, format="musicxml").parts[0].getInstrument()
    assert (instrument.midiProgram, instrument.partName) == (19, "GM program 19")
    assert "<part-name>Piano</part-name>" in score.to_musicxml(KNOWN)


# four voices as a chorale has them (pitch, start, end), and a drum track the score leaves out
SATB = [
    np.array([(72, 0, 24), (74, 24, 48), (76, 48, 96)]),  # soprano
    np.array([(67, 0, 48), (65, 48, 72), (67, 72, 96)]),  # alto
    np.array([(55, 0, 48), (57, 48, 96)]),  # tenor: median 56
    np.array([(48, 0, 48), (43, 48, 96)]),  # bass
]
SPECS = [
    {"name": n, "program": 52, "channel": c, "drums": False}
    for c, n in enumerate(["Soprano", "Alto", "Tenor", "Bass"])
]
DRUMS = {"name": "drums", "program": 0, "channel": 9, "drums": True}


def test_a_piece_with_voices_gets_a_named_staff_per_voice() -> None:
    music21 = pytest.importorskip("music21")
    kit = np.array([(36, 0, 1), (38, 12, 13)])  # kick and snare rows
    xml = score.tracks_to_musicxml([*SATB, kit], [*SPECS, DRUMS], tempo_bpm=90, seam_step=48)
    parts = music21.converter.parseData(xml, format="musicxml").parts
    assert [p.partName for p in parts] == ["Soprano", "Alto", "Tenor", "Bass"]
    clefs = [p.recurse().getElementsByClass("Clef").first() for p in parts]
    assert [(c.sign, c.octaveChange) for c in clefs] == [("G", 0), ("G", 0), ("G", -1), ("F", 0)]
    for part, notes, spec in zip(parts, SATB, SPECS, strict=True):
        found = sorted(
            (p.midi, int(Fraction(n.offset) * 12), int(Fraction(n.offset + n.quarterLength) * 12))
            for n in part.stripTies().flatten().notes
            for p in n.pitches
        )
        assert found == sorted(map(tuple, notes.tolist()))
        assert part.getInstrument().midiProgram == spec["program"]
    # the prompt/continuation marks and the tempo are written once, in the top part
    assert xml.count(">prompt<") == 1 and xml.count(">continuation<") == 1
    assert xml.count("<metronome>") == 1
    # every part has the same bars, and the engraver reads the same notes
    root = ET.fromstring(xml.split("\n", 2)[2])
    assert {len(p.findall("measure")) for p in root.findall("part")} == {2}
    np.testing.assert_array_equal(
        _verovio_notes(xml),
        np.array(sorted(np.concatenate(SATB).tolist(), key=lambda n: (n[1], n[0]))),
    )


def test_tracks_and_their_specs_must_pair_up() -> None:
    with pytest.raises(ValueError, match="3 tracks of notes for 4"):
        score.tracks_to_musicxml(SATB[:3], SPECS)
