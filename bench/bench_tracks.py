"""Track policies against ``merged``: shard bytes per window and encode time per file (#22).

    .venv/bin/python bench/bench_tracks.py [SOURCE ...]

SOURCE: folders of MIDI files (default: ../shared/data/piano-midi-de, plus the bundled chorales
when ``musicflow run`` exported them to $MUSICFLOW_HOME/data/sources/bach-chorales). For each
source and policy, every file is read and encoded by ``scan.scan_file`` (what the parse stage
runs per file: the C reader, the track split and the roll-v1 windows), best of ``REPEATS``
passes; then the windows the dataset would hold (``voices``: the files with the dataset's
voice count) are written as one shard the way the store writes shards (``store._shard_table``,
row groups of 2,048, Parquet's default compression). Printed: files, windows, shard bytes per
window, milliseconds per file, and both as ratios to ``merged`` measured in the same run.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from musicflow.adapters import workspace
from musicflow.adapters.store import _shard_table
from musicflow.core import tracks
from musicflow.core.scan import scan_file

REPEATS = 3
ROOT = Path(__file__).resolve().parents[1]


def _sources() -> list[Path]:
    if len(sys.argv) > 1:
        return [Path(a) for a in sys.argv[1:]]
    found = [ROOT.parent / "shared" / "data" / "piano-midi-de"]
    chorales = workspace.home() / "data" / "sources" / "bach-chorales"
    return found + ([chorales] if chorales.is_dir() else [])


def measure(files: list[bytes], policy: str) -> tuple[int, int, float, float]:
    """(files stored, windows, shard bytes per window, seconds per file read and encoded)."""
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        scans = [scan_file(data, policy=policy) for data in files]
        best = min(best, time.perf_counter() - start)
    if policy == tracks.VOICES:
        k = tracks.dataset_voices([s.record["n_voices"] for s in scans])
        scans = [s for s in scans if s.record["n_voices"] == k]
    scans = [s for s in scans if len(s.segments)]
    width = scans[0].packed.shape[1]
    parts = [(str(i), f"{i:064x}", s.packed, s.segments) for i, s in enumerate(scans)]
    table = _shard_table(parts, width)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shard.parquet"
        pq.write_table(table, path, row_group_size=2048)
        size = path.stat().st_size
    return len(scans), table.num_rows, size / table.num_rows, best / len(files)


def main() -> None:
    for source in _sources():
        paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in (".mid", ".midi"))
        files = [p.read_bytes() for p in paths]
        print(f"{source.name}: {len(files)} files")
        print(f"  {'policy':12} {'files':>6} {'windows':>8} {'B/window':>9} {'ms/file':>8}"
              f" {'size ×':>7} {'time ×':>7}")  # fmt: skip
        base: tuple[float, float] | None = None
        for policy in tracks.POLICIES:
            n_files, n_windows, per_window, per_file = measure(files, policy)
            base = base or (per_window, per_file)
            print(
                f"  {policy:12} {n_files:6d} {n_windows:8d} {per_window:9.0f} "
                f"{per_file * 1e3:8.2f} {per_window / base[0]:7.2f} {per_file / base[1]:7.2f}"
            )


if __name__ == "__main__":
    main()
