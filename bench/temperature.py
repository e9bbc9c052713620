"""Temperature and the sampler (a measurement, not a test): what ``generate --temperature``
does to the music, and the sampler before/after state carrying, scored as evaluation scores
a run (``tasks/evaluate.evaluate_model``: 64 pieces of 16 bars, the dataset's held-out files).

    MUSICFLOW_HOME=… .venv/bin/python bench/temperature.py --model-uri models:/bach-chorales-rnn/1
        [--dataset bach-chorales] [--temperatures 0.8,1.0,1.2] [--seed 0]

Prints one markdown row per sampler: 1-NN accuracy (0.5 is indistinguishable from the
held-out music), the pitch histogram's L1 distance to the held-out one, notes sounding per
step (polyphony), pitch classes per bar, share of silent bars; and the same for the held-out
windows themselves (their last windows padded with silence).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from musicflow.adapters import workspace
from musicflow.core import compose, metrics, roll


class Variant:
    """A model whose ``sample_pieces`` is one way of sampling."""

    kind = "ar"

    def __init__(self, pieces) -> None:
        self.sample_pieces = pieces


def per_bar(windows: np.ndarray, pitch_low: int) -> tuple[float, float, float]:
    """Mean polyphony (notes per step where any sounds), pitch classes per bar with notes,
    and the share of silent bars, of windows (n, 96, 96)."""
    bars = windows.reshape(len(windows), roll.ROWS, -1, compose.STEPS_PER_BAR)
    bars = bars.transpose(0, 2, 1, 3).reshape(-1, roll.ROWS, compose.STEPS_PER_BAR)
    sounding = bars.any(axis=(1, 2))
    pcs = (pitch_low + roll.ROWS - 1 - np.arange(roll.ROWS)) % 12
    per_pc = np.zeros((len(bars), 12), bool)
    for pc in range(12):
        per_pc[:, pc] = bars[:, pcs == pc].any(axis=(1, 2))
    return (
        float(np.mean(metrics.polyphony(windows))),
        float(per_pc[sounding].sum(axis=1).mean()),
        float(1 - sounding.mean()),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-uri", required=True)
    ap.add_argument("--dataset", default="bach-chorales")
    ap.add_argument("--temperatures", default="0.8,1.0,1.2")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    workspace.configure_environment()
    from musicflow.adapters.store import reading
    from musicflow.tasks.evaluate import evaluate_model
    from musicflow.tasks.generate import load_sampler

    sampler = load_sampler(args.model_uri).model.sampler()

    def before(n: int, n_windows: int, seed: int) -> np.ndarray:
        rngs = [np.random.default_rng([seed, i]) for i in range(n)]
        return sampler._pieces(n, n_windows, seed, sampler._piece_latents(rngs, n_windows))

    def at(t: float):
        def pieces(n: int, n_windows: int, seed: int) -> np.ndarray:
            song = sampler.direct(n, 2 * n_windows, seed, temperature=t)
            return song.reshape(n, roll.ROWS, n_windows, roll.COLS).transpose(0, 2, 1, 3)

        return pieces

    variants = {"before: window restarts, T 1.0": before}
    for t in (float(x) for x in args.temperatures.split(",")):
        variants[f"after: state carried, T {t:g}"] = at(t)
    print(f"{args.model_uri} on {args.dataset}, seed {args.seed}")
    print(
        "| sampler | 1-NN accuracy | pitch histogram L1 | polyphony | pitch classes per bar "
        "| silent bars |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    heldout = None
    with reading(workspace.rolls_dir(args.dataset)) as info:
        for name, pieces in variants.items():
            evaluation, windows = evaluate_model(Variant(pieces), info, seed=args.seed)
            heldout = windows.heldout
            poly, pcs, silent = per_bar(windows.generated, info.pitch_low)
            onenn, l1 = evaluation.scores["onenn_accuracy"], evaluation.scores["pitch_hist_l1"]
            row = f"| {name} | {onenn:.3f} | {l1:.3f} | {poly:.2f} | {pcs:.2f} | {silent:.3f} |"
            print(row, flush=True)
    poly, pcs, silent = per_bar(heldout, info.pitch_low)
    base = evaluation.scores["onenn_accuracy_baseline"]
    l1 = evaluation.scores["pitch_hist_l1_baseline"]
    print(
        f"| held-out real music | {base:.3f} (baseline) | {l1:.3f} (baseline) | {poly:.2f} "
        f"| {pcs:.2f} | {silent:.3f} |"
    )


if __name__ == "__main__":
    main()
