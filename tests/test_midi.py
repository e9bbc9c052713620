"""musicflow.core.midi.scan_midi: the C reader against hand-built bytes, the hostile corpus and
mido.

Files are built in the test (raw bytes, or mido); no .mid file is committed.
"""

from __future__ import annotations

import csv
import io
import threading
from collections import deque
from pathlib import Path

import mido
import numpy as np
import pytest

from musicflow.core.errors import MidiFormatError
from musicflow.core.midi import MidiScan, scan_midi
from musicflow.core.synth import vlq

# ---------------------------------------------------------------------------------------------
# raw SMF builders


def chunk(name: bytes, payload: bytes, claimed: int | None = None) -> bytes:
    size = len(payload) if claimed is None else claimed
    return name + size.to_bytes(4, "big") + payload


def header(fmt: int = 0, ntracks: int = 1, division: int = 96, extra: bytes = b"") -> bytes:
    body = fmt.to_bytes(2, "big") + ntracks.to_bytes(2, "big") + division.to_bytes(2, "big")
    return chunk(b"MThd", body + extra)


def track(*events: bytes, eot: bool = True) -> bytes:
    return chunk(b"MTrk", b"".join(events) + (b"\x00\xff\x2f\x00" if eot else b""))


def ev(delta: int, *data: int) -> bytes:
    return vlq(delta) + bytes(data)


def smf(*tracks: bytes, fmt: int = 0, division: int = 96, ntracks: int | None = None) -> bytes:
    return header(fmt, len(tracks) if ntracks is None else ntracks, division) + b"".join(tracks)


def note_rows(scan: MidiScan) -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in row) for row in scan.notes]


def error_code(data: bytes) -> str:
    with pytest.raises(MidiFormatError) as info:
        scan_midi(data)
    assert info.value.detail
    return info.value.code


# ---------------------------------------------------------------------------------------------
# pairing rules (docs/encoding.md rule 2)


def test_basic_notes_and_header_fields() -> None:
    data = smf(
        track(ev(0, 0x90, 60, 80), ev(96, 0x80, 60, 0), ev(0, 0x91, 64, 70), ev(48, 0x81, 64, 0))
    )
    scan = scan_midi(data)
    assert (scan.midi_type, scan.n_tracks, scan.division, scan.ticks_per_beat) == (0, 1, 96, 96)
    assert scan.notes.dtype == np.int64 and scan.notes.shape == (2, 5)
    assert note_rows(scan) == [(0, 0, 60, 0, 96), (0, 1, 64, 96, 144)]
    assert (scan.n_drum_notes, scan.n_orphan_note_off, scan.n_unterminated) == (0, 0, 0)


def test_fifo_pairing_closes_earliest_open_note() -> None:
    data = smf(
        track(
            ev(0, 0x90, 60, 80),
            ev(10, 0x90, 60, 80),  # second strike while the first sounds
            ev(10, 0x80, 60, 0),  # closes the first (tick 0)
            ev(10, 0x90, 60, 0),  # note_on vel 0 closes the second (tick 10)
        )
    )
    assert note_rows(scan_midi(data)) == [(0, 0, 60, 0, 20), (0, 0, 60, 10, 30)]


def test_note_keys_are_channel_and_pitch() -> None:
    data = smf(
        track(ev(0, 0x90, 60, 80), ev(0, 0x91, 60, 80), ev(5, 0x81, 60, 0), ev(5, 0x80, 60, 0))
    )
    assert note_rows(scan_midi(data)) == [(0, 0, 60, 0, 10), (0, 1, 60, 0, 5)]


def test_orphan_note_off_is_counted_and_ignored() -> None:
    data = smf(
        track(ev(0, 0x80, 50, 0), ev(0, 0x90, 51, 0), ev(0, 0x90, 60, 9), ev(4, 0x80, 60, 0))
    )
    scan = scan_midi(data)
    assert scan.n_orphan_note_off == 2
    assert note_rows(scan) == [(0, 0, 60, 0, 4)]


