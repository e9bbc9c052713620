"""Quality run (a command, not a test): models trained at equal wall-clock budgets, judged on
music they never saw.

    .venv/bin/python bench/quality_run.py [CORPUS] [--dataset NAME] [--first N]
        [--minutes 20] [--models rnn,vae,gan,vae-thesis,gan-thesis] [--seed 0]
        [--holdout-every 8] [--pieces 32] [--tracks merged|voices]

1. Split CORPUS by file, before musicflow sees it: every ``--holdout-every``-th file (sorted by
   path) is held out; musicflow never encodes, trains on or evaluates with those files.
2. ``musicflow encode`` the rest as ``--dataset``; for each model ``musicflow train
   --time-budget MINUTES --seed SEED`` (it registers a version), then ``musicflow generate
   -n PIECES --seed 1`` from that version.
3. Read the generated MIDI files back with the project's encoder (what a user would get from
   ``musicflow encode`` of the pieces) and score their windows against the held-out files'
   windows with the project's metrics (docs/metrics.md), the training files' windows serving
   for ``copy_rate`` and the baselines.
4. With ``--tracks voices`` (docs/encoding.md, "Tracks") the training files are encoded with one
   track per voice and the models play them jointly; the pieces are still scored merged against
   the same held-out files (so the table compares with a merged run's), and a second table
   reads each voice of the pieces and of the held-out files: voice counts, median pitch, the
   share of notes inside the voice's range in the training files, and voice crossing
   (``musicflow/core/track_metrics.py``).
5. Print the table and write ``reports/<dataset>/quality-samples.png``: held-out windows,
   then the first windows of each model's pieces.

Runs in the current workspace (or $MUSICFLOW_HOME), so every run also lands in its MLflow
store (``musicflow compare --dataset NAME``), with the project's own evaluation on its own
held-out split of the training files (``onenn_accuracy`` there, ``heldout_nll``). ``--first N``
takes the first N files (sorted) of CORPUS, e.g. the first 11 of piano-midi-de/Chopin.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent / "shared" / "data" / "piano-midi-de"
#: (column, where from): "check" = generated pieces vs the files held out here; "run" = the
#: project's own evaluation logged to the training run.
COLUMNS = (
    ("epochs_completed", "run"),
    ("train_windows_seen", "run"),
    ("onenn_accuracy", "check"),
    ("copy_rate", "check"),
    ("pitch_hist_l1", "check"),
    ("blank_rate", "check"),
    ("unique_rate", "check"),
    ("polyphony", "check"),
    ("qualified_note_rate", "check"),
    ("density", "check"),
    ("heldout_nll", "run"),
    ("onenn_accuracy", "run"),
)


def musicflow(*args: str) -> str:
    """Run the CLI; return its stdout (progress goes to stderr, shown as it comes)."""
    done = subprocess.run(
        [sys.executable, "-m", "musicflow.cli", *args],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return done.stdout


def midi_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi"))


def split_corpus(corpus: Path, first: int, every: int, dest: Path) -> tuple[Path, Path]:
    """Copy the corpus's files into dest/train and dest/heldout, every ``every``-th file (sorted
    by path) held out; copies, since musicflow follows no symbolic link (docs/dataset.md)."""
    files = midi_files(corpus)
    if first:
        files = files[:first]
    train, held = dest / "train", dest / "heldout"
    train.mkdir(parents=True)
    held.mkdir()
    for i, f in enumerate(files):
        target = held if i % every == 0 else train
        shutil.copyfile(f, target / f"{i:05d}-{f.name}")
    return train, held


def folder_windows(folder: Path, pitch_low: int) -> np.ndarray:
    """Every window of every MIDI file in a folder, through the project's encoder."""
    from musicflow.core import roll
    from musicflow.core.scan import scan_file

    packed = [scan_file(p.read_bytes(), pitch_low=pitch_low).packed for p in midi_files(folder)]
    packed = [p for p in packed if len(p)]
    if not packed:
        return np.zeros((0, roll.ROWS, roll.COLS), bool)
    return roll.unpack_windows(np.concatenate(packed))


