"""The ``musicflow`` command line (docs/cli.md).

Only argparse and musicflow's own light modules (``defaults``, ``workspace``, ``roll``,
``models.MODEL_NAMES``, with numpy) are imported up front, so ``--help`` answers at once; each
command imports Prefect, GX, MLflow or TensorFlow when it runs.

Fail fast: arguments are checked by argparse (exit 2: names, numbers, ports, URIs), then the
source folder, the dataset, the tracking server and the free disk space (exit 1, one line)
before any server starts or TensorFlow loads. Exit codes: 0 success, 1 a data or runtime
problem in one clear line (traceback only with ``--debug``), 2 usage, 130/143 interrupted
(Ctrl-C / SIGTERM; the run is marked failed in MLflow and crashed in Prefect).

Commands that run a flow attach to the workspace's Prefect server
(``musicflow/prefect_server.py``), starting it when none runs; while a new server boots, the
command imports what it needs meanwhile, in this thread (no background import threads).
"""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

from musicflow import tflog, workspace
from musicflow.defaults import (
    DEFAULT_CRON,
    DEFAULT_DATASET,
    DEFAULT_MAX_BYTES,
    DEFAULT_MIN_FREE_MB,
    DEFAULT_MODELS,
    DEFAULT_WORKERS,
    MAX_WORKERS,
)
from musicflow.errors import DatasetError, MusicflowError, UsageError
from musicflow.models import MODEL_NAMES
from musicflow.roll import DEFAULT_PITCH_LOW, MAX_PITCH_LOW, ROWS

#: Commands that run a Prefect flow, and write to the workspace.
FLOW_COMMANDS = ("audit", "encode", "run", "train")


def dataset_name(source: Path | None, given: str | None) -> str:
    """``--dataset`` if given (already checked by argparse), else a slug of the source
    folder's name."""
    if given is not None:
        return workspace.check_dataset_name(given)
    if source is None:
        return DEFAULT_DATASET
    return workspace.slug(Path(source).resolve().name)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- argument types: a bad value is a usage error (exit 2) ----------------------------------


def _dataset_arg(text: str) -> str:
    try:
        return workspace.check_dataset_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _int_in(low: int, high: int | None = None, what: str = "an integer"):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value < low or (high is not None and value > high):
            bound = f"{low}…{high}" if high is not None else f"≥ {low}"
            raise argparse.ArgumentTypeError(f"{value} is out of range (allowed: {bound})")
        return value

    parse.__name__ = "integer"
    return parse


def _positive_minutes(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of minutes") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is out of range (allowed: > 0 minutes)")
    return value


def _models_arg(text: str) -> list[str]:
    models = [m.strip() for m in text.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODEL_NAMES))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODEL_NAMES)}"
        )
    return list(dict.fromkeys(models))


#: Characters Prefect refuses in a work pool's name.
_POOL_BANNED = "/%&><"


def _pool_arg(text: str) -> str:
    if not text.strip() or any(c in text for c in _POOL_BANNED):
        raise argparse.ArgumentTypeError(
            f"invalid work pool name {text!r}: not empty, none of {' '.join(_POOL_BANNED)}"
        )
    return text


def _model_uri_arg(text: str) -> str:
    from musicflow.tracking import parse_model_uri

    if parse_model_uri(text) is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a model URI (models:/NAME/VERSION, models:/NAME@champion or "
            "runs:/RUN_ID/model)"
        )
    return text


SEED = _int_in(0, 2**32 - 1, "a seed")
POSITIVE = _int_in(1)
PORT = _int_in(1, 65535, "a port")


# --- checks before any server starts --------------------------------------------------------


