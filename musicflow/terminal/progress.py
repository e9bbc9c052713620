"""What a user sees while a command works: stage headers, skipped steps, training progress.

Everything goes to stderr, so stdout keeps only results (and stays clean JSON with
``--json``). On a terminal, training shows a live ``rich`` progress bar per epoch (batches
done, elapsed time, the time budget left); when stderr is not a terminal (CI logs, a pipe, a
file) every event is one plain line and a running epoch prints a line at most every
:data:`PLAIN_INTERVAL_S` seconds, so logs stay readable and short.

Public: :func:`stage`, :func:`skipped`, :func:`note`, :func:`audit_summary`,
:class:`TrainingProgress`, :class:`PieceTicker` (``generate``'s line per piece when slow),
:func:`debug_enabled` (libraries' own messages are shown only with ``--debug``, which the CLI
records in ``$MUSICFLOW_DEBUG``), :func:`interactive`. ``rich`` is imported only when a live
bar is drawn, so ``musicflow --help`` does not pay for it.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

DEBUG_ENV = "MUSICFLOW_DEBUG"
PLAIN_INTERVAL_S = 30.0


def debug_enabled() -> bool:
    """True when the command runs with ``--debug``: libraries may speak then."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def interactive() -> bool:
    """True when stderr is a terminal that can redraw a progress bar."""
    try:
        return sys.stderr.isatty() and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):
        return False


def _line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def stage(title: str, detail: str = "") -> None:
    """A stage header: ``==> train vae: 120 batches per epoch``."""
    _line(f"==> {title}" + (f": {detail}" if detail else ""))


def skipped(step: str, why: str = "nothing changed, skipped") -> None:
    """A step whose result came from the cache: ``    train vae: nothing changed, skipped``."""
    _line(f"    {step}: {why}")


def note(text: str) -> None:
    """One indented line under the current stage."""
    _line(f"    {text}")


class timed:
    """Time one step and report it when it ends: ``    parse: 337 files read (1.2 s)``.

    ``with progress.timed("parse") as step: …; step.detail = "…"`` (``step.skipped = True``
    reports a cached step as skipped). Long runs show where they are, and the scale benchmark
    (bench/bench_scale.py) reads the seconds to say which stage dominates.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.detail = ""
        self.skipped = False

    def __enter__(self) -> timed:
        self._started = time.perf_counter()
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is not None:
            return
        seconds = time.perf_counter() - self._started
        detail = f"nothing changed, skipped ({self.detail})" if self.skipped else self.detail
        note(f"{self.name}: {detail} ({seconds:.1f} s)")


class PieceTicker:
    """Progress of ``generate``: silent while it is quick; once it has run longer than
    :data:`QUIET_S`, one line when the sampling ends and one per piece written, so a slow
    generate (many pieces, audio previews) shows where it is."""

    QUIET_S = 2.0

    def __init__(self, n: int, *, enabled: bool = True) -> None:
        self.n = n
        self.enabled = enabled
        self.done = 0
        self.started = time.monotonic()

    def _say(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        if self.enabled and elapsed > self.QUIET_S:
            note(f"{text} ({elapsed:.1f} s)")

    def sampled(self) -> None:
        self._say(f"sampled {self.n} piece(s)")

    def piece(self, path: object) -> None:
        self.done += 1
        self._say(f"piece {self.done}/{self.n}: {path}")


def audit_summary(summary: Mapping[str, Any]) -> None:
    """The audit's counts and worst files, as soon as the audit ends (``musicflow run``)."""
    from musicflow.terminal.console import format_summary

    for line in format_summary(dict(summary)).splitlines():
        note(line)


def format_duration(seconds: float) -> str:
    """``1:05:03``, ``4:07`` or ``0:09``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TrainingProgress:
    """Progress of one training run: an epoch bar advanced per batch, with the budget left.

    ``with TrainingProgress("vae", epochs=100, batches=120, budget_s=180) as bar:`` then, per
    epoch, ``bar.start_epoch(i)``, ``bar.advance()`` after each batch and
    ``bar.end_epoch(metrics)``; ``bar.stopped_by_budget(windows)`` when the budget ends it.
    """

    def __init__(
        self,
        model: str,
        *,
        epochs: int,
        batches: int | None,
        budget_s: float | None,
        live: bool | None = None,
    ) -> None:
        self.model = model
        self.epochs = epochs
        self.batches = batches
        self.budget_s = budget_s
        self.live = interactive() if live is None else live
        self.started = time.monotonic()
        self.epoch = 0
        self.done = 0
        self._last_line = self.started
        self._progress: Any = None
        self._task: Any = None

    # --- context ---------------------------------------------------------------------------
    def __enter__(self) -> TrainingProgress:
        if self.live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("    {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("batches"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[budget]}"),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    # --- events ----------------------------------------------------------------------------
    def budget_left(self) -> float | None:
        if self.budget_s is None:
            return None
        return self.budget_s - (time.monotonic() - self.started)

    def _budget_text(self) -> str:
        left = self.budget_left()
        if left is None:
            return ""
        return f"budget left {format_duration(max(left, 0))}"

    def start_epoch(self, epoch: int) -> None:
        """Epoch ``epoch`` (0-based) begins."""
        self.epoch, self.done = epoch, 0
        description = f"{self.model} epoch {epoch + 1}/{self.epochs}"
        if self._progress is not None:
            self._drop_task()
            self._task = self._progress.add_task(
                description, total=self.batches, budget=self._budget_text()
            )

    def advance(self, n: int = 1) -> None:
        """``n`` more batches of the current epoch are done."""
        self.done += n
        now = time.monotonic()
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=n, budget=self._budget_text())
        elif now - self._last_line >= PLAIN_INTERVAL_S:
            self._last_line = now
            of = f"/{self.batches}" if self.batches else ""
            budget = self._budget_text()
            note(
                f"{self.model} epoch {self.epoch + 1}/{self.epochs}: {self.done}{of} batches, "
                f"{format_duration(now - self.started)} elapsed" + (f", {budget}" if budget else "")
            )

    def end_epoch(self, metrics: Mapping[str, float]) -> None:
        """The epoch ended with these averaged metrics: one line that stays in the log."""
        shown = ", ".join(f"{k} {_short(v)}" for k, v in metrics.items())
        elapsed = format_duration(time.monotonic() - self.started)
        line = f"{self.model} epoch {self.epoch + 1}/{self.epochs} ({elapsed}): {shown}"
        self._last_line = time.monotonic()
        if self._progress is not None:
            self._drop_task()
            self._progress.console.print(f"    {line}", highlight=False, markup=False)
        else:
            note(line)

    def _drop_task(self) -> None:
        """Remove the finished epoch's bar, so only its summary line stays."""
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
            self._progress.refresh()

    def stopped_early(self, metric: str, best_epoch: int, patience: int) -> None:
        note(
            f"{self.model}: {metric} has not improved for {patience} epochs; stopped after "
            f"epoch {self.epoch + 1}, keeping epoch {best_epoch + 1}"
        )

    def stopped_by_budget(self, windows_seen: int) -> None:
        note(
            f"{self.model}: time budget reached in epoch {self.epoch + 1} of {self.epochs} "
            f"({windows_seen} training windows seen)"
        )


def _short(value: float) -> str:
    v = float(value)
    if not math.isfinite(v):
        return str(v)
    return f"{v:.4g}" if abs(v) >= 1000 or abs(v) < 0.001 else f"{v:.4f}"
