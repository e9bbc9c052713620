"""The ``musicflow`` command line (docs/cli.md).

Only argparse and musicflow's own light modules (``defaults``, ``workspace``, ``roll``,
``core.catalog.MODEL_NAMES``, with numpy) are imported up front, so ``--help`` answers at once; each
command imports Prefect, GX, MLflow or TensorFlow when it runs.

Fail fast: arguments are checked by argparse (exit 2: names, numbers, ports, URIs), then the
source folder, the dataset, the tracking server and the free disk space (exit 1, one line)
before any server starts or TensorFlow loads. Exit codes: 0 success, 1 a data or runtime
problem in one clear line (traceback only with ``--debug``), 2 usage, 130/143 interrupted
(Ctrl-C / SIGTERM; the run is marked failed in MLflow and crashed in Prefect).

Commands that run a flow attach to the workspace's Prefect server
(``musicflow/adapters/prefect_server.py``), starting it when none runs; while a new server boots,
the
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
from dataclasses import asdict
from pathlib import Path

from musicflow.adapters import tflog, workspace
from musicflow.adapters.tracking import UI_PORT
from musicflow.adapters.workspace import DatasetFolder, check_source
from musicflow.core.catalog import MODEL_NAMES, PROMPT_CONTEXT_BARS
from musicflow.core.defaults import (
    DEFAULT_CRON,
    DEFAULT_DATASET,
    DEFAULT_MAX_BYTES,
    DEFAULT_MIN_FREE_MB,
    DEFAULT_MODELS,
    DEFAULT_SETTLE_S,
    DEFAULT_WORKERS,
    MAX_WORKERS,
)
from musicflow.core.errors import DatasetError, MusicflowError, UsageError
from musicflow.core.roll import DEFAULT_PITCH_LOW, MAX_PITCH_LOW, ROWS
from musicflow.core.settings import TrainSettings, budget_s
from musicflow.core.tracks import MERGED, POLICIES, policy_of, takes_tracks, track_count
from musicflow.core.tracks import refusal as tracks_refusal

#: Commands that run a Prefect flow, and write to the workspace.
FLOW_COMMANDS = ("audit", "encode", "run", "train", "watch")


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


def _positive_seconds(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is out of range (allowed: > 0 seconds)")
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
    from musicflow.adapters.tracking import parse_model_uri

    if parse_model_uri(text) is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a model URI (models:/NAME/VERSION, models:/NAME@champion or "
            "runs:/RUN_ID/model)"
        )
    return text


def _float_in(low: float, high: float, what: str, *, open_low: bool = False):
    def parse(text: str) -> float:
        import math

        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or value > high or value < low or (open_low and value == low):
            bound = f"{'>' if open_low else '≥'} {low:g} and ≤ {high:g}"
            raise argparse.ArgumentTypeError(f"{text} is out of range (allowed: {bound})")
        return value

    parse.__name__ = "number"
    return parse


def _key_arg(text: str) -> str:
    from musicflow.core.compose import parse_key

    try:
        return parse_key(text)[0]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


SEED = _int_in(0, 2**32 - 1, "a seed")
POSITIVE = _int_in(1)
PORT = _int_in(1, 65535, "a port")


# --- checks before any server starts --------------------------------------------------------


def check_encoded(dataset: str) -> Path:
    """The dataset's folder when it holds an encoded dataset, else DatasetError."""
    folder = DatasetFolder.named(dataset)
    if not folder.info.is_file():
        raise DatasetError(
            f"no encoded dataset '{dataset}' in {folder.root}; run 'musicflow encode SOURCE "
            f"--dataset {dataset}' first"
        )
    return folder.root


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

    from musicflow.adapters import atomic, prefect_server

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
        server.wait().watch(_say)
    else:
        prefect_server.check_api(os.environ["PREFECT_API_URL"])
    prefect_server.mark_crashed_runs()
    return prefect_server.owner_tags()


def _prepare_tracking() -> None:
    """The tracking store is reachable, created and migrated; runs a killed command left
    RUNNING are closed as FAILED."""
    from musicflow.adapters import tracking

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
            tracks=getattr(args, "tracks", MERGED),
        )


