"""The ``musicflow`` command line (docs/cli.md).

Only argparse and musicflow's own constants (``defaults``, ``roll``, ``models.MODEL_NAMES``,
with numpy) are imported up front, so ``--help`` answers at once; each command imports Prefect,
GX, MLflow or TensorFlow when it runs. Exit codes: 0 success,
1 a data or runtime problem in one clear line (traceback only with ``--debug``), 2 usage.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from musicflow.defaults import DEFAULT_DATASET, DEFAULT_MAX_BYTES, DEFAULT_MODELS, DEFAULT_WORKERS
from musicflow.models import MODEL_NAMES
from musicflow.roll import DEFAULT_PITCH_LOW, ROWS


def dataset_name(source: Path | None, given: str | None) -> str:
    """``--dataset`` if given, else a slug of the source folder's name."""
    if given:
        return given
    if source is None:
        return DEFAULT_DATASET
    slug = re.sub(r"[^a-z0-9]+", "-", Path(source).resolve().name.lower()).strip("-")
    return slug or "dataset"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _preload(*modules: str) -> None:
    """Import heavy modules in a background thread while Prefect starts its API server.

    The ephemeral server boots in a subprocess (on the other core) for several seconds, while
    this process mostly waits; importing great_expectations (~4 s) meanwhile hides its cost.
    """
    import importlib
    import threading

    def work() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # the real import later reports any problem properly
                return

    threading.Thread(target=work, name="musicflow-preload", daemon=True).start()


def _dataset_flow(args: argparse.Namespace, *, encode: bool):
    from musicflow import workspace
    from musicflow.flows.dataset import (
        audit_flow,
        encode_flow,
        make_task_runner,
        prefect_api_for_workers,
    )

    source = Path(args.source)
    name = dataset_name(source, args.dataset)
    out_dir = Path(args.out) if args.out else workspace.rolls_dir(name)
    flow = encode_flow if encode else audit_flow
    _preload("great_expectations")
    kind = getattr(args, "task_runner", "threads")
    address = getattr(args, "dask_address", None)
    runner = make_task_runner(kind, address)
    _say(f"{'encoding' if encode else 'auditing'} {source} as dataset '{name}' → {out_dir}")
    with prefect_api_for_workers(kind, address):
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
    from musicflow.flows.pipeline import default_source, pipeline_flow

    source = Path(args.source) if args.source else default_source()
    name = dataset_name(Path(args.source) if args.source else None, args.dataset)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODEL_NAMES))
    if unknown:
        _say(
            f"musicflow run: error: unknown model(s) {', '.join(unknown)}; "
            f"choose from {', '.join(MODEL_NAMES)}"
        )
        return 2
    _say(f"running the pipeline on {source} as dataset '{name}' with models {', '.join(models)}")
    _preload("great_expectations", "tensorflow", "mlflow")
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
    from musicflow.flows.pipeline import train_flow

    _preload("tensorflow", "mlflow")
    result = train_flow(
        dataset=args.dataset,
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        time_budget_s=args.time_budget * 60 if args.time_budget else None,
        soundfont=args.soundfont,
    )
    _print_model(result)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from musicflow.tasks.generate import generate_midi

    out = Path(args.out) if args.out else Path("generated")
    result = generate_midi(
        args.model_uri, n=args.n, out_dir=out, seed=args.seed, soundfont=args.soundfont
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
    import subprocess

    from musicflow import tracking, workspace

    cmd = tracking.ui_command(args.port)
    if cmd is None:  # a tracking server already serves the UI
        print(f"MLflow UI: {workspace.tracking_uri()} (the tracking server serves it)")
        return 0
    _say(
        f"MLflow UI for {workspace.tracking_uri()} on http://127.0.0.1:{args.port} (Ctrl-C to stop)"
    )
    _say_experiment_links(args.port)
    return subprocess.call(cmd)


def _say_experiment_links(port: int) -> None:
    """Each dataset's runs, opened where a user compares versions (docs/tracking.md)."""
    from musicflow import tracking

    try:
        links = tracking.experiment_links(port)
    except Exception:  # the UI starts all the same; the links are a convenience
        return
    for dataset, url in links:
        _say(f"  {dataset}: {url}")


def cmd_serve(args: argparse.Namespace) -> int:
    from musicflow.flows.retrain import serve_retraining

    source = Path(args.source)
    return serve_retraining(
        source,
        dataset_name(source, args.dataset),
        cron=args.cron,
        models=[m.strip() for m in args.models.split(",") if m.strip()],
        epochs=args.epochs,
    )


def _add_training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, help="training epochs (default: the model's own)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--time-budget",
        type=float,
        metavar="MINUTES",
        help="minutes of wall clock for training each model, checked before every batch: "
        "training stops within about one batch of it, even in the middle of an epoch",
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
    p.add_argument("--dataset", help="dataset name (default: the source folder's name)")
    p.add_argument("--out", help="output folder (default: data/rolls/<dataset>/ in the workspace)")
    p.add_argument(
        "--max-bytes",
        type=int,
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


def _add_workers_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help=f"parallel parse workers (default: {DEFAULT_WORKERS})",
    )


def _add_pitch_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pitch-low",
        type=int,
        default=DEFAULT_PITCH_LOW,
        help=f"lowest pitch of the {ROWS}-row window (default: {DEFAULT_PITCH_LOW}, A0: all 88 "
        "piano keys fit)",
    )


