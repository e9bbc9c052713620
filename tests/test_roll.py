"""musicflow.core.roll: every rule of docs/encoding.md on hand-written notes, exact integers.

Notes are (track, channel, pitch, on_tick, off_tick) as scan_midi returns them. Most tests use
ticks_per_beat 12, where one tick is one step, so the expected cells read off directly.
"""

from __future__ import annotations

import io

import mido
import numpy as np
import pytest

from musicflow.core import roll
from musicflow.core.midi import scan_midi
from musicflow.core.scan import scan_file

LOW = roll.DEFAULT_PITCH_LOW


def notes(*rows: tuple[int, ...]) -> np.ndarray:
    """Rows of (pitch, on, off) or (track, channel, pitch, on, off)."""
    full = [(0, 0, *r) if len(r) == 3 else r for r in rows]
    return np.array(full, dtype=np.int64).reshape(-1, 5)


def row_of(pitch: int, pitch_low: int = LOW) -> int:
    return pitch_low + 95 - pitch


def runs(song: np.ndarray, pitch: int, pitch_low: int = LOW) -> list[tuple[int, int]]:
    """Maximal runs of 1s (start, end) in the row of ``pitch``."""
    return [(int(s), int(e)) for _, s, e in roll.decode_roll(song, pitch_low) if _ == pitch]


def encode_all(nts: np.ndarray, tpb: int = 12, pitch_low: int = LOW):
    """Dense reference path and the fast path; asserts they agree, returns the dense results."""
    song, n_out = roll.song_matrix(nts, tpb, pitch_low)
    segments, windows = roll.song_windows(song)
    enc = roll.encode_notes(nts, tpb, pitch_low)
    assert enc.complete and enc.n_out_of_range == n_out
    assert np.array_equal(enc.segments, segments)
    assert np.array_equal(enc.packed, roll.pack_windows(windows))
    assert enc.segments.dtype == np.int32 and enc.packed.dtype == np.uint8
    return song, n_out, segments, windows


# ---------------------------------------------------------------------------------------------
# constants and parameters