def _print_audit(result) -> None:
    from musicflow.terminal.console import format_summary

    print(format_summary(result.summary))
    print(f"parsed {result.n_parsed} file(s), {result.n_cached} from cache")
    print(f"manifest: {result.manifest}")
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
        from musicflow.terminal.console import audit_json

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
    refused = [m for m in models or () if not takes_tracks(m)]
    if refused and args.tracks != MERGED:
        raise UsageError(tracks_refusal(refused[0]))  # before encoding
    if models:
        _prepare_tracking()
    tags = _attach_prefect("great_expectations", "tensorflow", "musicflow.flows.pipeline")
    from prefect import tags as prefect_tags

    from musicflow.flows.pipeline import default_source, pipeline_flow

    source = source or default_source()
    _say(f"running the pipeline on {source} as dataset '{name}' with models {', '.join(models)}")
    with prefect_tags(*tags):
        result = pipeline_flow(source=source, dataset=name, models=models, **_run_settings(args))
    from musicflow.terminal.console import run_json

    summary = run_json(result, _dataset_standing(name))
    if args.json:
        _print_json(summary)
        return 0
    _print_audit(result.audit)
    for m in result.models:
        _print_model(m)
    _print_next_steps(summary)
    return 0


def _train_settings(args: argparse.Namespace) -> TrainSettings:
    """The training options (``_add_training_options``; ``--batch-size`` where the command has
    it) as the one value every flow and the train task take."""
    return TrainSettings(
        epochs=args.epochs,
        batch_size=getattr(args, "batch_size", None),
        seed=args.seed,
        time_budget_s=budget_s(args.time_budget),
        distribute=args.distribute,
        mixed_precision=args.mixed_precision,
    )


def _run_settings(args: argparse.Namespace) -> dict[str, object]:
    """``run``'s options (``_add_run_options``) but the models, as ``pipeline_flow``'s
    arguments."""
    return {
        "training": _train_settings(args),
        "soundfont": args.soundfont,
        "workers": args.workers,
        "max_bytes": args.max_bytes,
        "pitch_low": args.pitch_low,
        **({"tracks": args.tracks} if getattr(args, "tracks", MERGED) != MERGED else {}),
    }


def cmd_watch(args: argparse.Namespace) -> int:
    """Retrain whenever the folder's MIDI contents change (flows/watch.py), until stopped."""
    source = check_source(Path(args.source)).resolve()
    name = dataset_name(source, args.dataset)
    if args.emit:
        return _watch_emit(source, name, args.settle)
    models = args.models
    if models:
        _prepare_tracking()
    tags = _attach_prefect("great_expectations", "tensorflow", "musicflow.flows.pipeline")
    from prefect import tags as prefect_tags

    from musicflow.flows.pipeline import pipeline_flow
    from musicflow.flows.watch import watch_folder

    settings = _run_settings(args)

    def retrain(_n_files: int, _change: str) -> None:
        with prefect_tags(*tags):
            result = pipeline_flow(source=source, dataset=name, models=models, **settings)
        for m in result.models:
            _print_model(m)
        sys.stdout.flush()

    return watch_folder(
        source,
        name,
        # the last trained state is JSON: the training settings as their fields
        settings={"models": models, **settings, "training": asdict(settings["training"])},
        retrain=retrain,
        settle_s=args.settle,
    )


def _watch_emit(source: Path, dataset: str, settle_s: float) -> int:
    """``watch --emit``: each change becomes a Prefect event on the server at PREFECT_API_URL,
    which runs the deployments that ``deploy --on-midi-change`` made."""
    from musicflow.adapters.prefect_server import healthy

    url = os.environ.get("PREFECT_API_URL", "").rstrip("/")
    if not url:
        raise MusicflowError(
            "watch --emit sends events to a Prefect server: set PREFECT_API_URL "
            "(the server where 'musicflow deploy --on-midi-change' registered the deployment)"
        )
    if not healthy(url):
        raise MusicflowError(f"the Prefect server {url} does not answer; start it first")
    from musicflow.flows.watch import MIDI_CHANGED, emit_change, watch_folder

    _say(f"sending '{MIDI_CHANGED}' events for dataset '{dataset}' to {url}")
    return watch_folder(
        source,
        dataset,
        settings={"emit_to": url},
        retrain=lambda n, change: emit_change(dataset, source, n, change),
        settle_s=settle_s,
        verbs=("sending a Prefect event", "event sent"),
    )


