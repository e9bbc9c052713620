"""How a model is trained: the command line's training options as one value.

:class:`TrainSettings` is built once, from the arguments (``musicflow/cli.py``), and passed
down whole: the flows' parameter (Prefect stores it as JSON and turns it back into this class
for a scheduled run), the train task's argument, and what its cache key hashes. The time budget
is held in seconds; :func:`budget_s` and :func:`budget_text` are the only conversions to and
from the minutes the user writes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class TrainSettings:
    """Every setting that changes what training produces (None: the model's own default)."""

    epochs: int | None = None
    batch_size: int | None = None
    seed: int = 0
    time_budget_s: float | None = None  # wall clock per model, checked before every batch
    distribute: bool = False  # every visible GPU (tf.distribute)
    mixed_precision: bool = False

    def changed(self) -> dict[str, object]:
        """The settings that differ from the defaults (what a deployment shows it was asked)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) != f.default
        }


def budget_s(minutes: float | None) -> float | None:
    """``--time-budget``'s minutes in seconds (None: no budget)."""
    return minutes * 60 if minutes else None


def budget_text(seconds: float) -> str:
    """A time budget as the user wrote it: ``5 min``."""
    return f"{seconds / 60:g} min"


#: Every setting at its default: the models' own epochs and batch size, seed 0, no budget.
DEFAULT_TRAINING = TrainSettings()
