"""Objective metrics of generated vs real piano-roll windows (docs/metrics.md).

Pure numpy over bool arrays of shape ``(n, 96, 96)`` (docs/encoding.md: row 0 is the highest pitch,
``pitch = pitch_low + 95 - row``; 12 steps per beat, so 8 beats and two 48-step bars per window).

Public functions:

- per-window values (arrays of length n): :func:`note_onsets`, :func:`count_notes`,
  :func:`density`, :func:`polyphony`, :func:`empty_beat_rate`, :func:`upc`,
  :func:`qualified_note_rate`, :func:`scale_consistency`, :func:`window_features`,
  :func:`onenn_features`, :func:`pitch_class_of_rows`;
- set metrics: :func:`pitch_histogram`, :func:`pitch_hist_l1`, :func:`pitch_class_hist_l1`,
  :func:`mean_abs_diff`, :func:`blank_rate`, :func:`unique_rate`, :func:`nearest_jaccard`,
  :func:`has_copy`, :func:`copy_rate`, :func:`onenn_accuracy`,
  :func:`onenn_accuracy_from_features`;
- :func:`evaluate`: every metric of docs/metrics.md and its ``_baseline``, as logged to MLflow.

Choices the contract leaves open (each documented where it is made):

- a note is a maximal run of 1s in one row *of the window*: a note cut by the window edge counts
  with its in-window length;
- ``upc`` counts pitch classes of active cells (sustained notes count in the bar they sound in);
- the 24 scales are the 12 major and 12 natural-minor scales (minor = 0 2 3 5 7 8 10);
- histograms per window are normalised to sum 1, all zeros for a window with nothing to count;
- Jaccard of two empty windows is 1 (they are identical);
- 1-NN ties give fractional credit (share of the tied neighbours with the right label);
- an empty generated set against a non-empty real one scores the maximum 2.0 on the histogram
  distances; per-window values that are undefined (NaN) are left out of the means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musicflow.core.roll import COLS, DEFAULT_PITCH_LOW, ROWS, STEPS_PER_BEAT

STEPS = COLS  # the window's time axis
BEATS = STEPS // STEPS_PER_BEAT  # 8
BAR_STEPS = 4 * STEPS_PER_BEAT  # one 4/4 bar, 48 steps
COPY_JACCARD = 0.8

MAJOR = (0, 2, 4, 5, 7, 9, 11)
NATURAL_MINOR = (0, 2, 3, 5, 7, 8, 10)

#: The six per-window values, in the order used by :func:`onenn_features`.
FEATURE_NAMES = (
    "density",
    "polyphony",
    "empty_beat_rate",
    "upc",
    "qualified_note_rate",
    "scale_consistency",
)


@dataclass(frozen=True)
class MetricInfo:
    """How to read one metric: what it measures and which direction is better."""

    description: str
    better: str  # "lower", "higher" or "0.5" (track metrics also "baseline": closest to it)


#: The metric names (docs/metrics.md), in report order, with a one-line meaning each.
METRIC_INFO: dict[str, MetricInfo] = {
    "pitch_hist_l1": MetricInfo(
        "L1 distance (0-2) between the pitch histograms (share of active cells per pitch) of "
        "generated and held-out windows: the thesis's note-frequency figure as one number.",
        "lower",
    ),
    "pitch_class_hist_l1": MetricInfo(
        "L1 distance (0-2) between pitch-class (C, C#, ... B) histograms of active cells.",
        "lower",
    ),
    "density_diff": MetricInfo(
        "Gap in mean notes per beat (a note is a maximal run of active cells in one row).",
        "lower",
    ),
    "polyphony_diff": MetricInfo(
        "Gap in mean number of pitches sounding at once, over non-silent steps.", "lower"
    ),
    "empty_beat_rate_diff": MetricInfo(
        "Gap in the share of silent beats (12-step beats with no active cell).", "lower"
    ),
    "upc_diff": MetricInfo(
        "Gap in mean distinct pitch classes per non-empty 48-step bar (harmonic variety).",
        "lower",
    ),
    "qualified_note_rate_diff": MetricInfo(
        "Gap in the share of notes lasting at least 2 steps (1-step notes are mostly noise).",
        "lower",
    ),
    "scale_consistency_diff": MetricInfo(
        "Gap in the best share of note onsets lying in one major or natural-minor scale "
        "(tonality).",
        "lower",
    ),
    "blank_rate": MetricInfo(
        "Share of generated windows with no note at all (a collapsed generator scores 1).",
        "lower",
    ),
    "unique_rate": MetricInfo(
        "Distinct generated windows / windows generated (mode collapse scores near 0).",
        "higher",
    ),
    "copy_rate": MetricInfo(
        "Share of generated windows whose nearest training window has Jaccard >= 0.8 "
        "(memorisation; real music repeats itself, so compare with the baseline).",
        "lower",
    ),
    "onenn_accuracy": MetricInfo(
        "Leave-one-out 1-nearest-neighbour accuracy telling generated from held-out windows "
        "in a 38-feature space: 0.5 means indistinguishable, noise or collapse scores ~1.",
        "0.5",
    ),
}

#: The metric names (without the ``_baseline`` suffix), in report order.
METRIC_NAMES: tuple[str, ...] = tuple(METRIC_INFO)
BASELINE_SUFFIX = "_baseline"

#: Metrics only some models provide (``tasks/evaluate.MODEL_METRICS`` names the model method
#: computing each), with their meaning: reports, the index page and ``musicflow compare`` show
#: them beside the metrics above whenever a run has them.
MODEL_METRIC_INFO: dict[str, MetricInfo] = {
    "heldout_nll": MetricInfo(
        "Negative log-likelihood of the held-out windows under the model, in nats per "
        "sixteenth-note frame (rnn: exact; vae: its ELBO bound; GANs have none).",
        "lower",
    ),
}

#: The headline metrics, first and in this order wherever scores are summed up (a model's
#: lines in the terminal, the run summary, ``compare``'s and the index page's first columns,
#: the MLflow UI's saved view): the champion rule's keys and its silence check
#: (``musicflow/core/champion.py``).
HEADLINE_METRICS: tuple[str, ...] = ("onenn_accuracy", "pitch_hist_l1", "blank_rate")


def metric_info(name: str) -> MetricInfo | None:
    """How to read an evaluation metric (``METRIC_INFO`` or ``MODEL_METRIC_INFO``), or None."""
    return METRIC_INFO.get(name) or MODEL_METRIC_INFO.get(name)


def evaluation_names(available, model_metrics=()) -> list[str]:
    """The evaluation metrics among the names ``available`` (a run's metrics, say), in report
    order: ``METRIC_INFO``'s, then the model-provided ones (``MODEL_METRIC_INFO``'s, then any
    other name in ``model_metrics``). ``_baseline`` companions are not listed."""
    have = set(available)
    names = [n for n in METRIC_INFO if n in have or f"{n}{BASELINE_SUFFIX}" in have]
    for n in (*MODEL_METRIC_INFO, *model_metrics):
        if n in have and n not in names:
            names.append(n)
    return names


# --------------------------------------------------------------------------- helpers


def _as_windows(windows: np.ndarray) -> np.ndarray:
    """Validate and view input as bool ``(n, 96, 96)``; a single ``(96, 96)`` window is allowed."""
    x = np.asarray(windows)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1:] != (ROWS, STEPS):
        raise ValueError(f"expected windows of shape (n, {ROWS}, {STEPS}), got {x.shape}")
    return x if x.dtype == np.bool_ else x != 0


def pitch_class_of_rows(pitch_low: int = DEFAULT_PITCH_LOW) -> np.ndarray:
    """Pitch class (0 = C) of each of the 96 rows: row r holds pitch ``pitch_low + 95 - r``."""
    return (pitch_low + ROWS - 1 - np.arange(ROWS)) % 12


def _row_to_pc(pitch_low: int) -> np.ndarray:
    """One-hot ``(96, 12)`` float matrix mapping rows to pitch classes, for matrix products."""
    onehot = np.zeros((ROWS, 12), dtype=np.float64)
    onehot[np.arange(ROWS), pitch_class_of_rows(pitch_low)] = 1.0
    return onehot


def _scale_masks() -> np.ndarray:
    """``(24, 12)`` 0/1 matrix: rows 0-11 major scales on C..B, rows 12-23 natural minor.

    A natural-minor scale has the pitch-class set of its relative major, so the 24 rows hold
    only 12 distinct sets; both are kept so the definition reads as the contract does.
    """
    masks = np.zeros((24, 12), dtype=np.float64)
    for tonic in range(12):
        masks[tonic, [(tonic + i) % 12 for i in MAJOR]] = 1.0
        masks[12 + tonic, [(tonic + i) % 12 for i in NATURAL_MINOR]] = 1.0
    return masks


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, NaN where den is 0 (an undefined value stays visible)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _normalise_rows(counts: np.ndarray) -> np.ndarray:
    """Each row divided by its sum; rows summing to 0 stay all zeros."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def _nanmean(values: np.ndarray) -> float:
    """Mean ignoring NaN; NaN (without a warning) when nothing is left."""
    values = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(values)
    return float(values[ok].mean()) if ok.any() else float("nan")


