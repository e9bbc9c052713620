"""Metrics on hand-made windows with answers worked out by hand (docs/metrics.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from musicflow.core import metrics as m

PITCH_LOW = 21


def row(pitch: int, pitch_low: int = PITCH_LOW) -> int:
    return pitch_low + 95 - pitch


def window(*notes: tuple[int, int, int]) -> np.ndarray:
    """One (96, 96) window from (pitch, start, end) notes."""
    w = np.zeros((96, 96), dtype=bool)
    for pitch, start, end in notes:
        w[row(pitch), start:end] = True
    return w


def stack(*windows: np.ndarray) -> np.ndarray:
    return np.stack(windows)


C_MAJOR = (60, 62, 64, 65, 67, 69, 71, 72)
# C4 D E F | G A B C5, one beat (12 steps) each: bar 1 = C D E F, bar 2 = G A B C.
SCALE_RUN = window(*[(p, 12 * i, 12 * i + 12) for i, p in enumerate(C_MAJOR)])
# C major triad held for two beats.
CHORD = window((60, 0, 24), (64, 0, 24), (67, 0, 24))
EMPTY = np.zeros((96, 96), dtype=bool)


def random_windows(n: int, seed: int, rows: tuple[int, int] = (25, 75)) -> np.ndarray:
    """Sparse random 'music': 15-40 notes of 1-23 steps on rows in ``rows``."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 96, 96), dtype=bool)
    for i in range(n):
        k = rng.integers(15, 40)
        for r, s, length in zip(
            rng.integers(*rows, k), rng.integers(0, 96, k), rng.integers(1, 24, k), strict=True
        ):
            x[i, r, s : s + length] = True
    return x


# ------------------------------------------------------------------ per-window values


def test_pitch_class_of_rows_follows_contract_1() -> None:
    pcs = m.pitch_class_of_rows(21)
    assert pcs[row(60)] == 0  # C4
    assert pcs[0] == (21 + 95) % 12  # highest row: pitch 116 = G#8
    assert m.pitch_class_of_rows(24)[95] == 0  # pitch_low 24 = C1 on the lowest row


def test_scale_run_values() -> None:
    x = SCALE_RUN[None]
    assert m.count_notes(x).tolist() == [8]
    assert m.density(x).tolist() == [1.0]
    assert m.polyphony(x).tolist() == [1.0]
    assert m.empty_beat_rate(x).tolist() == [0.0]
    assert m.upc(x).tolist() == [4.0]
    assert m.qualified_note_rate(x).tolist() == [1.0]
    assert m.scale_consistency(x).tolist() == [1.0]


def test_chord_values() -> None:
    f = m.window_features(CHORD)
    assert f["density"].tolist() == [3 / 8]
    assert f["polyphony"].tolist() == [3.0]
    assert f["empty_beat_rate"].tolist() == [6 / 8]
    assert f["upc"].tolist() == [3.0]  # the empty second bar is not averaged in
    assert f["qualified_note_rate"].tolist() == [1.0]
    assert f["scale_consistency"].tolist() == [1.0]


def test_empty_window_values_are_nan_where_undefined() -> None:
    f = m.window_features(EMPTY)
    assert f["density"].tolist() == [0.0]
    assert f["empty_beat_rate"].tolist() == [1.0]
    for name in ("polyphony", "upc", "qualified_note_rate", "scale_consistency"):
        assert math.isnan(f[name][0]), name


def test_notes_are_maximal_runs_per_row() -> None:
    w = np.zeros((96, 96), dtype=bool)
    w[50, [0, 1, 3, 4, 5, 95]] = True  # runs 0-1, 3-5, 95: three notes, one of 1 step
    w[51, 10] = True  # a one-step note
    assert m.count_notes(w).tolist() == [4]
    assert m.qualified_note_rate(w).tolist() == [2 / 4]
    onsets = m.note_onsets(w)[0]
    assert np.flatnonzero(onsets[50]).tolist() == [0, 3, 95]


def test_polyphony_ignores_silent_steps() -> None:
    w = window((60, 0, 10), (64, 0, 5))  # steps 0-4: 2 pitches, 5-9: 1, rest silent
    assert m.polyphony(w).tolist() == [(5 * 2 + 5 * 1) / 10]