def test_unterminated_notes_close_at_the_tracks_last_tick() -> None:
    # the End of Track event's delta (50) moves the last tick to 60
    t0 = chunk(b"MTrk", ev(0, 0x90, 60, 80) + ev(10, 0x90, 62, 80) + ev(50, 0xFF, 0x2F, 0))
    t1 = track(ev(0, 0x90, 70, 80), ev(5, 0x80, 70, 0))
    scan = scan_midi(smf(t0, t1, fmt=1))
    assert scan.n_unterminated == 2
    assert note_rows(scan) == [(0, 0, 60, 0, 60), (1, 0, 70, 0, 5), (0, 0, 62, 10, 60)]


def test_unterminated_without_end_of_track_closes_at_last_event() -> None:
    data = smf(track(ev(0, 0x90, 60, 80), ev(7, 0xB0, 64, 127), eot=False))
    scan = scan_midi(data)
    assert scan.n_unterminated == 1 and note_rows(scan) == [(0, 0, 60, 0, 7)]


def test_drums_are_counted_not_returned() -> None:
    data = smf(
        track(ev(0, 0x99, 36, 100), ev(0, 0x90, 60, 80), ev(4, 0x89, 36, 0), ev(0, 0x80, 60, 0))
    )
    scan = scan_midi(data)
    assert scan.n_drum_notes == 1 and scan.n_orphan_note_off == 0
    assert note_rows(scan) == [(0, 0, 60, 0, 4)]
    # a drum note-off with nothing open is not an orphan of the (drum-free) note stream
    assert scan_midi(smf(track(ev(0, 0x89, 36, 0)))).n_orphan_note_off == 0


def test_ticks_are_absolute_per_track_and_sorted() -> None:
    t0 = track(ev(100, 0x90, 65, 80), ev(10, 0x80, 65, 0))
    t1 = track(ev(100, 0x90, 60, 80), ev(0, 0x90, 72, 80), ev(20, 0x80, 60, 0), ev(0, 0x80, 72, 0))
    t2 = track(ev(0, 0x90, 60, 80), ev(200, 0x80, 60, 0))
    scan = scan_midi(smf(t0, t1, t2, fmt=1))
    assert note_rows(scan) == [
        (2, 0, 60, 0, 200),
        (1, 0, 60, 100, 120),
        (0, 0, 65, 100, 110),
        (1, 0, 72, 100, 120),
    ]


def test_pitch_0_and_127_and_4_byte_delta() -> None:
    big = 0x0FFFFFFF  # largest 4-byte variable-length quantity
    data = smf(
        track(ev(0, 0x90, 0, 1), ev(0, 0x90, 127, 1), ev(big, 0x80, 0, 0), ev(big, 0x80, 127, 0))
    )
    assert note_rows(scan_midi(data)) == [(0, 0, 0, 0, big), (0, 0, 127, 0, 2 * big)]


# ---------------------------------------------------------------------------------------------
# event syntax


def test_running_status_meta_and_sysex() -> None:
    data = smf(
        track(
            ev(0, 0x90, 60, 80),
            ev(1, 62, 80),  # running status note_on
            ev(0, 0xFF, 0x01, 2, ord("h"), ord("i")),  # meta keeps running status
            ev(1, 60, 0),  # running status note_on vel 0 = off
            ev(0, 0xF0, 3, 1, 2, 0xF7),  # sysex
            ev(0, 0xF7, 1, 0xF7),  # escape sysex
            ev(1, 0x80, 62, 0),
        )
    )
    assert note_rows(scan_midi(data)) == [(0, 0, 60, 0, 2), (0, 0, 62, 1, 3)]


def test_sysex_cancels_running_status() -> None:
    data = smf(track(ev(0, 0x90, 60, 80), ev(0, 0xF0, 1, 0xF7), ev(1, 60, 0)))
    assert error_code(data) == "truncated"


