"""A continuation beside the real one (a figure, not a test): the first bars of a held-out
file as ``generate --prompt``'s prompt, the model's continuation beside the file's own.

    MUSICFLOW_HOME=… .venv/bin/python bench/continuation.py --model-uri models:/bach-chorales-rnn/1
        [--dataset bach-chorales] [--prompt-bars 4] [--bars 4] [--pick 0] [--figure PNG]

The file is the ``--pick``-th (by name) of the dataset's held-out files (``models/data.
heldout_split``: never trained on). It runs the real command line, ``musicflow generate
--prompt FILE --prompt-bars N --bars M -n 2``, reads the pieces back with the project's reader
and draws the real file's N + M bars above each generated piece, the seam marked.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from musicflow.adapters import workspace
from musicflow.core import compose, roll
from musicflow.core.midi import scan_midi


def song_of(path: Path) -> np.ndarray:
    scan = scan_midi(path.read_bytes())
    return roll.song_matrix(scan.notes, scan.ticks_per_beat)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-uri", required=True)
    ap.add_argument("--dataset", default="bach-chorales")
    ap.add_argument("--prompt-bars", type=int, default=4)
    ap.add_argument("--bars", type=int, default=4)
    ap.add_argument("--pick", type=int, default=0)
    ap.add_argument("--figure", type=Path, default=Path("continuation.png"))
    args = ap.parse_args()
    workspace.configure_environment()
    from musicflow.adapters.store import read_dataset, read_manifest
    from musicflow.models.data import heldout_split

    folder = workspace.rolls_dir(args.dataset)
    _, heldout = heldout_split(read_dataset(folder).shard_paths)
    manifest = read_manifest(folder).to_dict("records")
    paths = sorted(r["source_path"] for r in manifest if r["source_sha256"] in heldout)
    source = Path(paths[args.pick])
    if not source.is_absolute():
        source = workspace.exported_source(args.dataset) / source
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "musicflow.cli", "generate", "--model-uri", args.model_uri]
        cmd += ["--prompt", str(source), "--prompt-bars", str(args.prompt_bars)]
        cmd += ["--bars", str(args.bars), "-n", "2", "--out", tmp]
        subprocess.run(cmd, check=True)
        pieces = [song_of(p) for p in sorted(Path(tmp).glob("*.mid"))]
    total = (args.prompt_bars + args.bars) * compose.STEPS_PER_BAR
    real = song_of(source)[:, :total]
    draw(
        {f"real: {source.name}": real} | {f"generated {i + 1}": p for i, p in enumerate(pieces)},
        args.prompt_bars * compose.STEPS_PER_BAR,
        total,
        args.figure,
    )
    print(f"{source.name}: figure {args.figure}")


def draw(songs: dict[str, np.ndarray], seam: int, total: int, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [r for s in songs.values() for r in np.flatnonzero(s.any(axis=1))]
    top, bottom = max(min(rows) - 2, 0), min(max(rows) + 3, roll.ROWS)
    fig = Figure(figsize=(9, 1.2 + 1.5 * len(songs)), dpi=90)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(songs), 1, squeeze=False)[:, 0]
    for ax, (title, song) in zip(axes, songs.items(), strict=True):
        image = np.zeros((roll.ROWS, total))
        image[:, : min(total, song.shape[1])] = song[:, :total]
        ax.imshow(image[top:bottom], aspect="auto", cmap="Greys", interpolation="nearest")
        ax.axvline(seam - 0.5, color="tab:red", lw=1.5)
        for bar in range(0, total, compose.STEPS_PER_BAR):
            ax.axvline(bar - 0.5, color="0.8", lw=0.5)
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_yticks([])
        ax.set_xticks(range(0, total, compose.STEPS_PER_BAR))
        ax.set_xticklabels(range(1, total // compose.STEPS_PER_BAR + 1), fontsize=7)
    axes[-1].set_xlabel(
        "bar (red: the seam; the prompt before it, the continuation after)", fontsize=8
    )
    fig.tight_layout()
    fig.savefig(path, format="png")


if __name__ == "__main__":
    main()
