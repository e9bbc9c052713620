"""Scheduled retraining: ``musicflow serve SOURCE --cron "…"`` on one machine, or
``musicflow deploy SOURCE --pool NAME`` to a shared Prefect server's work pool.

``serve``: a Prefect deployment of the whole DAG (``pipeline_flow``) on SOURCE, run on a cron
schedule by a runner in this process. Because every stage is cached on content, a scheduled run
with no new or changed MIDI file does no expensive work.

Cron schedules need a real Prefect server (the ephemeral API that ``musicflow run`` uses runs no
scheduler): ``serve`` uses ``PREFECT_API_URL`` when it is set, and otherwise starts a local one
and stops it on exit (``musicflow/adapters/prefect_server.py``).

What happens when serve stops: the runner that executes the scheduled runs lives in the serve
process, so without it nothing runs. On Ctrl-C (or SIGTERM) the deployment is paused (Prefect's
``pause_on_shutdown``, and ``pause_schedule`` here as a safety net), which also deletes its
pending scheduled runs, so none pile up with nobody to execute them; the deployment, its
schedule and its run history stay in the server's database (visible in the UI). Running the same
``musicflow serve`` again re-registers the deployment unpaused and scheduling resumes; runs missed
while stopped are not caught up, and need not be: the next run picks up every change, as the DAG
is content-addressed. (If serve is killed outright, the schedule stays active and the overdue runs
execute, one at a time, when serve comes back.) A server started here stops with serve, and then
no schedule is evaluated at all.

``deploy`` (:func:`deploy_retraining`): the same deployment, registered to a ``process`` work
pool of the Prefect server at ``PREFECT_API_URL`` and then left to it: the server's scheduler
creates the runs, and a ``prefect worker start --pool NAME`` started from musicflow's ``.venv``
executes each in a fresh process (``python -m prefect.engine``). The flow is found by its module
path (``musicflow.flows.pipeline:pipeline_flow``), which that interpreter imports, so nothing is
copied or built. The deployment carries the workspace's environment (``workspace.run_environment``):
its runs read and write this workspace (same path on the worker's machine) and track to this
``MLFLOW_TRACKING_URI``, so the caches that make a run with no new MIDI a no-op are the ones
``musicflow run`` uses too (README, "Deployment").
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from musicflow.adapters import workspace
from musicflow.adapters.prefect_server import (
    ensure_local_server,
    healthy,
    prefect_api,
    stop_process,
    ui_url,
)
from musicflow.core.errors import MusicflowError
from musicflow.core.settings import DEFAULT_TRAINING, TrainSettings
from musicflow.flows.pipeline import pipeline_flow

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

FLOW_NAME = pipeline_flow.name  # "musicflow-run"


def deployment_name(dataset: str) -> str:
    """The deployment's own name; Prefect addresses it as ``musicflow-run/retrain-<dataset>``."""
    return f"retrain-{dataset}"


def full_deployment_name(dataset: str) -> str:
    """``flow/deployment``: what ``prefect deployment run`` and ``run_deployment`` take."""
    return f"{FLOW_NAME}/{deployment_name(dataset)}"


def validate_cron(cron: str) -> str:
    """Reject a bad cron expression before anything is started (Prefect's own rules)."""
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=cron)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise MusicflowError(
            f"invalid cron expression {cron!r}: expected 5 fields "
            '"minute hour day-of-month month day-of-week", e.g. "0 3 * * *" (daily 03:00 UTC)'
        ) from exc
    return cron


def next_runs(cron: str, n: int = 3, *, start: datetime | None = None) -> list[datetime]:
    """The next ``n`` times the cron fires (UTC, the server's default timezone), for messages."""
    from prefect._vendor.croniter import croniter  # Prefect's own cron engine (pinned version)

    it = croniter(cron, start or datetime.now(UTC))
    return [it.get_next(datetime) for _ in range(n)]


def retrain_parameters(
    source: Path,
    dataset: str,
    *,
    models: list[str],
    training: TrainSettings = DEFAULT_TRAINING,
    soundfont: str | None = None,
) -> dict[str, object]:
    """The deployment's parameters: JSON-able (the source as an absolute path string).

    ``training``: only the settings that differ from the defaults are kept (Prefect fills in
    the rest when a run turns them back into a ``TrainSettings``), so the deployment shows what
    was asked for."""
    params: dict[str, object] = {
        "source": str(Path(source).resolve()),
        "dataset": dataset,
        "models": list(models),
    }
    if training.changed():
        params["training"] = training.changed()
    if soundfont:
        params["soundfont"] = soundfont
    return params