# --------------------------------------------------------------------------- per-window values


def note_onsets(windows: np.ndarray) -> np.ndarray:
    """Bool ``(n, 96, 96)``: True at each note's first step (an active cell whose left is off)."""
    x = _as_windows(windows)
    onsets = x.copy()
    onsets[:, :, 1:] &= ~x[:, :, :-1]
    return onsets


def count_notes(windows: np.ndarray) -> np.ndarray:
    """Notes per window; a note is a maximal run of 1s in one row (cut at the window edges)."""
    return note_onsets(windows).sum(axis=(1, 2))


def density(windows: np.ndarray) -> np.ndarray:
    """Notes per beat (8 beats per window)."""
    return count_notes(windows) / BEATS


def polyphony(windows: np.ndarray) -> np.ndarray:
    """Mean number of active pitches over the window's non-silent steps; NaN if silent."""
    per_step = _as_windows(windows).sum(axis=1)  # (n, steps)
    return _safe_ratio(per_step.sum(axis=1), (per_step > 0).sum(axis=1))


def empty_beat_rate(windows: np.ndarray) -> np.ndarray:
    """Share of the 8 beats (12-step blocks) with no active cell."""
    x = _as_windows(windows)
    beat_active = x.any(axis=1).reshape(len(x), BEATS, STEPS_PER_BEAT).any(axis=2)
    return 1.0 - beat_active.mean(axis=1)