def check_source(source: Path) -> Path:
    """The source folder, or DatasetError saying in one line what is wrong with it."""
    source = Path(source)
    if not source.exists():
        raise DatasetError(f"source folder not found: {source}")
    if not source.is_dir():
        raise DatasetError(
            f"{source} is a file, not a folder: give the folder that holds the MIDI files"
        )
    try:
        next(os.scandir(source), None)
    except PermissionError:
        raise DatasetError(f"cannot read the source folder {source}: permission denied") from None
    except OSError as exc:
        raise DatasetError(f"cannot read the source folder {source}: {exc.strerror}") from None
    return source


def check_encoded(dataset: str) -> Path:
    """The dataset's folder when it holds an encoded dataset, else DatasetError."""
    folder = workspace.rolls_dir(dataset)
    if not (folder / "dataset.json").is_file():
        raise DatasetError(
            f"no encoded dataset '{dataset}' in {folder}; run 'musicflow encode SOURCE "
            f"--dataset {dataset}' first"
        )
    return folder


def check_disk() -> None:
    """DatasetError when the workspace's disk has less than MUSICFLOW_MIN_FREE_MB free."""
    try:
        minimum = float(os.environ.get("MUSICFLOW_MIN_FREE_MB") or DEFAULT_MIN_FREE_MB)
    except ValueError:
        minimum = DEFAULT_MIN_FREE_MB
    root = workspace.home()
    free = shutil.disk_usage(root).free
    if free < minimum * 2**20:
        raise MusicflowError(
            f"no space left on device: {_size(free)} free on the disk of {root}, musicflow "
            f"needs at least {minimum:g} MB to run; free some space (or set "
            "MUSICFLOW_MIN_FREE_MB)"
        )


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.0f} KB"


def check_port(port: int) -> None:
    """MusicflowError when something already listens on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            reason = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise MusicflowError(
                f"port {port} on 127.0.0.1 is {reason}; choose another with --port"
            ) from None


def _attach_prefect(*preload: str):
    """Attach to the workspace's Prefect server (starting it if needed) before prefect is
    imported; while a new server boots, import ``preload`` meanwhile; then mark the runs a
    killed command left Running as Crashed. Returns the tags for this command's flow runs."""
    import importlib

    from musicflow import atomic, prefect_server

    atomic.sweep(workspace.reports_dir(), recursive=True)  # what a killed report step left
    server = prefect_server.attach()
    if server is not None and server.started_here:
        _say("starting the workspace's Prefect server on 127.0.0.1 (once; reused later)…")
        for name in preload:  # overlaps with the server's start-up, in this thread
            if name == "tensorflow":
                tflog.import_tensorflow()  # its import-time C++ log held back unless --debug
            else:
                importlib.import_module(name)
    if server is not None:
        server.wait()
    prefect_server.mark_crashed_runs()
    return prefect_server.owner_tags()


def _prepare_tracking() -> None:
    """The tracking store is reachable, created and migrated; runs a killed command left
    RUNNING are closed as FAILED."""
    from musicflow import tracking

    tracking.check_reachable()
    tracking.prepare_store()
    tracking.mark_crashed_runs()


def _dataset_flow(args: argparse.Namespace, *, encode: bool):
    source = check_source(Path(args.source))
    name = dataset_name(source, args.dataset)
    out_dir = Path(args.out) if args.out else workspace.rolls_dir(name)
    tags = _attach_prefect("great_expectations", "musicflow.flows.dataset")
    from prefect import tags as prefect_tags

    from musicflow.flows.dataset import (
        audit_flow,
        encode_flow,
        make_task_runner,
        prefect_api_for_workers,
    )

    flow = encode_flow if encode else audit_flow
    kind = getattr(args, "task_runner", "threads")
    address = getattr(args, "dask_address", None)
    runner = make_task_runner(kind, address)
    _say(f"{'encoding' if encode else 'auditing'} {source} as dataset '{name}' → {out_dir}")
    with prefect_api_for_workers(kind, address), prefect_tags(*tags):
        return flow.with_options(task_runner=runner)(
            source=source,
            dataset=name,
            out_dir=out_dir,
            cache_dir=workspace.cache_dir(),
            pitch_low=args.pitch_low,
            max_bytes=args.max_bytes,
            workers=args.workers,
        )


