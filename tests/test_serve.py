"""``musicflow serve``: a cron deployment of the DAG on a REAL local Prefect server.

The ephemeral server the other tests use runs no scheduler, so schedules are checked against a
``prefect server start`` that musicflow itself starts (own PREFECT_HOME and SQLite database in
tmp_path). ``serve`` runs in a subprocess, the way a user runs it; the server and the serve
process are stopped whatever happens, and PREFECT_API_URL is restored afterwards so the other
tests keep using the ephemeral server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import cloudpickle
import pyarrow.parquet as pq
import pytest
from conftest import write_midi

from musicflow import cli
from musicflow.adapters import prefect_server as local_server
from musicflow.core.errors import MusicflowError
from musicflow.core.settings import TrainSettings
from musicflow.flows import retrain

CRON = "0 3 * * *"
DATASET = "tiny"


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
    """Non-blocking ``musicflow serve`` in a subprocess (own session).

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
            preexec_fn=local_server.die_with_parent if sys.platform.startswith("linux") else None,
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
            local_server.stop_process(proc, grace_s=5)
    return proc.returncode


@pytest.fixture
def midi_folder(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        write_midi(src / f"piece{i}.mid", [60 + i, 64 + i, 67 + i, 72 + i] * 4)
    return src


@pytest.fixture
def prefect_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real local Prefect server started by musicflow; stopped and env restored at the end."""
    monkeypatch.setenv("PREFECT_SERVER_UI_ENABLED", "false")  # faster start; API is the same
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS", "2")
    # ensure_local_server sets PREFECT_API_URL itself; monkeypatch.delenv would not restore
    # a variable that was unset before, and a leaked URL sends later tests' subprocesses
    # (Dask workers) to this dead server instead of the ephemeral one.
    saved = os.environ.pop("PREFECT_API_URL", None)
    proc = None
    try:
        url, proc = local_server.ensure_local_server(tmp_path / "prefect-server")
        assert proc is not None, "no server was started"
        assert os.environ["PREFECT_API_URL"] == url
        yield url
    finally:
        local_server.stop_process(proc)
        if saved is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = saved
    assert proc.poll() is not None


def _wait_for(what: str, probe, timeout_s: float, proc=None, log: Path | None = None):
    """Poll ``probe`` until it returns something truthy; fail early if ``proc`` died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            pytest.fail(f"serve exited ({proc.returncode}) before {what}:\n{tail}")
        time.sleep(1)
    tail = log.read_text(errors="replace")[-3000:] if log else ""
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}\n{tail}")


