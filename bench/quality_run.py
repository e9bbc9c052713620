"""Quality run (a command, not a test): train models with equal wall-clock budgets on one
dataset and print their held-out metrics side by side.

    .venv/bin/python bench/quality_run.py [CORPUS] [--dataset NAME] [--first N]
        [--minutes 20] [--models vae,vae-thesis,gan,gan-thesis] [--seed 0]

Runs in the current workspace (or $MUSICFLOW_HOME), so every run lands in its MLflow store,
to compare in ``musicflow ui`` or ``musicflow compare --dataset NAME``. ``--first N`` takes the
first N files (sorted) of CORPUS, e.g. the first 11 of piano-midi-de/Chopin, about the size of
the thesis's smallest dataset.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent / "shared" / "data" / "piano-midi-de"
COLUMNS = (
    "epochs_completed",
    "blank_rate",
    "pitch_hist_l1",
    "onenn_accuracy",
    "unique_rate",
    "copy_rate",
    "pitch_class_hist_l1",
    "density_diff",
    "qualified_note_rate_diff",
)


def musicflow(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "musicflow.cli", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--dataset", default="quality")
    parser.add_argument("--first", type=int, default=0, help="use only the first N files")
    parser.add_argument("--minutes", type=float, default=20.0, help="wall-clock budget per model")
    parser.add_argument("--models", default="vae,vae-thesis,gan,gan-thesis")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    source = args.corpus
    with tempfile.TemporaryDirectory() as tmp:
        if args.first:
            files = sorted(
                p for p in args.corpus.rglob("*") if p.suffix.lower() in (".mid", ".midi")
            )
            source = Path(tmp) / "subset"
            source.mkdir()
            for f in files[: args.first]:
                (source / f.name).symlink_to(f.resolve())
        musicflow("encode", str(source), "--dataset", args.dataset)
    results = {}
    for model in args.models.split(","):
        musicflow(
            "train",
            "--dataset",
            args.dataset,
            "--model",
            model,
            "--seed",
            str(args.seed),
            "--epochs",
            "100000",
            "--time-budget",
            str(args.minutes),
        )
        results[model] = latest_metrics(args.dataset, model)
    print_table(results)
    print(f"\nsample grids: {write_sample_grids(args.dataset, list(results), args.seed)}")


def latest_version(dataset: str, model: str):
    from musicflow import tracking, workspace

    workspace.configure_environment()
    return tracking.latest_version(tracking.registered_name(dataset, model))


def latest_metrics(dataset: str, model: str) -> dict[str, float]:
    from musicflow import tracking

    return tracking.run_metrics(latest_version(dataset, model).run_id)


def write_sample_grids(dataset: str, models: list[str], seed: int) -> Path:
    """One figure: held-out real windows, then each model's generated windows (the first of
    the windows its evaluation scored, read back from its run), so collapse or noise is visible
    side by side."""
    import numpy as np

    from musicflow import plots, workspace
    from musicflow.tasks.evaluate import load_windows

    rows = {}
    for model in models:
        latest = latest_version(dataset, model)
        scored = load_windows(latest.run_id)
        if not rows:  # every model of a dataset is evaluated on the same held-out files
            picks = np.random.default_rng(seed).choice(len(scored.heldout), size=8, replace=False)
            rows["held-out real"] = scored.heldout[np.sort(picks)]
        rows[f"{model} v{latest.version}"] = scored.generated[:8]
    out = workspace.reports_dir() / dataset / "quality-samples.png"
    plots.sample_grid_figure(
        np.concatenate(list(rows.values())),
        ncols=8,
        max_windows=8 * len(rows),
        titles=[label if c == 0 else "" for label in rows for c in range(8)],
        title=f"{dataset}: held-out windows, then each model's generated windows",
        path=out,
    )
    return out


def print_table(results: dict[str, dict[str, float]]) -> None:
    width = max(len(c) for c in COLUMNS)
    print("\n" + "metric".ljust(width) + "".join(m.rjust(12) for m in results) + "    baseline")
    for column in COLUMNS:
        values = [results[m].get(column, math.nan) for m in results]
        base = next(
            (r[f"{column}_baseline"] for r in results.values() if f"{column}_baseline" in r),
            math.nan,
        )
        print(column.ljust(width) + "".join(f"{v:12.3f}" for v in values) + f"{base:12.3f}")


if __name__ == "__main__":
    main()
