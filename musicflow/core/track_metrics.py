"""Metrics of multi-track windows: each track on its own, and between tracks (docs/metrics.md,
"Track metrics"). Pure numpy.

Windows are bool ``(n, K, 96, 96)``: K tracks in the dataset's track order (docs/encoding.md,
"Tracks"), each a roll-v1 window (row 0 the highest pitch, ``pitch = pitch_low + 95 - row``,
12 steps per beat). :func:`track_scores` returns flat names valid for MLflow:

- ``track.<i>.<metric>``: a metric of track ``i`` (0-based, the dataset's track order; the
  index, not the name, so any name works and two tracks may share one);
- ``tracks.<i>-<j>.<metric>``: a metric of the pair of tracks ``i < j``;
- ``tracks.<metric>``: a summary over all tracks or pairs (:data:`TRACK_SUMMARY_METRICS`);

each beside its ``_baseline`` (``metrics.BASELINE_SUFFIX``). Two kinds of baseline, as in
``metrics.evaluate``:

- a metric comparing the generated windows with real ones (the contract metrics of
  ``metrics.METRIC_INFO`` per track; ``in_range_rate``, whose reference is the training notes)
  has as baseline the same comparison for real windows standing in for the generator;
- a property of one set of windows (median pitch, voice crossing, tonal distance) has as
  baseline the same property of the held-out windows: the data's own value.

Public: :func:`track_scores`, :func:`parse_name` (a key back to its parts),
:func:`tonal_matrix`, :func:`beat_tonal_centroids`, :func:`tonal_distance`,
:func:`voice_pitches`, :func:`crossing_rate`, :func:`pair_crossing_rate`,
:func:`note_pitches`, :func:`pitch_range`, :func:`in_range_rate`, :func:`merge_tracks`;
:data:`TRACK_METRIC_INFO` (what each metric means, which direction is better).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from musicflow.core import metrics
from musicflow.core.metrics import BASELINE_SUFFIX, METRIC_INFO, MetricInfo
from musicflow.core.roll import COLS, ROWS, STEPS_PER_BEAT

TRACK_PREFIX = "track."
PAIR_PREFIX = "tracks."
#: The training-note percentiles bounding a track's real range (inclusive).
RANGE_PERCENTILES = (1.0, 99.0)
BEATS = COLS // STEPS_PER_BEAT

#: The metrics of one track beyond the contract ones (``metrics.METRIC_INFO``, also computed
#: per track), of a pair of tracks, and the summaries. ``better`` is "lower", "higher", "0.5"
#: or "baseline": closest to the baseline (the real data's value) is best, neither end is.
TRACK_METRIC_INFO: dict[str, MetricInfo] = {
    "median_pitch": MetricInfo(
        "Median MIDI pitch of the track's notes (onsets); baseline: the held-out notes' median.",
        "baseline",
    ),
    "in_range_rate": MetricInfo(
        "Share of the track's notes inside its real range (1st-99th percentile of the track's "
        "training-note pitches); baseline: the held-out notes' share.",
        "higher",
    ),
    "crossing_rate": MetricInfo(
        "voices: share of steps where both voices of the pair sound and the lower-ordered voice "
        "(later in file order) has a note above a note of the higher-ordered one; baseline: "
        "held-out.",
        "baseline",
    ),
    "tonal_distance": MetricInfo(
        "Tonal distance (Harte et al. 2006, as MuseGAN) between the two tracks' beat chromas, "
        "mean over beats where both sound; baseline: held-out.",
        "baseline",
    ),
    "voice_crossing_rate": MetricInfo(
        "voices: share of steps with two or more voices sounding where some lower-ordered voice "
        "has a note above a note of a higher-ordered one; baseline: held-out.",
        "baseline",
    ),
    "mean_tonal_distance": MetricInfo(
        "Tonal distance averaged over the pairs of pitched tracks; baseline: held-out.",
        "baseline",
    ),
    "in_range_rate_mean": MetricInfo(
        "in_range_rate averaged over the tracks; baseline: held-out.", "higher"
    ),
}

#: Per-track metrics (each ``track.<i>.<name>``), in table order: the contract ones first.
PER_TRACK_METRICS: tuple[str, ...] = (*METRIC_INFO, "median_pitch", "in_range_rate")
#: Per-pair metrics (each ``tracks.<i>-<j>.<name>``).
PAIR_METRICS: tuple[str, ...] = ("tonal_distance", "crossing_rate")
#: Summaries (each ``tracks.<name>``): what ``compare`` and the index show when a run has them.
TRACK_SUMMARY_METRICS: tuple[str, ...] = (
    "mean_tonal_distance",
    "voice_crossing_rate",
    "in_range_rate_mean",
)

_KEY = re.compile(r"^(?:track\.(\d+)|tracks\.(\d+)-(\d+)|tracks)\.([A-Za-z0-9_]+)$")


def track_metric_info(name: str) -> MetricInfo | None:
    """How to read a track metric by its short name (``pitch_hist_l1``, ``tonal_distance``)."""
    return METRIC_INFO.get(name) or TRACK_METRIC_INFO.get(name)


def track_key(i: int, name: str) -> str:
    return f"{TRACK_PREFIX}{i}.{name}"


def pair_key(i: int, j: int, name: str) -> str:
    return f"{PAIR_PREFIX}{i}-{j}.{name}"


def summary_key(name: str) -> str:
    return f"{PAIR_PREFIX}{name}"


def is_track_metric(key: str) -> bool:
    """Is ``key`` (``_baseline`` or not) one :func:`track_scores` writes?"""
    return parse_name(key.removesuffix(BASELINE_SUFFIX)) is not None


def parse_name(key: str) -> tuple[tuple[int, ...], str] | None:
    """``track.2.blank_rate`` → ``((2,), "blank_rate")``, ``tracks.0-3.tonal_distance`` →
    ``((0, 3), "tonal_distance")``, ``tracks.mean_tonal_distance`` → ``((), …)``; None for
    any other key. A ``_baseline`` key is not a metric name: strip the suffix first."""
    m = _KEY.match(key)
    if not m:
        return None
    if m.group(1) is not None:
        return (int(m.group(1)),), m.group(4)
    if m.group(2) is not None:
        return (int(m.group(2)), int(m.group(3))), m.group(4)
    return (), m.group(4)


# --------------------------------------------------------------------------- helpers


def _as_tracks(windows: np.ndarray) -> np.ndarray:
    x = np.asarray(windows)
    if x.ndim != 4 or x.shape[2:] != (ROWS, COLS):
        raise ValueError(f"expected windows of shape (n, K, {ROWS}, {COLS}), got {x.shape}")
    return x if x.dtype == np.bool_ else x != 0


def merge_tracks(windows: np.ndarray) -> np.ndarray:
    """``(n, K, 96, 96)`` → ``(n, 96, 96)``: a cell is active when any track's is (the merged
    windows the contract metrics read)."""
    return _as_tracks(windows).any(axis=1)


def _pitches(pitch_low: int) -> np.ndarray:
    return pitch_low + ROWS - 1 - np.arange(ROWS)


# --------------------------------------------------------------------------- pitch and range


def note_pitches(windows: np.ndarray, *, pitch_low: int) -> np.ndarray:
    """The MIDI pitch of every note (onset, ``metrics.note_onsets``) of ``(n, 96, 96)``
    windows: each note counts once whatever its length."""
    onsets = metrics.note_onsets(windows)
    rows = np.nonzero(onsets)[1]
    return _pitches(pitch_low)[rows]


def median_pitch(windows: np.ndarray, *, pitch_low: int) -> float:
    """Median pitch of the notes; NaN without a note."""
    p = note_pitches(windows, pitch_low=pitch_low)
    return float(np.median(p)) if len(p) else float("nan")


def pitch_range(pitches: np.ndarray) -> tuple[float, float]:
    """A track's real range: the :data:`RANGE_PERCENTILES` of its training-note pitches, each
    the pitch at the nearest rank (numpy's ``method="nearest"``), so both ends are pitches that
    occur; the range is inclusive. (NaN, NaN) without a note."""
    p = np.asarray(pitches)
    if not len(p):
        return float("nan"), float("nan")
    lo = float(np.percentile(p, RANGE_PERCENTILES[0], method="nearest"))
    hi = float(np.percentile(p, RANGE_PERCENTILES[1], method="nearest"))
    return lo, hi


def in_range_rate(pitches: np.ndarray, lo: float, hi: float) -> float:
    """Share of ``pitches`` in ``lo … hi`` (inclusive); NaN without a pitch or a range."""
    p = np.asarray(pitches)
    if not len(p) or np.isnan(lo) or np.isnan(hi):
        return float("nan")
    return float(((p >= lo) & (p <= hi)).mean())


# --------------------------------------------------------------------------- voice crossing


def voice_pitches(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each track's highest and lowest sounding row index per step, ``(n, K, 96)`` each, as
    *heights* (``95 - row``, so larger is higher); -1 where the track is silent."""
    x = _as_tracks(windows)
    sounding = x.any(axis=2)  # (n, K, steps)
    top_row = np.argmax(x, axis=2)  # first active row = highest pitch
    bottom_row = ROWS - 1 - np.argmax(x[:, :, ::-1, :], axis=2)
    high = np.where(sounding, ROWS - 1 - top_row, -1)
    low = np.where(sounding, ROWS - 1 - bottom_row, -1)
    return high, low


def _crossings(windows: np.ndarray, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
    """Per step of pair ``i < j``: both sound, and voice j (lower-ordered) has a note above a
    note of voice i (its highest above i's lowest)."""
    high, low = voice_pitches(windows)
    both = (high[:, i] >= 0) & (high[:, j] >= 0)
    crossed = both & (high[:, j] > low[:, i])
    return both, crossed


def pair_crossing_rate(windows: np.ndarray, i: int, j: int) -> float:
    """Share of the steps where voices ``i < j`` both sound in which voice ``j`` (later in file
    order, so expected below) has a note strictly above a note of voice ``i``. A unison is not
    a crossing. NaN when the two never sound together."""
    if not i < j:
        raise ValueError("give the pair as i < j (file order: the higher voice first)")
    both, crossed = _crossings(windows, i, j)
    n = int(both.sum())
    return float(crossed.sum() / n) if n else float("nan")


def crossing_rate(windows: np.ndarray) -> float:
    """Share of the steps with two or more voices sounding where some pair ``i < j`` crosses
    (as :func:`pair_crossing_rate` defines it). Voices are ordered top to bottom as in the
    file (Soprano, Alto, Tenor, Bass), so any voice above one listed before it crosses.
    NaN when no step has two voices."""
    x = _as_tracks(windows)
    k = x.shape[1]
    high, low = voice_pitches(x)
    sounding = high >= 0
    several = sounding.sum(axis=1) >= 2  # (n, steps)
    # a step crosses when some later voice's highest note lies above the lowest note of an
    # earlier voice: compare each voice with the lowest note among the voices before it
    lowest_before = np.full(high[:, 0].shape, np.iinfo(np.int64).max)
    crossed = np.zeros_like(several)
    for v in range(k):
        if v:
            crossed |= sounding[:, v] & (high[:, v] > lowest_before)
        lowest_before = np.where(
            sounding[:, v], np.minimum(lowest_before, low[:, v]), lowest_before
        )
    n = int(several.sum())
    return float((crossed & several).sum() / n) if n else float("nan")


# --------------------------------------------------------------------------- tonal distance


def tonal_matrix(r1: float = 1.0, r2: float = 1.0, r3: float = 0.5) -> np.ndarray:
    """Harte, Sandler & Gasser (2006)'s ``(6, 12)`` map of a chroma to its tonal centroid: the
    pitch classes on the circle of fifths (angle 7π/6 per semitone), of minor thirds (3π/2)
    and of major thirds (2π/3), radii r1, r2, r3 (the paper's and MuseGAN's 1, 1, 0.5)."""
    pc = np.arange(12)
    return np.stack(
        [
            r1 * np.sin(pc * 7 * np.pi / 6),
            r1 * np.cos(pc * 7 * np.pi / 6),
            r2 * np.sin(pc * 3 * np.pi / 2),
            r2 * np.cos(pc * 3 * np.pi / 2),
            r3 * np.sin(pc * 2 * np.pi / 3),
            r3 * np.cos(pc * 2 * np.pi / 3),
        ]
    )


def beat_tonal_centroids(windows: np.ndarray, *, pitch_low: int) -> tuple[np.ndarray, np.ndarray]:
    """Each track's tonal centroid per beat, ``(n, K, 8, 6)``, and whether the track sounds in
    that beat, ``(n, K, 8)``. A beat's chroma is the track's active cells per pitch class over
    the beat's 12 steps (so a note weighs by its length), normalised to sum 1, as MuseGAN."""
    x = _as_tracks(windows)
    n, k = x.shape[:2]
    per_row = x.reshape(n, k, ROWS, BEATS, STEPS_PER_BEAT).sum(axis=4)  # (n, K, 96, beats)
    onehot = np.zeros((ROWS, 12))
    onehot[np.arange(ROWS), _pitches(pitch_low) % 12] = 1.0
    chroma = np.einsum("nkrb,rc->nkbc", per_row.astype(np.float64), onehot)
    total = chroma.sum(axis=3, keepdims=True)
    chroma = np.divide(chroma, total, out=np.zeros_like(chroma), where=total > 0)
    return chroma @ tonal_matrix().T, total[..., 0] > 0


def _pair_distances(centroids: np.ndarray, sounding: np.ndarray, i: int, j: int) -> np.ndarray:
    both = sounding[:, i] & sounding[:, j]
    d = np.linalg.norm(centroids[:, i] - centroids[:, j], axis=-1)
    return d[both]


def tonal_distance(windows: np.ndarray, i: int, j: int, *, pitch_low: int) -> float:
    """Mean tonal distance between tracks ``i`` and ``j`` over the beats where both sound
    (Euclidean distance of their beat tonal centroids); NaN when they never do.

    MuseGAN (``v1/musegan/eval/metrics.py``, ``Metrics.metrics_harmonicity``) sums a bar's
    chroma per beat and averages the beats; beats where one track is silent are left out here
    (its code divides by a zero sum there and gets NaN).
    """
    centroids, sounding = beat_tonal_centroids(windows, pitch_low=pitch_low)
    d = _pair_distances(centroids, sounding, i, j)
    return float(d.mean()) if len(d) else float("nan")


# --------------------------------------------------------------------------- all of them


def _nanmean(values: Sequence[float]) -> float:
    v = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(v)
    return float(v[ok].mean()) if ok.any() else float("nan")


def _set_properties(
    x: np.ndarray, *, pitch_low: int, voices: bool, pitched: Sequence[int]
) -> dict[str, float]:
    """The one-set properties of ``x`` ``(n, K, 96, 96)``, keyed as :func:`track_scores`."""
    k = x.shape[1]
    out: dict[str, float] = {}
    for t in range(k):
        out[track_key(t, "median_pitch")] = median_pitch(x[:, t], pitch_low=pitch_low)
    centroids, sounding = beat_tonal_centroids(x, pitch_low=pitch_low)
    distances = []
    for a, i in enumerate(pitched):
        for j in pitched[a + 1 :]:
            d = _pair_distances(centroids, sounding, i, j)
            value = float(d.mean()) if len(d) else float("nan")
            out[pair_key(i, j, "tonal_distance")] = value
            distances.append(value)
    if distances:
        out[summary_key("mean_tonal_distance")] = _nanmean(distances)
    if voices:
        for i in range(k):
            for j in range(i + 1, k):
                out[pair_key(i, j, "crossing_rate")] = pair_crossing_rate(x, i, j)
        out[summary_key("voice_crossing_rate")] = crossing_rate(x)
    return out


def track_scores(
    generated: np.ndarray,
    heldout: np.ndarray,
    train: np.ndarray,
    names: Sequence[str],
    *,
    pitch_low: int,
    seed: int = 0,
    train_sources: np.ndarray | None = None,
    voices: bool = False,
    drums: Sequence[bool] | None = None,
) -> dict[str, float]:
    """Every track metric of docs/metrics.md ("Track metrics") and its ``_baseline``.

    ``generated``, ``heldout``, ``train``: bool ``(n, K, 96, 96)`` with the same K, the
    dataset's tracks in order, ``names`` their names (one per track; only checked for count:
    the keys use the index). ``voices``: the dataset is a ``voices`` one (the crossing
    metrics). ``drums``: per track, True for a drum track (left out of the tonal distance, as
    MuseGAN leaves its drums out). ``seed`` and ``train_sources`` as ``metrics.evaluate``,
    which computes the contract metrics of each track on its own.
    """
    gen, real, tr = _as_tracks(generated), _as_tracks(heldout), _as_tracks(train)
    k = gen.shape[1]
    if real.shape[1] != k or tr.shape[1] != k:
        raise ValueError(
            f"generated, held-out and training windows differ in tracks: "
            f"{k}, {real.shape[1]}, {tr.shape[1]}"
        )
    if len(names) != k:
        raise ValueError(f"{len(names)} track names for {k} tracks")
    drum_flags = [False] * k if drums is None else [bool(d) for d in drums]
    if len(drum_flags) != k:
        raise ValueError(f"{len(drum_flags)} drum flags for {k} tracks")
    pitched = [t for t in range(k) if not drum_flags[t]]

    out: dict[str, float] = {}
    for t in range(k):
        scored = metrics.evaluate(
            gen[:, t],
            real[:, t],
            tr[:, t],
            seed=seed,
            train_sources=train_sources,
            pitch_low=pitch_low,
        )
        out.update({track_key(t, name): value for name, value in scored.items()})

    # one-set properties: the generated value, and the held-out value as its baseline
    gen_props = _set_properties(gen, pitch_low=pitch_low, voices=voices, pitched=pitched)
    real_props = _set_properties(real, pitch_low=pitch_low, voices=voices, pitched=pitched)
    for key, value in gen_props.items():
        out[key] = value
        out[f"{key}{BASELINE_SUFFIX}"] = real_props[key]

    # the range is the training notes': generated notes in it, held-out notes as baseline
    gen_rates, real_rates = [], []
    for t in range(k):
        lo, hi = pitch_range(note_pitches(tr[:, t], pitch_low=pitch_low))
        g = in_range_rate(note_pitches(gen[:, t], pitch_low=pitch_low), lo, hi)
        r = in_range_rate(note_pitches(real[:, t], pitch_low=pitch_low), lo, hi)
        out[track_key(t, "in_range_rate")] = g
        out[f"{track_key(t, 'in_range_rate')}{BASELINE_SUFFIX}"] = r
        gen_rates.append(g)
        real_rates.append(r)
    out[summary_key("in_range_rate_mean")] = _nanmean(gen_rates)
    out[f"{summary_key('in_range_rate_mean')}{BASELINE_SUFFIX}"] = _nanmean(real_rates)
    return {key: float(value) for key, value in out.items()}