def upc(windows: np.ndarray, *, pitch_low: int = DEFAULT_PITCH_LOW) -> np.ndarray:
    """Used pitch classes: distinct pitch classes of active cells per non-empty 48-step bar,
    averaged over the window's non-empty bars; NaN if both bars are empty.

    Active cells, not onsets: a chord held into the second bar still colours that bar.
    """
    x = _as_windows(windows)
    n = len(x)
    rows_in_bar = x.reshape(n, ROWS, STEPS // BAR_STEPS, BAR_STEPS).any(axis=3)  # (n, 96, bars)
    pcs_in_bar = rows_in_bar.transpose(0, 2, 1).astype(np.float64) @ _row_to_pc(pitch_low)
    distinct = (pcs_in_bar > 0).sum(axis=2)  # (n, bars)
    nonempty = distinct > 0
    return _safe_ratio((distinct * nonempty).sum(axis=1), nonempty.sum(axis=1))


def qualified_note_rate(windows: np.ndarray) -> np.ndarray:
    """Share of notes lasting at least 2 steps; NaN if the window has no note."""
    x = _as_windows(windows)
    onsets = note_onsets(x)
    next_on = np.zeros_like(x)
    next_on[:, :, :-1] = x[:, :, 1:]
    one_step = (onsets & ~next_on).sum(axis=(1, 2))
    notes = onsets.sum(axis=(1, 2))
    return _safe_ratio(notes - one_step, notes)


def _onset_pc_counts(windows: np.ndarray, pitch_low: int) -> np.ndarray:
    """``(n, 12)`` onset counts per pitch class."""
    per_row = note_onsets(windows).sum(axis=2).astype(np.float64)  # (n, 96)
    return per_row @ _row_to_pc(pitch_low)


def scale_consistency(windows: np.ndarray, *, pitch_low: int = DEFAULT_PITCH_LOW) -> np.ndarray:
    """Best share of note onsets lying in one of the 24 major / natural-minor scales.

    Counted over onsets (a note's first step), so each note votes once whatever its length.
    NaN if the window has no onset.
    """
    counts = _onset_pc_counts(windows, pitch_low)
    in_scale = counts @ _scale_masks().T  # (n, 24)
    return _safe_ratio(in_scale.max(axis=1), counts.sum(axis=1))


def window_features(
    windows: np.ndarray, *, pitch_low: int = DEFAULT_PITCH_LOW
) -> dict[str, np.ndarray]:
    """The six per-window values of :data:`FEATURE_NAMES`, each an array of length n."""
    x = _as_windows(windows)
    return {
        "density": density(x),
        "polyphony": polyphony(x),
        "empty_beat_rate": empty_beat_rate(x),
        "upc": upc(x, pitch_low=pitch_low),
        "qualified_note_rate": qualified_note_rate(x),
        "scale_consistency": scale_consistency(x, pitch_low=pitch_low),
    }


def onenn_features(windows: np.ndarray, *, pitch_low: int = DEFAULT_PITCH_LOW) -> np.ndarray:
    """``(n, 38)`` feature vectors for the 1-NN test (docs/metrics.md), unstandardised.

    Columns: pitch-class histogram of active cells (12, C first), octave-band histogram of
    active cells (8 bands of 12 rows, band 0 = rows 0-11 = highest), onset position within the
    beat (12, step 0 = on the beat), then :data:`FEATURE_NAMES` with NaN -> 0. Each histogram is
    normalised to sum 1 per window (all zeros when the window has nothing to count), so the
    histograms describe shape and the six values carry the amounts.
    """
    x = _as_windows(windows)
    n = len(x)
    per_row = x.sum(axis=2).astype(np.float64)  # active cells per row, (n, 96)
    pc_hist = _normalise_rows(per_row @ _row_to_pc(pitch_low))
    band_hist = _normalise_rows(per_row.reshape(n, ROWS // 12, 12).sum(axis=2))
    onset_steps = note_onsets(x).sum(axis=1)  # (n, steps)
    onset_hist = _normalise_rows(onset_steps.reshape(n, BEATS, STEPS_PER_BEAT).sum(axis=1))
    values = window_features(x, pitch_low=pitch_low)
    scalars = np.nan_to_num(np.stack([values[k] for k in FEATURE_NAMES], axis=1), nan=0.0)
    return np.concatenate([pc_hist, band_hist, onset_hist, scalars], axis=1)


# --------------------------------------------------------------------------- set metrics


def _hist_l1(a: np.ndarray, b: np.ndarray) -> float:
    """L1 between two count vectors after normalising each to sum 1.

    One empty side against a non-empty one scores 2.0, the maximum (as disjoint supports do),
    so a generator of blank windows never looks better than one with wrong notes; two empty
    sides score 0.
    """
    sa, sb = float(a.sum()), float(b.sum())
    if sa == 0 or sb == 0:
        return 0.0 if sa == sb else 2.0
    return float(np.abs(a / sa - b / sb).sum())


def pitch_histogram(windows: np.ndarray) -> np.ndarray:
    """Active cells per row (96,), summed over the windows; row 0 = highest pitch."""
    return _as_windows(windows).sum(axis=(0, 2)).astype(np.float64)


def pitch_hist_l1(generated: np.ndarray, real: np.ndarray) -> float:
    """L1 distance (0..2) between normalised per-row histograms of active cells."""
    return _hist_l1(pitch_histogram(generated), pitch_histogram(real))


def pitch_class_hist_l1(
    generated: np.ndarray, real: np.ndarray, *, pitch_low: int = DEFAULT_PITCH_LOW
) -> float:
    """L1 distance (0..2) between normalised pitch-class histograms of active cells."""
    onehot = _row_to_pc(pitch_low)
    return _hist_l1(pitch_histogram(generated) @ onehot, pitch_histogram(real) @ onehot)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """|nanmean(a) - nanmean(b)|: the ``*_diff`` metrics. NaN if either side is all NaN."""
    return abs(_nanmean(a) - _nanmean(b))


def blank_rate(windows: np.ndarray) -> float:
    """Share of windows with no active cell (no note); NaN for an empty set."""
    x = _as_windows(windows)
    return float((~x.any(axis=(1, 2))).mean()) if len(x) else float("nan")


def unique_rate(windows: np.ndarray) -> float:
    """Distinct windows / windows (exact cell-by-cell identity); NaN for an empty set."""
    x = _as_windows(windows)
    if not len(x):
        return float("nan")
    packed = np.packbits(x.reshape(len(x), -1), axis=1)
    return len(np.unique(packed, axis=0)) / len(x)


def _group_codes(
    query_groups: np.ndarray, reference_groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes for two label arrays over one shared vocabulary."""
    qg, rg = np.asarray(query_groups), np.asarray(reference_groups)
    if np.issubdtype(qg.dtype, np.integer) and np.issubdtype(rg.dtype, np.integer):
        return qg.astype(np.int64), rg.astype(np.int64)
    _, codes = np.unique(np.concatenate([qg.astype(str), rg.astype(str)]), return_inverse=True)
    return codes[: len(qg)], codes[len(qg) :]


def _flat_pair(
    query: np.ndarray,
    reference: np.ndarray,
    query_groups: np.ndarray | None,
    reference_groups: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Both sides as flat windows (n, 96·96), and their group codes (None without groups)."""
    q = _as_windows(query).reshape(-1, ROWS * STEPS)
    r = _as_windows(reference).reshape(-1, ROWS * STEPS)
    if (query_groups is None) != (reference_groups is None):
        raise ValueError("give both query_groups and reference_groups, or neither")
    if query_groups is None:
        return q, r, None, None
    qg, rg = _group_codes(query_groups, reference_groups)
    if len(qg) != len(q) or len(rg) != len(r):
        raise ValueError("groups must have one label per window")
    return q, r, qg, rg


def nearest_jaccard(
    query: np.ndarray,
    reference: np.ndarray,
    *,
    query_groups: np.ndarray | None = None,
    reference_groups: np.ndarray | None = None,
    chunk_size: int = 2048,
) -> np.ndarray:
    """Highest Jaccard similarity of each query window to any reference window.

    Jaccard = |A and B| / |A or B| of active cells; two empty windows count as identical (1.0),
    an empty window against a non-empty one scores 0. With groups, a reference window whose
    group equals the query's is skipped (use indices to exclude a window itself, source-file
    ids to exclude its whole file). NaN where no reference window is left.

    Intersections are float32 matrix products (exact: counts < 2**24) over the cells active in
    any query window, in chunks of ``chunk_size`` rows on both sides, so memory stays near
    ``chunk_size**2`` floats plus one chunk of each side, whatever the sizes.
    """
    q, r, qg, rg = _flat_pair(query, reference, query_groups, reference_groups)
    best = np.full(len(q), -1.0, dtype=np.float64)
    if not len(q) or not len(r):
        return np.where(best < 0, np.nan, best)
    cols = q.any(axis=0)  # cells outside these add nothing to any intersection
    q_size = q.sum(axis=1).astype(np.float32)
    r_size = r.sum(axis=1).astype(np.float32)
    for qs in range(0, len(q), chunk_size):
        qf = q[qs : qs + chunk_size][:, cols].astype(np.float32)
        q_best = best[qs : qs + chunk_size]
        for rs in range(0, len(r), chunk_size):
            rf = r[rs : rs + chunk_size][:, cols].astype(np.float32)
            inter = qf @ rf.T
            union = q_size[qs : qs + chunk_size, None] + r_size[None, rs : rs + chunk_size] - inter
            jac = np.divide(inter, union, out=np.ones_like(inter), where=union > 0)
            if query_groups is not None:
                same = qg[qs : qs + chunk_size, None] == rg[None, rs : rs + chunk_size]
                jac[same] = -1.0
            np.maximum(q_best, jac.max(axis=1), out=q_best)
    return np.where(best < 0, np.nan, best)


def has_copy(
    query: np.ndarray,
    reference: np.ndarray,
    *,
    threshold: float = COPY_JACCARD,
    query_groups: np.ndarray | None = None,
    reference_groups: np.ndarray | None = None,
    chunk_size: int = 128,
) -> np.ndarray:
    """Bool per query window: does some reference window reach Jaccard >= threshold?

    Same answer as ``nearest_jaccard(...) >= threshold`` (groups and empty windows alike), but
    only pairs that can reach the threshold are multiplied: Jaccard <= min(a, b) / max(a, b)
    for windows of a and b active cells, so with both sides sorted by size each chunk of
    queries meets only the references of size ``threshold * a .. a / threshold``. On
    piano-midi-de that halves the work (2,000 x 20,000 windows: 3.5 s instead of 8.4 s, one
    core).
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    q, r, qg, rg = _flat_pair(query, reference, query_groups, reference_groups)
    flags = np.zeros(len(q), dtype=bool)
    if not len(q) or not len(r):
        return flags
    cols = q.any(axis=0)
    q_size = q.sum(axis=1)
    r_size = r.sum(axis=1)
    q_order = np.argsort(q_size, kind="stable")
    r_order = np.argsort(r_size, kind="stable")
    slack = 1e-6  # float rounding at the bounds never drops a pair
    ref_chunk = 4 * chunk_size
    # Queries in blocks (bounded memory), each converted to float32 once; references sorted
    # by size in chunks, each converted once per block and multiplied only with the query
    # sub-chunks whose size range it can reach.
    for qb in range(0, len(q), 8 * chunk_size):
        block = q_order[qb : qb + 8 * chunk_size]
        qf = q[block][:, cols].astype(np.float32)
        qsz = q_size[block].astype(np.float32)
        subs = [(s, min(s + chunk_size, len(block))) for s in range(0, len(block), chunk_size)]
        for rs in range(0, len(r), ref_chunk):
            ri = r_order[rs : rs + ref_chunk]
            r_lo, r_hi = r_size[ri[0]], r_size[ri[-1]]
            reach = [
                (a, b)
                for a, b in subs
                if r_hi >= threshold * qsz[a] - slack and r_lo <= qsz[b - 1] / threshold + slack
            ]
            if not reach:
                continue
            rf = r[ri][:, cols].astype(np.float32).T
            rsz = r_size[ri].astype(np.float32)[None, :]
            for a, b in reach:
                inter = qf[a:b] @ rf
                union = qsz[a:b, None] + rsz - inter
                jac = np.divide(inter, union, out=np.ones_like(inter), where=union > 0)
                hit = jac >= threshold
                if query_groups is not None:
                    hit &= qg[block[a:b], None] != rg[None, ri]
                flags[block[a:b]] |= hit.any(axis=1)
    return flags


def copy_rate(
    generated: np.ndarray,
    train: np.ndarray,
    *,
    threshold: float = COPY_JACCARD,
) -> float:
    """Share of generated windows whose nearest training window has Jaccard >= threshold.

    A blank generated window is a copy only of a blank training window (Jaccard of two empty
    windows is 1); the encoding never stores blank windows, so in practice blanks count in
    ``blank_rate``, not here. NaN when either set is empty.
    """
    g = _as_windows(generated)
    t = _as_windows(train)
    if not len(g) or not len(t):
        return float("nan")
    return float(has_copy(g, t, threshold=threshold).mean())


def _standardise(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Standardise by ref's column mean and std (std 0 -> 1, so constant columns stay put)."""
    mean = ref.mean(axis=0)
    std = ref.std(axis=0)
    std[std == 0] = 1.0
    return (x - mean) / std


def onenn_accuracy_from_features(
    generated_features: np.ndarray, real_features: np.ndarray, *, chunk_size: int = 1024
) -> float:
    """Leave-one-out 1-NN accuracy of telling generated from real feature vectors.

    Both sets are standardised by the real set's mean and std; Euclidean distance. When several
    neighbours tie for nearest, the point earns the share of them carrying its own label
    (deterministic, and no bias towards whichever set comes first). Unequal sizes are allowed
    here but bias the score: :func:`onenn_accuracy` and :func:`evaluate` pass equal sizes.
    """
    g = np.asarray(generated_features, dtype=np.float64)
    r = np.asarray(real_features, dtype=np.float64)
    if len(g) < 1 or len(r) < 1 or len(g) + len(r) < 3:
        return float("nan")
    x = _standardise(np.concatenate([g, r]), r)
    labels = np.concatenate([np.zeros(len(g), bool), np.ones(len(r), bool)])
    sq = (x * x).sum(axis=1)
    credit = np.empty(len(x))
    for s in range(0, len(x), chunk_size):
        block = x[s : s + chunk_size]
        d = sq[s : s + chunk_size, None] + sq[None, :] - 2.0 * block @ x.T
        np.maximum(d, 0.0, out=d)
        d[np.arange(len(block)), np.arange(s, s + len(block))] = np.inf  # leave one out
        d_min = d.min(axis=1, keepdims=True)
        tied = d <= d_min + 1e-9 * (1.0 + d_min)
        same = tied & (labels[None, :] == labels[s : s + chunk_size, None])
        credit[s : s + chunk_size] = same.sum(axis=1) / tied.sum(axis=1)
    return float(credit.mean())


def _has_other_group(query_groups: np.ndarray, reference_groups: np.ndarray) -> np.ndarray:
    """Bool per query: does any reference window carry a different group label?"""
    labels, counts = np.unique(reference_groups, return_counts=True)
    own = np.zeros(len(query_groups), dtype=np.int64)
    pos = np.searchsorted(labels, query_groups)
    found = (pos < len(labels)) & (labels[np.minimum(pos, len(labels) - 1)] == query_groups)
    own[found] = counts[pos[found]]
    return own < len(reference_groups)


def _subsample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n windows drawn without replacement (all of them, in order, when n >= len(x))."""
    if n >= len(x):
        return x
    return x[np.sort(rng.choice(len(x), size=n, replace=False))]


def onenn_accuracy(
    generated: np.ndarray,
    real: np.ndarray,
    *,
    pitch_low: int = DEFAULT_PITCH_LOW,
    seed: int = 0,
) -> float:
    """Leave-one-out 1-NN accuracy on equal numbers of generated and real windows.

    The larger set is subsampled (seeded) to the smaller one's size. 0.5: indistinguishable;
    1.0: every window's nearest neighbour comes from its own set.
    """
    g, r = _as_windows(generated), _as_windows(real)
    n = min(len(g), len(r))
    rng = np.random.default_rng(seed)
    g, r = _subsample(g, n, rng), _subsample(r, n, rng)
    return onenn_accuracy_from_features(
        onenn_features(g, pitch_low=pitch_low), onenn_features(r, pitch_low=pitch_low)
    )


# --------------------------------------------------------------------------- evaluate


def _distribution_metrics(
    sample: np.ndarray,
    sample_values: dict[str, np.ndarray],
    real: np.ndarray,
    real_values: dict[str, np.ndarray],
    pitch_low: int,
) -> dict[str, float]:
    out = {
        "pitch_hist_l1": pitch_hist_l1(sample, real),
        "pitch_class_hist_l1": pitch_class_hist_l1(sample, real, pitch_low=pitch_low),
    }
    for name in FEATURE_NAMES:
        out[f"{name}_diff"] = mean_abs_diff(sample_values[name], real_values[name])
    return out


def evaluate(
    generated: np.ndarray,
    heldout: np.ndarray,
    train_sample: np.ndarray,
    *,
    seed: int,
    train_sources: np.ndarray | None = None,
    pitch_low: int = DEFAULT_PITCH_LOW,
) -> dict[str, float]:
    """Every metric of ``generated`` vs ``heldout``, and each one's ``_baseline``.

    The baseline is the same metric for an equal-size random sample of ``train_sample``
    standing in for the generator: what a generator as good as its data would score.

    Sizes (seeded by ``seed``, so the result is deterministic):

    - ``n = min(len(generated), len(train_sample))``; the generated set (if larger) and the
      baseline sample B are drawn to n windows each;
    - histogram and ``*_diff`` metrics compare each of them with *all* held-out windows (the
      same reference for both, so the two numbers are comparable);
    - ``onenn_accuracy`` uses ``k = min(n, len(heldout))`` windows of each, and the same k
      held-out windows for the metric and its baseline;
    - ``copy_rate`` compares the generated windows with all of ``train_sample``.
      ``copy_rate_baseline`` compares each window of B with ``train_sample`` *without that
      window itself*: otherwise every one would be its own copy. Windows from the same piece
      stay in (repeats, da capo sections), so this baseline is a high reference for a
      generator that memorises nothing. Pass ``train_sources`` (one source id per training
      window, e.g. its sha256) to skip every window of the same source file instead: the more
      honest reference, the rate at which genuinely new music has a near copy elsewhere
      (measured on piano-midi-de, 300 training files: 0.24 excluding only the window itself,
      0.003 excluding its file). The task layer should pass it.
    - ``blank_rate`` / ``unique_rate`` are computed on the n generated windows and on B.
    """
    gen = _as_windows(generated)
    real = _as_windows(heldout)
    train = _as_windows(train_sample)
    if not len(gen):
        raise ValueError("no generated windows to evaluate")
    if not len(real):
        raise ValueError("no held-out windows to evaluate against")
    if len(train) < 2:
        raise ValueError("need at least 2 training windows for the baselines")
    if train_sources is not None and len(train_sources) != len(train):
        raise ValueError("train_sources must have one id per training window")

    rng = np.random.default_rng(seed)
    n = min(len(gen), len(train))
    gen = _subsample(gen, n, rng)
    base_idx = np.sort(rng.choice(len(train), size=n, replace=False))
    base = train[base_idx]

    real_values = window_features(real, pitch_low=pitch_low)
    gen_values = window_features(gen, pitch_low=pitch_low)
    base_values = window_features(base, pitch_low=pitch_low)

    out = _distribution_metrics(gen, gen_values, real, real_values, pitch_low)
    baseline = _distribution_metrics(base, base_values, real, real_values, pitch_low)

    out["blank_rate"], baseline["blank_rate"] = blank_rate(gen), blank_rate(base)
    out["unique_rate"], baseline["unique_rate"] = unique_rate(gen), unique_rate(base)

    # One pass over the training windows for both copy rates: generated rows get group -1
    # (never excluded); baseline rows exclude their own index or their own source file.
    if train_sources is None:
        ref_groups = np.arange(len(train), dtype=np.int64)
        base_groups = base_idx.astype(np.int64)
    else:
        _, ref_groups = np.unique(np.asarray(train_sources).astype(str), return_inverse=True)
        ref_groups = ref_groups.astype(np.int64)
        base_groups = ref_groups[base_idx]
    copies = has_copy(
        np.concatenate([gen, base]),
        train,
        query_groups=np.concatenate([np.full(n, -1, dtype=np.int64), base_groups]),
        reference_groups=ref_groups,
    )
    out["copy_rate"] = float(copies[:n].mean())
    # a baseline window whose source file is all of train_sample has nothing to be compared
    # with; it is left out (NaN when that holds for every one)
    comparable = _has_other_group(base_groups, ref_groups)
    baseline["copy_rate"] = (
        float(copies[n:][comparable].mean()) if comparable.any() else float("nan")
    )

    k = min(n, len(real))
    real_k = _subsample(real, k, rng)
    gen_k = _subsample(gen, k, rng)
    base_k = _subsample(base, k, rng)
    real_f = onenn_features(real_k, pitch_low=pitch_low)
    out["onenn_accuracy"] = onenn_accuracy_from_features(
        onenn_features(gen_k, pitch_low=pitch_low), real_f
    )
    baseline["onenn_accuracy"] = onenn_accuracy_from_features(
        onenn_features(base_k, pitch_low=pitch_low), real_f
    )

    result = {name: float(out[name]) for name in METRIC_NAMES}
    result.update({f"{name}{BASELINE_SUFFIX}": float(baseline[name]) for name in METRIC_NAMES})
    return result