def test_constants_and_params() -> None:
    assert (roll.ENCODING_NAME, roll.STEPS_PER_BEAT, roll.ROWS, roll.COLS) == (
        "roll-v1",
        12,
        96,
        96,
    )
    assert roll.DEFAULT_PITCH_LOW == 21 and isinstance(roll.ENCODER_VERSION, str)
    assert roll.encoding_params() == {
        "name": "roll-v1",
        "steps_per_beat": 12,
        "pitch_low": 21,
        "rows": 96,
        "cols": 96,
    }
    assert roll.encoding_params(0)["pitch_low"] == 0
    for bad in (-1, 33, 21.0):
        with pytest.raises(ValueError):
            roll.encoding_params(bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# item 3: time grid


def test_quantize_round_half_up_exact() -> None:
    ticks = np.array([0, 1, 2, 3, 5, 6, 7, 10, 48, 50, 95, 96])
    # tpb 48: a step is 4 ticks; 2, 6, 10 ... are exact halves and round up
    assert roll.quantize(ticks, 48).tolist() == [0, 0, 1, 1, 1, 2, 2, 3, 12, 13, 24, 24]
    assert roll.quantize(np.array([19, 20, 59, 60, 480]), 480).tolist() == [0, 1, 1, 2, 12]
    assert roll.quantize(np.array([0, 1, 2]), 1).tolist() == [0, 12, 24]
    # tpb 7: 12/7 per tick; (24*t + 7) // 14
    assert roll.quantize(np.arange(8), 7).tolist() == [0, 2, 3, 5, 7, 9, 10, 12]
    assert roll.quantize(np.array([0]), 7).dtype == np.int64


def test_quantize_matches_formula_and_does_not_overflow() -> None:
    rng = np.random.default_rng(0)
    for tpb in (1, 2, 5, 12, 24, 48, 96, 120, 384, 480, 960, 1000, 10080, 32767):
        t = rng.integers(0, 10**7, 500)
        expected = [(24 * int(x) + tpb) // (2 * tpb) for x in t]
        assert roll.quantize(t, tpb).tolist() == expected
    huge = 2**62  # 24 * huge overflows int64; the result does not
    assert roll.quantize(np.array([huge]), 32767).tolist() == [(24 * huge + 32767) // 65534]
    with pytest.raises(ValueError):
        roll.quantize(np.array([1]), 0)


def test_end_not_after_start_becomes_one_step() -> None:
    # tpb 480: a zero-length note; ticks 100 and 110 both round to step 3 (2.5 and 2.75);
    # an off before its on (only from hand-made arrays): step 0 <= step 1
    song, *_ = encode_all(notes((60, 0, 0), (62, 100, 110), (64, 50, 10)), tpb=480)
    assert runs(song, 60) == [(0, 1)]
    assert runs(song, 62) == [(3, 4)]
    assert runs(song, 64) == [(1, 2)]
    assert song.shape == (96, 4)


def test_quantized_steps_of_notes() -> None:
    # tpb 48: tick 2 is step 0.5 → 1, tick 10 is 2.5 → 3; tick 1 is 0.25 → 0, tick 5 1.25 → 1
    song, *_ = encode_all(notes((60, 2, 10), (62, 1, 5)), tpb=48)
    assert runs(song, 60) == [(1, 3)]
    assert runs(song, 62) == [(0, 1)]
    assert song.shape == (96, 3)


# ---------------------------------------------------------------------------------------------
# item 4: pitch window


def test_rows_top_is_highest_pitch() -> None:
    song, n_out, *_ = encode_all(notes((21, 0, 1), (116, 0, 2), (60, 0, 3)))
    assert n_out == 0
    assert song[95, 0] and song[0, :2].all() and song[row_of(60), :3].all()
    assert song.sum() == 6


def test_out_of_range_is_dropped_and_counted_not_wrapped() -> None:
    song, n_out, _, windows = encode_all(
        notes((20, 0, 4), (117, 0, 4), (0, 0, 4), (127, 0, 4), (60, 0, 4))
    )
    assert n_out == 4
    assert song.sum() == 4 and song[row_of(60)].sum() == 4
    assert windows.sum() == 4


def test_pitch_0_and_127_with_shifted_windows() -> None:
    song0, n_out0, *_ = encode_all(notes((0, 0, 2), (127, 0, 2)), pitch_low=0)
    assert n_out0 == 1 and song0[95, :2].all() and song0.sum() == 2
    song32, n_out32, *_ = encode_all(notes((0, 0, 2), (127, 0, 2)), pitch_low=32)
    assert n_out32 == 1 and song32[0, :2].all() and song32.sum() == 2
    enc = roll.encode_notes(notes((0, 0, 2), (127, 0, 2)), 12)
    assert enc.n_out_of_range == 2 and enc.n_segments == 0 and enc.packed.shape == (0, 1152)


def test_drum_channel_is_excluded() -> None:
    nts = notes((0, 9, 36, 0, 4), (0, 0, 60, 0, 4), (1, 9, 60, 10, 20))
    song, n_out, *_ = encode_all(nts)
    assert n_out == 0 and runs(song, 60) == [(0, 4)] and song.sum() == 4


# ---------------------------------------------------------------------------------------------
# item 5: same pitch


def test_same_start_merges_as_union_across_tracks_and_channels() -> None:
    nts = notes((0, 0, 60, 0, 4), (1, 3, 60, 0, 10), (2, 0, 60, 0, 2))
    song, *_ = encode_all(nts)
    assert runs(song, 60) == [(0, 10)]


def test_restrike_while_sounding_cuts_with_one_step_gap() -> None:
    song, *_ = encode_all(notes((60, 0, 24), (60, 12, 20)))
    assert runs(song, 60) == [(0, 11), (12, 20)]
    assert not song[row_of(60), 11]


def test_restrike_right_as_it_ends_keeps_a_gap() -> None:
    song, *_ = encode_all(notes((60, 0, 12), (60, 12, 20)))
    assert runs(song, 60) == [(0, 11), (12, 20)]


def test_restrike_after_the_end_is_untouched() -> None:
    song, *_ = encode_all(notes((60, 0, 12), (60, 13, 20)))
    assert runs(song, 60) == [(0, 12), (13, 20)]


def test_restrike_two_steps_later_leaves_one_step_note_and_gap() -> None:
    song, *_ = encode_all(notes((60, 0, 10), (60, 2, 5)))
    assert runs(song, 60) == [(0, 1), (2, 5)]


def test_restrike_one_step_later_has_no_room_for_a_gap() -> None:
    # max(prev_start + 1, start - 1) = 1: the cut note is adjacent to the next one
    song, *_ = encode_all(notes((60, 0, 10), (60, 1, 5)))
    row = song[row_of(60)]
    assert row[:5].all() and not row[5:].any()
    assert runs(song, 60) == [(0, 5)]


def test_cut_applies_to_consecutive_pairs_in_onset_order() -> None:
    # a long note, a short one inside it, a later one inside the first's original span,
    # plus a merge of two notes starting together; other pitches are independent
    nts = notes(
        (60, 0, 100),
        (60, 10, 12),
        (60, 50, 60),
        (60, 50, 70),
        (60, 69, 80),
        (61, 5, 90),
    )
    song, *_ = encode_all(nts)
    assert runs(song, 60) == [(0, 9), (10, 12), (50, 68), (69, 80)]
    assert runs(song, 61) == [(5, 90)]


def test_same_pitch_rule_in_any_input_order() -> None:
    nts = notes((60, 69, 80), (60, 0, 100), (60, 50, 70), (60, 10, 12), (60, 50, 60))
    song, *_ = encode_all(nts)
    assert runs(song, 60) == [(0, 9), (10, 12), (50, 68), (69, 80)]


# ---------------------------------------------------------------------------------------------
# items 6-7: song matrix and windows


def test_song_length_is_max_end() -> None:
    song, *_ = encode_all(notes((60, 5, 7), (62, 100, 130)))
    assert song.shape == (96, 130) and song.dtype == bool


def test_windows_pad_the_last_and_skip_empty_ones() -> None:
    nts = notes((60, 0, 10), (62, 90, 100), (64, 300, 310))
    song, _, segments, windows = encode_all(nts)
    assert song.shape == (96, 310)  # ceil(310 / 96) = 4 windows, k = 0..3
    assert segments.tolist() == [0, 1, 3]  # k = 2 is empty
    assert windows.shape == (3, 96, 96)
    assert windows[0, row_of(60), :10].all() and windows[0, row_of(62), 90:].all()
    assert windows[1, row_of(62), :4].all() and windows[1].sum() == 4  # carried over the edge
    assert windows[2, row_of(64), 12:22].all() and windows[2].sum() == 10  # 310 - 288 = 22
    assert not windows[2, :, 22:].any()  # zero padding past T
    assert windows.sum() == song.sum()


def test_empty_input() -> None:
    song, n_out, segments, windows = encode_all(notes())
    assert song.shape == (96, 0) and n_out == 0
    assert segments.shape == (0,) and windows.shape == (0, 96, 96)


def test_window_exactly_full() -> None:
    _, _, segments, windows = encode_all(notes((60, 0, 96), (61, 96, 192)))
    assert (
        segments.tolist() == [0, 1]
        and windows[0, row_of(60)].all()
        and windows[1, row_of(61)].all()
    )


def test_pack_unpack_bit_order() -> None:
    w = np.zeros((2, 96, 96), dtype=bool)
    w[0, 0, 0] = True
    w[0, 0, 9] = True
    w[1, 95, 95] = True
    packed = roll.pack_windows(w)
    assert packed.shape == (2, 1152) and packed.dtype == np.uint8
    assert packed[0, 0] == 0x80 and packed[0, 1] == 0x40 and packed[1, 1151] == 0x01
    assert np.array_equal(packed, np.packbits(w.reshape(2, -1), axis=1))
    assert np.array_equal(roll.unpack_windows(packed), w)
    assert roll.count_active(packed).tolist() == [2, 1]
    assert roll.unpack_windows(np.zeros((0, 1152), np.uint8)).shape == (0, 96, 96)


# ---------------------------------------------------------------------------------------------
# the fast path equals the dense reference, also in its rarely used branches


def random_notes(rng: np.random.Generator, n: int, span: int) -> np.ndarray:
    on = rng.integers(0, span, n)
    off = on + rng.integers(-3, 40, n)
    pitch = rng.integers(10, 128, n)
    channel = rng.choice([0, 1, 9], n, p=[0.6, 0.3, 0.1])
    return np.stack([rng.integers(0, 3, n), channel, pitch, on, np.maximum(off, 0)], axis=1)


@pytest.mark.parametrize("seed", range(6))
def test_fast_path_equals_dense_reference(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(seed)
    tpb = int(rng.choice([1, 7, 12, 48, 480]))
    nts = random_notes(rng, int(rng.integers(1, 400)), int(rng.integers(10, 5000)))
    encode_all(nts, tpb)
    monkeypatch.setattr(roll, "_REPEAT_MAX_CELLS", 0)  # cumulative-sum branch
    encode_all(nts, tpb)


def test_sparse_windows_far_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    # k up to ~10^6 with a handful of notes takes the sort-based union branch
    nts = notes((60, 0, 5), (61, 96 * 10**6 + 90, 96 * 10**6 + 200), (62, 96 * 500, 96 * 503))
    enc = roll.encode_notes(nts, 12)
    assert enc.complete
    assert enc.segments.tolist() == [0, 500, 501, 502, 10**6, 10**6 + 1, 10**6 + 2]
    windows = roll.unpack_windows(enc.packed)
    assert windows[1:4, row_of(62)].all() and windows[4, row_of(61), 90:].all()
    assert windows[5, row_of(61)].all() and windows[6, row_of(61), :8].all()
    monkeypatch.setattr(roll, "_REPEAT_MAX_CELLS", 0)
    again = roll.encode_notes(nts, 12)
    assert np.array_equal(again.packed, enc.packed)
    decoded = roll.decode_roll(windows, segments=enc.segments)
    assert decoded.tolist() == [
        [60, 0, 5],
        [62, 96 * 500, 96 * 503],
        [61, 96 * 10**6 + 90, 96 * 10**6 + 200],
    ]


def test_too_many_windows_are_counted_not_built() -> None:
    enc = roll.encode_notes(notes((60, 0, 96 * 50)), 12, max_segments=10)
    assert not enc.complete and enc.n_segments == 50 and enc.packed.shape == (0, 1152)
    huge = notes((60, 0, 2**40))  # an unterminated note closed at a hostile last tick
    enc = roll.encode_notes(huge, 1)
    assert not enc.complete and enc.n_segments == (12 * 2**40) // 96


# ---------------------------------------------------------------------------------------------
# decoding and the MIDI round trip


def test_decode_song_and_windows() -> None:
    song = np.zeros((96, 200), dtype=bool)
    song[row_of(60), 3:9] = True
    song[row_of(60), 10:11] = True
    song[row_of(100), 90:110] = True
    expected = [[60, 3, 9], [60, 10, 11], [100, 90, 110]]
    assert roll.decode_roll(song).tolist() == expected
    segments, windows = roll.song_windows(song)
    assert roll.decode_roll(windows, segments=segments).tolist() == expected
    assert roll.decode_roll(windows).tolist() == expected  # consecutive k: same thing
    # without segments, windows are laid end to end: k = 0 and 2 become adjacent
    w = np.zeros((2, 96, 96), dtype=bool)
    w[0, row_of(60), 90:] = True
    w[1, row_of(60), :5] = True
    assert roll.decode_roll(w).tolist() == [[60, 90, 101]]
    assert roll.decode_roll(w, segments=np.array([0, 2])).tolist() == [[60, 90, 96], [60, 192, 197]]
    assert roll.decode_roll(np.zeros((0, 96, 96), bool)).shape == (0, 3)
    assert roll.decode_roll(w, pitch_low=0).tolist()[0][0] == 39


def midi_bytes(tracks: list[list[mido.Message]], tpb: int = 12, type_: int = 1) -> bytes:
    mid = mido.MidiFile(type=type_, ticks_per_beat=tpb)
    for msgs in tracks:
        mid.tracks.append(mido.MidiTrack(msgs))
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def on(note: int, t: int = 0, ch: int = 0, vel: int = 64) -> mido.Message:
    return mido.Message("note_on", note=note, velocity=vel, channel=ch, time=t)


def off(note: int, t: int = 0, ch: int = 0) -> mido.Message:
    return mido.Message("note_off", note=note, velocity=0, channel=ch, time=t)


def test_unterminated_and_orphan_through_the_encoder() -> None:
    data = midi_bytes(
        [
            [off(50), on(60), on(62, 2), off(60, 4), mido.MetaMessage("end_of_track", time=10)],
            [on(64), on(36, ch=9), off(64, 3), on(64, 0, vel=0)],
        ]
    )
    scan = scan_midi(data)
    assert (scan.n_orphan_note_off, scan.n_unterminated, scan.n_drum_notes) == (2, 1, 1)
    song, *_ = encode_all(scan.notes, scan.ticks_per_beat)
    assert runs(song, 60) == [(0, 6)]
    assert runs(song, 62) == [(2, 16)]  # closed at the track's last tick 2 + 4 + 10
    assert runs(song, 64) == [(0, 3)]
    assert runs(song, 36) == []


def test_notes_to_midi_structure() -> None:
    data = roll.notes_to_midi(
        np.array([[60, 0, 12], [64, 12, 24]]), ticks_per_beat=96, tempo_bpm=90
    )
    mid = mido.MidiFile(file=io.BytesIO(data))
    assert mid.type == 1 and mid.ticks_per_beat == 96 and len(mid.tracks) == 2
    meta = {m.type: m for m in mid.tracks[0]}
    assert round(mido.tempo2bpm(meta["set_tempo"].tempo)) == 90
    assert (meta["time_signature"].numerator, meta["time_signature"].denominator) == (4, 4)
    assert any(m.type == "program_change" and m.program == 0 for m in mid.tracks[1])
    scan = scan_midi(data)
    assert scan.notes[:, 2:].tolist() == [[60, 0, 96], [64, 96, 192]]
    with pytest.raises(ValueError):
        roll.notes_to_midi(np.array([[60, 5, 5]]))
    with pytest.raises(ValueError):
        roll.notes_to_midi(np.array([[60, 0, 5]]), ticks_per_beat=5)


@pytest.mark.parametrize("tpb", [12, 25, 96, 480, 1000, 32767])
def test_round_trip_windows_midi_windows(tpb: int) -> None:
    rng = np.random.default_rng(tpb)
    windows = rng.random((4, 96, 96)) < 0.15  # dense noise: many 1-step runs and re-strikes
    windows[1] = False
    windows[2, :, :] = False
    windows[2, 0, :] = True  # pitch 116 held through the window
    windows[2, 95, ::2] = True  # pitch 21 struck every other step
    segments = np.array([0, 3, 4, 9], dtype=np.int32)
    keep = windows.any(axis=(1, 2))
    windows, segments = windows[keep], segments[keep]
    decoded = roll.decode_roll(windows, segments=segments)
    data = roll.notes_to_midi(decoded, ticks_per_beat=tpb)
    result = scan_file(data)
    assert result.record["error"] is None and result.record["n_notes"] == len(decoded)
    assert np.array_equal(result.segments, segments)
    assert np.array_equal(result.packed, roll.pack_windows(windows))
