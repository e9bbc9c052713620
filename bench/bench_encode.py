"""Encode speed: musicflow's scan_file against pretty_midi and a plain mido loop, same run.

    .venv/bin/python bench/bench_encode.py [CORPUS] [--peer-limit N] [--repeat R] [--threads 1,2]

CORPUS defaults to ../shared/data/piano-midi-de (relative to the repository root). Every tool
gets the file bytes already in memory (no disk I/O is timed) and produces the same thing: the
packed roll-v1 windows of every file (docs/encoding.md).

- musicflow: ``musicflow.core.scan.scan_file`` (C parser + numpy encoder), best of
  ``--repeat`` runs, single-threaded and on a thread pool of each ``--threads`` size.
- pretty_midi: ``PrettyMIDI`` parses the file; its non-drum notes' times go back to ticks with
  ``pm.time_to_tick`` (``get_piano_roll(fs=...)`` samples seconds, not the 12-per-beat grid),
  then the same numpy encoder (``roll.song_matrix`` + ``song_windows`` + ``pack_windows``).
- mido: ``mido.MidiFile`` plus a FIFO note pairing loop, then the same numpy encoder.

So the ratios measure parsing and pairing: the peers are given musicflow's vectorised encoder,
which is generous to them. Peers run once (they are slow); ``--peer-limit N`` runs them on N
evenly spaced files only (rates are per file, so still comparable, though less exact). The
"same windows" lines count files whose windows equal musicflow's (pretty_midi pairs notes its
own way and rounds ticks through seconds, so a few differ).
"""

from __future__ import annotations

import argparse
import io
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from musicflow.core import roll
from musicflow.core.scan import scan_file

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent / "shared" / "data" / "piano-midi-de"

Windows = tuple[np.ndarray, np.ndarray]  # segments int32 (n,), packed uint8 (n, 1152)


def load_corpus(folder: Path) -> list[tuple[str, bytes]]:
    """(relative path, bytes) of every .mid/.midi file under folder, any case, sorted."""
    paths = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in (".mid", ".midi")
    )
    return [(p.relative_to(folder).as_posix(), p.read_bytes()) for p in paths]


def encode_peer_notes(rows: list[tuple[int, int, int, int, int]], tpb: int) -> Windows:
    """The peers' last step: musicflow's dense encoder on (track, ch, pitch, on, off) rows."""
    notes = np.array(rows, dtype=np.int64).reshape(-1, 5)
    song, _ = roll.song_matrix(notes, tpb)
    segments, windows = roll.song_windows(song)
    return segments, roll.pack_windows(windows)


def musicflow_windows(data: bytes) -> Windows:
    result = scan_file(data)
    return result.segments, result.packed


def pretty_midi_windows(data: bytes) -> Windows:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
    rows = [
        (0, 0, n.pitch, pm.time_to_tick(n.start), pm.time_to_tick(n.end))
        for inst in pm.instruments
        if not inst.is_drum
        for n in inst.notes
    ]
    return encode_peer_notes(rows, pm.resolution)


def mido_windows(data: bytes) -> Windows:
    import mido

    mid = mido.MidiFile(file=io.BytesIO(data))
    rows: list[tuple[int, int, int, int, int]] = []
    for ti, track in enumerate(mid.tracks):
        tick = 0
        open_notes: dict[tuple[int, int], deque[int]] = {}
        for msg in track:
            tick += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                if msg.channel != 9:
                    open_notes.setdefault((msg.channel, msg.note), deque()).append(tick)
            elif msg.type in ("note_on", "note_off") and msg.channel != 9:
                ons = open_notes.get((msg.channel, msg.note))
                if ons:
                    rows.append((ti, msg.channel, msg.note, ons.popleft(), tick))
        for (ch, pitch), ons in open_notes.items():
            rows.extend((ti, ch, pitch, on, tick) for on in ons)
    return encode_peer_notes(rows, mid.ticks_per_beat)


def time_tool(
    fn: Callable[[bytes], Windows], datas: list[bytes], threads: int = 1
) -> tuple[float, list[Windows]]:
    """Seconds to run fn over all datas (in a thread pool when threads > 1), and the results."""
    start = time.perf_counter()
    if threads <= 1:
        out = [fn(d) for d in datas]
    else:
        with ThreadPoolExecutor(threads) as pool:
            out = list(pool.map(fn, datas))
    return time.perf_counter() - start, out


def same_windows(a: list[Windows], b: list[Windows]) -> int:
    return sum(
        np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True)
    )


def cli_timings(corpus: Path) -> dict[str, float]:
    """Wall time of ``musicflow encode CORPUS``: cold (fresh workspace, nothing cached, Prefect
    server start-up included) and warm (the same command again: every file a cache hit)."""
    import os
    import subprocess
    import sys
    import tempfile

    times = {}
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "MUSICFLOW_HOME": home}
        env.pop("PREFECT_HOME", None)
        env.pop("MLFLOW_TRACKING_URI", None)
        cmd = [sys.executable, "-m", "musicflow.cli", "encode", str(corpus), "--dataset", "bench"]
        for label in ("cli_encode_cold_s", "cli_encode_warm_s"):
            started = time.perf_counter()
            subprocess.run(cmd, env=env, cwd=home, check=True, capture_output=True)
            times[label] = time.perf_counter() - started
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--peer-limit", type=int, default=0, help="files for the peers (0: all)")
    parser.add_argument("--repeat", type=int, default=3, help="musicflow runs (best is kept)")
    parser.add_argument("--threads", default="1,2", help="thread-pool sizes for musicflow")
    parser.add_argument("--skip-peers", action="store_true")
    args = parser.parse_args(argv)

    corpus = load_corpus(args.corpus)
    if not corpus:
        raise SystemExit(f"no .mid/.midi files under {args.corpus}")
    datas = [d for _, d in corpus]
    size_mb = sum(len(d) for d in datas) / 1e6
    print(f"corpus: {args.corpus} ({len(datas)} files, {size_mb:.1f} MB)")

    musicflow_windows(datas[0])  # import and first-call costs are not what we measure
    rates: dict[str, float] = {}
    reference: list[Windows] = []
    for threads in (int(t) for t in args.threads.split(",")):
        best = float("inf")
        for _ in range(max(1, args.repeat)):
            seconds, out = time_tool(musicflow_windows, datas, threads)
            best = min(best, seconds)
        reference = reference or out
        key = "musicflow" if threads == 1 else f"musicflow x{threads} threads"
        rates[key] = len(datas) / best
        windows = sum(len(w[1]) for w in out)
        print(f"{key:28s} {best:8.3f} s  {rates[key]:9.1f} files/s  ({windows} windows)")

    if not args.skip_peers:
        step = max(1, len(datas) // args.peer_limit) if args.peer_limit else 1
        idx = list(range(0, len(datas), step))[: args.peer_limit or None]
        subset = [datas[i] for i in idx]
        for name, fn in (("pretty_midi", pretty_midi_windows), ("mido loop", mido_windows)):
            seconds, out = time_tool(fn, subset)
            rates[name] = len(subset) / seconds
            same = same_windows(out, [reference[i] for i in idx])
            print(
                f"{name:28s} {seconds:8.3f} s  {rates[name]:9.1f} files/s  "
                f"({len(subset)} files, same windows as musicflow: {same}/{len(subset)})"
            )
        for peer in ("pretty_midi", "mido loop"):
            print(f"ratio musicflow / {peer}: {rates['musicflow'] / rates[peer]:.1f}x")

    for key, value in cli_timings(args.corpus).items():
        print(f"{key}: {value:.3f}")


if __name__ == "__main__":
    main()