def _dataset_standing(dataset: str) -> dict:
    """The best version of the dataset and the MLflow UI address of its runs."""
    from musicflow.adapters import tracking
    from musicflow.core.champion import best_of_versions
    from musicflow.terminal.console import best_json

    rows = tracking.dataset_versions(dataset)
    best = best_of_versions(rows)
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
    from musicflow.terminal.console import format_model

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
    folder = check_encoded(args.dataset)
    _check_tracks(folder, args.model)
    _prepare_tracking()
    tags = _attach_prefect("tensorflow", "musicflow.flows.pipeline")
    from prefect import tags as prefect_tags

    from musicflow.flows.pipeline import train_flow

    with prefect_tags(*tags):
        result = train_flow(
            dataset=args.dataset,
            model=args.model,
            training=_train_settings(args),
            soundfont=args.soundfont,
        )
    _print_model(result)
    return 0


def _check_tracks(folder: Path, model: str) -> None:
    """UsageError (exit 2) for a dataset encoded with tracks and a model that cannot play them
    (the thesis twins). An unreadable ``dataset.json`` is left to the train task, after the
    tracking server's check, so each problem keeps its one line."""
    from musicflow.adapters.store import read_dataset_info

    info = read_dataset_info(folder)
    if info is not None and policy_of(info.encoding) != MERGED and not takes_tracks(model):
        raise UsageError(tracks_refusal(model))


def check_out_dir(out: Path) -> Path:
    """``--out`` before any model loads: a folder (existing or to be made) this user can
    write in; MusicflowError (exit 1) otherwise, with nothing written."""
    if out.exists() and not out.is_dir():
        raise MusicflowError(f"--out {out} is a file, not a folder; give a folder for the pieces")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise MusicflowError(f"cannot write in {existing} (for --out {out}); pick another folder")
    return out


def _read_midi_arg(path: str, option: str) -> tuple[bytes, str, int]:
    """A prompt file's bytes, name and size; a file over the audit's size cap is not read
    (``too_large`` later, as the audit judges it)."""
    try:
        size = Path(path).stat().st_size
        data = Path(path).read_bytes() if size <= DEFAULT_MAX_BYTES else b""
    except OSError as exc:
        raise MusicflowError(f"cannot read {option} {path}: {exc.strerror or exc}") from None
    return data, Path(path).name, size


def _direction(args: argparse.Namespace, model_dir: Path):
    """The user's direction, its prompt files read in the model's pitch window (an audit
    reason, exit 1) and checked against what the model can do (exit 2)."""
    import json

    from musicflow.core.compose import Direction, check_direction, check_tracks, read_prompt
    from musicflow.core.sampling import read_settings

    model = json.loads((model_dir / "config.json").read_text())["name"]
    encoding = read_settings(model_dir)["encoding"]
    pitch_low = int(encoding["pitch_low"])
    # a model with tracks reads a prompt's notes split as its dataset's files were
    with_tracks = {"policy": policy_of(encoding), "n_tracks": track_count(encoding)}
    direction = Direction(
        bars=args.bars,
        temperature=args.temperature,
        key=args.key,
        tempo_bpm=args.tempo,
        program=args.program,
        prompt_name=args.prompt[1] if args.prompt else None,
        end_names=tuple(name for _, name, _ in args.interpolate) if args.interpolate else None,
    )
    check_direction(model, direction)  # before reading any file
    check_tracks(model, track_count(encoding), direction)
    if args.prompt:
        data, name, size = args.prompt
        prompt = read_prompt(data, name, pitch_low, size_bytes=size, **with_tracks)
        if prompt.n_out_of_range:
            _say(
                f"warning: {prompt.n_out_of_range} notes of {name} lie outside the model's "
                f"pitch window ({pitch_low}…{pitch_low + ROWS - 1}) and were dropped"
            )
        limit = min(prompt.bars, PROMPT_CONTEXT_BARS)
        if args.prompt_bars and args.prompt_bars > limit:
            raise UsageError(
                f"--prompt-bars {args.prompt_bars}: {name} has {prompt.bars} bars and the model "
                f"reads at most {PROMPT_CONTEXT_BARS}; give at most {limit}"
            )
        direction.prompt, direction.prompt_bars = prompt, args.prompt_bars or limit
    if args.interpolate:
        a, b = (
            read_prompt(d, name, pitch_low, size_bytes=n, role="--interpolate")
            for d, name, n in args.interpolate
        )
        direction.ends = (a, b)
    return direction


