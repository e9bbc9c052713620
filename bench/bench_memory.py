"""Peak memory of ``musicflow encode``: the corpus once vs the corpus copied N times.

    .venv/bin/python bench/bench_memory.py [CORPUS] [--copies 10]

Each copy gets a unique trailing byte after the last track (ignored by MIDI readers), so every
file has its own sha256 and is really parsed and encoded, not skipped as a duplicate. Peak RSS is
the child process's ``ru_maxrss`` (the encode command, with its Prefect server subprocess
excluded). Memory is bounded by design: windows go to a per-file cache and shards are written
one at a time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent / "shared" / "data" / "piano-midi-de"


def make_copies(corpus: Path, dest: Path, copies: int) -> int:
    files = sorted(p for p in corpus.rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    for i in range(copies):
        for f in files:
            target = dest / f"copy{i:02d}" / f.relative_to(corpus)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.read_bytes() + bytes([i]))
    return len(files) * copies


def encode_peak(source: Path) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of a cold ``musicflow encode`` in a fresh workspace."""
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "MUSICFLOW_HOME": home}
        env.pop("PREFECT_HOME", None)
        code = (
            "import resource, subprocess, sys;"
            "r = subprocess.run(sys.argv[1:]);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
        )
        cmd = [sys.executable, "-m", "musicflow.cli", "encode", str(source), "--dataset", "m"]
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", code, *cmd],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            check=True,
        )
        seconds = time.perf_counter() - started
    # RUSAGE_CHILDREN reports the largest child: the encode command or its Prefect server.
    return seconds, int(out.stdout.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--copies", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        once, many = Path(tmp) / "once", Path(tmp) / "many"
        n1 = make_copies(args.corpus, once, 1)
        nn = make_copies(args.corpus, many, args.copies)
        t1, m1 = encode_peak(once)
        tn, mn = encode_peak(many)
    print(f"{'corpus':>10} {'files':>6} {'seconds':>8} {'peak MiB':>9}")
    print(f"{'1x':>10} {n1:>6} {t1:>8.1f} {m1:>9.0f}")
    print(f"{f'{args.copies}x':>10} {nn:>6} {tn:>8.1f} {mn:>9.0f}")
    print(f"peak memory ratio {args.copies}x / 1x: {mn / m1:.2f}")


if __name__ == "__main__":
    main()