def _print_audit(result) -> None:
    from musicflow.console import format_summary

    print(format_summary(result.summary))
    print(f"parsed {result.n_parsed} file(s), {result.n_cached} from cache")
    print(f"manifest: {result.out_dir / 'manifest.parquet'}")
    if getattr(result, "audit_page", None):
        print(f"audit page: {result.audit_page}")
    if result.docs_index:
        print(f"Data Docs: {result.docs_index}")


def _print_json(data: dict) -> None:
    """``--json``: one JSON document on stdout (progress and errors stay on stderr)."""
    import json

    print(json.dumps(data, indent=2, sort_keys=False, default=str))


def cmd_audit(args: argparse.Namespace) -> int:
    result = _dataset_flow(args, encode=False)
    if getattr(args, "json", False):
        from musicflow.console import audit_json

        _print_json(audit_json(result))
    else:
        _print_audit(result)
    return 0 if result.summary["status"].get("accepted", 0) > 0 else 1


def cmd_encode(args: argparse.Namespace) -> int:
    result = _dataset_flow(args, encode=True)
    _print_audit(result)
    info = result.dataset_info
    state = "written" if info.written else "up to date, nothing written"
    print(
        f"shards: {len(info.shards)} in {info.folder} "
        f"({info.n_windows} windows from {info.n_files} files; {state})"
    )
    print(f"dataset digest: {info.digest}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    source = check_source(Path(args.source)) if args.source else None
    name = dataset_name(source, args.dataset)
    models = args.models
    if models:
        _prepare_tracking()
    tags = _attach_prefect("great_expectations", "tensorflow", "musicflow.flows.pipeline")
    from prefect import tags as prefect_tags

    from musicflow.flows.pipeline import default_source, pipeline_flow

    source = source or default_source()
    _say(f"running the pipeline on {source} as dataset '{name}' with models {', '.join(models)}")
    with prefect_tags(*tags):
        result = pipeline_flow(
            source=source,
            dataset=name,
            models=models,
            epochs=args.epochs,
            seed=args.seed,
            workers=args.workers,
            max_bytes=args.max_bytes,
            pitch_low=args.pitch_low,
            time_budget_s=args.time_budget * 60 if args.time_budget else None,
            distribute=args.distribute,
            mixed_precision=args.mixed_precision,
            soundfont=args.soundfont,
        )
    from musicflow.console import run_json

    summary = run_json(result, _dataset_standing(name))
    if args.json:
        _print_json(summary)
        return 0
    _print_audit(result.audit)
    for m in result.models:
        _print_model(m)
    _print_next_steps(summary)
    return 0


def _dataset_standing(dataset: str) -> dict:
    """The best version of the dataset and the MLflow UI address of its runs."""
    from musicflow import tracking
    from musicflow.champion import best_of_dataset
    from musicflow.console import best_json

    rows = tracking.dataset_versions(dataset)
    best = best_of_dataset([r for r in rows if r.champion])
    experiment = tracking.experiment_id_of(dataset)
    return {
        "best": best_json(best),
        "mlflow_ui": tracking.experiment_url(experiment) if experiment else None,
    }


def _print_next_steps(summary: dict) -> None:
    best = summary.get("best")
    if best:
        name, version = best["registered_model"], best["version"]
        print(f"best of the dataset: {name} v{version} ({best['champion_uri']})")
    if summary.get("index"):
        print(f"all versions: {summary['index']}")
    print(f"compare versions: musicflow compare --dataset {summary['dataset']}")
    if summary.get("mlflow_ui"):
        print(f"MLflow UI: musicflow ui, then open {summary['mlflow_ui']}")


def _print_model(result) -> None:
    from musicflow.console import format_model

    print(
        format_model(
            result.registered.model_uri,
            result.trained.run_id,
            result.promoted,
            result.evaluation.scores,
            result.report,
        )
    )


def cmd_train(args: argparse.Namespace) -> int:
    check_encoded(args.dataset)
    _prepare_tracking()
    tags = _attach_prefect("tensorflow", "musicflow.flows.pipeline")
    from prefect import tags as prefect_tags

    from musicflow.flows.pipeline import train_flow

    with prefect_tags(*tags):
        result = train_flow(
            dataset=args.dataset,
            model=args.model,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            time_budget_s=args.time_budget * 60 if args.time_budget else None,
            distribute=args.distribute,
            mixed_precision=args.mixed_precision,
            soundfont=args.soundfont,
        )
    _print_model(result)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    import tempfile

    from musicflow import tracking

    tracking.check_reachable()
    out = Path(args.out) if args.out else Path("generated")
    with tempfile.TemporaryDirectory() as tmp:
        # the version's files are fetched and checked before anything heavy loads; rnn and
        # vae sample in numpy (no TensorFlow), the other models load with Keras
        model_dir = tracking.fetch_model(args.model_uri, Path(tmp))
        from threadpoolctl import threadpool_limits

        from musicflow.tasks.generate import RollSampler, generate_midi

        sampler = RollSampler().load_dir(model_dir)
        # one BLAS thread: the sampler's products are a few rows each, too small to share,
        # and on a busy machine two threads took 4x the time (docs/models.md)
        with threadpool_limits(limits=1, user_api="blas"):
            result = generate_midi(
                args.model_uri,
                n=args.n,
                out_dir=out,
                seed=args.seed,
                soundfont=args.soundfont,
                audio_preview=not args.no_audio,
                sampler=sampler,
                show_progress=True,
            )
    for path in sorted(result.midi_files + result.audio_files, key=lambda p: (p.stem, p.suffix)):
        print(path)
    if result.audio_note:
        _say(result.audio_note)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from musicflow import tracking
    from musicflow.champion import best_of_dataset
    from musicflow.console import compare_json, format_best, format_table

    tracking.check_reachable()
    tracking.require_dataset(args.dataset)
    rows = tracking.dataset_versions(args.dataset)
    best = best_of_dataset([r for r in rows if r.champion])
    if getattr(args, "json", False):
        _print_json(compare_json(args.dataset, rows, best))
        return 0
    print(format_table(rows, best))
    if rows:
        print(format_best(best))
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """The MLflow UI until Ctrl-C or SIGTERM; its processes end with this one."""
    import subprocess

    from musicflow import procs, tracking

    cmd = tracking.ui_command(args.port)
    if cmd is None:  # a tracking server already serves the UI
        print(f"MLflow UI: {workspace.tracking_uri()} (the tracking server serves it)")
        return 0
    check_port(args.port)
    tracking.prepare_store()
    log = workspace.home() / "mlruns" / "ui.log"
    _say(
        f"MLflow UI for {workspace.tracking_uri()} on http://127.0.0.1:{args.port} "
        f"(Ctrl-C to stop; log: {log})"
    )
    _say_experiment_links(args.port)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            procs.guarded_command(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **tracking.UI_ENV},
            start_new_session=True,  # Ctrl-C reaches this process, which stops the server
        )
    try:
        code = proc.wait()
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see main)
        procs.stop_group(proc)
        _say("stopped the MLflow UI")
        return 0
    finally:
        procs.stop_group(proc)
    if code != 0:
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
        raise MusicflowError(f"the MLflow UI exited with code {code}; see {log}: {tail}")
    return 0


