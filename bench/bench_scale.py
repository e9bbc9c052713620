"""Scale: the real ``musicflow encode`` on 5,000 … 50,000 synthetic MIDI files.

    .venv/bin/python bench/bench_scale.py [--sizes 5000,10000,50000] [--workdir DIR] [--keep]
                                          [--json OUT.json]

For each size N: N small valid MIDI files (``musicflow.core.synth``: deterministic, seeded; 3 tracks
of 150–300 notes, ~6 KB, ~18 windows each; a smaller corpus is the prefix of a larger one, as
hard links) are encoded by ``musicflow encode`` as a subprocess in a fresh workspace, then
encoded again with nothing changed (the no-op re-run a nightly schedule does). Measured:

- wall time and files per second of the cold run, and each stage's time from the flow's own
  ``    stage: … (S s)`` lines on stderr (ingest, parse, validate, manifest, shards; "other" is
  the rest: interpreter and library imports, Prefect's temporary API server, flow overhead);
- peak memory: RSS of the whole process tree (the command and its Prefect server subprocess),
  sampled every 0.1 s with psutil, and of the command's own process;
- on disk: manifest.parquet, the shards (total and largest), the per-file cache, Data Docs,
  the Prefect home;
- the no-op re-run's time and peak memory.

A second table gives each quantity as a ratio to the first size, measured in the same
invocation (so on the same machine, under the same load). Sizes can be run one at a time
(``--sizes 50000``) when disk or memory is tight; the corpus is kept with ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from musicflow.adapters.workspace import DatasetFolder
from musicflow.core.synth import write_corpus

STAGES = ("ingest", "parse", "validate", "manifest", "shards")
_STAGE_LINE = re.compile(r"^    (\w+): .*\((\d+(?:\.\d+)?) s\)$")
MiB = 2**20


@dataclass
class Run:
    seconds: float
    peak_tree_mib: float
    peak_main_mib: float
    stages: dict[str, float] = field(default_factory=dict)
    stdout: str = ""


@dataclass
class Result:
    n: int
    cold: Run
    warm: Run
    windows: int
    manifest_mib: float
    shards_mib: float
    largest_shard_mib: float
    n_shards: int
    cache_mib: float
    docs_mib: float
    prefect_mib: float


def folder_mib(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / MiB
    return (
        sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / MiB if path.exists() else 0
    )


def measured(cmd: list[str], *, cwd: Path, env: dict[str, str]) -> Run:
    """Run ``cmd``; sample the RSS of its process tree every 0.1 s until it exits."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peaks = {"tree": 0, "main": 0}

    def sample() -> None:
        try:
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while proc.poll() is None:
            try:
                procs = [root, *root.children(recursive=True)]
                rss = []
                for p in procs:
                    try:
                        rss.append(p.memory_info().rss)
                    except psutil.NoSuchProcess:
                        rss.append(0)
                peaks["tree"] = max(peaks["tree"], sum(rss))
                peaks["main"] = max(peaks["main"], rss[0])
            except psutil.NoSuchProcess:
                return
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - started
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    stages = {}
    for line in err.splitlines():
        if (m := _STAGE_LINE.match(line)) and m.group(1) in STAGES:
            stages[m.group(1)] = float(m.group(2))
    stages["other"] = max(0.0, seconds - sum(stages.values()))
    return Run(seconds, peaks["tree"] / MiB, peaks["main"] / MiB, stages, out)


def link_prefix(corpus: list[Path], root: Path, dest: Path, n: int) -> None:
    """``dest`` holds the first ``n`` corpus files, as hard links (no extra disk)."""
    for path in corpus[:n]:
        target = dest / path.relative_to(root)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)


def encode_size(n: int, source: Path, work: Path) -> Result:
    home = work / f"home-{n}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = {**os.environ, "MUSICFLOW_HOME": str(home)}
    env.pop("PREFECT_HOME", None)
    env.pop("PREFECT_API_URL", None)
    cmd = [sys.executable, "-m", "musicflow.cli", "encode", str(source), "--dataset", "scale"]
    cold = measured(cmd, cwd=home, env=env)
    if f"{n} MIDI files: {n} accepted" not in cold.stdout:
        sys.exit(f"expected {n} accepted files, got:\n{cold.stdout}")
    warm = measured(cmd, cwd=home, env=env)
    if "parsed 0 file(s)" not in warm.stdout or "nothing written" not in warm.stdout:
        sys.exit(f"the re-run was not a no-op:\n{warm.stdout}")
    out = DatasetFolder(home / "data" / "rolls" / "scale")  # the workspace of the subprocesses
    info = json.loads(out.info.read_text())
    shard_sizes = [(out.root / s).stat().st_size / MiB for s in info["shards"]]
    return Result(
        n=n,
        cold=cold,
        warm=warm,
        windows=info["n_windows"],
        manifest_mib=folder_mib(out.manifest),
        shards_mib=sum(shard_sizes),
        largest_shard_mib=max(shard_sizes),
        n_shards=len(shard_sizes),
        cache_mib=folder_mib(home / "data" / "cache"),
        docs_mib=folder_mib(out.data_docs),
        prefect_mib=folder_mib(home / ".prefect"),
    )