def cmd_generate(args: argparse.Namespace) -> int:
    import tempfile

    from musicflow.adapters import tracking

    out = check_out_dir(Path(args.out) if args.out else Path("generated"))
    if args.prompt_bars and not args.prompt:
        raise UsageError("--prompt-bars needs --prompt FILE")
    if args.prompt:
        args.prompt = _read_midi_arg(args.prompt, "--prompt")
    if args.interpolate:
        args.interpolate = [_read_midi_arg(p, "--interpolate") for p in args.interpolate]
    tracking.check_reachable()
    _check_soundfont(args.soundfont)
    with tempfile.TemporaryDirectory() as tmp:
        # the version's files are fetched and checked before anything heavy loads; rnn and
        # vae sample in numpy (no TensorFlow), the other models load with Keras
        model_dir = tracking.fetch_model(args.model_uri, Path(tmp))
        direction = _direction(args, model_dir)
        version = tracking.model_version(args.model_uri)
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
                direction=direction,
                version=version,
                show_progress=True,
            )
    for path in sorted(result.midi_files + result.audio_files, key=lambda p: (p.stem, p.suffix)):
        print(path)
    if result.audio_note:
        _say(result.audio_note)
    return 0


def _check_soundfont(given: str | None) -> None:
    """A soundfont that cannot render a chord stops ``generate`` in one line before any model
    loads; with none at all (no renderer, no soundfont) the pieces come without previews."""
    from musicflow.adapters import audio

    try:
        font = audio.resolve_soundfont(given)
    except audio.AudioError:
        if given:
            raise
        return  # generate_midi says why there are no previews
    audio.check_soundfont(font)


