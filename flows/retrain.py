"""Scheduled retraining: ``musicflow serve SOURCE --cron "…"``.

A Prefect deployment of the whole DAG (``pipeline_flow``) on SOURCE, run on a cron schedule by a
runner in this process. Because every stage is cached on content, a scheduled run with no new or
changed MIDI file does no expensive work.

Why a real server: cron schedules live on a Prefect *server*, whose scheduler service turns them
into scheduled flow runs. The ephemeral API that Prefect starts on demand (used by ``musicflow
run``) lives only as long as one process and runs no scheduler, so a cron deployment against it
never fires. ``serve`` therefore uses ``PREFECT_API_URL`` when it is set, and otherwise starts a
real local ``prefect server start`` (SQLite under the workspace's PREFECT_HOME, loopback only),
which also serves the Prefect UI, and stops it on exit.

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

Prefect 3.8.8's scheduler needs SQLAlchemy 2.0: with 2.1 it fails on every loop ("Can't
evaluate bulk DML statement") and cron never fires, hence the ``sqlalchemy==2.0.58`` pin.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

from musicflow import workspace
from musicflow.errors import DatasetError, MusicflowError

FLOW_NAME = "musicflow-run"  # the name of pipeline_flow (flows/pipeline.py)
SERVER_START_TIMEOUT_S = 90.0  # a fresh SQLite server takes ~30 s on this 2-core machine
SERVER_LOG = "server.log"


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


# --------------------------------------------------------------------------------------------
# the local Prefect server


def free_port() -> int:
    """A free TCP port on the loopback interface (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prefect_command() -> list[str]:
    """Prefect's own CLI, from this interpreter's environment."""
    return [sys.executable, "-m", "prefect"]


def _die_with_parent() -> None:
    """Child side of fork (Linux): get SIGTERM if the parent dies, even by SIGKILL.

    Without it a killed ``musicflow serve`` (or a killed test run) would leave the server
    listening forever. The server runs in its own session so that Ctrl-C in the terminal
    reaches only ``serve``, which must still talk to the server to pause its schedule.
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux, or no prctl: the finally blocks still stop the server
        pass


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())


def stop_process(proc: subprocess.Popen | None, *, grace_s: float = 20.0) -> None:
    """Stop a process started in its own session: SIGTERM to its group, then SIGKILL.

    The group id is the process's own pid (``start_new_session=True``), so this reaches only
    what that process started.
    """
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def start_local_server(
    home: Path, *, port: int | None = None, timeout_s: float = SERVER_START_TIMEOUT_S
) -> tuple[str, subprocess.Popen]:
    """Start ``prefect server start`` on 127.0.0.1 with its database under ``home``.

    ``home`` becomes the server's PREFECT_HOME (SQLite ``prefect.db``, ``server.log``). Returns
    the API URL once ``/api/health`` answers; raises MusicflowError (with the log path) if the
    server exits or does not answer within ``timeout_s``.
    """
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}/api"
    log_path = home / SERVER_LOG
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",  # the workspace default (CRITICAL) hides causes
    )
    cmd = [*_prefect_command(), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "ab") as log:
        log.write(f"\n--- {datetime.now(UTC).isoformat()} {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=home,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise MusicflowError(
                f"the local Prefect server exited (code {proc.returncode}) before answering; "
                f"see {log_path}: {_log_tail(log_path)}"
            )
        if _healthy(url):
            return url, proc
        time.sleep(0.5)
    stop_process(proc, grace_s=5)
    raise MusicflowError(
        f"the local Prefect server did not answer {url}/health within {timeout_s:.0f} s; "
        f"see {log_path}"
    )


def ensure_local_server(home: Path) -> tuple[str, subprocess.Popen | None]:
    """The Prefect API to schedule against: ``PREFECT_API_URL`` if set, else a local server.

    ``home`` is the PREFECT_HOME for a server started here (database and ``server.log``).
    Returns ``(api_url, process)``; ``process`` is None when an existing server is used, else
    the caller owns it (``stop_process``). Sets ``os.environ["PREFECT_API_URL"]`` so that
    subprocesses (the flow runs) talk to the same server.
    """
    given = os.environ.get("PREFECT_API_URL")
    if given:
        return given.rstrip("/"), None
    url, proc = start_local_server(home)
    os.environ["PREFECT_API_URL"] = url
    return url, proc


@contextlib.contextmanager
def prefect_api(url: str) -> Iterator[None]:
    """Point this process's Prefect client at ``url``.

    Prefect reads its settings once, when imported; changing os.environ afterwards is not
    seen, so the setting is overridden in Prefect's settings context as well.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


def ui_url(api_url: str) -> str:
    """Where the Prefect UI of that API is: ``PREFECT_UI_URL`` or the API's origin."""
    given = os.environ.get("PREFECT_UI_URL")
    if given:
        return given.rstrip("/")
    return api_url.rstrip("/").removesuffix("/api")


# --------------------------------------------------------------------------------------------
# serving


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

            from musicflow.flows.pipeline import pipeline_flow

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
        if _healthy(url):  # no slow client retries against a server that is gone
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


def serve_in_background(
    source: Path,
    dataset: str,
    *,
    cron: str,
    models: list[str],
    epochs: int | None = None,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
) -> subprocess.Popen:
    """Non-blocking ``musicflow serve`` in a subprocess (own session), for tests and scripts.

    Stop it with ``stop_serving`` (SIGINT, so the schedule is paused as on Ctrl-C). With
    ``PREFECT_API_URL`` in ``env`` it serves against that server instead of starting one.
    """
    cmd = [sys.executable, "-m", "musicflow.cli", "serve", str(source), "--dataset", dataset]
    cmd += ["--cron", cron, "--models", ",".join(models)]
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 (the child keeps it)
    try:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    finally:
        if log:
            out.close()  # type: ignore[union-attr]


def stop_serving(proc: subprocess.Popen, *, grace_s: float = 30.0) -> int | None:
    """Ctrl-C for a ``serve_in_background`` process, then force if it does not exit."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            stop_process(proc, grace_s=5)
    return proc.returncode
