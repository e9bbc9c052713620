"""The fixed cost of a musicflow command, before and after, measured in one run.

Times, for this checkout ("after") and for a git ref ("before", default ``main``, exported
with ``git archive`` into a temp folder and run with this environment's packages), each in a
fresh workspace of its own:

- ``--help`` and ``--version`` (when the version has it): read-only, should answer at once;
- ``compare`` of a dataset with an experiment and no versions;
- a failing ``train`` (a dataset that was never encoded);
- a cold ``encode`` of a corpus (empty workspace: every file parsed, every server started),
  then the same ``encode`` again (warm: nothing to parse, nothing to write).

Prints the seconds of each step, after/before ratios, and warm/cold for each version (issue
#11 asks warm ≤ 0.6 × cold). The wall clock is shared with whatever else runs on the machine:
compare ratios, not seconds. Usage::

    python bench/bench_cli_latency.py [--before main] [--corpus ../shared/data/piano-midi-de]
        [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"flows": "flows", "tasks": "tasks", "models": "models", "expectations": "expectations"}


def export(ref: str, into: Path) -> Path:
    """``ref`` of this repository as an importable ``musicflow`` package under ``into/site``
    (its C reader built in place); returns the folder to put on PYTHONPATH."""
    src = into / "src"
    src.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    site = into / "site"
    site.mkdir()
    package = site / "musicflow"
    package.symlink_to(src / "musicflow", target_is_directory=True)
    for name, folder in PACKAGES.items():
        link = src / "musicflow" / name
        if not link.exists():
            link.symlink_to(src / folder, target_is_directory=True)
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    build = (
        "from setuptools import setup, Extension\n"
        "setup(name='smf', ext_modules=[Extension('musicflow._smf', ['musicflow/_smf.c'])],"
        " script_args=['build_ext', '--inplace', '-q'])\n"
    )
    subprocess.run([sys.executable, "-c", build], cwd=src, check=True, capture_output=True)
    assert (src / "musicflow" / f"_smf{suffix}").exists()
    return site


def timed(argv: list[str], env: dict[str, str], cwd: Path, ok: tuple[int, ...]) -> float:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "musicflow.cli", *argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    elapsed = time.monotonic() - started
    if done.returncode not in ok:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}")
    return elapsed


def measure(label: str, site: Path | None, corpus: Path, repeat: int) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix=f"musicflow-bench-{label}-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(MUSICFLOW_HOME=str(home), PREFECT_HOME=str(home / ".prefect"))
    if site is not None:
        env["PYTHONPATH"] = str(site)
    results: dict[str, float] = {}

    def best(argv: list[str], ok: tuple[int, ...] = (0,)) -> float:
        return statistics.median(timed(argv, env, home, ok) for _ in range(repeat))

    results["--help"] = best(["--help"])
    has_version = (
        subprocess.run(
            [sys.executable, "-m", "musicflow.cli", "--version"],
            env=env,
            cwd=home,
            capture_output=True,
        ).returncode
        == 0
    )
    if has_version:
        results["--version"] = best(["--version"])
    setup = (
        "from musicflow import workspace, tracking\n"
        "workspace.configure_environment()\n"
        "tracking.ensure_experiment('bench')\n"
    )
    subprocess.run([sys.executable, "-c", setup], env=env, cwd=home, check=True, timeout=600)
    results["compare"] = best(["compare", "--dataset", "bench"])
    results["train (fails)"] = best(
        ["train", "--dataset", "never-encoded", "--model", "vae"], ok=(1,)
    )
    results["encode cold"] = timed(["encode", str(corpus), "--dataset", "bench"], env, home, (0,))
    results["encode warm"] = timed(["encode", str(corpus), "--dataset", "bench"], env, home, (0,))
    subprocess.run(  # the after version's workspace server; "before" has none
        [sys.executable, "-m", "musicflow.cli", "server", "stop"],
        env=env,
        cwd=home,
        capture_output=True,
        timeout=120,
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="main", help="git ref to compare with (main)")
    parser.add_argument(
        "--corpus", type=Path, default=REPO.parent / "shared" / "data" / "piano-midi-de"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each quick step")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        raise SystemExit(f"corpus not found: {args.corpus}")
    with tempfile.TemporaryDirectory(prefix="musicflow-before-") as tmp:
        site = export(args.before, Path(tmp))
        before = measure("before", site, args.corpus, args.repeat)
        after = measure("after", None, args.corpus, args.repeat)
    print(f"{'step':<16}{'before s':>10}{'after s':>10}{'after/before':>14}")
    for step in after:
        b = before.get(step)
        ratio = f"{after[step] / b:14.2f}" if b else f"{'—':>14}"
        shown = f"{b:10.2f}" if b else f"{'—':>10}"
        print(f"{step:<16}{shown}{after[step]:10.2f}{ratio}")
    for label, r in (("before", before), ("after", after)):
        print(
            f"warm/cold encode ({label}): {r['encode warm'] / r['encode cold']:.2f} "
            f"({r['encode warm']:.1f} s / {r['encode cold']:.1f} s)"
        )


if __name__ == "__main__":
    main()