def test_empty_beat_rate_counts_12_step_beats() -> None:
    w = window((60, 11, 13))  # touches beats 0 and 1 only
    assert m.empty_beat_rate(w).tolist() == [6 / 8]


def test_upc_counts_sustained_notes_in_both_bars_and_octaves_once() -> None:
    w = window((60, 40, 60), (72, 0, 4), (62, 50, 52))
    # bar 1: C4 (sustained) + C5 -> {C}; bar 2: C4 + D4 -> {C, D}
    assert m.upc(w).tolist() == [(1 + 2) / 2]


def test_scale_consistency_of_chromatic_run_is_7_of_12() -> None:
    w = window(*[(60 + i, 8 * i, 8 * i + 4) for i in range(12)])
    assert m.scale_consistency(w)[0] == pytest.approx(7 / 12)


def test_scale_consistency_counts_onsets_not_cells() -> None:
    # no scale holds three consecutive semitones; one onset each -> 2 of 3 whatever the lengths
    w = window((60, 0, 80), (61, 80, 81), (62, 90, 91))
    assert m.scale_consistency(w)[0] == pytest.approx(2 / 3)


def test_scale_masks_hold_24_scales_of_7_notes() -> None:
    masks = m._scale_masks()
    assert masks.shape == (24, 12)
    assert (masks.sum(axis=1) == 7).all()
    # A natural minor == C major as a pitch-class set
    assert (masks[12 + 9] == masks[0]).all()


def test_onenn_features_layout() -> None:
    f = m.onenn_features(stack(SCALE_RUN, CHORD, EMPTY))
    assert f.shape == (3, 38)
    assert np.allclose(f[:2, :12].sum(axis=1), 1.0)  # pitch-class histogram
    assert np.allclose(f[:2, 12:20].sum(axis=1), 1.0)  # octave bands
    assert np.allclose(f[:2, 20:32].sum(axis=1), 1.0)  # onset position in the beat
    assert f[1, 20] == 1.0  # the chord's onsets all fall on the beat
    assert (f[2, :32] == 0).all()  # empty window: zero histograms
    assert f[2, 32:].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]  # NaN -> 0
    assert not np.isnan(f).any()


def test_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        m.density(np.zeros((2, 96, 48), dtype=bool))


# ------------------------------------------------------------------ set metrics


def test_pitch_hist_l1_known_values() -> None:
    a = window((60, 0, 10))
    b = window((60, 0, 5), (72, 0, 5))
    assert m.pitch_hist_l1(a[None], a[None]) == 0.0
    assert m.pitch_hist_l1(a[None], b[None]) == pytest.approx(1.0)  # |1-.5| + |0-.5|
    assert m.pitch_hist_l1(a[None], window((61, 0, 3))[None]) == pytest.approx(2.0)
    assert m.pitch_hist_l1(EMPTY[None], a[None]) == 2.0  # blank output is the worst case
    assert m.pitch_hist_l1(EMPTY[None], EMPTY[None]) == 0.0


def test_pitch_class_hist_l1_folds_octaves() -> None:
    a = window((60, 0, 10))
    b = window((72, 0, 10))
    assert m.pitch_hist_l1(a[None], b[None]) == pytest.approx(2.0)
    assert m.pitch_class_hist_l1(a[None], b[None]) == 0.0
    assert m.pitch_class_hist_l1(a[None], window((61, 0, 10))[None]) == pytest.approx(2.0)


def test_mean_abs_diff_is_nan_aware() -> None:
    assert m.mean_abs_diff(np.array([1.0, np.nan, 3.0]), np.array([1.0])) == 1.0
    assert math.isnan(m.mean_abs_diff(np.array([np.nan]), np.array([1.0])))


def test_blank_and_unique_rates() -> None:
    x = stack(SCALE_RUN, SCALE_RUN, CHORD, EMPTY)
    assert m.blank_rate(x) == 0.25
    assert m.unique_rate(x) == 0.75


def test_nearest_jaccard_known_values() -> None:
    a = window((60, 0, 10))  # 10 cells
    b = window((60, 0, 9))  # 9 of them: J = 0.9
    c = window((60, 0, 7))  # J = 0.7
    d = window((40, 0, 10))  # disjoint: J = 0
    got = m.nearest_jaccard(stack(b, c, d, EMPTY), a[None])
    assert got.tolist() == pytest.approx([0.9, 0.7, 0.0, 0.0])
    assert m.nearest_jaccard(EMPTY[None], EMPTY[None]).tolist() == [1.0]
    assert m.copy_rate(stack(b, c, d), a[None]) == pytest.approx(1 / 3)