def _say_experiment_links(port: int) -> None:
    """Each dataset's runs, opened where a user compares versions (docs/tracking.md)."""
    from musicflow import tracking

    try:
        links = tracking.experiment_links(port)
    except Exception:  # the UI starts all the same; the links are a convenience
        return
    for dataset, url in links:
        _say(f"  {dataset}: {url}")


def cmd_server(args: argparse.Namespace) -> int:
    from musicflow import prefect_server

    if args.action == "stop":
        stopped = prefect_server.stop_workspace_server()
        _say("stopped the workspace's Prefect server" if stopped else "no server was running")
        return 0
    state = prefect_server.server_status()
    if state is None:
        print("no Prefect server runs for this workspace (the next flow command starts one)")
        return 0
    user, password = state["auth"].split(":", 1)
    print(f"Prefect server: pid {state['pid']}, since {state['started_at']}")
    print(f"API: {state['url']}   UI: {state['ui']}   (login {user} / {password})")
    print(
        f"stops by itself after {state['idle_minutes']:g} minutes with no command attached; "
        "'musicflow server stop' stops it now"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    source = check_source(Path(args.source))
    from musicflow.flows.retrain import serve_retraining

    return serve_retraining(
        source,
        dataset_name(source, args.dataset),
        cron=args.cron,
        models=args.models,
        epochs=args.epochs,
    )


def cmd_deploy(args: argparse.Namespace) -> int:
    source = check_source(Path(args.source))
    from musicflow import tracking
    from musicflow.flows.retrain import deploy_retraining

    tracking.check_reachable()  # the runs will track there: fail now, not at 03:00
    return deploy_retraining(
        source,
        dataset_name(source, args.dataset),
        pool=args.pool,
        cron=args.cron,
        models=args.models,
        epochs=args.epochs,
    )


def _add_training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--epochs",
        type=POSITIVE,
        metavar="N",
        help="training epochs, ≥ 1 (default: the model's own)",
    )
    p.add_argument("--seed", type=SEED, default=0, help="random seed, ≥ 0 (default: 0)")
    p.add_argument(
        "--time-budget",
        type=_positive_minutes,
        metavar="MINUTES",
        help="minutes of wall clock for training each model, checked before every batch: "
        "training stops within about one batch of it, even in the middle of an epoch",
    )
    p.add_argument(
        "--distribute",
        action="store_true",
        help="train on every visible GPU at once (tf.distribute.MirroredStrategy): each "
        "takes an equal slice of every batch, so the batch size is the total; without a GPU "
        "this runs one replica on the CPU",
    )
    p.add_argument(
        "--mixed-precision",
        action="store_true",
        help="compute in float16 on a GPU (bfloat16 on a CPU) with float32 weights and "
        "losses; the saved model is float32 and loads anywhere",
    )
    _add_soundfont_option(p)