def test_all_channel_message_lengths() -> None:
    data = smf(
        track(
            ev(0, 0xA0, 60, 10),  # poly aftertouch
            ev(0, 0xB0, 64, 127),  # control change
            ev(0, 0xC0, 5),  # program change: one data byte
            ev(0, 0xD0, 20),  # channel pressure: one data byte
            ev(0, 0xE0, 0, 64),  # pitch bend
            ev(0, 0x90, 60, 80),
            ev(3, 0xC0, 6),
            ev(0, 7),  # running status program change
            ev(0, 0x80, 60, 0),
        )
    )
    assert note_rows(scan_midi(data)) == [(0, 0, 60, 0, 3)]


def test_unknown_chunks_skipped_and_trailing_data_ignored() -> None:
    t = track(ev(0, 0x90, 60, 80), ev(4, 0x80, 60, 0))
    data = (
        header(extra=b"\x01\x02")
        + chunk(b"XFIH", b"\xff" * 9)
        + t
        + b"garbage after the last track"
    )
    scan = scan_midi(data)
    assert scan.n_tracks == 1 and note_rows(scan) == [(0, 0, 60, 0, 4)]
    # a second MTrk the header does not declare is data after the last track
    assert scan_midi(header() + t + t).n_tracks == 1


def test_events_after_end_of_track_are_ignored() -> None:
    t = chunk(b"MTrk", ev(0, 0x90, 60, 80) + ev(4, 0xFF, 0x2F, 0) + b"\x00\x00\x00\xff\xff")
    scan = scan_midi(smf(t))
    assert note_rows(scan) == [(0, 0, 60, 0, 4)] and scan.n_unterminated == 1


def test_header_values_are_returned_not_judged() -> None:
    t = track(ev(0, 0x90, 60, 80), ev(4, 0x80, 60, 0))
    type2 = scan_midi(smf(t, t, fmt=2))
    assert type2.midi_type == 2 and type2.n_tracks == 2 and len(type2.notes) == 2
    smpte = scan_midi(smf(t, division=0xE728))
    assert smpte.division == 0xE728 and smpte.ticks_per_beat is None and len(smpte.notes) == 1
    zero = scan_midi(smf(t, division=0))
    assert zero.division == 0 and zero.ticks_per_beat == 0
    empty = scan_midi(header(1, 0))
    assert empty.n_tracks == 0 and empty.notes.shape == (0, 5)
    assert scan_midi(smf(t, division=0x7FFF)).ticks_per_beat == 32767


def test_accepts_any_bytes_like() -> None:
    data = smf(track(ev(0, 0x90, 60, 80), ev(4, 0x80, 60, 0)))
    expected = note_rows(scan_midi(data))
    assert note_rows(scan_midi(bytearray(data))) == expected
    assert note_rows(scan_midi(memoryview(data))) == expected


# ---------------------------------------------------------------------------------------------
# errors


T_OK = track(ev(0, 0x90, 60, 80), ev(4, 0x80, 60, 0))


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "not_midi"),
        (b"MTh", "not_midi"),
        (b"RIFF" + b"\x00" * 40, "not_midi"),
        (b"hello, not a midi file\n" * 4, "not_midi"),
        (b"MThd\x00\x00\x00\x06\x00", "truncated"),  # header cut short
        (chunk(b"MThd", b"\x00\x00\x00\x01"), "truncated"),  # header length < 6
        (chunk(b"MThd", b"\x00\x00\x00\x01\x00\x60", claimed=100), "truncated"),
        (header(ntracks=2) + T_OK, "truncated"),  # fewer tracks than declared
        (header() + T_OK[:-3], "truncated"),  # track chunk cut short
        (header() + b"MTrk\xff\xff\xff\xf0" + T_OK[8:], "truncated"),  # ~4 GiB claim
        (header() + b"\xa5" * 300, "truncated"),  # garbage where the track should be
        (header() + b"MTr", "truncated"),  # chunk header cut short
        (smf(track(ev(0, 0x90, 60), eot=False)), "truncated"),  # event past chunk end
        (smf(track(ev(0, 0xFF, 0x01, 10, 1, 2), eot=False)), "truncated"),  # meta past end
        (smf(track(ev(0, 0xF0, 10, 1), eot=False)), "truncated"),  # sysex past end
        (smf(track(b"\x81", eot=False)), "truncated"),  # delta past end
        (smf(track(b"\x00", eot=False)), "truncated"),  # delta without event
        (smf(track(b"\x81\x80\x80\x80\x00" + bytes([0x90, 60, 1]))), "truncated"),  # 5-byte VLQ
        (smf(track(ev(0, 60, 80))), "truncated"),  # running status with no status
        (smf(track(ev(0, 0x90, 200, 80))), "truncated"),  # data byte above 127
        (smf(track(ev(0, 0xF2, 1, 1))), "truncated"),  # system common: not an SMF event
        (smf(track(ev(0, 0xF8))), "truncated"),  # realtime: not an SMF event
    ],
)
def test_format_errors(data: bytes, code: str) -> None:
    assert error_code(data) == code


