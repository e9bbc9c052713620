"""From model outputs to binary piano-roll windows (pure numpy).

Public functions: :func:`calibrate_threshold`, :func:`binarize`, :func:`remove_isolated_cells`,
:func:`active_share`; a registered model's sampling settings (``sampling.json``):
:func:`write_settings`, :func:`read_settings`.

The thesis set the binarisation threshold by hand per dataset (0.55, 0.1, 0.2) and dropped
"isolated one-step pixels". Here the threshold is chosen so the generated windows have as many
active cells as the training data (a quantile of the model's outputs), and an isolated cell is
one with no active cell among its 8 neighbours (see :func:`remove_isolated_cells`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from musicflow.core.errors import ModelError

#: A registered model's sampling settings, in its folder beside the weights.
SETTINGS_FILE = "sampling.json"
#: Default bounds of a calibrated threshold, in probability units (outputs in [0, 1]).
MIN_THRESHOLD = 0.05
MAX_THRESHOLD = 0.95


def write_settings(
    folder: Path, *, threshold: float, encoding: dict, dataset: str, target_density: float
) -> None:
    """``sampling.json`` in a model folder: the calibrated threshold, the dataset's encoding
    (its pitch window decodes the pieces), the dataset, the training windows' density."""
    settings = {
        "threshold": threshold,
        "encoding": encoding,
        "dataset": dataset,
        "target_density": target_density,
    }
    (Path(folder) / SETTINGS_FILE).write_text(json.dumps(settings))


def read_settings(folder: Path) -> dict:
    """A model folder's ``sampling.json``, checked for what sampling needs (a threshold, the
    encoding's ``pitch_low``); ModelError when it is missing or unreadable."""
    try:
        settings = json.loads((Path(folder) / SETTINGS_FILE).read_text())
        float(settings["threshold"])
        int(settings["encoding"]["pitch_low"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"unreadable {SETTINGS_FILE} in {folder}: {exc}") from exc
    return settings


def _as_probs(probs: np.ndarray) -> np.ndarray:
    """Model outputs as float ``(n, rows, steps)``; a trailing channel axis of 1 is dropped."""
    x = np.asarray(probs)
    if x.ndim == 4 and x.shape[-1] == 1:  # Keras (n, 96, 96, 1)
        x = x[..., 0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"expected outputs of shape (n, rows, steps[, 1]), got {np.shape(probs)}")
    return x


def active_share(windows: np.ndarray) -> float:
    """Share of active cells over a set of binary windows: the target for calibration."""
    x = np.asarray(windows)
    if not x.size:
        raise ValueError("no windows")
    return float(np.count_nonzero(x) / x.size)


def calibrate_threshold(
    probs: np.ndarray,
    target_density: float,
    *,
    min_threshold: float = MIN_THRESHOLD,
    max_threshold: float = MAX_THRESHOLD,
) -> float:
    """Threshold that makes ``probs > threshold`` as dense as the training data.

    ``target_density`` is the training windows' share of active cells (:func:`active_share`);
    the threshold is the ``1 - target_density`` quantile of ``probs`` (outputs in [0, 1]; map a
    tanh generator's [-1, 1] to [0, 1] first), clamped to ``[min_threshold, max_threshold]``.

    Why clamp: a collapsed generator whose outputs are all near 0 would otherwise get a
    threshold just above its noise floor, and the "music" would be that noise. With the floor
    its windows stay blank and ``blank_rate`` says so. The ceiling keeps a threshold that
    nothing can pass away. Ties at the quantile (saturated outputs) can leave the share above
    or below target: the threshold never invents an order the model did not give.
    Calibration is on the raw outputs; :func:`remove_isolated_cells` then takes away a little
    (only speckle), so the final share can sit slightly below target.
    """
    x = np.asarray(probs, dtype=np.float64)
    if not x.size:
        raise ValueError("no outputs to calibrate on")
    if np.isnan(x).any():
        raise ValueError("model outputs contain NaN")
    if not 0.0 < target_density < 1.0:
        raise ValueError(f"target_density must be in (0, 1), got {target_density}")
    if not 0.0 <= min_threshold <= max_threshold <= 1.0:
        raise ValueError("need 0 <= min_threshold <= max_threshold <= 1")
    threshold = float(np.quantile(x, 1.0 - target_density))
    return float(np.clip(threshold, min_threshold, max_threshold))


def remove_isolated_cells(windows: np.ndarray) -> np.ndarray:
    """Drop active cells none of whose 8 neighbours (3 x 3 block) is active.

    Such a cell is a one-step note (nothing left or right in its row) with nothing sounding a
    semitone above or below at that step or the steps either side: the speckle a VAE leaves
    behind. A one-step note that touches another note is kept (an ornament, the edge of a
    cluster). Trade-off: a lone one-step staccato note is removed too; at 12 steps per beat
    those are rare in real data (see ``qualified_note_rate``). One pass is enough: removing
    an isolated cell cannot isolate another, since it had no active neighbour.
    """
    x = np.asarray(windows)
    single = x.ndim == 2
    x = (x[None] if single else x).astype(bool)
    if x.ndim != 3:
        raise ValueError(f"expected windows of shape (n, rows, steps), got {np.shape(windows)}")
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    rows, steps = x.shape[1:]
    neighbours = np.zeros(x.shape, dtype=np.uint8)
    for dr in (0, 1, 2):
        for dc in (0, 1, 2):
            if dr == 1 and dc == 1:
                continue
            neighbours += padded[:, dr : dr + rows, dc : dc + steps]
    out = x & (neighbours > 0)
    return out[0] if single else out


def binarize(probs: np.ndarray, threshold: float, clean: bool = True) -> np.ndarray:
    """Bool windows ``probs > threshold`` (strict, matching :func:`calibrate_threshold`), then
    :func:`remove_isolated_cells` when ``clean``. Accepts ``(n, 96, 96)``, Keras-style
    ``(n, 96, 96, 1)`` or one ``(96, 96)`` window; returns ``(n, 96, 96)`` or ``(96, 96)``.
    """
    single = np.ndim(probs) == 2
    x = _as_probs(probs) > threshold
    if clean:
        x = remove_isolated_cells(x)
    return x[0] if single else x