def test_nearest_jaccard_matches_brute_force_in_small_chunks() -> None:
    q, r = random_windows(7, 1), random_windows(11, 2)
    r[3] = q[2]
    brute = np.array(
        [max((qi & ri).sum() / (qi | ri).sum() for ri in r) for qi in q], dtype=np.float64
    )
    assert np.allclose(m.nearest_jaccard(q, r, chunk_size=3), brute)
    assert m.nearest_jaccard(q, r)[2] == 1.0


def test_nearest_jaccard_groups_exclude_self_and_same_source() -> None:
    r = random_windows(4, 3)
    r[1] = r[0]  # a repeat inside the same piece
    own = m.nearest_jaccard(r, r, query_groups=np.arange(4), reference_groups=np.arange(4))
    assert own[0] == 1.0 and own[1] == 1.0 and own[2] < 0.8
    sources = np.array(["a", "a", "b", "c"])
    by_file = m.nearest_jaccard(r, r, query_groups=sources, reference_groups=sources)
    assert (by_file < 0.8).all()
    lonely = m.nearest_jaccard(r[:1], r[:1], query_groups=[0], reference_groups=[0])
    assert math.isnan(lonely[0])


def test_onenn_separated_clusters_score_one() -> None:
    low = random_windows(40, 4, rows=(70, 90))
    high = random_windows(40, 5, rows=(5, 25))
    assert m.onenn_accuracy(low, high) == 1.0


def test_onenn_same_distribution_scores_about_half() -> None:
    acc = m.onenn_accuracy(random_windows(300, 6), random_windows(300, 7))
    assert 0.4 <= acc <= 0.6


def test_onenn_exact_copies_score_zero() -> None:
    x = random_windows(30, 8)
    assert m.onenn_accuracy(x, x.copy()) == 0.0  # each window's twin is in the other set


def test_onenn_ties_give_fractional_credit() -> None:
    # every generated and every real vector is the same point: all ties, half the
    # neighbours share the label (minus the point itself) -> (n-1)/(2n-1)
    f = np.zeros((5, 38))
    assert m.onenn_accuracy_from_features(f, f) == pytest.approx(4 / 9)


def test_onenn_subsamples_to_equal_sizes() -> None:
    a = m.onenn_accuracy(random_windows(50, 9), random_windows(20, 10), seed=1)
    b = m.onenn_accuracy(random_windows(50, 9), random_windows(20, 10), seed=1)
    assert a == b


# ------------------------------------------------------------------ evaluate


def _expected_keys() -> set[str]:
    return set(m.METRIC_NAMES) | {f"{k}_baseline" for k in m.METRIC_NAMES}


def test_metric_names_are_contract_4() -> None:
    assert set(m.METRIC_NAMES) == {
        "pitch_hist_l1",
        "pitch_class_hist_l1",
        "density_diff",
        "polyphony_diff",
        "empty_beat_rate_diff",
        "upc_diff",
        "qualified_note_rate_diff",
        "scale_consistency_diff",
        "blank_rate",
        "unique_rate",
        "copy_rate",
        "onenn_accuracy",
    }


def test_evaluate_identical_sets_give_zero_diffs() -> None:
    real = random_windows(60, 11)
    out = m.evaluate(real, real, random_windows(200, 12), seed=0)
    assert set(out) == _expected_keys()
    for name in m.METRIC_NAMES[:8]:
        assert out[name] == pytest.approx(0.0, abs=1e-12), name
    assert out["blank_rate"] == 0.0
    assert out["unique_rate"] == 1.0
    assert out["onenn_accuracy"] == 0.0  # every generated window has its twin in held-out
    assert all(isinstance(v, float) for v in out.values())


def test_evaluate_is_deterministic_and_seeded() -> None:
    gen, real, train = random_windows(80, 13), random_windows(50, 14), random_windows(300, 15)
    a = m.evaluate(gen, real, train, seed=3)
    b = m.evaluate(gen, real, train, seed=3)
    c = m.evaluate(gen, real, train, seed=4)
    assert a == b
    assert a != c