def _stage(name: str):
    return lambda r: r.cold.stages.get(name, 0.0)


# (header, format, value): one column of the table each.
COLUMNS: list[tuple[str, str, Callable[[Result], float]]] = [
    ("files", "{:.0f}", lambda r: r.n),
    ("windows", "{:.0f}", lambda r: r.windows),
    ("cold s", "{:.1f}", lambda r: r.cold.seconds),
    ("files/s", "{:.0f}", lambda r: r.n / r.cold.seconds),
    *[(f"{s} s", "{:.1f}", _stage(s)) for s in (*STAGES, "other")],
    ("peak MiB", "{:.0f}", lambda r: r.cold.peak_tree_mib),
    ("main MiB", "{:.0f}", lambda r: r.cold.peak_main_mib),
    ("manifest MiB", "{:.2f}", lambda r: r.manifest_mib),
    ("shards MiB", "{:.0f}", lambda r: r.shards_mib),
    ("shards", "{:.0f}", lambda r: r.n_shards),
    ("max shard MiB", "{:.1f}", lambda r: r.largest_shard_mib),
    ("cache MiB", "{:.0f}", lambda r: r.cache_mib),
    ("docs MiB", "{:.2f}", lambda r: r.docs_mib),
    ("prefect MiB", "{:.1f}", lambda r: r.prefect_mib),
    ("no-op s", "{:.1f}", lambda r: r.warm.seconds),
    ("no-op MiB", "{:.0f}", lambda r: r.warm.peak_tree_mib),
]


def _print_rows(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))


def print_tables(results: list[Result]) -> None:
    """The measurements, then each as a ratio to the first size's (same invocation)."""
    header = [name for name, _, _ in COLUMNS]
    _print_rows([header] + [[fmt.format(get(r)) for _, fmt, get in COLUMNS] for r in results])
    if len(results) > 1:
        base = results[0]
        print(f"\nratio to the {base.n}-file run (same invocation):")
        rows = [header]
        for r in results:
            rows.append(
                [f"{get(r) / get(base):.2f}x" if get(base) else "-" for _, _, get in COLUMNS]
            )
        _print_rows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="5000,10000,50000")
    parser.add_argument("--workdir", type=Path, help="default: a temp folder, removed at the end")
    parser.add_argument("--keep", action="store_true", help="keep the corpus and workspaces")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="musicflow-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        corpus_root = work / "corpus"
        started = time.perf_counter()
        corpus = write_corpus(corpus_root, max(sizes), seed=args.seed)
        print(
            f"corpus: {len(corpus)} synthetic files, {folder_mib(corpus_root):.0f} MiB "
            f"(written or reused in {time.perf_counter() - started:.0f} s) in {work}",
            file=sys.stderr,
        )
        results = []
        for n in sizes:
            source = work / f"src-{n}"
            link_prefix(corpus, corpus_root, source, n)
            print(f"encoding {n} files …", file=sys.stderr, flush=True)
            results.append(encode_size(n, source, work))
            r = results[-1]
            for label, run in (("cold", r.cold), ("no-op", r.warm)):
                stages = ", ".join(f"{k} {v:.1f}" for k, v in run.stages.items())
                print(
                    f"  {n} {label}: {run.seconds:.1f} s, peak {run.peak_tree_mib:.0f} MiB "
                    f"(main {run.peak_main_mib:.0f}); stages s: {stages}",
                    file=sys.stderr,
                    flush=True,
                )
            if not args.keep:
                shutil.rmtree(work / f"home-{n}", ignore_errors=True)
        print_tables(results)
        if args.json:
            payload = [
                asdict(r) | {"cold": asdict(r.cold), "warm": asdict(r.warm)} for r in results
            ]
            for row in payload:
                row["cold"].pop("stdout"), row["warm"].pop("stdout")
            args.json.write_text(json.dumps(payload, indent=2))
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
