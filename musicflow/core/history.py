"""Dataset versions over time, pure: what one committed version holds (its files, outcomes and
the statistics of its windows) and how two consecutive versions differ, each difference with a
verdict in plain words. The records are kept and read by ``tasks/history.py``.

Public: :func:`window_statistics` (the docs/metrics.md per-window values of a dataset's windows,
averaged, and its pitch histogram), :func:`file_changes`, :func:`drift` → :class:`Drift`,
:data:`STATISTICS`.

The thresholds of the verdicts are fixed here, not learned: two halves of one real collection
differ by about 0.1 in pitch-histogram L1 and a few percent in density and polyphony
(docs/metrics.md's baselines), so changes below those read as "about the same".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from musicflow.core import metrics
from musicflow.core.roll import ROWS

#: The per-window values averaged over a version's windows (docs/metrics.md), in report order.
STATISTICS = ("density", "polyphony", *metrics.FEATURE_NAMES[2:])

PITCH_L1_SAME = 0.05  # below: the same pitch distribution
PITCH_L1_LARGE = 0.15  # above: a different range or balance of pitches
RELATIVE_SAME = 0.05  # density, polyphony: within 5 % reads as the same
RELATIVE_LARGE = 0.20
RATE_SAME = 0.01  # quarantine rate: within 1 point
RATE_LARGE = 0.05


def window_statistics(batches: Iterable[np.ndarray], *, pitch_low: int) -> dict:
    """Means of :data:`STATISTICS` over every window of ``batches`` (bool ``(n, 96, 96)``
    arrays, streamed so a large dataset never sits in memory), the share of blank windows and
    the pitch histogram (share of active cells per row, row 0 the highest pitch)."""
    hist = np.zeros(ROWS)
    sums = dict.fromkeys(STATISTICS, 0.0)
    counts = dict.fromkeys(STATISTICS, 0)
    n = blank = 0
    for windows in batches:
        if not len(windows):
            continue
        hist += metrics.pitch_histogram(windows)
        for name, values in metrics.window_features(windows, pitch_low=pitch_low).items():
            ok = ~np.isnan(values)
            sums[name] += float(values[ok].sum())
            counts[name] += int(ok.sum())
        blank += round(metrics.blank_rate(windows) * len(windows))
        n += len(windows)
    total = hist.sum()
    return {
        "n_windows": n,
        **{k: (sums[k] / counts[k] if counts[k] else None) for k in STATISTICS},
        "blank_rate": blank / n if n else None,
        "pitch_histogram": [round(float(v), 6) for v in (hist / total if total else hist)],
    }


def file_changes(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, list[str]]:
    """Paths added, removed, and changed (same path, other content) between two versions'
    ``{path: sha256}``."""
    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "changed": sorted(p for p in set(before) & set(after) if before[p] != after[p]),
    }


@dataclass(frozen=True)
class Drift:
    """One statistic from one version to the next, and what the change means."""

    name: str
    before: float | None
    after: float | None
    change: float | None  # L1 for the pitch histogram, relative for means, points for rates
    level: str  # "same", "small" or "large" ("" when it cannot be judged)
    verdict: str

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "before": self.before,
            "after": self.after,
            "change": self.change,
            "level": self.level,
            "verdict": self.verdict,
        }


def _level(change: float, same: float, large: float) -> str:
    return "same" if change < same else ("small" if change < large else "large")


def _pitch_drift(before: list[float], after: list[float]) -> Drift:
    before_, after_ = np.asarray(before), np.asarray(after)
    l1 = float(np.abs(before_ - after_).sum())
    level = _level(l1, PITCH_L1_SAME, PITCH_L1_LARGE)
    # row 0 is the highest pitch: a larger mean row means lower notes
    rows = np.arange(ROWS)
    direction = "lower" if float(rows @ after_) > float(rows @ before_) else "higher"
    verdict = {
        "same": "the same pitches, in the same proportions",
        "small": f"a small shift of the pitch balance, towards {direction} notes",
        "large": f"a different pitch distribution: more {direction} notes than before",
    }[level]
    return Drift("pitch histogram", None, None, round(l1, 4), level, verdict)


def _mean_drift(name: str, before: float | None, after: float | None, more: str, less: str):
    if before is None or after is None or before == 0:
        return Drift(name, before, after, None, "", "cannot be compared (no windows)")
    rel = (after - before) / abs(before)
    level = _level(abs(rel), RELATIVE_SAME, RELATIVE_LARGE)
    word = more if rel > 0 else less
    verdict = {
        "same": "about the same",
        "small": f"somewhat {word} ({rel:+.0%})",
        "large": f"much {word} ({rel:+.0%})",
    }[level]
    return Drift(name, before, after, round(rel, 4), level, verdict)


def quarantine_rate(entry: Mapping) -> float:
    """Share of a version's files (duplicates included) kept out by a quarantine rule."""
    n = int(entry.get("n_files_in", 0))
    return int(entry.get("status", {}).get("quarantined", 0)) / n if n else 0.0


def _rate_drift(before: float, after: float) -> Drift:
    points = after - before
    level = _level(abs(points), RATE_SAME, RATE_LARGE)
    if level == "same":
        verdict = "about the same"
    else:
        verdict = f"{'up' if points > 0 else 'down'} {abs(points) * 100:.1f} points"
        if level == "large" and points > 0:
            verdict += ": look at the new files' reasons on the audit page"
    return Drift("quarantine rate", before, after, round(points, 4), level, verdict)


def drift(before: Mapping, after: Mapping) -> list[Drift]:
    """What changed from one version's record to the next (``tasks/history`` records)."""
    a, b = before.get("statistics", {}), after.get("statistics", {})
    out = []
    if a.get("pitch_histogram") and b.get("pitch_histogram"):
        out.append(_pitch_drift(a["pitch_histogram"], b["pitch_histogram"]))
    out.append(_mean_drift("density", a.get("density"), b.get("density"), "denser", "sparser"))
    out.append(
        _mean_drift(
            "polyphony", a.get("polyphony"), b.get("polyphony"), "more polyphonic", "thinner"
        )
    )
    out.append(_rate_drift(quarantine_rate(before), quarantine_rate(after)))
    return out
