"""Evaluate: generated windows vs held-out real windows (Contract 4), with baselines.

Held-out windows come from held-out FILES (``split_files`` splits by source file), and the
threshold that binarises the model's output is calibrated so the generated active-cell share
matches the training windows' (the thesis tuned it by hand per dataset).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

EVAL_WINDOWS = 512
TRAIN_SAMPLE_LIMIT = 20_000


@dataclass
class Evaluation:
    scores: dict[str, float]
    threshold: float
    target_density: float
    generated: np.ndarray  # bool (n, 96, 96)
    heldout: np.ndarray
    train_sample: np.ndarray


def _sample_index(n: int, limit: int, seed: int) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def evaluate_model(
    model,
    shards: list[Path],
    train_shas: set[str],
    heldout_shas: set[str],
    *,
    seed: int,
    n_generated: int = EVAL_WINDOWS,
) -> Evaluation:
    """Sample, calibrate, binarise and score ``model`` against the held-out files."""
    from musicflow.metrics import evaluate
    from musicflow.models.data import load_window_sources, load_windows
    from musicflow.sampling import binarize, calibrate_threshold

    heldout = load_windows(shards, heldout_shas)
    train_all = load_windows(shards, train_shas)
    keep = _sample_index(len(train_all), TRAIN_SAMPLE_LIMIT, seed)
    train_sample = train_all[keep]
    # Sources let copy_rate_baseline skip a window's own file (not only the window itself).
    train_sources = load_window_sources(shards, train_shas)[keep]
    target = float(train_sample.mean())
    probs = model.sample(n_generated, seed=seed + 1)
    threshold = calibrate_threshold(probs, target)
    generated = binarize(probs, threshold)
    scores = evaluate(generated, heldout, train_sample, seed=seed, train_sources=train_sources)
    return Evaluation(
        scores={k: float(v) for k, v in scores.items()},
        threshold=float(threshold),
        target_density=target,
        generated=generated,
        heldout=heldout,
        train_sample=train_sample,
    )
