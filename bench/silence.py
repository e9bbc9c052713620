"""Drift into silence (a measurement, not a test): the share of silent bars in long pieces,
before and after the sampler carries its state through a piece (docs/models.md).

    MUSICFLOW_HOME=… .venv/bin/python bench/silence.py --model-uri models:/bach-chorales-rnn/1
        [--pieces 16] [--bars 32] [--seed 0] [--data FOLDER] [--figure PNG]

- before: the pieces ``generate`` wrote until now (``FrameSampler._pieces``): each 2-bar
  window from a fresh LSTM state after reading only the window before it;
- after: ``direct`` (what ``generate`` runs now): one LSTM run through the whole piece, a rest
  in every voice ended before it fills a bar;
- data: the real files of FOLDER (default: the bundled chorales exported in the workspace),
  each bar from its first to its last note, read with the project's reader and grid.

A bar is silent when no note sounds in it (``compose.silent_bars``). Prints the share of
silent bars, the pieces with any, and the longest silent run; draws one row per piece.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from musicflow.adapters import workspace
from musicflow.core import compose, roll
from musicflow.core.defaults import DEFAULT_DATASET
from musicflow.core.midi import scan_midi


def data_share(folder: Path) -> tuple[float, int]:
    silent, bars = 0, 0
    for path in sorted(folder.glob("*.mid")):
        scan = scan_midi(path.read_bytes())
        song, _ = roll.song_matrix(scan.notes, scan.ticks_per_beat)
        flags = compose.silent_bars(song)
        silent += int(flags.sum())
        bars += len(flags)
    return silent / max(bars, 1), bars


def summary(songs: np.ndarray) -> dict[str, float]:
    flags = np.stack([compose.silent_bars(s) for s in songs])
    runs = []
    for row in flags:
        run = best = 0
        for f in row:
            run = run + 1 if f else 0
            best = max(best, run)
        runs.append(best)
    return {
        "silent_bar_share": float(flags.mean()),
        "pieces_with_a_silent_bar": int(flags.any(axis=1).sum()),
        "longest_silent_run_bars": int(max(runs)),
    }


def figure(panels: dict[str, np.ndarray], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 1.0 + 1.4 * len(panels)), dpi=90)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (title, songs) in zip(axes, panels.items(), strict=True):
        bars = songs.shape[2] // compose.STEPS_PER_BAR
        cut = songs[:, :, : bars * compose.STEPS_PER_BAR]
        onsets = (cut & ~np.pad(cut, ((0, 0), (0, 0), (1, 0)))[:, :, :-1]).sum(axis=1)
        per_bar = onsets.reshape(len(songs), bars, -1).sum(axis=2).astype(float)
        image = np.ones((len(songs), bars, 3))
        image[...] = (1 - np.clip(per_bar / 24, 0, 1))[..., None] * 0.85 + 0.1
        image[np.stack([compose.silent_bars(s) for s in songs])] = (0.85, 0.1, 0.1)
        ax.imshow(image, aspect="auto", interpolation="nearest")
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_ylabel("piece", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("bar (red: silent; darker: more notes)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-uri", required=True)
    ap.add_argument("--pieces", type=int, default=16)
    ap.add_argument("--bars", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--figure", type=Path)
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    workspace.configure_environment()
    from musicflow.tasks.generate import load_sampler

    model = load_sampler(args.model_uri).model
    windows = -(-args.bars * compose.STEPS_PER_BAR // roll.COLS)
    sampler = model.sampler()
    rngs = [np.random.default_rng([args.seed, i]) for i in range(args.pieces)]
    before = sampler._pieces(args.pieces, windows, args.seed, sampler._piece_latents(rngs, windows))
    before = np.concatenate(list(before.transpose(1, 0, 2, 3)), axis=2) > 0.5
    after = model.direct(args.pieces, args.bars, args.seed) > 0.5
    folder = args.data or workspace.exported_source(DEFAULT_DATASET)
    share, bars = data_share(folder)
    print(f"model {args.model_uri}: {args.pieces} pieces of {args.bars} bars, seed {args.seed}")
    print(f"data ({folder.name}, {bars} bars): silent_bar_share {share:.4f}")
    for name, songs in (("before", before), ("after", after)):
        print(f"{name}: {summary(songs)}")
    if args.figure:
        figure(
            {
                f"before: fresh state every 2 bars ({summary(before)['silent_bar_share']:.1%} "
                "silent bars)": before,
                f"after: state carried, rests shorter than a bar "
                f"({summary(after)['silent_bar_share']:.1%} silent bars)": after,
            },
            args.figure,
        )
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