def _add_models_option(p: argparse.ArgumentParser) -> None:
    default = ",".join(DEFAULT_MODELS)
    p.add_argument(
        "--models",
        default=default,
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
    p.add_argument("--dataset", help="dataset name (default: the source folder's name)")
    _add_models_option(p)
    _add_training_options(p)
    _add_pitch_option(p)
    p.add_argument(
        "--max-bytes",
        type=int,
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
    p.add_argument("--dataset", required=True, help="an encoded dataset (data/rolls/NAME/)")
    p.add_argument(
        "--model",
        required=True,
        choices=MODEL_NAMES,
        help="vae, gan (this project's) or vae-thesis, gan-thesis (the seed's, for comparison)",
    )
    p.add_argument("--batch-size", type=int, help="batch size (default: the model's own)")
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
        help="models:/NAME/VERSION, models:/NAME@champion or runs:/RUN_ID/model",
    )
    p.add_argument("-n", type=int, default=4, help="number of pieces (default: 4)")
    p.add_argument("--out", help="output folder (default: ./generated)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    _add_soundfont_option(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser(
        "compare",
        help="every registered version of a dataset's models, and which one is best",
        description="List every registered version of the dataset's models with its "
        "evaluation metrics beside their baselines; mark each model's champion and the best "
        "version of the dataset across models (the champion rule, docs/tracking.md).",
    )
    p.add_argument("--dataset", required=True, help="the dataset's name (as given to run/encode)")
    _add_json_option(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "ui",
        help="the MLflow UI on 127.0.0.1 for this workspace's store",
        description="Serve the MLflow UI of this workspace's tracking store on 127.0.0.1 "
        "(loopback only) until Ctrl-C. Each dataset's experiment opens on its training runs.",
    )
    p.add_argument("--port", type=int, default=5000, help="port to listen on (default: 5000)")
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser(
        "serve",
        help="scheduled retraining of a folder with a Prefect deployment",
        description="Serve a Prefect deployment that runs the whole DAG on SOURCE on a cron "
        "schedule. Needs a Prefect server: uses PREFECT_API_URL, else starts a local one on "
        "127.0.0.1. A scheduled run with no new MIDI does nothing expensive.",
    )
    p.add_argument("source", help="folder of MIDI files to watch")
    p.add_argument(
        "--cron", default="0 3 * * *", help='cron schedule (default: "0 3 * * *", daily 03:00)'
    )
    p.add_argument("--dataset", help="dataset name (default: the source folder's name)")
    _add_models_option(p)
    p.add_argument(
        "--epochs", type=int, help="training epochs per scheduled run (default: the model's own)"
    )
    p.set_defaults(func=cmd_serve)
    return parser


def _version() -> str:
    from musicflow import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help()  # bare "musicflow": the help, and success (docs/cli.md)
        return 0
    args = parser.parse_args(argv)
    from musicflow import workspace
    from musicflow.errors import MusicflowError

    # Prefect logs a failed task with its traceback; the CLI reports the error in one line
    # instead, and shows the libraries' logs only with --debug.
    os.environ["PREFECT_LOGGING_LEVEL"] = "INFO" if args.debug else "CRITICAL"
    os.environ["MLFLOW_LOGGING_LEVEL"] = "INFO" if args.debug else "ERROR"
    os.environ["MUSICFLOW_DEBUG"] = "1" if args.debug else ""
    workspace.configure_environment()
    started = time.monotonic()
    try:
        code = args.func(args)
    except MusicflowError as exc:
        if args.debug:
            raise
        _say(f"musicflow: error: {exc}")
        return 1
    except Exception as exc:  # one clear line for anything unexpected, too
        if args.debug:
            raise
        _say(f"musicflow: error: {type(exc).__name__}: {exc} (run with --debug for the traceback)")
        return 1
    except KeyboardInterrupt:
        _say(
            "musicflow: interrupted; completed work is cached, run the same command again to resume"
        )
        return 130
    _say(f"done in {time.monotonic() - started:.1f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
