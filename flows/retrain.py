"""Scheduled retraining: ``musicflow serve SOURCE --cron "…"``.

A Prefect deployment of the whole DAG (``pipeline_flow``) on SOURCE, run on a cron schedule by a
runner in this process. Because every stage is cached on content, a scheduled run with no new or
changed MIDI file does no expensive work.

Cron schedules need a real Prefect server (the ephemeral API that ``musicflow run`` uses runs no
scheduler): ``serve`` uses ``PREFECT_API_URL`` when it is set, and otherwise starts a local one
and stops it on exit (``musicflow/prefect_server.py``).

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
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from musicflow import workspace
from musicflow.errors import DatasetError, MusicflowError
from musicflow.flows.pipeline import pipeline_flow
from musicflow.prefect_server import ensure_local_server, healthy, prefect_api, stop_process, ui_url

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
    source: Path, dataset: str, *, models: list[str], epochs: int | None
) -> dict[str, object]:
    """The deployment's parameters: JSON-able (the source as an absolute path string)."""
    params: dict[str, object] = {
        "source": str(Path(source).resolve()),
        "dataset": dataset,
        "models": list(models),
    }
    if epochs is not None:
        params["epochs"] = epochs
    return params


def serve_retraining(
    source: Path, dataset: str, *, cron: str, models: list[str], epochs: int | None
) -> int:
    """Serve the whole DAG on SOURCE as deployment ``retrain-<dataset>`` on a cron schedule.

    Blocks until Ctrl-C/SIGTERM; then the schedule is paused (see the module docstring) and
    a server started here is stopped. Returns 0.
    """
    validate_cron(cron)
    source = Path(source).resolve()
    if not source.is_dir():
        raise DatasetError(f"source folder not found: {source}")
    params = retrain_parameters(source, dataset, models=models, epochs=epochs)
    prefect_home = Path(os.environ.get("PREFECT_HOME") or workspace.home() / ".prefect")
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
    print(f"run it now:  prefect deployment run '{full_deployment_name(dataset)}'")
    print("serving; Ctrl-C stops (the schedule is then paused)", flush=True)
