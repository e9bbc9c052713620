"""Track policies (docs/encoding.md "Tracks", #22): the reader's programs and names, the
General MIDI families, and real files round-tripped through encode → shards → decode → MIDI."""

from __future__ import annotations

import io
from pathlib import Path

import mido
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import HOSTILE

from musicflow.adapters.store import file_windows, read_dataset, read_manifest
from musicflow.core import roll, tracks
from musicflow.core.midi import _parse
from musicflow.core.scan import scan_file

TPB = 96


def _track(name: str | None, channel: int, program: int | None, notes: list[tuple[int, int, int]]):
    """A MIDI track: (pitch, start_beat_x4, length_x4) notes in sixteenths, one channel."""
    track = mido.MidiTrack()
    if name is not None:
        track.append(mido.MetaMessage("track_name", name=name, time=0))
    if program is not None:
        track.append(mido.Message("program_change", program=program, channel=channel, time=0))
    events = []
    for pitch, start, length in notes:
        events.append((start * TPB // 4, 1, pitch))
        events.append(((start + length) * TPB // 4, 0, pitch))
    now = 0
    for tick, on, pitch in sorted(events):
        kind = "note_on" if on else "note_off"
        track.append(mido.Message(kind, note=pitch, velocity=90, channel=channel, time=tick - now))
        now = tick
    return track


def band_file(path: Path) -> None:
    """A General MIDI band, four bars: drums, bass, piano and strings, each on its channel."""
    mid = mido.MidiFile(type=1, ticks_per_beat=TPB)
    mid.tracks.append(_track(None, 0, None, []))  # the conductor track
    drums = [(36, s, 1) for s in range(0, 64, 8)] + [(38, s, 1) for s in range(4, 64, 8)]
    drums += [(42, s, 1) for s in range(0, 64, 2)]
    mid.tracks.append(_track("Drums", 9, 0, drums))
    mid.tracks.append(_track("Bass", 1, 33, [(36 + (s // 16) * 5, s, 3) for s in range(0, 64, 4)]))
    chords = [(p, s, 8) for s in range(0, 64, 8) for p in (60, 64, 67)]
    mid.tracks.append(_track("Piano", 0, 0, chords))
    mid.tracks.append(_track("Strings", 2, 48, [(72, 0, 32), (76, 32, 32)]))
    mid.save(path)


SATB = ("Soprano", "Alto", "Tenor", "Bass")
SATB_PITCHES = ((72, 74, 76, 77), (67, 67, 69, 72), (64, 62, 60, 65), (48, 55, 53, 41))


def four_part_file(path: Path, shift: int = 0, parts: int = 4) -> None:
    """A four-part chorale phrase (music21's layout: one named track per part, no program)."""
    mid = mido.MidiFile(type=1, ticks_per_beat=TPB)
    mid.tracks.append(_track(None, 0, None, []))
    for i in range(parts):
        notes = [(p + shift, 4 * b, 4) for b, p in enumerate(SATB_PITCHES[i] * 4)]
        mid.tracks.append(_track(SATB[i], i, None, notes))
    mid.save(path)


def test_every_program_and_channel_10_have_a_family() -> None:
    assert tracks.FAMILIES[:5] == ("drums", "piano", "guitar", "bass", "strings")
    got = {p: tracks.family_of(p, 0) for p in range(128)}
    assert set(got.values()) == set(tracks.FAMILIES) - {"drums"}
    assert (got[0], got[19], got[25], got[33], got[48], got[52], got[89]) == (
        "piano", "piano", "guitar", "bass", "strings", "strings", "strings"
    )  # fmt: skip
    assert (got[56], got[73], got[81], got[118]) == ("lead", "lead", "lead", "other")
    assert all(tracks.family_of(p, 9) == "drums" for p in (0, 25, 127))


def test_reader_keeps_programs_names_and_drums_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "band.mid"
    band_file(path)
    data = path.read_bytes()
    plain, full = _parse(data), _parse(data, with_tracks=True)
    assert plain.notes.shape[1] == 5 and plain.track_names == []
    assert not np.any(plain.notes[:, 1] == 9)  # merged: drums only counted
    assert full.track_names == [b"", b"Drums", b"Bass", b"Piano", b"Strings"]
    drums = full.notes[:, 1] == 9
    assert int(drums.sum()) == full.n_drum_notes == plain.n_drum_notes == 48
    # the non-drum notes are the merged reader's, in the same order, plus their program
    assert np.array_equal(full.notes[~drums, :5], plain.notes)
    by_channel = {c: set(full.notes[full.notes[:, 1] == c, 5].tolist()) for c in (0, 1, 2)}
    assert by_channel == {0: {0}, 1: {33}, 2: {48}}


def test_a_conductor_tracks_program_applies_to_later_tracks(tmp_path: Path) -> None:
    """Programs set at tick 0 in track 0 hold for the channel in every later track; a change
    later in a track holds from there in that track only."""
    mid = mido.MidiFile(type=1, ticks_per_beat=TPB)
    setup = mido.MidiTrack([mido.Message("program_change", program=40, channel=3, time=0)])
    mid.tracks.append(setup)
    mid.tracks.append(_track("a", 3, None, [(60, 0, 4), (62, 8, 4)]))
    changing = _track("b", 3, None, [(64, 0, 4)])
    changing.append(mido.Message("program_change", program=71, channel=3, time=0))
    changing.append(mido.Message("note_on", note=65, velocity=90, channel=3, time=96))
    changing.append(mido.Message("note_off", note=65, velocity=0, channel=3, time=96))
    mid.tracks.append(changing)
    mid.tracks.append(_track("c", 3, None, [(67, 0, 4)]))
    buf = io.BytesIO()
    mid.save(file=buf)
    notes = _parse(buf.getvalue(), with_tracks=True).notes
    program = {int(n[2]): int(n[5]) for n in notes}
    assert program == {60: 40, 62: 40, 64: 40, 65: 71, 67: 40}


def test_hostile_files_scan_under_every_policy(hostile_dir: Path) -> None:
    """The reader's verdicts do not depend on the policy: the same error for every file."""
    for path in sorted(hostile_dir.glob("*.mid")):
        data = path.read_bytes()
        merged = scan_file(data).record
        for policy in (tracks.VOICES, tracks.INSTRUMENTS):
            record = scan_file(data, policy=policy).record
            assert record["error"] == merged["error"], (path.name, policy)
            assert record["midi_type"] == merged["midi_type"]
    drums_only = scan_file((HOSTILE / "bad_drums_only.mid").read_bytes(), policy="instruments")
    assert drums_only.record["n_notes"] > 0 and drums_only.record["track_names"] == ["drums"]


def _encode(source: Path, policy: str, name: str) -> Path:
    from musicflow.adapters import workspace
    from musicflow.flows.dataset import encode_flow

    out = workspace.rolls_dir(name)
    encode_flow(
        source=source,
        dataset=name,
        out_dir=out,
        cache_dir=workspace.cache_dir(),
        tracks=policy,
        workers=1,
    )
    return out


def _midi_tracks(data: bytes) -> list[tuple[str, set[int], set[int], list[int]]]:
    """Each track of a MIDI file: name, channels, programs and note pitches."""
    out = []
    for track in mido.MidiFile(file=io.BytesIO(data)).tracks[1:]:
        name = next(m.name for m in track if m.type == "track_name")
        channels = {m.channel for m in track if hasattr(m, "channel")}
        programs = {m.program for m in track if m.type == "program_change"}
        pitches = [m.note for m in track if m.type == "note_on" and m.velocity > 0]
        out.append((name, channels, programs, pitches))
    return out


def _round_trip(folder: Path, source_path: str, policy: str) -> bytes:
    """The file's windows decoded to MIDI; that MIDI re-encodes to exactly the same windows."""
    info = read_dataset(folder)
    packed, segments = file_windows(info, source_path)
    described = info.encoding["tracks"]
    notes = tracks.decode_tracks(packed, segments, len(described), info.pitch_low)
    data = tracks.tracks_to_midi(notes, described)
    again = scan_file(data, info.pitch_low, policy)
    assert np.array_equal(again.segments, segments) and np.array_equal(again.packed, packed)
    return data


@pytest.mark.integration  # a real encode flow on the session's Prefect server
def test_band_file_round_trips_with_instruments(tmp_path: Path, workspace_home: Path) -> None:
    source = tmp_path / "band"
    source.mkdir()
    band_file(source / "band.mid")
    folder = _encode(source, tracks.INSTRUMENTS, "band")
    info = read_dataset(folder)
    assert info.encoding["policy"] == "instruments"
    described = {t["name"]: t for t in info.encoding["tracks"]}
    assert [t["name"] for t in info.encoding["tracks"]] == list(tracks.FAMILIES)
    assert (described["bass"]["program"], described["strings"]["program"]) == (33, 48)
    assert described["drums"]["drums"] and described["drums"]["channel"] == 9
    shard = pq.read_table(info.shard_paths[0])
    assert shard.schema.field("roll").type.byte_width == len(tracks.FAMILIES) * roll.PACKED_BYTES
    assert b"instruments" in shard.schema.metadata[b"musicflow.encoding"]
    manifest = read_manifest(folder)
    row = manifest.iloc[0]
    assert row.status == "accepted" and list(row.warnings) == []  # drums are kept: no warning
    assert list(row.track_names) == ["drums", "piano", "bass", "strings"]
    assert list(row.track_programs) == [0, 0, 33, 48]
    page = (folder / "audit.html").read_text("utf-8")  # the audit shows each file's tracks
    assert "tracks: program" in page and "drums 0, piano 0, bass 33, strings 48" in page

    data = _round_trip(folder, "band.mid", tracks.INSTRUMENTS)
    got = {name: (channels, programs, len(p)) for name, channels, programs, p in _midi_tracks(data)}
    assert got == {
        "drums": ({9}, {0}, 48),
        "piano": ({0}, {0}, 24),
        "bass": ({2}, {33}, 16),
        "strings": ({3}, {48}, 2),
    }


@pytest.mark.integration  # a real encode flow on the session's Prefect server
def test_four_part_file_round_trips_with_voices(tmp_path: Path, workspace_home: Path) -> None:
    """Four-part files keep their parts as four named tracks in file order; a three-part file
    in the same folder is quarantined voice_count."""
    source = tmp_path / "chorales"
    source.mkdir()
    for i in range(3):
        four_part_file(source / f"c{i}.mid", shift=i)
    four_part_file(source / "trio.mid", parts=3)
    (source / "copy-of-c0.mid").write_bytes((source / "c0.mid").read_bytes())
    folder = _encode(source, tracks.VOICES, "satb")
    info = read_dataset(folder)
    assert [t["name"] for t in info.encoding["tracks"]] == list(SATB)
    assert [t["channel"] for t in info.encoding["tracks"]] == [0, 1, 2, 3]
    manifest = read_manifest(folder).set_index("source_path")
    assert manifest.loc["trio.mid", "reason"] == "voice_count"
    assert manifest.loc["trio.mid", "n_voices"] == 3
    assert (manifest.loc[["c0.mid", "c1.mid", "c2.mid"], "status"] == "accepted").all()
    assert list(manifest.loc["c0.mid", "track_names"]) == list(SATB)
    copy = manifest.loc["copy-of-c0.mid"]  # a duplicate carries its first copy's tracks
    assert copy.status == "duplicate" and list(copy.track_names) == list(SATB)
    assert copy.n_voices == 4
    assert info.n_files == 3

    data = _round_trip(folder, "c1.mid", tracks.VOICES)
    got = _midi_tracks(data)
    assert [(n, c) for n, c, _, _ in got] == [(name, {i}) for i, name in enumerate(SATB)]
    for (_, _, _, pitches), part in zip(got, SATB_PITCHES, strict=True):
        assert pitches == [p + 1 for p in part * 4]  # c1 is shifted up a semitone


def test_the_default_chorales_give_soprano_alto_tenor_bass() -> None:
    """The embedded default (music21's chorales, exported as flows/pipeline does): voices
    gives four tracks, S, A, T, B, in that order."""
    music21 = pytest.importorskip("music21")
    score = music21.corpus.parse("bach/bwv66.6")
    data = Path(score.write("midi")).read_bytes()
    record = scan_file(data, policy=tracks.VOICES).record
    assert record["n_voices"] == 4
    assert record["track_names"] == list(SATB)


@pytest.mark.integration  # a real encode flow on the session's Prefect server
def test_train_refuses_tracks_to_a_thesis_model(
    tmp_path: Path, workspace_home: Path, capsys
) -> None:
    from musicflow.cli import main

    source = tmp_path / "band"
    source.mkdir()
    band_file(source / "band.mid")
    _encode(source, tracks.INSTRUMENTS, "band")
    capsys.readouterr()
    assert main(["train", "--dataset", "band", "--model", "vae-thesis"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "musicflow train: error: " + tracks.refusal("vae-thesis")
    assert "cannot take tracks (only gan, rnn, vae can)" in err


def test_run_with_tracks_and_a_thesis_model_stops_before_encoding(tmp_path: Path, capsys) -> None:
    from musicflow.cli import main

    assert main(["run", str(tmp_path), "--tracks", "voices", "--models", "rnn,gan-thesis"]) == 2
    assert tracks.refusal("gan-thesis") in capsys.readouterr().err


def test_audio_previews_play_each_track_with_its_program(tmp_path: Path) -> None:
    """The preview renderer (a General MIDI soundfont) honours the tracks' programs and
    channel 10: the band decoded with its instruments sounds unlike the same notes on one
    piano channel."""
    from musicflow.adapters import audio

    band_file(tmp_path / "band.mid")
    scan = scan_file((tmp_path / "band.mid").read_bytes(), policy=tracks.INSTRUMENTS)
    notes = tracks.decode_tracks(scan.packed, scan.segments, len(tracks.FAMILIES), 21)
    described = [
        {"name": name, "program": program, "channel": channel, "drums": name == "drums"}
        for name, _, program, channel in tracks.FAMILY_TABLE
    ]
    on_piano = [dict(t, program=0, channel=0, drums=False) for t in described]
    soundfont = audio.resolve_soundfont(None)
    band, _, _ = audio.render(tracks.tracks_to_midi(notes, described), soundfont)
    piano, _, _ = audio.render(tracks.tracks_to_midi(notes, on_piano), soundfont)
    n = min(len(band), len(piano))
    a, b = band[:n].astype(float).ravel(), piano[:n].astype(float).ravel()
    assert np.corrcoef(a, b)[0, 1] < 0.8


def test_mutated_files_get_the_same_verdict_under_every_policy(tmp_path: Path) -> None:
    """The reader's track mode (drums, programs, names) is as bounds-checked as its merged
    mode: fuzzed files (tests/test_fuzz.py's mutations) get the same parser error."""
    import random

    from test_fuzz import N_MUTANTS, SEED, _bases, _mutate

    rng = random.Random(SEED + 1)
    bases = _bases(tmp_path / "bases")
    for i in range(N_MUTANTS):
        data = _mutate(rng.choice(bases), rng)
        merged = scan_file(data).record
        for policy in (tracks.VOICES, tracks.INSTRUMENTS):
            record = scan_file(data, policy=policy).record
            assert record["error"] == merged["error"], (i, policy)
            assert record["n_tracks"] == merged["n_tracks"], (i, policy)


def test_the_train_task_refuses_tracks_to_a_thesis_model(tmp_path: Path) -> None:
    from musicflow.adapters.store import DatasetInfo
    from musicflow.core.errors import UsageError
    from musicflow.core.settings import DEFAULT_TRAINING
    from musicflow.tasks.train import train_model

    encoding = tracks.encoding_params(21, tracks.VOICES, tracks.describe("voices", [], 4))
    version = DatasetInfo("satb", tmp_path, "0" * 64, encoding, [], 0, 0)
    with pytest.raises(UsageError, match="model vae-thesis cannot take tracks"):
        train_model(version, "satb", "vae-thesis", DEFAULT_TRAINING)