def _soundfont_file(value: str) -> str:
    """``--soundfont``: an existing .sf2/.sf3 file, else a usage error (exit 2) at once."""
    path = Path(value).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"soundfont not found: {value}")
    if path.suffix.lower() not in (".sf2", ".sf3"):
        raise argparse.ArgumentTypeError(f"not a SoundFont (.sf2 or .sf3): {value}")
    return str(path)


def _add_schedule_options(p: argparse.ArgumentParser) -> None:
    """``serve`` and ``deploy``: the same deployment, the same options."""
    p.add_argument("source", help="folder of MIDI files to watch")
    p.add_argument(
        "--cron",
        default=DEFAULT_CRON,
        help=f'cron schedule, UTC (default: "{DEFAULT_CRON}", daily 03:00)',
    )
    _add_dataset_name_option(p)
    _add_models_option(p)
    p.add_argument(
        "--epochs",
        type=POSITIVE,
        metavar="N",
        help="training epochs per scheduled run, ≥ 1 (default: the model's own)",
    )


def _add_soundfont_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--soundfont",
        type=_soundfont_file,
        metavar="FILE",
        help="General MIDI soundfont (.sf2/.sf3) for the audio previews (default: "
        "$MUSICFLOW_SOUNDFONT, else the one that ships with musicflow's dependencies)",
    )


def _add_json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document on stdout instead of text (keys in docs/cli.md); "
        "progress stays on stderr",
    )


