"""What a piece's score costs ``generate``, against the MIDI file it writes anyway.

For the same decoded 16-bar pieces (held-out-like random rolls, dense and sparse), times
``score.to_musicxml`` (written per piece by ``generate``) against ``roll.notes_to_midi`` (the
MIDI file beside it) in one run, and, for the report step, ``score.render_svg`` (verovio), and
the import of each library. Prints milliseconds per piece and the ratios. Usage::

    python bench/bench_score.py [--pieces 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np

from musicflow.core import roll
from musicflow.pages import score


def piece(seed: int, notes: int) -> np.ndarray:
    """A 16-bar piece of ``notes`` random notes of 1 … 24 steps, decoded from its roll."""
    rng = np.random.default_rng(seed)
    song = np.zeros((roll.ROWS, 16 * score.BAR), bool)
    for _ in range(notes):
        start, length = int(rng.integers(0, song.shape[1] - 24)), int(rng.integers(1, 25))
        song[int(rng.integers(20, 80)), start : start + length] = True
    return roll.decode_roll(song)


def per_piece_ms(fn, pieces: list[np.ndarray]) -> float:
    times = []
    for p in pieces:
        t = time.perf_counter()
        fn(p)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def import_s(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pieces", type=int, default=20)
    args = parser.parse_args()
    for density in (60, 300):
        pieces = [piece(i, density) for i in range(args.pieces)]
        midi = per_piece_ms(roll.notes_to_midi, pieces)
        xml = per_piece_ms(lambda p: score.to_musicxml(p, length_steps=16 * score.BAR), pieces)
        svg = per_piece_ms(lambda p: score.render_svg(score.to_musicxml(p)), pieces[:5])
        n = statistics.mean(len(p) for p in pieces)
        print(
            f"{n:5.0f} notes/piece: MIDI {midi:6.1f} ms, MusicXML {xml:6.1f} ms "
            f"({xml / midi:.2f}× the MIDI), SVG (report step) {svg:6.1f} ms"
        )
    print(f"import verovio {import_s('verovio'):.3f} s, music21 {import_s('music21'):.3f} s")


if __name__ == "__main__":
    main()
