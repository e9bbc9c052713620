"""The track metrics of real data: a multi-track dataset's held-out files against its training
files (#22 item 4; docs/metrics.md, "Track metrics").

    .venv/bin/python bench/track_baselines.py DATASET_FOLDER [--figure PNG]

DATASET_FOLDER: a dataset encoded with ``--tracks voices`` (or ``instruments``), e.g.
``$MUSICFLOW_HOME/data/rolls/<name>`` after ``musicflow encode SOURCE --tracks voices``. The
split is the one training and evaluation use (``models/data.heldout_split``: 10 % of the files).
Printed per track: the median pitch of the training and held-out notes, the training range
(1st-99th percentile), the held-out notes' share inside it; per pair: the crossing rate
(voices) and the tonal distance of training and held-out windows; then the summaries of
``track_scores`` with 512 training windows standing in for a generator, and three controls:
the held-out windows as they are, with each track taken from another random window (voices
that ignore each other), and with the track order reversed. ``--figure`` draws the
voices-coloured piano roll (``plots.track_roll_figure``) of a training piece beside a held-out
one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from musicflow.adapters.store import read_dataset
from musicflow.core import roll, tracks
from musicflow.core import track_metrics as tm
from musicflow.models.data import heldout_split


def load(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], dict]:
    """Every window ``(n, K, 96, 96)``, its source sha256 and segment, the track names and the
    encoding."""
    info = read_dataset(folder)
    k = len(info.encoding["tracks"])
    table = pq.read_table(info.shard_paths, columns=["source_sha256", "segment", "roll"])
    packed = np.frombuffer(b"".join(table.column("roll").to_pylist()), np.uint8)
    windows = roll.unpack_windows(packed.reshape(-1, roll.PACKED_BYTES)).reshape(-1, k, 96, 96)
    shas = table.column("source_sha256").to_numpy(zero_copy_only=False)
    segments = table.column("segment").to_numpy()
    names = [t["name"] for t in info.encoding["tracks"]]
    return windows, shas, segments, names, info.encoding


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--figure", type=Path)
    args = parser.parse_args()
    windows, shas, segments, names, encoding = load(args.folder)
    pitch_low = int(encoding["pitch_low"])
    voices = tracks.policy_of(encoding) == tracks.VOICES
    drums = [bool(t["drums"]) for t in encoding["tracks"]]
    train_shas, held_shas = heldout_split(read_dataset(args.folder).shard_paths)
    is_held = np.isin(shas, sorted(held_shas))
    train, held = windows[~is_held], windows[is_held]
    print(
        f"{args.folder.name}: {len(train_shas)} training files ({len(train)} windows), "
        f"{len(held_shas)} held-out files ({len(held)} windows), tracks {names}"
    )

    print(
        "\n| track | median pitch train | median pitch held-out | range (train, 1st-99th) "
        "| held-out notes in range |"
    )
    print("| --- | --- | --- | --- | --- |")
    for t, name in enumerate(names):
        tr_p = tm.note_pitches(train[:, t], pitch_low=pitch_low)
        he_p = tm.note_pitches(held[:, t], pitch_low=pitch_low)
        lo, hi = tm.pitch_range(tr_p)
        print(
            f"| {name} | {np.median(tr_p):.1f} | {np.median(he_p):.1f} | "
            f"{lo:.0f}–{hi:.0f} | {tm.in_range_rate(he_p, lo, hi):.3f} |"
        )

    pitched = [t for t in range(len(names)) if not drums[t]]
    print(
        "\n| pair | crossing train | crossing held-out | tonal distance train "
        "| tonal distance held-out |"
    )
    print("| --- | --- | --- | --- | --- |")
    for a, i in enumerate(pitched):
        for j in pitched[a + 1 :]:
            cross = (
                (tm.pair_crossing_rate(train, i, j), tm.pair_crossing_rate(held, i, j))
                if voices
                else (float("nan"), float("nan"))
            )
            td = (
                tm.tonal_distance(train, i, j, pitch_low=pitch_low),
                tm.tonal_distance(held, i, j, pitch_low=pitch_low),
            )
            print(
                f"| {names[i]}–{names[j]} | {cross[0]:.4f} | {cross[1]:.4f} | "
                f"{td[0]:.3f} | {td[1]:.3f} |"
            )
    if voices:
        print(
            f"| any pair (voice_crossing_rate) | {tm.crossing_rate(train):.4f} | "
            f"{tm.crossing_rate(held):.4f} | | |"
        )

    # track_scores with a sample of training windows as the "generator": the summaries
    rng = np.random.default_rng(1)  # not track_scores' seed: its baseline draws with seed 0
    pick = np.sort(rng.choice(len(train), size=min(len(train), 512), replace=False))
    scores = tm.track_scores(
        train[pick], held, train, names, pitch_low=pitch_low, seed=0,
        train_sources=shas[~is_held], voices=voices, drums=drums,
    )  # fmt: skip
    print("\ntrack_scores, 512 training windows as the generated ones (value / baseline):")
    for key in tm.TRACK_SUMMARY_METRICS:
        full = tm.summary_key(key)
        if full in scores:
            print(f"  {full}: {scores[full]:.4f} / {scores[full + '_baseline']:.4f}")
    for t, name in enumerate(names):
        row = ", ".join(
            f"{m} {scores[tm.track_key(t, m)]:.3f}/{scores[tm.track_key(t, m) + '_baseline']:.3f}"
            for m in ("pitch_hist_l1", "density_diff", "blank_rate", "onenn_accuracy")
        )
        print(f"  {name}: {row}")

    # controls: what the metrics say of held-out windows spoiled in known ways
    shuffled = held.copy()  # each track from an independent random window: harmony lost
    for t in range(1, len(names)):
        shuffled[:, t] = held[rng.permutation(len(held)), t]
    swapped = held[:, ::-1]  # the tracks in reverse order: every voice crossed, out of range
    print("\ncontrols on the held-out windows (mean tonal distance, voice crossing, in range):")
    for label, x in (("as they are", held), ("tracks shuffled across windows", shuffled),
                     ("track order reversed", swapped)):  # fmt: skip
        got = tm.track_scores(
            x, held, train, names, pitch_low=pitch_low, voices=voices, drums=drums
        )
        print(
            f"  {label}: {got['tracks.mean_tonal_distance']:.3f}, "
            f"{got.get('tracks.voice_crossing_rate', float('nan')):.3f}, "
            f"{got['tracks.in_range_rate_mean']:.3f}"
        )

    if args.figure:
        from musicflow.pages import plots

        def piece(mask: np.ndarray) -> np.ndarray:
            first = shas[mask][0]
            mine = (shas == first) & mask
            order = np.argsort(segments[mine])
            return windows[mine][order][:4]

        plots.track_roll_figure(
            piece(~is_held), piece(is_held), names, pitch_low=pitch_low,
            labels=("training piece", "held-out piece"), path=args.figure,
        )  # fmt: skip
        print(f"\nfigure: {args.figure}")


if __name__ == "__main__":
    main()