def _add_dataset_options(p: argparse.ArgumentParser, *, pitch: bool) -> None:
    _add_dataset_name_option(p)
    p.add_argument("--out", help="output folder (default: data/rolls/<dataset>/ in the workspace)")
    p.add_argument(
        "--max-bytes",
        type=POSITIVE,
        default=DEFAULT_MAX_BYTES,
        help="files larger than this are quarantined too_large unread "
        f"(default: {DEFAULT_MAX_BYTES // 2**20} MiB)",
    )
    _add_workers_option(p)
    if pitch:
        _add_pitch_option(p)
        p.add_argument(
            "--task-runner",
            choices=("threads", "dask"),
            default="threads",
            help="where parsing fans out: local threads (default) or Dask via prefect-dask",
        )
        p.add_argument(
            "--dask-address",
            help="tcp://host:port of an existing Dask scheduler "
            "(default with --task-runner dask: a local cluster)",
        )


def _add_dataset_name_option(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    p.add_argument(
        "--dataset",
        type=_dataset_arg,
        required=required,
        metavar="NAME",
        help="dataset name: "
        + workspace.DATASET_NAME_RULE
        + ("" if required else " (default: the source folder's name)"),
    )


def _add_workers_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=_int_in(1, MAX_WORKERS),
        default=DEFAULT_WORKERS,
        help=f"parallel parse workers, 1…{MAX_WORKERS} (default: {DEFAULT_WORKERS})",
    )


def _add_pitch_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pitch-low",
        type=_int_in(0, MAX_PITCH_LOW, "a MIDI pitch"),
        default=DEFAULT_PITCH_LOW,
        help=f"lowest pitch of the {ROWS}-row window, 0…{MAX_PITCH_LOW} (default: "
        f"{DEFAULT_PITCH_LOW}, A0: all 88 piano keys fit)",
    )