def serve_retraining(
    source: Path,
    dataset: str,
    *,
    cron: str,
    models: list[str],
    training: TrainSettings = DEFAULT_TRAINING,
    soundfont: str | None = None,
    on_midi_change: bool = False,
) -> int:
    """Serve the whole DAG on SOURCE as deployment ``retrain-<dataset>`` on a cron schedule.

    Blocks until Ctrl-C/SIGTERM; then the schedule is paused (see the module docstring) and
    a server started here is stopped. Returns 0.
    """
    validate_cron(cron)
    source = workspace.check_source(Path(source).resolve())
    params = retrain_parameters(
        source, dataset, models=models, training=training, soundfont=soundfont
    )
    prefect_home = workspace.prefect_home()
    if not os.environ.get("PREFECT_API_URL"):
        print(
            f"starting a local Prefect server (state in {prefect_home}, ~30 s)…",
            file=sys.stderr,
            flush=True,
        )
    url, server = ensure_local_server(prefect_home)
    _log_runs_at_info()
    try:
        with prefect_api(url):
            from prefect.types.entrypoint import EntrypointType

            _print_plan(url, server is not None, dataset, cron, params)
            pipeline_flow.serve(
                name=deployment_name(dataset),
                cron=cron,
                parameters=params,
                description=f"Scheduled retraining of {dataset} from {source}",
                tags=["musicflow", f"dataset:{dataset}"],
                pause_on_shutdown=True,
                print_starting_message=False,
                triggers=_triggers(dataset, on_midi_change),
                limit=1,  # never two retrainings of one dataset at once on a small machine
                # importable from anywhere, unlike the default path relative to the cwd
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
    finally:
        if healthy(url):  # no slow client retries against a server that is gone
            with prefect_api(url):
                pause_schedule(dataset)  # Prefect pauses on shutdown too, not on every path
        if server is not None:
            print("stopping the local Prefect server…", file=sys.stderr, flush=True)
            stop_process(server)
    print(
        f"stopped; the schedule of {full_deployment_name(dataset)} is paused until "
        "'musicflow serve' runs again",
        file=sys.stderr,
        flush=True,
    )
    return 0


def deploy_retraining(
    source: Path,
    dataset: str,
    *,
    pool: str,
    cron: str,
    models: list[str],
    training: TrainSettings = DEFAULT_TRAINING,
    soundfont: str | None = None,
    on_midi_change: bool = False,
) -> int:
    """Register ``retrain-<dataset>`` to work pool ``pool`` of the server at PREFECT_API_URL.

    Checks first, each a one-line MusicflowError: the cron expression, the source folder, the
    server (set and answering), the pool (of type ``process``; created when missing).
    Re-running it updates the deployment and unpauses it. Returns 0.
    """
    validate_cron(cron)
    source = workspace.check_source(Path(source).resolve())
    url = os.environ.get("PREFECT_API_URL", "").rstrip("/")
    if not url:
        raise MusicflowError(
            "deploy registers to a shared Prefect server: set PREFECT_API_URL "
            "(e.g. http://127.0.0.1:4200/api), or use 'musicflow serve' on this machine"
        )
    if not healthy(url):
        raise MusicflowError(f"the Prefect server {url} does not answer; start it first")
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import WorkerFilter, WorkerFilterStatus
    from prefect.types.entrypoint import EntrypointType

    with get_client(sync_client=True) as client:
        created = _ensure_process_pool(client, pool)
        online = client.read_workers_for_work_pool(
            pool, worker_filter=WorkerFilter(status=WorkerFilterStatus(any_=["ONLINE"]))
        )
    # A service's log is its output (as in serve): the worker shows runs at INFO.
    env = {**workspace.run_environment(), "PREFECT_LOGGING_LEVEL": "INFO"}
    params = retrain_parameters(
        source, dataset, models=models, training=training, soundfont=soundfont
    )
    deployment = pipeline_flow.to_deployment(
        name=deployment_name(dataset),
        cron=cron,
        paused=False,
        parameters=params,
        description=f"Scheduled retraining of {dataset} from {source}",
        tags=["musicflow", f"dataset:{dataset}"],
        concurrency_limit=1,  # never two retrainings of one dataset at once
        triggers=_triggers(dataset, on_midi_change),
        work_pool_name=pool,
        job_variables={"env": env, "working_dir": env["MUSICFLOW_HOME"]},
        # the worker's interpreter imports it from the installed package, from any directory
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    deployment.apply(work_pool_name=pool)
    _print_deployment(
        url,
        dataset,
        pool,
        cron,
        params,
        n_workers=len(online),
        created=created,
        on_midi_change=on_midi_change,
    )
    return 0


def _triggers(dataset: str, on_midi_change: bool) -> list:
    """The automation that runs the deployment on ``watch --emit``'s events, when asked for;
    none otherwise (deploying again without it removes it: Prefect replaces a deployment's
    automations on every apply)."""
    from musicflow.flows.watch import midi_trigger

    return [midi_trigger(dataset)] if on_midi_change else []


def _ensure_process_pool(client: SyncPrefectClient, pool: str) -> bool:
    """Create work pool ``pool`` (type ``process``, Prefect's default job template) unless it
    exists; True when created. A pool of another type is a MusicflowError.

    Created here rather than by ``prefect work-pool create``, which makes the server fetch
    Prefect's integration catalogue from GitHub (README: no command phones home).
    """
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    try:
        work_pool = client.read_work_pool(pool)
    except ObjectNotFound:
        template = ProcessWorker.get_default_base_job_template()
        try:
            client.create_work_pool(
                WorkPoolCreate(name=pool, type="process", base_job_template=template)
            )
            return True
        except ObjectAlreadyExists:  # another deploy made it meanwhile
            work_pool = client.read_work_pool(pool)
    if work_pool.type != "process":
        raise MusicflowError(
            f"work pool {pool!r} is of type {work_pool.type!r}; musicflow runs on a "
            "'process' pool whose worker starts from musicflow's .venv"
        )
    return False


def _print_deployment(
    url: str,
    dataset: str,
    pool: str,
    cron: str,
    params: Mapping[str, object],
    *,
    n_workers: int,
    created: bool,
    on_midi_change: bool = False,
) -> None:
    models = ", ".join(params["models"]) or "none (audit + encode only)"  # type: ignore[arg-type]
    print(f"deployment:  {full_deployment_name(dataset)} (registered)")
    print(f"Prefect API: {url}")
    state = "created, type process" if created else f"{n_workers} worker(s) online"
    print(f"work pool:   {pool} ({state})")
    print(f"schedule:    {cron} (UTC)")
    with contextlib.suppress(Exception):  # informative only
        print("next runs:   " + ", ".join(f"{t:%Y-%m-%d %H:%M}" for t in next_runs(cron)))
    if on_midi_change:
        print(f"also runs:   on new MIDI: musicflow watch {params['source']} --emit")
    print(f"source:      {params['source']}")
    print(f"workspace:   {workspace.home()}")
    print(f"models:      {models}")
    print(f"training:    {_training_text(params)}")
    if not n_workers:
        print(f"start a worker: prefect worker start --pool {pool}")
    print(f"run it now:  prefect deployment run '{full_deployment_name(dataset)}'")


def _training_text(params: Mapping[str, object]) -> str:
    """``epochs 1, time_budget_s 300`` (what differs from the defaults), or that none does."""
    shown = dict(params.get("training") or {})  # type: ignore[call-overload]
    if params.get("soundfont"):
        shown["soundfont"] = params["soundfont"]
    return ", ".join(f"{k} {v}" for k, v in shown.items()) or "the models' defaults"


def pause_schedule(dataset: str) -> bool:
    """Pause ``retrain-<dataset>`` so no runs pile up while nothing serves it.

    Best effort (returns False when the deployment or the server is not there): Prefect's
    runner does this itself on a clean Ctrl-C, but a stop racing a run's end or a SIGTERM
    can skip it.
    """
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(full_deployment_name(dataset))
            if not deployment.paused:
                client.pause_deployment(deployment.id)
        return True
    except Exception:
        return False


def _log_runs_at_info() -> None:
    """A long-running service's log is its output: show runs starting and finishing.

    The workspace default (WARNING) suits one-shot commands; here the runner's messages
    (this process) and the flow runs' (spawned subprocesses, which read the environment)
    are raised to INFO unless the user asked for more detail.
    """
    import logging

    level = os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING").upper()
    if level in ("WARNING", "ERROR", "CRITICAL"):
        os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"
        logging.getLogger("prefect").setLevel(logging.INFO)


def _print_plan(
    url: str, started: bool, dataset: str, cron: str, params: Mapping[str, object]
) -> None:
    models = ", ".join(params["models"]) or "none (audit + encode only)"  # type: ignore[arg-type]
    where = "local server started here" if started else "PREFECT_API_URL"
    print(f"Prefect API: {url} ({where})")
    print(f"Prefect UI:  {ui_url(url)}")
    print(f"deployment:  {full_deployment_name(dataset)}")
    print(f"schedule:    {cron} (UTC)")
    with contextlib.suppress(Exception):  # informative only
        print("next runs:   " + ", ".join(f"{t:%Y-%m-%d %H:%M}" for t in next_runs(cron)))
    print(f"source:      {params['source']}")
    print(f"models:      {models}")
    print(f"training:    {_training_text(params)}")
    print(f"run it now:  prefect deployment run '{full_deployment_name(dataset)}'")
    print("serving; Ctrl-C stops (the schedule is then paused)", flush=True)
