"""The champion rule (docs/tracking.md), pure, so the CLI can apply it without Prefect.

- **Champion of a registered model** (``<dataset>-<model>``, alias ``champion``): a version is
  eligible when its ``blank_rate`` is at most :data:`MAX_BLANK_RATE` (a generator that mostly
  outputs silence is never the best known). A version that leaves silent windows (its
  ``blank_rate`` above its ``blank_rate_baseline``, the real music's: :func:`silent`) never
  ranks above one that does not. Then the lower ``onenn_accuracy`` wins (0.5 means a
  nearest-neighbour test cannot tell generated from held-out windows); within
  :data:`ONENN_TIE` of each other, the lower ``pitch_hist_l1``. A new version takes the alias
  only when it beats the current champion (:func:`is_better`).
- **Best of a dataset** (across models): the alias is per registered model, so each model has
  its own champion. The best of the dataset is the model champion the same rule ranks first
  (:func:`best_of_dataset`): among the eligible champions (those that leave no silent windows,
  when there are any), the lowest ``onenn_accuracy``, and among the champions within
  :data:`ONENN_TIE` of that lowest one, the lowest ``pitch_hist_l1``; :func:`best_of_versions`
  picks it from every version of the dataset. Load it with
  ``models:/<dataset>-<model>@champion``. :func:`best_reason` says in words what decided it
  when it was not the lowest ``onenn_accuracy`` alone.

``tasks/registry.py`` applies the rule when it registers a version; ``musicflow compare``, the
per-dataset index page and the reports read it from here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TypeVar

from musicflow.core.metrics import BASELINE_SUFFIX

MAX_BLANK_RATE = 0.5
ONENN_TIE = 0.01

Row = TypeVar("Row")

#: The rule in one paragraph, for pages and terminal output.
RULE_TEXT = (
    f"Champion rule: a version is eligible when its blank_rate is at most {MAX_BLANK_RATE}; one "
    "that leaves silent windows (blank_rate above its baseline, the real music's) never ranks "
    "above one that does not; then the lower onenn_accuracy wins, and within "
    f"{ONENN_TIE} of each other the lower pitch_hist_l1. "
    "Each model (registered model <dataset>-<model>) has its own champion; the best of the "
    "dataset is the model champion this rule ranks first."
)


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def eligible(metrics: Mapping[str, float]) -> bool:
    """Scored, and not mostly silent."""
    blank = metrics.get("blank_rate")
    return _finite(blank) and blank <= MAX_BLANK_RATE and _finite(metrics.get("onenn_accuracy"))


def silent(metrics: Mapping[str, float]) -> bool:
    """Leaves more silent windows than real music: ``blank_rate`` above its baseline (False
    when either is unknown)."""
    blank, base = metrics.get("blank_rate"), metrics.get(f"blank_rate{BASELINE_SUFFIX}")
    return _finite(blank) and _finite(base) and blank > base


def is_better(new: Mapping[str, float], old: Mapping[str, float] | None) -> bool:
    """The champion rule on two metric dicts: does ``new`` beat ``old``?"""
    if not eligible(new):
        return False
    if old is None or not _finite(old.get("onenn_accuracy")):
        return True
    if silent(new) != silent(old):
        return silent(old)
    if abs(new["onenn_accuracy"] - old["onenn_accuracy"]) > ONENN_TIE:
        return new["onenn_accuracy"] < old["onenn_accuracy"]
    return new.get("pitch_hist_l1", math.inf) < old.get("pitch_hist_l1", math.inf)


def _ranked(champions: Sequence[Row], metrics_of) -> tuple[list[Row], list[Row]]:
    """(the champions the rule compares: eligible, and not silent when any is not; those of
    them within :data:`ONENN_TIE` of the lowest ``onenn_accuracy``)."""
    scored = [c for c in champions if eligible(metrics_of(c))]
    pool = [c for c in scored if not silent(metrics_of(c))] or scored
    if not pool:
        return [], []
    lowest = min(metrics_of(c)["onenn_accuracy"] for c in pool)
    return pool, [c for c in pool if metrics_of(c)["onenn_accuracy"] <= lowest + ONENN_TIE]


def best_of_dataset(
    champions: Sequence[Row], metrics_of=lambda row: row.metrics, name_of=lambda row: row.model
) -> Row | None:
    """The best of the dataset among the model champions ``champions`` (see the module), or
    None when no champion is eligible. Ties left after both keys go to the model name."""
    _, close = _ranked(champions, metrics_of)
    if not close:
        return None

    def key(c):
        m = metrics_of(c)
        l1 = m.get("pitch_hist_l1")
        return (l1 if _finite(l1) else math.inf, m["onenn_accuracy"], name_of(c))

    return min(close, key=key)


def best_of_versions(versions: Sequence[Row]) -> Row | None:
    """The best of the dataset among every registered version of its models (rows with a
    ``champion`` flag): :func:`best_of_dataset` of the model champions."""
    return best_of_dataset([v for v in versions if v.champion])


def best_reason(
    champions: Sequence[Row],
    metrics_of=lambda row: row.metrics,
    label_of=lambda row: f"{row.model} v{row.version}",
) -> str | None:
    """In words, what made the best of the dataset (:func:`best_of_dataset`) the best when the
    lowest ``onenn_accuracy`` alone did not: a champion with a lower one that leaves silent
    windows, or a tie within :data:`ONENN_TIE` broken by ``pitch_hist_l1``. None otherwise."""
    best = best_of_dataset(champions, metrics_of, label_of)
    if best is None:
        return None
    pool, close = _ranked(champions, metrics_of)
    mine = metrics_of(best)
    said = []
    quiet = [
        c
        for c in champions
        if c not in pool
        and eligible(metrics_of(c))
        and metrics_of(c)["onenn_accuracy"] < mine["onenn_accuracy"]
    ]
    for c in quiet:
        m = metrics_of(c)
        said.append(
            f"{label_of(c)} has the lower onenn_accuracy ({m['onenn_accuracy']:.3f} against "
            f"{mine['onenn_accuracy']:.3f}) but leaves silent windows (blank_rate "
            f"{m['blank_rate']:.3f}, real music {m[f'blank_rate{BASELINE_SUFFIX}']:.3f}), so it "
            f"ranks below {label_of(best)}, which does not."
        )
    rivals = [c for c in close if c is not best]
    if rivals:
        names = " and ".join(label_of(c) for c in [best, *rivals])
        onenn = ", ".join(f"{metrics_of(c)['onenn_accuracy']:.3f}" for c in [best, *rivals])
        l1 = ", ".join(
            f"{metrics_of(c).get('pitch_hist_l1', math.nan):.3f}" for c in [best, *rivals]
        )
        said.append(
            f"Tie-break: {names} are within {ONENN_TIE} of each other on onenn_accuracy "
            f"({onenn}), a tie by the rule, so the lower pitch_hist_l1 decided ({l1})."
        )
    return " ".join(said) or None