def _manifest(hostile_dir: Path) -> list[dict[str, str]]:
    with open(hostile_dir / "MANIFEST.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_hostile_corpus_parser_outcomes(hostile_dir: Path) -> None:
    rows = _manifest(hostile_dir)
    assert len(rows) >= 28
    for row in rows:
        data = (hostile_dir / row["file"]).read_bytes()
        reason = row["reason"]
        if reason in ("not_midi", "truncated"):
            assert error_code(data) == reason, row["file"]
            continue
        scan = scan_midi(data)
        name = row["file"]
        if reason == "async_type2":
            assert scan.midi_type == 2, name
        elif reason == "smpte_division":
            assert scan.ticks_per_beat is None and scan.division & 0x8000, name
        elif reason == "bad_ticks_per_beat":
            assert scan.ticks_per_beat == 0, name
        elif reason == "no_notes":
            assert len(scan.notes) == 0, name
        elif reason == "notes_out_of_range":
            pitches = scan.notes[:, 2]
            assert np.count_nonzero((pitches < 21) | (pitches > 116)) > 0, name
        elif reason == "unterminated_notes":
            assert scan.n_unterminated > 0, name
        elif reason == "orphan_note_off":
            assert scan.n_orphan_note_off > 0, name
        elif reason == "drums_ignored":
            assert scan.n_drum_notes > 0 and len(scan.notes) > 0, name
        else:  # accepted without warning, or a duplicate of an accepted file
            assert scan.midi_type in (0, 1) and 1 <= (scan.ticks_per_beat or 0) <= 32767, name
            assert len(scan.notes) > 0, name
            assert scan.n_unterminated == scan.n_orphan_note_off == scan.n_drum_notes == 0, name


def test_bad_zero_tracks_and_drums_only(hostile_dir: Path) -> None:
    zero = scan_midi((hostile_dir / "bad_zero_tracks.mid").read_bytes())
    assert zero.n_tracks == 0 and zero.notes.shape == (0, 5)
    drums = scan_midi((hostile_dir / "bad_drums_only.mid").read_bytes())
    assert drums.n_drum_notes > 0 and drums.notes.shape == (0, 5)


def test_parse_in_threads_gives_the_same_notes(hostile_dir: Path) -> None:
    datas = [p.read_bytes() for p in sorted(hostile_dir.glob("ok_*"))]
    expected = [note_rows(scan_midi(d)) for d in datas]
    results: dict[int, list[list[tuple[int, ...]]]] = {}

    def work(i: int) -> None:
        results[i] = [note_rows(scan_midi(d)) for d in datas * 20][: len(datas)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == expected for r in results.values())


# ---------------------------------------------------------------------------------------------
# independent oracle: mido + a straightforward FIFO pairing


def mido_notes(data: bytes) -> tuple[np.ndarray, int, int, int]:
    """Encoding rule 2 written the obvious way over mido's messages."""
    mid = mido.MidiFile(file=io.BytesIO(data))
    rows: list[tuple[int, int, int, int, int]] = []
    n_drum = n_orphan = n_unterm = 0
    for ti, trk in enumerate(mid.tracks):
        tick = 0
        open_notes: dict[tuple[int, int], deque[int]] = {}
        for msg in trk:
            tick += msg.time
            if msg.type == "end_of_track":
                break
            if msg.type not in ("note_on", "note_off"):
                continue
            key = (msg.channel, msg.note)
            if msg.type == "note_on" and msg.velocity > 0:
                if msg.channel == 9:
                    n_drum += 1
                else:
                    open_notes.setdefault(key, deque()).append(tick)
            elif msg.channel != 9:
                if open_notes.get(key):
                    rows.append((ti, msg.channel, msg.note, open_notes[key].popleft(), tick))
                else:
                    n_orphan += 1
        for (ch, pitch), ons in open_notes.items():
            for on in ons:
                rows.append((ti, ch, pitch, on, tick))
                n_unterm += 1
    arr = np.array(rows, dtype=np.int64).reshape(-1, 5)
    # (on_tick, pitch, track, channel, off_tick)
    order = np.lexsort((arr[:, 4], arr[:, 1], arr[:, 0], arr[:, 2], arr[:, 3]))
    return arr[order], n_drum, n_orphan, n_unterm


@pytest.mark.corpus
def test_against_mido_oracle(piano_dir: Path) -> None:
    files = sorted(piano_dir.rglob("*.mid"))
    subset = files[:: max(1, len(files) // 40)]
    assert len(subset) >= 30
    for path in subset:
        data = path.read_bytes()
        scan = scan_midi(data)
        notes, n_drum, n_orphan, n_unterm = mido_notes(data)
        assert np.array_equal(scan.notes, notes), path.name
        assert (scan.n_drum_notes, scan.n_orphan_note_off, scan.n_unterminated) == (
            n_drum,
            n_orphan,
            n_unterm,
        ), path.name
        mid = mido.MidiFile(file=io.BytesIO(data))
        assert (scan.midi_type, scan.n_tracks, scan.ticks_per_beat) == (
            mid.type,
            len(mid.tracks),
            mid.ticks_per_beat,
        )


# ---------------------------------------------------------------------------------------------
# per-file resource limits (issue #12 item 12)


def _bomb(n_notes: int) -> bytes:
    """One track of ``n_notes`` note-ons at tick 0, running status (3 bytes a note)."""
    return smf(track(ev(0, 0x90, 60, 64) + b"\x00\x3c\x40" * (n_notes - 1)))


def test_a_note_bomb_is_stopped_at_the_note_limit_and_small() -> None:
    import resource

    from musicflow.core import midi, scan

    data = _bomb(20_000_000)  # 57 MiB: under the 64 MiB byte cap
    assert len(data) < 64 * 2**20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    record = scan.scan_file(data).record
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 100  # MB
    assert record["error"] == "too_large"
    assert f"more than {midi.MAX_NOTES} notes" in record["error_detail"]
    assert error_code(data) == "too_large"


@pytest.mark.perf
def test_a_note_bomb_is_stopped_fast() -> None:
    import time

    from musicflow.core import scan

    data = _bomb(20_000_000)
    started = time.monotonic()
    assert scan.scan_file(data).record["error"] == "too_large"
    assert time.monotonic() - started < 1.0


def test_an_event_bomb_is_stopped_at_the_event_limit() -> None:
    from musicflow.core import midi

    controllers = ev(0, 0xB0, 7, 100) + b"\x00\x07\x64" * (midi.MAX_EVENTS + 10)
    raw = midi._parse(smf(track(controllers)))
    assert raw.error == "too_large" and "events" in raw.detail


def test_files_under_the_limits_are_read_whole() -> None:
    from musicflow.core import midi

    raw = midi._parse(_bomb(1000), max_notes=1000, max_events=10_000)
    assert raw.error is None and len(raw.notes) == 1000
    assert midi._parse(_bomb(1001), max_notes=1000).error == "too_large"
    assert midi._parse(_bomb(10), max_events=5).error == "too_large"