def folder_voices(folder: Path, pitch_low: int, k: int) -> tuple[np.ndarray, list[int]]:
    """The windows of a folder's files read with the ``voices`` policy, bool (n, k, 96, 96),
    from the files with exactly ``k`` voices; and every file's voice count."""
    from musicflow.core import roll, tracks
    from musicflow.core.scan import scan_file

    counts, packed = [], []
    for path in midi_files(folder):
        scan = scan_file(path.read_bytes(), pitch_low=pitch_low, policy=tracks.VOICES)
        counts.append(int(scan.record.get("n_voices") or 0))
        if counts[-1] == k and len(scan.packed):
            packed.append(scan.packed.reshape(-1, roll.PACKED_BYTES))
    if not packed:
        return np.zeros((0, k, roll.ROWS, roll.COLS), bool), counts
    return roll.unpack_windows(np.concatenate(packed)).reshape(-1, k, roll.ROWS, roll.COLS), counts


def voice_table(
    generated: dict[str, tuple[np.ndarray, list[int]]],
    heldout: np.ndarray,
    train: np.ndarray,
    names: list[str],
    pitch_low: int,
) -> None:
    """Per voice: median pitch and the share of notes inside the training files' range, for
    each model's pieces and the held-out files; then voice crossing and voice counts."""
    from musicflow.core import track_metrics as tm

    ranges = [tm.pitch_range(tm.note_pitches(train[:, t], pitch_low=pitch_low)) for t in
              range(len(names))]  # fmt: skip
    sets = {**{m: w for m, (w, _) in generated.items()}, "held-out": heldout}
    print("\nvoice (training range)".ljust(28) + "".join(m.rjust(22) for m in sets))
    for t, name in enumerate(names):
        lo, hi = ranges[t]
        cells = []
        for w in sets.values():
            p = tm.note_pitches(w[:, t], pitch_low=pitch_low)
            med = float(np.median(p)) if len(p) else math.nan
            cells.append(f"{med:5.1f} / {tm.in_range_rate(p, lo, hi):5.3f} in range")
        print(f"{name} ({lo:.0f}-{hi:.0f})".ljust(28) + "".join(c.rjust(22) for c in cells))
    crossing = [f"{tm.crossing_rate(w):.4f}" for w in sets.values()]
    print("voice crossing rate".ljust(28) + "".join(c.rjust(22) for c in crossing))
    for m, (_, counts) in generated.items():
        share = sum(c == len(names) for c in counts) / max(len(counts), 1)
        print(f"{m}: {share:.3f} of {len(counts)} pieces have {len(names)} voices")