def _add_models_option(p: argparse.ArgumentParser) -> None:
    default = ",".join(DEFAULT_MODELS)
    p.add_argument(
        "--models",
        type=_models_arg,
        default=list(DEFAULT_MODELS),
        help=f"comma-separated models to train (default: {default}; "
        f"choose from {', '.join(MODEL_NAMES)})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musicflow",
        description="Train music generators on your own MIDI collection: audit the files, encode "
        "piano-roll windows into Parquet shards, train VAE/GAN models tracked in MLflow, generate "
        "MIDI and compare versions. State lives in the current directory or $MUSICFLOW_HOME.",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show tracebacks on errors and the libraries' own log messages",
    )
    parser.add_argument(
        "--version", action="version", version=f"musicflow {_version()}", help="show the version"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "audit",
        help="ingest and validate a MIDI folder; write the manifest and Data Docs",
        description="Find MIDI files, fingerprint them, validate each with the Great "
        "Expectations suites in expectations/ and write manifest.parquet and Data Docs. "
        "Exit 0 when at least one file is accepted, else 1.",
    )
    p.add_argument("source", help="folder of .mid/.midi files (searched recursively)")
    _add_dataset_options(p, pitch=False)
    _add_json_option(p)
    p.set_defaults(func=cmd_audit, pitch_low=DEFAULT_PITCH_LOW)

    p = sub.add_parser(
        "encode",
        help="audit, then encode accepted files into roll-v1 Parquet shards",
        description="Audit SOURCE, then write the roll-v1 windows of accepted files as "
        "part-*.parquet shards with manifest.parquet and dataset.json (digest). Cached by "
        "file content: a re-run with nothing changed parses no file.",
    )
    p.add_argument("source", help="folder of .mid/.midi files (searched recursively)")
    _add_dataset_options(p, pitch=True)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser(
        "run",
        help="the whole DAG: audit → encode → train → generate → evaluate → report",
        description="Run the whole pipeline on SOURCE, or without SOURCE on the embedded "
        "default dataset (Bach chorales of music21's corpus, exported to MIDI on first use). "
        "Every stage is cached: a re-run with nothing new trains nothing.",
    )
    p.add_argument(
        "source", nargs="?", help="folder of MIDI files (default: the bundled Bach chorales)"
    )
    _add_dataset_name_option(p)
    _add_models_option(p)
    _add_training_options(p)
    _add_pitch_option(p)
    p.add_argument(
        "--max-bytes",
        type=POSITIVE,
        default=DEFAULT_MAX_BYTES,
        help="files larger than this are quarantined too_large unread "
        f"(default: {DEFAULT_MAX_BYTES // 2**20} MiB)",
    )
    _add_workers_option(p)
    _add_json_option(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "train",
        help="train one model on an encoded dataset (tracked in MLflow)",
        description="Train MODEL on the shards of 'musicflow encode … --dataset NAME', log "
        "params, per-epoch metrics, held-out evaluation and figures to MLflow experiment "
        "musicflow/NAME and register a version of NAME-MODEL. Cached: an identical call "
        "trains nothing.",
    )
    _add_dataset_name_option(p, required=True)
    p.add_argument(
        "--model",
        required=True,
        choices=MODEL_NAMES,
        help="rnn, vae, gan (this project's) or vae-thesis, gan-thesis (the thesis's)",
    )
    p.add_argument(
        "--batch-size",
        type=POSITIVE,
        metavar="B",
        help="batch size, ≥ 1 (default: the model's own)",
    )
    _add_training_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "generate",
        help="sample MIDI pieces, each with an audio preview, from a model",
        description="Sample pieces of 16 bars from a registered model and write them as MIDI "
        "files, each with a loudness-normalised OGG/Vorbis preview beside it (rendered with a "
        "General MIDI soundfont; no system package needed).",
    )
    p.add_argument(
        "--model-uri",
        required=True,
        type=_model_uri_arg,
        help="models:/NAME/VERSION, models:/NAME@champion or runs:/RUN_ID/model",
    )
    p.add_argument(
        "-n", type=_int_in(1, 1000), default=4, help="number of pieces, 1…1000 (default: 4)"
    )
    p.add_argument("--out", help="output folder (default: ./generated)")
    p.add_argument("--seed", type=SEED, default=0, help="random seed, ≥ 0 (default: 0)")
    _add_soundfont_option(p)
    p.add_argument(
        "--no-audio",
        action="store_true",
        help="write the MIDI files only, without audio previews (about 1 CPU-second less "
        "per piece)",
    )
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser(
        "compare",
        help="every registered version of a dataset's models, and which one is best",
        description="List every registered version of the dataset's models with its "
        "evaluation metrics beside their baselines; mark each model's champion and the best "
        "version of the dataset across models (the champion rule, docs/tracking.md).",
    )
    _add_dataset_name_option(p, required=True)
    _add_json_option(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "ui",
        help="the MLflow UI on 127.0.0.1 for this workspace's store",
        description="Serve the MLflow UI of this workspace's tracking store on 127.0.0.1 "
        "(loopback only) until Ctrl-C. Each dataset's experiment opens on its training runs.",
    )
    p.add_argument(
        "--port", type=PORT, default=5000, help="port on 127.0.0.1, 1…65535 (default: 5000)"
    )
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser(
        "server",
        help="the workspace's Prefect server: status, or stop it",
        description="Flow commands (audit, encode, train, run) start one Prefect server per "
        "workspace on 127.0.0.1 and reuse it; it stops by itself after "
        "$MUSICFLOW_SERVER_IDLE_MINUTES (default 10) with no command attached. 'status' "
        "prints its address and the login of its UI; 'stop' stops it now.",
    )
    p.add_argument(
        "action",
        choices=("status", "stop"),
        nargs="?",
        default="status",
        help="status (default): address, login, idle timeout; stop: stop it now",
    )
    p.set_defaults(func=cmd_server)

    p = sub.add_parser(
        "serve",
        help="scheduled retraining of a folder with a Prefect deployment",
        description="Serve a Prefect deployment that runs the whole DAG on SOURCE on a cron "
        "schedule. Needs a Prefect server: uses PREFECT_API_URL, else starts a local one on "
        "127.0.0.1. A scheduled run with no new MIDI does nothing expensive.",
    )
    _add_schedule_options(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "deploy",
        help="register scheduled retraining of a folder to a Prefect server's work pool",
        description="Register the deployment of the whole DAG on SOURCE (the same one 'serve' "
        "runs) to a process work pool of the Prefect server at PREFECT_API_URL, on a cron "
        "schedule; a 'prefect worker start --pool NAME' started from musicflow's .venv runs "
        "it. Runs use this workspace and MLFLOW_TRACKING_URI (same paths on the worker's "
        "machine). A run with no new MIDI does nothing expensive. See the README, Deployment.",
    )
    p.add_argument(
        "--pool",
        required=True,
        type=_pool_arg,
        metavar="NAME",
        help="the process work pool whose workers run it (created when missing)",
    )
    _add_schedule_options(p)
    p.set_defaults(func=cmd_deploy)
    return parser