@pytest.mark.integration
def test_serve_schedules_and_runs_on_real_server(
    prefect_server: str, midi_folder: Path, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.deployments import run_deployment

    ws = tmp_path / "ws"
    (ws / "mlruns").mkdir(parents=True)
    env = dict(os.environ)
    env.update(
        MUSICFLOW_HOME=str(ws),
        PREFECT_HOME=str(tmp_path / "prefect-client"),
        MLFLOW_TRACKING_URI=f"sqlite:///{ws / 'mlruns' / 'mlflow.db'}",
        PREFECT_API_URL=prefect_server,
        PREFECT_RUNNER_POLL_FREQUENCY="1",
        PREFECT_LOGGING_LEVEL="INFO",
    )
    log = tmp_path / "serve.log"
    serving = serve_in_background(midi_folder, DATASET, cron=CRON, models=[], env=env, log=log)
    try:
        with local_server.prefect_api(prefect_server), get_client(sync_client=True) as client:

            def deployment():
                try:
                    return client.read_deployment_by_name(retrain.full_deployment_name(DATASET))
                except Exception:  # ObjectNotFound until serve has registered it
                    return None

            dep = _wait_for("the deployment", deployment, 90, serving, log)
            assert dep.name == "retrain-tiny"
            assert dep.paused is False
            assert dep.parameters == {
                "source": str(midi_folder.resolve()),
                "dataset": DATASET,
                "models": [],
            }
            assert len(dep.schedules) == 1
            assert dep.schedules[0].schedule.cron == CRON
            assert dep.schedules[0].active

            # the server's scheduler turned the cron into future runs: the schedule is live
            def scheduled():
                return client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])),
                    flow_run_filter=FlowRunFilter(
                        state=FlowRunFilterState(
                            type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])
                        )
                    ),
                )

            runs = _wait_for("scheduled runs", scheduled, 60, serving, log)
            now = datetime.now(UTC)
            for run in runs:
                start = run.expected_start_time.astimezone(UTC)
                assert start > now and (start.hour, start.minute) == (3, 0), start

            # a triggered run is picked up by the serve process and completes
            flow_run = run_deployment(
                retrain.full_deployment_name(DATASET), timeout=150, poll_interval=1
            )
            assert flow_run.state is not None
            assert flow_run.state.is_completed(), (
                f"{flow_run.state!r}\n{log.read_text(errors='replace')[-3000:]}"
            )
            manifest = pq.read_table(ws / "data" / "rolls" / DATASET / "manifest.parquet")
            assert manifest.column("status").to_pylist() == ["accepted"] * 3

            # stopping serve (Ctrl-C) pauses the schedule; the deployment stays
            assert stop_serving(serving) is not None
            assert client.read_deployment(dep.id).paused is True
    finally:
        stop_serving(serving, grace_s=10)


@pytest.mark.integration
def test_server_that_cannot_start_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with socket.socket() as taken:  # the port is in use: prefect exits at once
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MusicflowError, match=r"exited .*server\.log") as info:
            local_server.start_local_server(tmp_path / "p", port=port, timeout_s=60)
    assert "already in use" in str(info.value)
    with pytest.raises(MusicflowError, match="did not answer"):  # too slow: killed, not leaked
        local_server.start_local_server(tmp_path / "q", timeout_s=0.5)
    assert "PREFECT_API_URL" not in os.environ


def test_bad_cron_is_one_clear_error_before_anything_starts(
    midi_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = []
    monkeypatch.setattr(local_server, "start_local_server", lambda *a, **k: started.append(1))
    with pytest.raises(MusicflowError, match="invalid cron expression"):
        retrain.serve_retraining(midi_folder, DATASET, cron="61 * * * *", models=[])
    assert cli.main(["serve", str(midi_folder), "--cron", "every day"]) == 1
    assert started == []


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MusicflowError, match="source folder not found"):
        retrain.serve_retraining(tmp_path / "nope", DATASET, cron=CRON, models=[])


def test_existing_api_url_is_used_without_starting_a_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api/")
    monkeypatch.setattr(local_server, "start_local_server", lambda *a, **k: pytest.fail("started"))
    assert local_server.ensure_local_server(tmp_path) == ("http://127.0.0.1:4200/api", None)


def test_parameters_and_next_runs() -> None:
    training = TrainSettings(epochs=3, time_budget_s=90.0, seed=0, distribute=False)
    params = retrain.retrain_parameters(Path("x"), "d", models=["vae"], training=training)
    assert params == {  # only what differs from the defaults
        "source": str(Path("x").resolve()),
        "dataset": "d",
        "models": ["vae"],
        "training": {"epochs": 3, "time_budget_s": 90.0},
    }
    assert "training" not in retrain.retrain_parameters(
        Path("x"), "d", models=[], training=TrainSettings(epochs=None)
    )
    # a scheduled run gets them back as the flow's TrainSettings, the rest at their defaults;
    # serve's runner hands the flow to the run pickled by value, so check that copy
    flow = cloudpickle.loads(cloudpickle.dumps(retrain.pipeline_flow))
    assert flow.validate_parameters(params)["training"] == training
    start = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    runs = retrain.next_runs(CRON, 2, start=start)
    assert [(r.day, r.hour) for r in runs] == [(2, 3), (3, 3)]
