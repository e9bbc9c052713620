"""The fixed cost of a musicflow command, before and after, measured in one run.

Times, for this checkout ("after") and for a git ref ("before", default ``main``, exported
with ``git archive`` into a temp folder and run with this environment's packages), each in a
fresh workspace of its own:

- ``--help`` and ``--version`` (when the version has it): read-only, should answer at once;
- ``compare`` of a dataset with an experiment and no versions;
- a failing ``train`` (a dataset that was never encoded);
- a cold ``encode`` of a corpus (empty workspace: every file parsed, every server started),
  then the same ``encode`` again (warm: nothing to parse, nothing to write);
- ``generate -n 4`` from a registered ``rnn`` of the default size (built, not trained: the
  sampling costs the same; each version registers its own, so "after" has the numpy sampler's
  files and "before" only the Keras ones), with and without audio previews, and the CPU
  seconds (user + system) it used, which a busy machine does not inflate.

Prints the seconds of each step, after/before ratios, and warm/cold for each version (issue
#11 asks warm ≤ 0.6 × cold). The wall clock is shared with whatever else runs on the machine:
compare ratios, not seconds. ``--only generate`` skips the other steps. Usage::

    python bench/bench_cli_latency.py [--before main] [--corpus ../shared/data/piano-midi-de]
        [--repeat 3] [--only generate]
"""

from __future__ import annotations

import argparse
import os
import resource
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
    smf = next(src.glob("musicflow/**/_smf.c")).relative_to(src)  # moved into core/ (issue 18)
    module = ".".join(smf.with_suffix("").parts)
    build = (
        "from setuptools import setup, Extension\n"
        f"setup(name='smf', ext_modules=[Extension({module!r}, [{str(smf)!r}])],"
        " script_args=['build_ext', '--inplace', '-q'])\n"
    )
    subprocess.run([sys.executable, "-c", build], cwd=src, check=True, capture_output=True)
    assert (src / smf.parent / f"_smf{suffix}").exists()
    return site


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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


#: Registers a built (untrained) rnn of the default size as ``bench-rnn`` version 1, with the
#: APIs both versions have: the checkpoint as ``RollModel.save`` writes it, plus sampling.json.
REGISTER = """
import json, sys, tempfile
from pathlib import Path
try:
    from musicflow.core import roll
    from musicflow.adapters import tracking, workspace
except ImportError:  # a checkout from before the layers (issue 18)
    from musicflow import roll, tracking, workspace
from musicflow.models import build_model
workspace.configure_environment()
with tempfile.TemporaryDirectory() as tmp:
    build_model("rnn", seed=0).save(Path(tmp))
    sampling = {"threshold": 0.5, "encoding": roll.encoding_params(21)}
    (Path(tmp) / "sampling.json").write_text(json.dumps(sampling))
    with tracking.start_run("bench", run_name="rnn"):
        tracking.log_model(Path(tmp), "bench-rnn")
"""


def measure_generate(env: dict[str, str], home: Path, repeat: int) -> dict[str, float]:
    """``generate -n 4`` (median wall seconds and its CPU seconds), with and without audio."""
    subprocess.run([sys.executable, "-c", REGISTER], env=env, cwd=home, check=True, timeout=900)
    results: dict[str, float] = {}
    for label, extra in (("generate -n 4", []), ("generate no audio", ["--no-audio"])):
        has_flag = (
            not extra
            or "--no-audio"
            in subprocess.run(
                [sys.executable, "-m", "musicflow.cli", "generate", "--help"],
                env=env,
                cwd=home,
                capture_output=True,
                text=True,
            ).stdout
        )
        if not has_flag:
            continue
        walls, cpus = [], []
        for i in range(repeat):
            out = home / f"gen-{'midi' if extra else 'audio'}-{i}"
            argv = ["generate", "--model-uri", "models:/bench-rnn/1", "-n", "4", "--out", str(out)]
            cpu = _children_cpu()
            walls.append(timed([*argv, *extra], env, home, (0,)))
            cpus.append(_children_cpu() - cpu)
        results[label] = statistics.median(walls)
        results[f"{label} (cpu)"] = statistics.median(cpus)
    return results


def measure(
    label: str, site: Path | None, corpus: Path, repeat: int, only: str | None = None
) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix=f"musicflow-bench-{label}-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(MUSICFLOW_HOME=str(home), PREFECT_HOME=str(home / ".prefect"))
    if site is not None:
        env["PYTHONPATH"] = str(site)
    if only == "generate":
        return measure_generate(env, home, repeat)
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
        "try:\n"
        "    from musicflow.adapters import workspace, tracking\n"
        "except ImportError:\n"  # a checkout from before the layers (issue 18)
        "    from musicflow import workspace, tracking\n"
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
    results.update(measure_generate(env, home, repeat))
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
    parser.add_argument("--only", choices=["generate"], help="measure only these steps")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        raise SystemExit(f"corpus not found: {args.corpus}")
    with tempfile.TemporaryDirectory(prefix="musicflow-before-") as tmp:
        site = export(args.before, Path(tmp))
        before = measure("before", site, args.corpus, args.repeat, args.only)
        after = measure("after", None, args.corpus, args.repeat, args.only)
    print(f"{'step':<24}{'before s':>10}{'after s':>10}{'after/before':>14}")
    for step in after:
        b = before.get(step)
        ratio = f"{after[step] / b:14.2f}" if b else f"{'—':>14}"
        shown = f"{b:10.2f}" if b else f"{'—':>10}"
        print(f"{step:<24}{shown}{after[step]:10.2f}{ratio}")
    if args.only:
        return
    for label, r in (("before", before), ("after", after)):
        print(
            f"warm/cold encode ({label}): {r['encode warm'] / r['encode cold']:.2f} "
            f"({r['encode warm']:.1f} s / {r['encode cold']:.1f} s)"
        )


if __name__ == "__main__":
    main()