def _version() -> str:
    from musicflow import __version__

    return __version__


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that runs are closed as on Ctrl-C."""


def _on_sigterm(_signum: int, _frame: object) -> None:
    raise Terminated


def _no_space(exc: BaseException) -> str | None:
    """One honest line when ``exc`` comes from a full disk (ENOSPC/EDQUOT anywhere in its
    chain, or a workspace left with almost no free space), else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            where = f" writing {current.filename}" if current.filename else ""
            return f"no space left on device{where}; free some space and run again"
        current = current.__cause__ or current.__context__
    try:
        free = shutil.disk_usage(workspace.home()).free
    except OSError:
        return None
    if free < 2**20:
        return (
            f"no space left on device ({_size(free)} free on the disk of {workspace.home()}; "
            f"it failed with: {type(exc).__name__}); free some space and run again"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help()  # bare "musicflow": the help, and success (docs/cli.md)
        return 0
    args = parser.parse_args(argv)

    # Prefect logs a failed task with its traceback; the CLI reports the error in one line
    # instead, and shows the libraries' logs only with --debug.
    os.environ["PREFECT_LOGGING_LEVEL"] = "INFO" if args.debug else "CRITICAL"
    os.environ["MLFLOW_LOGGING_LEVEL"] = "INFO" if args.debug else "ERROR"
    os.environ["MUSICFLOW_DEBUG"] = "1" if args.debug else ""
    tflog.configure(args.debug)  # before anything imports TensorFlow, in every command
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = time.monotonic()
    try:
        try:
            workspace.configure_environment()
        except OSError as exc:
            raise MusicflowError(
                f"cannot use the workspace {workspace.home()}: {exc.strerror or exc} "
                f"({exc.filename}); run in a folder you can write, or set MUSICFLOW_HOME"
            ) from exc
        if args.command in (*FLOW_COMMANDS, "generate"):
            check_disk()
        code = args.func(args)
    except UsageError as exc:
        if args.debug:
            raise
        _say(f"musicflow {args.command}: error: {exc}")
        return 2
    except KeyboardInterrupt as exc:
        code = 143 if isinstance(exc, Terminated) else 130
        if args.command in FLOW_COMMANDS:
            _say(
                "musicflow: interrupted; finished steps are cached: run the same command "
                "again to resume"
            )
        else:
            _say("musicflow: interrupted")
        return code
    except MusicflowError as exc:
        if args.debug:
            raise
        _say(f"musicflow: error: {_no_space(exc) or exc}")
        return 1
    except Exception as exc:  # one clear line for anything unexpected, too
        if args.debug:
            raise
        honest = _no_space(exc)
        if honest:
            _say(f"musicflow: error: {honest}")
        else:
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            name = type(exc).__name__
            _say(f"musicflow: error: {name}: {first} (run with --debug for the traceback)")
        return 1
    if code == 0 and args.command in FLOW_COMMANDS:
        _say(f"done in {time.monotonic() - started:.1f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