def score(generated: np.ndarray, heldout: np.ndarray, train: np.ndarray, seed: int) -> dict:
    """The check's metrics of one model's pieces; pieces that read back as no window at all
    (nothing inside the pitch window, or silence) are all blank, and nothing else is scored."""
    from musicflow.core import metrics

    if not len(generated):
        return {"blank_rate": 1.0}
    out = metrics.evaluate(generated, heldout, train, seed=seed)
    gen = metrics.window_features(generated)
    real = metrics.window_features(heldout)
    for name in ("polyphony", "qualified_note_rate", "density"):
        g, r = float(np.nanmean(gen[name])), float(np.nanmean(real[name]))
        out[name] = g
        out[f"{name}_heldout"] = r
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--dataset", default="quality")
    parser.add_argument("--first", type=int, default=0, help="use only the first N files")
    parser.add_argument("--minutes", type=float, default=20.0, help="wall-clock budget per model")
    parser.add_argument("--models", default="rnn,vae,gan,vae-thesis,gan-thesis")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--holdout-every", type=int, default=8, help="hold out every k-th file")
    parser.add_argument("--pieces", type=int, default=32, help="16-bar pieces generated per model")
    parser.add_argument("--tracks", default="merged", choices=("merged", "voices"))
    args = parser.parse_args()

    from musicflow.adapters import tracking, workspace
    from musicflow.models.data import load_windows
    from musicflow.pages import plots

    workspace.configure_environment()
    reports = workspace.DatasetFolder.named(args.dataset).reports
    with tempfile.TemporaryDirectory() as tmp:
        train_dir, held_dir = split_corpus(args.corpus, args.first, args.holdout_every, Path(tmp))
        musicflow("encode", str(train_dir), "--dataset", args.dataset, "--tracks", args.tracks)
        info_dir = workspace.rolls_dir(args.dataset)
        from musicflow.adapters.store import read_dataset

        dataset = read_dataset(info_dir)
        heldout = folder_windows(held_dir, dataset.pitch_low)
        names = [str(t["name"]) for t in dataset.encoding.get("tracks", [])]
        k = max(len(names), 1)
        if k > 1:
            heldout_voices, _ = folder_voices(held_dir, dataset.pitch_low, k)
    train_tracks = load_windows(dataset.shard_paths, None, tracks=k)
    train = train_tracks.any(axis=1) if k > 1 else train_tracks
    print(
        f"{len(midi_files(args.corpus)) if not args.first else args.first} files: "
        f"{len(heldout)} held-out windows, {len(train)} training windows",
        file=sys.stderr,
    )
    results: dict[str, dict] = {}
    samples: dict[str, np.ndarray] = {}
    voices: dict[str, tuple[np.ndarray, list[int]]] = {}
    for model in args.models.split(","):
        musicflow(
            "train", "--dataset", args.dataset, "--model", model, "--seed", str(args.seed),
            "--epochs", "100000", "--time-budget", str(args.minutes),
        )  # fmt: skip
        version = tracking.latest_version(tracking.registered_name(args.dataset, model))
        out = reports / "quality" / f"{model}-v{version.version}"
        uri = tracking.version_uri(version.name, version.version)
        musicflow("generate", "--model-uri", uri, "-n", str(args.pieces), "--seed", "1",
                  "--out", str(out))  # fmt: skip
        generated = folder_windows(out, dataset.pitch_low)
        results[model] = {
            "check": score(generated, heldout, train, args.seed),
            "run": tracking.run_metrics(version.run_id),
        }
        samples[f"{model} v{version.version}"] = generated
        if k > 1:
            voices[model] = folder_voices(out, dataset.pitch_low, k)
    print_table(results)
    if k > 1:
        voice_table(voices, heldout_voices, train_tracks, names, dataset.pitch_low)
    picks = np.random.default_rng(args.seed).choice(len(heldout), size=8, replace=False)
    rows = {"held-out real": heldout[np.sort(picks)]}
    for label, w in samples.items():  # each piece's first window, blank where fewer than 8
        first = w[::8][:8]
        rows[label] = np.concatenate([first, np.zeros((8 - len(first), *w.shape[1:]), bool)])
    figure = reports / "quality-samples.png"
    os.makedirs(figure.parent, exist_ok=True)
    plots.sample_grid_figure(
        np.concatenate(list(rows.values())),
        ncols=8,
        max_windows=8 * len(rows),
        titles=[label if c == 0 else "" for label in rows for c in range(len(rows[label]))],
        title=f"{args.dataset}: held-out windows, then the first window of each model's pieces",
        path=figure,
    )
    print(f"\nsample grids: {figure}")


def print_table(results: dict[str, dict]) -> None:
    """Models side by side; the held-out files' own value (or the training sample's, for the
    metrics that have a baseline) in the last column."""
    width = max(len(f"{c} ({s})") for c, s in COLUMNS)
    print("\n" + "metric".ljust(width) + "".join(m.rjust(12) for m in results) + "   reference")
    for column, source in COLUMNS:
        values = [results[m][source].get(column, math.nan) for m in results]
        ref = math.nan
        for r in results.values():
            for key in (f"{column}_heldout", f"{column}_baseline"):
                if key in r[source]:
                    ref = r[source][key]
                    break
        label = f"{column} ({source})"
        print(label.ljust(width) + "".join(f"{v:12.3f}" for v in values) + f"{ref:12.3f}")


if __name__ == "__main__":
    main()