def cmd_compare(args: argparse.Namespace) -> int:
    from musicflow.adapters import tracking
    from musicflow.core.champion import best_of_versions
    from musicflow.terminal.console import compare_json, format_best, format_table

    tracking.check_reachable()
    tracking.require_dataset(args.dataset)
    rows = tracking.dataset_versions(args.dataset)
    best = best_of_versions(rows)
    if getattr(args, "json", False):
        _print_json(compare_json(args.dataset, rows, best))
        return 0
    print(format_table(rows, best))
    if rows:
        print(format_best(best))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    """Every committed version of the dataset, the drift between them, the models trained on
    each; writes ``reports/<dataset>/history.html``."""
    from musicflow.adapters import tracking
    from musicflow.adapters.store import (
        folder_lock,
        read_dataset,
        read_history,
        read_manifest,
        record_version,
    )
    from musicflow.tasks.history import history_rows, write_history_page
    from musicflow.terminal.console import format_history

    folder = workspace.rolls_dir(args.dataset)
    info = read_dataset(folder)  # one clear line when the dataset was never encoded
    if not read_history(folder):  # encoded before histories were kept: start with this one
        with folder_lock(folder):
            record_version(folder, read_dataset(folder), read_manifest(folder))
    tracking.check_reachable()
    rows = history_rows(info.name, folder)
    page = write_history_page(args.dataset, folder, rows)
    if getattr(args, "json", False):
        _print_json({"dataset": args.dataset, "page": str(page), "versions": rows})
        return 0
    print(format_history(rows))
    print(f"page: {page}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """The MLflow UI until Ctrl-C or SIGTERM; its processes end with this one."""
    import subprocess

    from musicflow.adapters import procs, tracking
    from musicflow.tasks.report import write_ui_link_page

    cmd = tracking.ui_command(args.port)
    if cmd is None:  # a tracking server already serves the UI
        page = write_ui_link_page(tracking.ui_address())
        print(f"MLflow UI: {workspace.tracking_uri()} (the tracking server serves it)")
        print(f"the reports' MLflow links open it (through {page})")
        return 0
    check_port(args.port)
    tracking.prepare_store()
    log = workspace.ui_log()
    address = tracking.ui_address(args.port)
    page = write_ui_link_page(address)
    _say(f"MLflow UI for {workspace.tracking_uri()} on {address} (Ctrl-C to stop; log: {log})")
    _say(f"the reports' MLflow links now open {address} (through {page})")
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
    from musicflow.adapters import tracking

    try:
        links = tracking.experiment_links(port)
    except Exception:  # the UI starts all the same; the links are a convenience
        return
    for dataset, url in links:
        _say(f"  {dataset}: {url}")


def cmd_server(args: argparse.Namespace) -> int:
    from musicflow.adapters import prefect_server

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
        training=_train_settings(args),
        soundfont=args.soundfont,
        on_midi_change=args.on_midi_change,
    )


def cmd_deploy(args: argparse.Namespace) -> int:
    source = check_source(Path(args.source))
    from musicflow.adapters import tracking
    from musicflow.flows.retrain import deploy_retraining

    tracking.check_reachable()  # the runs will track there: fail now, not at 03:00
    return deploy_retraining(
        source,
        dataset_name(source, args.dataset),
        pool=args.pool,
        cron=args.cron,
        models=args.models,
        training=_train_settings(args),
        soundfont=args.soundfont,
        on_midi_change=args.on_midi_change,
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
    _add_training_options(p)
    p.add_argument(
        "--on-midi-change",
        action="store_true",
        help="also run whenever 'musicflow watch SOURCE --emit' reports new MIDI contents "
        "(a Prefect automation on its events)",
    )


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """What ``run`` and ``watch`` share: the models and how to train, read and encode."""
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


def _add_tracks_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tracks",
        choices=POLICIES,
        default=MERGED,
        help="track policy (docs/encoding.md): merged, one roll as always (default); voices, "
        "one track per MIDI track with notes (chorales, quartets); instruments, one track per "
        "General MIDI family, drums included. rnn, vae and gan play the tracks jointly and "
        "generate one MIDI track per track; vae-thesis and gan-thesis need merged",
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
        "piano-roll windows into Parquet shards, train generators (rnn, vae, gan) tracked in "
        "MLflow, generate MIDI and compare versions. State lives in the current directory or "
        "$MUSICFLOW_HOME.",
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
    _add_tracks_option(p)
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
    _add_tracks_option(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser(
        "run",
        help="the whole DAG: audit → encode → train → evaluate → register → generate → report",
        description="Run the whole pipeline on SOURCE, or without SOURCE on the embedded "
        "default dataset (Bach chorales of music21's corpus, exported to MIDI on first use). "
        "Every stage is cached: a re-run with nothing new trains nothing.",
    )
    p.add_argument(
        "source", nargs="?", help="folder of MIDI files (default: the bundled Bach chorales)"
    )
    _add_dataset_name_option(p)
    _add_run_options(p)
    _add_tracks_option(p)
    _add_json_option(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "watch",
        help="retrain whenever the MIDI contents of a folder change",
        description="Watch SOURCE and run the whole DAG (as 'run' does) whenever the set of "
        "its MIDI files' contents changes: after files land and stop growing, not for a "
        "touched but unchanged file, a copy still being written or a non-MIDI file. Trains at "
        "start when the folder differs from what watch last trained. Runs until Ctrl-C or "
        "SIGTERM, which also stops a run in progress (its finished steps are cached).",
    )
    p.add_argument("source", help="folder of MIDI files to watch (searched recursively)")
    _add_dataset_name_option(p)
    _add_run_options(p)
    p.add_argument(
        "--settle",
        type=_positive_seconds,
        default=DEFAULT_SETTLE_S,
        metavar="SECONDS",
        help="quiet time with no file event and no file growing before the folder is read "
        f"(default: {DEFAULT_SETTLE_S:g})",
    )
    p.add_argument(
        "--emit",
        action="store_true",
        help="train nothing here: send each change as a Prefect event to PREFECT_API_URL, "
        "where a deployment made with 'deploy --on-midi-change' runs on it",
    )
    p.set_defaults(func=cmd_watch)

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
        help="sample MIDI pieces from a model (or continue your MIDI, interpolate, set key, "
        "tempo, temperature), each with its score and an audio preview",
        description="Sample pieces from a registered model and write them as MIDI files, each "
        "with a loudness-normalised OGG/Vorbis preview (rendered with a General MIDI "
        "soundfont; no system package needed) and a JSON record of how it was made beside "
        "it. Continue your own MIDI (--prompt), morph between two files (--interpolate), set "
        "length, temperature, key, tempo and instrument; each file records them.",
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
    p.add_argument(
        "--out",
        help="output folder (default: ./generated); new pieces take the next free numbers, "
        "no file in it is ever replaced",
    )
    p.add_argument("--seed", type=SEED, default=0, help="random seed, ≥ 0 (default: 0)")
    p.add_argument(
        "--bars",
        type=_int_in(1, 1024),
        default=16,
        metavar="M",
        help="bars of 4/4 to generate (after the prompt), 1…1024 (default: 16)",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--prompt",
        metavar="FILE",
        help="a MIDI file to continue (rnn, vae): read like the model's dataset; the output "
        "holds its bars unchanged, a marker, then the continuation",
    )
    source.add_argument(
        "--interpolate",
        nargs=2,
        metavar=("A", "B"),
        help="two MIDI files (vae): the piece morphs from the first to the second",
    )
    p.add_argument(
        "--prompt-bars",
        type=POSITIVE,
        metavar="N",
        help=f"read the prompt's first N bars (default: all, at most {PROMPT_CONTEXT_BARS})",
    )
    p.add_argument(
        "--temperature",
        type=_float_in(0.0, 5.0, "a temperature", open_low=True),
        metavar="T",
        help="sampling temperature (rnn, vae), > 0 and ≤ 5: lower is safer, higher is "
        "wilder (default: the model's own, 1.0)",
    )
    p.add_argument(
        "--key",
        type=_key_arg,
        metavar="K",
        help="key of new pieces (rnn, vae), as a key signature spells it: C, D, Bb, F#m, … "
        "(default: drawn from the training data's keys)",
    )
    p.add_argument(
        "--tempo",
        type=_float_in(20.0, 400.0, "a tempo in BPM"),
        metavar="BPM",
        help="tempo in beats per minute, 20…400 (default: the prompt's, else 100)",
    )
    p.add_argument(
        "--program",
        type=_int_in(0, 127, "a General MIDI program"),
        default=0,
        metavar="P",
        help="General MIDI program (instrument) 0…127 (default: 0, Acoustic Grand Piano)",
    )
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
        "history",
        help="every committed version of a dataset, the drift between them, and their models",
        description="List every committed version of the dataset (digest, time, files added, "
        "removed and changed, windows, outcomes, statistics of its windows), the drift between "
        "consecutive versions with a verdict, and the model versions trained on each (MLflow's "
        "dataset inputs); write reports/<dataset>/history.html.",
    )
    _add_dataset_name_option(p, required=True)
    _add_json_option(p)
    p.set_defaults(func=cmd_history)

    p = sub.add_parser(
        "ui",
        help="the MLflow UI on 127.0.0.1 for this workspace's store",
        description="Serve the MLflow UI of this workspace's tracking store on 127.0.0.1 "
        "(loopback only) until Ctrl-C. Each dataset's experiment opens on its training runs.",
    )
    p.add_argument(
        "--port",
        type=PORT,
        default=UI_PORT,
        help=f"port on 127.0.0.1, 1…65535 (default: {UI_PORT}); the reports' links follow it",
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
    # Prefect's own machinery (its events worker) logs every failed try while its server
    # restarts (prefect_server.WorkspaceServer.watch); the CLI says what happened in one line.
    os.environ["PREFECT_INTERNAL_LOGGING_LEVEL"] = "ERROR" if args.debug else "CRITICAL"
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
