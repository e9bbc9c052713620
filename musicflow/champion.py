"""The champion rule (docs/tracking.md), pure, so the CLI can apply it without Prefect.

- **Champion of a registered model** (``<dataset>-<model>``, alias ``champion``): a version is
  eligible when its ``blank_rate`` is at most :data:`MAX_BLANK_RATE` (a generator that mostly
  outputs silence is never the best known). Among eligible versions the lower
  ``onenn_accuracy`` wins (0.5 means a nearest-neighbour test cannot tell generated from
  held-out windows); within :data:`ONENN_TIE` of each other, the lower ``pitch_hist_l1``. A new
  version takes the alias only when it beats the current champion (:func:`is_better`).
- **Best of a dataset** (across models): the alias is per registered model, so each model has
  its own champion. The best of the dataset is the model champion the same rule ranks first
  (:func:`best_of_dataset`): the lowest ``onenn_accuracy`` among the eligible champions, and
  among the champions within :data:`ONENN_TIE` of that lowest one, the lowest
  ``pitch_hist_l1``. Load it with ``models:/<dataset>-<model>@champion``.

``tasks/registry.py`` applies the rule when it registers a version; ``musicflow compare``, the
per-dataset index page and the reports read it from here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TypeVar

MAX_BLANK_RATE = 0.5
ONENN_TIE = 0.01

Row = TypeVar("Row")

#: The rule in one paragraph, for pages and terminal output.
RULE_TEXT = (
    f"Champion rule: a version is eligible when its blank_rate is at most {MAX_BLANK_RATE}; the "
    f"lower onenn_accuracy wins, and within {ONENN_TIE} of each other the lower pitch_hist_l1. "
    "Each model (registered model <dataset>-<model>) has its own champion; the best of the "
    "dataset is the model champion this rule ranks first."
)


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def eligible(metrics: Mapping[str, float]) -> bool:
    """Scored, and not mostly silent."""
    blank = metrics.get("blank_rate")
    return _finite(blank) and blank <= MAX_BLANK_RATE and _finite(metrics.get("onenn_accuracy"))


def is_better(new: Mapping[str, float], old: Mapping[str, float] | None) -> bool:
    """The champion rule on two metric dicts: does ``new`` beat ``old``?"""
    if not eligible(new):
        return False
    if old is None or not _finite(old.get("onenn_accuracy")):
        return True
    if abs(new["onenn_accuracy"] - old["onenn_accuracy"]) > ONENN_TIE:
        return new["onenn_accuracy"] < old["onenn_accuracy"]
    return new.get("pitch_hist_l1", math.inf) < old.get("pitch_hist_l1", math.inf)


def best_of_dataset(
    champions: Sequence[Row], metrics_of=lambda row: row.metrics, name_of=lambda row: row.model
) -> Row | None:
    """The best of the dataset among the model champions ``champions`` (see the module), or
    None when no champion is eligible. Ties left after both keys go to the model name."""
    scored = [c for c in champions if eligible(metrics_of(c))]
    if not scored:
        return None
    lowest = min(metrics_of(c)["onenn_accuracy"] for c in scored)
    close = [c for c in scored if metrics_of(c)["onenn_accuracy"] <= lowest + ONENN_TIE]

    def key(c):
        m = metrics_of(c)
        l1 = m.get("pitch_hist_l1")
        return (l1 if _finite(l1) else math.inf, m["onenn_accuracy"], name_of(c))

    return min(close, key=key)
