"""Track metrics (musicflow/core/track_metrics.py, docs/metrics.md "Track metrics") on small
hand-made multi-track windows whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from musicflow.core import metrics
from musicflow.core import track_metrics as tm

PL = 21  # the default pitch window: row = PL + 95 - pitch


def row(pitch: int) -> int:
    return PL + 95 - pitch


def windows(n: int, k: int) -> np.ndarray:
    return np.zeros((n, k, 96, 96), dtype=bool)


def hold(x: np.ndarray, w: int, track: int, pitch: int, start: int = 0, end: int = 96) -> None:
    x[w, track, row(pitch), start:end] = True


def test_tonal_distance_of_identical_tracks_is_zero() -> None:
    x = windows(2, 2)
    for t in (0, 1):
        hold(x, 0, t, 60)
        hold(x, 0, t, 64)
        hold(x, 1, t, 67, 0, 30)
    assert tm.tonal_distance(x, 0, 1, pitch_low=PL) == pytest.approx(0.0, abs=1e-12)


def test_tonal_distance_ignores_octaves_and_matches_the_centroid_maths() -> None:
    """C against G: on the fifths circle 1 step of 7π/6 … (Harte et al.'s angles): the
    distance is the chord length on each circle, radii 1, 1, 0.5."""
    x = windows(1, 2)
    hold(x, 0, 0, 72)
    hold(x, 0, 1, 43)  # G two octaves and a fourth below: only the pitch class counts
    fifths = 2 * math.sin((7 * 7 * math.pi / 6 % (2 * math.pi)) / 2)
    minor3 = 2 * math.sin((7 * 3 * math.pi / 2 % (2 * math.pi)) / 2)
    major3 = 0.5 * 2 * abs(math.sin((7 * 2 * math.pi / 3 % (2 * math.pi)) / 2))
    expected = math.sqrt(fifths**2 + minor3**2 + major3**2)
    assert tm.tonal_distance(x, 0, 1, pitch_low=PL) == pytest.approx(expected)


def test_a_fifth_is_closer_than_a_tritone_and_a_unison_closest() -> None:
    def pair(interval: int) -> float:
        x = windows(1, 2)
        hold(x, 0, 0, 60)
        hold(x, 0, 1, 60 + interval)
        return tm.tonal_distance(x, 0, 1, pitch_low=PL)

    assert pair(0) < pair(7) < pair(6)
    assert pair(12) == pytest.approx(0.0, abs=1e-12)  # an octave is the same pitch class
    assert pair(6) == pytest.approx(math.sqrt(8))  # opposite on two circles, equal on one


def test_tonal_distance_skips_beats_where_one_track_is_silent() -> None:
    x = windows(1, 2)
    hold(x, 0, 0, 60)  # all eight beats
    hold(x, 0, 1, 60, 0, 12)  # beat 1: a unison
    hold(x, 0, 1, 66, 84, 96)  # beat 8: a tritone
    assert tm.tonal_distance(x, 0, 1, pitch_low=PL) == pytest.approx(math.sqrt(8) / 2)
    silent = windows(1, 2)
    hold(silent, 0, 0, 60)
    assert math.isnan(tm.tonal_distance(silent, 0, 1, pitch_low=PL))


def test_crossing_counts_steps_where_a_later_voice_is_above_an_earlier_one() -> None:
    """Soprano, Alto, Tenor: alto above soprano for 24 of 96 steps, tenor silent for the
    second half; a unison is not a crossing."""
    x = windows(1, 3)
    hold(x, 0, 0, 72)
    hold(x, 0, 1, 67)
    x[0, 1, :, 24:48] = False
    hold(x, 0, 1, 74, 24, 48)  # alto above soprano
    hold(x, 0, 2, 60, 0, 48)
    hold(x, 0, 1, 72, 48, 60)  # the alto adds 72 here: a unison with the soprano
    assert tm.pair_crossing_rate(x, 0, 1) == pytest.approx(24 / 96)
    assert tm.pair_crossing_rate(x, 1, 2) == 0.0
    assert tm.crossing_rate(x) == pytest.approx(24 / 96)
    # the tenor jumps above the alto's lower note (67) while below its upper one (72)
    hold(x, 0, 2, 69, 48, 60)
    assert tm.pair_crossing_rate(x, 1, 2) == pytest.approx(12 / 60)
    assert tm.crossing_rate(x) == pytest.approx((24 + 12) / 96)


def test_crossing_needs_two_voices_sounding() -> None:
    x = windows(1, 2)
    hold(x, 0, 1, 80, 0, 48)  # only the lower-ordered voice, high: nothing to cross
    assert math.isnan(tm.crossing_rate(x))
    assert math.isnan(tm.pair_crossing_rate(x, 0, 1))
    hold(x, 0, 0, 60, 40, 96)  # overlap 8 steps, all crossed
    assert tm.crossing_rate(x) == 1.0
    with pytest.raises(ValueError):
        tm.pair_crossing_rate(x, 1, 0)


def test_in_range_rate_uses_the_training_percentiles() -> None:
    train = np.array([60] * 1 + list(range(61, 159)) + [200])  # 100 notes
    lo, hi = tm.pitch_range(train)
    assert (lo, hi) == (61.0, 158.0)  # the lone extremes fall outside the 1st-99th percentile
    assert tm.in_range_rate(np.array([61, 158, 60, 159]), lo, hi) == 0.5
    assert math.isnan(tm.in_range_rate(np.array([]), lo, hi))
    assert all(math.isnan(v) for v in tm.pitch_range(np.array([])))


def test_note_pitches_count_each_note_once() -> None:
    x = windows(1, 1)
    hold(x, 0, 0, 60, 0, 40)
    hold(x, 0, 0, 60, 50, 52)
    hold(x, 0, 0, 64, 10, 11)
    assert sorted(tm.note_pitches(x[:, 0], pitch_low=PL).tolist()) == [60, 60, 64]
    assert tm.median_pitch(x[:, 0], pitch_low=PL) == 60.0
    # another pitch window moves every pitch
    assert sorted(tm.note_pitches(x[:, 0], pitch_low=PL + 3).tolist()) == [63, 63, 67]


def satb(n: int, seed: int, *, cross: bool = False) -> np.ndarray:
    """n windows of four monophonic voices around 72, 65, 57, 48 (random steps of a beat)."""
    rng = np.random.default_rng(seed)
    x = windows(n, 4)
    centres = (72, 65, 57, 48)
    for w in range(n):
        for v, c in enumerate(centres):
            for beat in range(8):
                p = c + int(rng.integers(-3, 4))
                if cross and v == 3:
                    p = 76  # the bass above everyone
                hold(x, w, v, p, 12 * beat, 12 * beat + 11)
    return x


def test_track_scores_names_baselines_and_a_bad_generator() -> None:
    names = ["Soprano", "Alto", "Tenor", "Bass"]
    train, held, good = satb(40, 1), satb(12, 2), satb(16, 3)
    bad = satb(16, 4, cross=True)
    scores = tm.track_scores(good, held, train, names, pitch_low=PL, voices=True)
    worse = tm.track_scores(bad, held, train, names, pitch_low=PL, voices=True)
    for key in scores:
        assert tm.is_track_metric(key), key
        base = key.removesuffix(metrics.BASELINE_SUFFIX)
        short = tm.parse_name(base)[1]
        assert tm.track_metric_info(short) is not None, key
        if not key.endswith(metrics.BASELINE_SUFFIX):
            assert f"{key}{metrics.BASELINE_SUFFIX}" in scores, key
    # every contract metric, per track
    for t in range(4):
        for name in metrics.METRIC_NAMES:
            assert tm.track_key(t, name) in scores
    assert {tm.parse_name(k)[0] for k in scores if "tonal_distance" in k} >= {(0, 3), (1, 2)}
    # held-out voices never cross; the bad bass crosses every voice on every step it sounds
    assert scores["tracks.voice_crossing_rate_baseline"] == 0.0
    assert scores["tracks.voice_crossing_rate"] == 0.0
    assert worse["tracks.voice_crossing_rate"] == 1.0
    assert worse["tracks.2-3.crossing_rate"] == 1.0 and worse["tracks.0-1.crossing_rate"] == 0.0
    # the bad bass sings at 76: outside the bass's range, its median far from the data's
    assert scores["track.3.in_range_rate"] > 0.9 and worse["track.3.in_range_rate"] == 0.0
    assert worse["track.3.median_pitch"] == 76.0
    assert abs(scores["track.3.median_pitch_baseline"] - 48) <= 1
    assert worse["track.3.pitch_hist_l1"] > scores["track.3.pitch_hist_l1"]
    assert scores["tracks.in_range_rate_mean_baseline"] > 0.9


def test_drums_stay_out_of_the_tonal_distance_and_voices_out_of_instruments() -> None:
    x = satb(6, 5)
    names = ["drums", "piano", "bass", "lead"]
    scores = tm.track_scores(
        x, x, satb(10, 6), names, pitch_low=PL, drums=[True, False, False, False]
    )
    pairs = {tm.parse_name(k)[0] for k in scores if k.endswith(".tonal_distance")}
    assert pairs == {(1, 2), (1, 3), (2, 3)}
    assert not any("crossing" in k for k in scores)
    # the held-out windows scored as generated: each property equals its baseline
    for key in ("tracks.mean_tonal_distance", "track.2.median_pitch", "tracks.1-3.tonal_distance"):
        assert scores[key] == scores[f"{key}_baseline"]


def test_track_scores_refuses_mismatched_shapes() -> None:
    x = satb(2, 0)
    with pytest.raises(ValueError, match="tracks"):
        tm.track_scores(x, x[:, :3], x, ["a"] * 4, pitch_low=PL)
    with pytest.raises(ValueError, match="names"):
        tm.track_scores(x, x, x, ["a"] * 3, pitch_low=PL)
    with pytest.raises(ValueError, match="shape"):
        tm.track_scores(x[:, 0], x, x, ["a"] * 4, pitch_low=PL)


def test_keys_parse_back() -> None:
    assert tm.parse_name("track.12.blank_rate") == ((12,), "blank_rate")
    assert tm.parse_name("tracks.0-3.tonal_distance") == ((0, 3), "tonal_distance")
    assert tm.parse_name("tracks.mean_tonal_distance") == ((), "mean_tonal_distance")
    assert tm.parse_name("pitch_hist_l1") is None
    assert tm.is_track_metric("track.0.copy_rate_baseline")
    assert not tm.is_track_metric("onenn_accuracy_baseline")
    assert tm.merge_tracks(satb(1, 0)).shape == (1, 96, 96)


def test_crossing_rate_agrees_with_a_step_by_step_count() -> None:
    """Random chords in three voices: the vectorised rate against the definition, one step
    and one pair at a time."""
    rng = np.random.default_rng(7)
    x = rng.random((3, 3, 96, 96)) < 0.01
    pitches = PL + 95 - np.arange(96)
    several = crossed = 0
    pair_both, pair_crossed = np.zeros((3, 3), int), np.zeros((3, 3), int)
    for w in range(3):
        for s in range(96):
            sounding = [set(pitches[x[w, v, :, s]].tolist()) for v in range(3)]
            if sum(bool(p) for p in sounding) < 2:
                continue
            several += 1
            hit = False
            for i in range(3):
                for j in range(i + 1, 3):
                    if sounding[i] and sounding[j]:
                        pair_both[i, j] += 1
                        if max(sounding[j]) > min(sounding[i]):
                            pair_crossed[i, j] += 1
                            hit = True
            crossed += hit
    assert several > 50 and 0 < crossed < several  # the draw exercises both outcomes
    assert tm.crossing_rate(x) == pytest.approx(crossed / several)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        assert tm.pair_crossing_rate(x, i, j) == pytest.approx(pair_crossed[i, j] / pair_both[i, j])
