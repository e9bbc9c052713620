"""The JSB Chorales benchmark (a command, not a test): test negative log-likelihood per time step
on the published split of Boulanger-Lewandowski, Bengio & Vincent (2012), in the benchmark's own
measure, beside the published results (docs/models.md, "JSB Chorales benchmark").

    .venv/bin/python bench/jsb_benchmark.py [--minutes 5 | --cpu-seconds 600] [--model rnn]
        [--seed 0] [--data ../shared/data/jsb-chorales/jsb-chorales-quarter.json] [--windows N]
        [--batch-size B]
    .venv/bin/python bench/jsb_benchmark.py --export-midi DIR  # the chorales as MIDI files

1. Each chorale (a list of quarter-note time steps, each the set of MIDI pitches sounding) is
   laid on the project's grid: 12 steps per quarter, the dataset's default 96-pitch window
   (pitch_low 21). A pitch sounding in consecutive time steps is one held note (the benchmark
   does not tell held from repeated notes); a pitch that starts sounding is an onset.
2. The model (``rnn``: the project's frame LSTM, ``models/rnn.py``, with its defaults) trains on
   runs of ``--windows`` consecutive 2-bar windows of the ``train`` chorales (a shorter
   chorale: one run of all of it) for ``--minutes`` of wall clock (batches are checked against
   the clock), after every epoch it is scored on the
   ``valid`` chorales, and the weights of its best ``valid`` epoch are kept (the benchmark's
   "choose by valid"). ``--cpu-seconds`` budgets the process's CPU time instead (validation
   included): the fair measure when other jobs share the machine.
3. Each ``test`` chorale is scored whole, from a fresh state, with the model's exact likelihood
   (the dynamic programme of ``models/sequence.py``) plus the price of its tonic; the sum over
   chorales is divided by the number of test time steps (4,725): nats per binary frame of the
   piano keys, averaged over all test time steps, as published.

How our probability maps onto the benchmark's binary frames (so the number is comparable, and an
upper bound on our model's true benchmark NLL): the model gives a probability to one sequence of
onset/hold states on a sixteenth-note grid over 96 pitches. The benchmark's event is the
sequence of 88-key binary frames, which is the union of many state sequences (a pitch held
across two time steps could also be re-struck; pitches outside the 88 keys could sound). We
score exactly one consistent state sequence (held notes held, nothing outside the keys sounding,
no change inside a quarter), so P(binary frames) ≥ P(that sequence), and the reported NLL is ≥
the model's true NLL of the benchmark frames. Key normalisation is a bijection given the tonic,
and the tonic's −log prior is added, so nothing is left out. A model without an exact likelihood
(``vae``: an ELBO) is refused.

The last line is ``JSB test NLL per frame: X.XX``. Wall-clock minutes on this machine are
printed, with the CPU seconds the process used.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "jsb-chorales" / "jsb-chorales-quarter.json"
STEPS_PER_QUARTER = 12  # the project's grid (musicflow/core/roll.py STEPS_PER_BEAT)


def chorale_roll(time_steps: list[list[int]], pitch_low: int, rows: int) -> np.ndarray:
    """bool (rows, 12 · len): each pitch's maximal run of sounding time steps as one held note
    (row 0 the highest pitch, as roll-v1)."""
    song = np.zeros((rows, STEPS_PER_QUARTER * len(time_steps)), bool)
    for t, pitches in enumerate(time_steps):
        for pitch in pitches:
            row = pitch_low + rows - 1 - int(pitch)
            if not 0 <= row < rows:
                raise ValueError(f"pitch {pitch} outside the window of pitch_low {pitch_low}")
            song[row, STEPS_PER_QUARTER * t : STEPS_PER_QUARTER * (t + 1)] = True
    return song


def training_runs(songs: list[np.ndarray], cols: int, windows: int) -> list[np.ndarray]:
    """float32 arrays (n, rows, L · cols, 1), one per run length L: every run of ``windows``
    consecutive windows of every song (zero-padded to whole windows), or one run of the whole
    song when it has fewer, as the project's ``sequence_dataset`` gives."""
    by_length: dict[int, list[np.ndarray]] = {}
    for song in songs:
        n_win = math.ceil(song.shape[1] / cols)
        padded = np.zeros((song.shape[0], n_win * cols), bool)
        padded[:, : song.shape[1]] = song
        size = min(windows, n_win)
        for k in range(n_win - size + 1):
            by_length.setdefault(size, []).append(padded[:, k * cols : (k + size) * cols])
    return [np.stack(r).astype(np.float32)[..., None] for _, r in sorted(by_length.items())]