def test_evaluate_scores_noise_and_blanks_badly() -> None:
    real, train = random_windows(100, 16), random_windows(400, 17)
    rng = np.random.default_rng(0)
    noise = rng.random((100, 96, 96)) < 0.03
    out = m.evaluate(noise, real, train, seed=0)
    assert out["onenn_accuracy"] > 0.95
    assert out["qualified_note_rate_diff"] > out["qualified_note_rate_diff_baseline"]
    blanks = np.zeros((100, 96, 96), dtype=bool)
    out = m.evaluate(blanks, real, train, seed=0)
    assert out["blank_rate"] == 1.0
    assert out["unique_rate"] == 0.01
    assert out["pitch_hist_l1"] == 2.0
    assert math.isnan(out["polyphony_diff"])  # undefined for an all-silent generator
    assert out["copy_rate"] == 0.0


def test_evaluate_copy_rate_and_honest_baseline() -> None:
    train = random_windows(300, 18)
    train[1] = train[0]  # the same window twice in one source file
    out = m.evaluate(train[:100].copy(), random_windows(50, 19), train, seed=0)
    assert out["copy_rate"] == 1.0  # a generator that returns training windows
    assert out["blank_rate_baseline"] == 0.0
    # B is 100 of the 300 training windows; only a window with another copy counts
    assert out["copy_rate_baseline"] <= 2 / 100
    sources = np.repeat(np.arange(150), 2)  # windows 0 and 1 share a source file
    strict = m.evaluate(
        train[:100].copy(), random_windows(50, 19), train, seed=0, train_sources=sources
    )
    assert strict["copy_rate_baseline"] == 0.0
    assert strict["copy_rate"] == 1.0


def test_evaluate_baseline_sample_equals_generated_size() -> None:
    # train windows as the "generator": metric and baseline come from the same distribution
    train = random_windows(400, 20)
    out = m.evaluate(random_windows(100, 21), random_windows(100, 22), train, seed=0)
    assert abs(out["onenn_accuracy"] - out["onenn_accuracy_baseline"]) < 0.12
    assert abs(out["pitch_hist_l1"] - out["pitch_hist_l1_baseline"]) < 0.1


def test_evaluate_rejects_empty_inputs() -> None:
    real = random_windows(5, 23)
    with pytest.raises(ValueError, match="generated"):
        m.evaluate(np.zeros((0, 96, 96), bool), real, real, seed=0)
    with pytest.raises(ValueError, match="held-out"):
        m.evaluate(real, np.zeros((0, 96, 96), bool), real, seed=0)


def test_metric_info_says_which_way_is_better() -> None:
    assert {info.better for info in m.METRIC_INFO.values()} <= {"lower", "higher", "0.5"}
    assert m.METRIC_INFO["unique_rate"].better == "higher"
    assert m.METRIC_INFO["onenn_accuracy"].better == "0.5"


def test_model_provided_metrics_are_listed_after_the_common_ones() -> None:
    run = {"heldout_nll": 3.1, "onenn_accuracy": 0.9, "pitch_hist_l1_baseline": 0.2, "loss": 1.0}
    assert m.evaluation_names(run) == ["pitch_hist_l1", "onenn_accuracy", "heldout_nll"]
    assert m.evaluation_names(run | {"bits": 1.0}, ["bits"])[-1] == "bits"
    assert m.metric_info("heldout_nll").better == "lower" and m.metric_info("loss") is None


def test_has_copy_agrees_with_exact_nearest_jaccard() -> None:
    rng = np.random.default_rng(24)
    r = random_windows(60, 25)
    q = random_windows(40, 26)
    for i in range(0, 40, 3):  # near copies: drop a few cells of a reference window
        q[i] = r[i]
        cells = np.argwhere(q[i])
        drop = cells[rng.choice(len(cells), size=rng.integers(0, 8), replace=False)]
        q[i][drop[:, 0], drop[:, 1]] = False
    q[1] = False  # a blank query
    exact = m.nearest_jaccard(q, r) >= 0.8
    assert exact.sum() > 5
    assert (m.has_copy(q, r, chunk_size=4) == exact).all()
    groups_q, groups_r = np.arange(40) % 7, np.arange(60) % 7
    exact_g = m.nearest_jaccard(q, r, query_groups=groups_q, reference_groups=groups_r) >= 0.8
    got_g = m.has_copy(q, r, query_groups=groups_q, reference_groups=groups_r, chunk_size=4)
    assert (got_g == exact_g).all()