def nll_per_time_step(model, songs: list[np.ndarray]) -> float:
    """Σ over songs of each song's exact NLL (whole song, fresh state, tonic included) divided
    by the number of quarter-note time steps."""
    total = sum(float(model.sequence_nll(song[None])[0]) for song in songs)
    steps = sum(song.shape[1] // STEPS_PER_QUARTER for song in songs)
    return total / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training wall clock")
    parser.add_argument(
        "--cpu-seconds", type=float, default=None, help="budget CPU seconds instead of --minutes"
    )
    parser.add_argument("--model", default="rnn", choices=["rnn"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--windows", type=int, default=None, help="windows per training run")
    parser.add_argument("--batch-size", type=int, default=None, help="runs per batch")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--export-midi",
        type=Path,
        metavar="DIR",
        help="write every chorale as DIR/<split>-NNN.mid (for bench/quality_run.py) and stop",
    )
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"jsb_benchmark: {args.data} not found", file=sys.stderr)
        return 1
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from musicflow.core.roll import COLS, DEFAULT_PITCH_LOW, ROWS
    from musicflow.models import build_model

    split = json.loads(args.data.read_text())
    songs = {
        name: [chorale_roll(piece, DEFAULT_PITCH_LOW, ROWS) for piece in split[name]]
        for name in ("train", "valid", "test")
    }
    if args.export_midi:
        from musicflow.core.roll import decode_roll, notes_to_midi

        args.export_midi.mkdir(parents=True, exist_ok=True)
        named = [(name, song) for name in ("train", "valid", "test") for song in songs[name]]
        for i, (name, song) in enumerate(named):
            midi = notes_to_midi(decode_roll(song, DEFAULT_PITCH_LOW))
            (args.export_midi / f"{name}-{i:03d}.mid").write_bytes(midi)
        print(f"{len(named)} chorales written to {args.export_midi}")
        return 0
    overrides = {
        key: value
        for key, value in (("sequence_windows", args.windows), ("batch_size", args.batch_size))
        if value is not None
    }
    model = build_model(args.model, seed=args.seed, **overrides)
    config = model.config
    runs = training_runs(songs["train"], COLS, int(config["sequence_windows"]))
    steps = {k: sum(s.shape[1] // STEPS_PER_QUARTER for s in v) for k, v in songs.items()}
    print(
        f"JSB Chorales: {len(songs['train'])}/{len(songs['valid'])}/{len(songs['test'])} pieces, "
        f"{steps['train']}/{steps['valid']}/{steps['test']} time steps; "
        f"{sum(len(r) for r in runs)} training runs of up to {config['sequence_windows']} "
        f"windows; model {args.model} "
        f"(hidden {config['hidden']}, layers {config['layers']}, batch {config['batch_size']}), "
        + (f"{args.cpu_seconds:g} CPU s" if args.cpu_seconds else f"{args.minutes:g} min"),
        flush=True,
    )
    rng = np.random.default_rng(args.seed)
    batch = int(config["batch_size"])
    started, cpu_started = time.monotonic(), time.process_time()
    # CPU time counts every thread of the process, so other jobs on the machine do not shrink it
    clock = time.process_time if args.cpu_seconds else time.monotonic
    deadline = clock() + (args.cpu_seconds or 60.0 * args.minutes)
    best_valid, best_epoch, snapshot, epoch = math.inf, -1, None, 0
    while clock() < deadline:
        # batches of one run length each, in a random order
        chunks = [
            (group, order[i : i + batch])
            for group in runs
            for order in [rng.permutation(len(group))]
            for i in range(0, len(group), batch)
        ]
        batches = (group[at] for group, at in (chunks[j] for j in rng.permutation(len(chunks))))
        done = model.fit_epoch(_until(deadline, batches, clock))
        valid = nll_per_time_step(model, songs["valid"])
        print(
            f"epoch {epoch + 1}: loss {done['loss']:.3f}, valid NLL {valid:.3f} "
            f"({(time.monotonic() - started) / 60:.1f} min, "
            f"{time.process_time() - cpu_started:.0f} CPU s)",
            flush=True,
        )
        if valid < best_valid:
            best_valid, best_epoch, snapshot = valid, epoch, model.weights_snapshot()
        epoch += 1
    train_minutes = (time.monotonic() - started) / 60
    cpu_seconds = time.process_time() - cpu_started
    if snapshot is not None:
        model.restore_snapshot(snapshot)
    test = nll_per_time_step(model, songs["test"])
    print(
        f"trained {epoch} epochs in {train_minutes:.2f} min of wall clock ({cpu_seconds:.0f} CPU "
        f"seconds, {os.cpu_count()} cores); kept epoch {best_epoch + 1} (valid NLL "
        f"{best_valid:.3f})"
    )
    print(f"JSB test NLL per frame: {test:.2f}")
    return 0


def _until(deadline: float, batches, clock):
    """The batches, stopping once ``clock()`` passes the deadline (the first always runs), as
    ``tasks/train.py`` does."""
    for i, b in enumerate(batches):
        if i and clock() >= deadline:
            return
        yield b


if __name__ == "__main__":
    sys.exit(main())
