"""``musicflow deploy``: scheduled retraining the way a lab runs it, on real processes.

The integration test starts, each on a free 127.0.0.1 port and stopped whatever happens: a
throw-away PostgreSQL cluster and ``prefect server start`` on it
(``PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://…``). Then the README's commands,
as subprocesses: ``musicflow deploy`` (which creates the ``process`` work pool),
``prefect worker start --pool`` from this ``.venv``, and ``prefect deployment run --watch``
twice. The first run trains and registers a model version in the workspace's MLflow store;
the second, with no MIDI changed, is a no-op: no new MLflow run or version, the training step
cached. Every process runs under the outbound-connection tracer (``tests/nettrace``): none of
them, flow runs included, reaches beyond loopback. Skipped, with the reason, where
PostgreSQL's server binaries or the asyncpg driver are missing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import servers

from musicflow import cli
from musicflow.adapters.prefect_server import prefect_api
from musicflow.core.defaults import DEFAULT_CRON
from musicflow.flows import retrain

POOL = "musicflow"
DATASET = "lab"
MODEL = "vae"  # the fastest to train: one epoch of a few files takes seconds
RUN_TIMEOUT_S = 300
NETTRACE = Path(__file__).parent / "nettrace"


@dataclass
class Lab:
    """The shared servers, and the tracer's file and variables for every process."""

    pg: servers.Postgres
    prefect: servers.PrefectServer
    trace: Path
    traced: dict[str, str]

    def outbound(self) -> list[dict]:
        """What the tracer caught: lookups, connections or packets beyond loopback."""
        lines = self.trace.read_text().splitlines() if self.trace.exists() else []
        records = [json.loads(line) for line in lines]
        return [r for r in records if r["kind"] in ("lookup", "connect", "sendto")]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    if servers.postgres_bin() is None:
        pytest.skip(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin or initdb on "
            "PATH); Debian: apt-get install postgresql (.ci/run installs it)"
        )
    pytest.importorskip("asyncpg", reason="asyncpg (Prefect's PostgreSQL driver) is missing")
    with (
        servers.postgres_cluster() as pg,
        tempfile.TemporaryDirectory(prefix="musicflow-prefect-") as root,
    ):
        trace = Path(root) / "trace.jsonl"
        traced = {"PYTHONPATH": str(NETTRACE), "MUSICFLOW_TRACE": str(trace)}
        pg.createdb("prefect")
        database = pg.url("prefect", driver="postgresql+asyncpg")
        with servers.prefect_server(database, Path(root) / "server", **traced) as server:
            yield Lab(pg, server, trace, traced)


def run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> str:
    """Run a command the README lists; its output, or a failure showing it."""
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}:\n{output[-4000:]}"
    return output


def flow_run_id(output: str) -> str:
    """The flow run's id in ``prefect deployment run``'s output (``UUID: …``)."""
    found = re.search(r"UUID:\s*([0-9a-f-]{36})", output)
    assert found, output
    return found.group(1)


@pytest.mark.integration
@pytest.mark.server
def test_deploy_to_a_process_pool_runs_then_is_a_noop(lab: Lab, tmp_path: Path) -> None:
    import psycopg2
    from mlflow import MlflowClient

    from musicflow.core.synth import write_corpus

    server = lab.prefect
    source = tmp_path / "src"
    write_corpus(source, 4, seed=5)
    home = tmp_path / "ws"  # the workspace; the worker is told it by the deployment only
    home.mkdir()
    env = servers.prefect_env(server.url, tmp_path / "client", **lab.traced)
    prefect = str(servers.VENV_BIN / "prefect")

    # deploy runs in the workspace, with the workspace's own Prefect home (.prefect/)
    deploy_env = {k: v for k, v in env.items() if k != "PREFECT_HOME"} | {
        "MUSICFLOW_HOME": str(home)
    }

    def deploy(*options: str) -> str:
        cmd = [sys.executable, "-m", "musicflow.cli", "deploy", str(source), "--dataset", DATASET]
        return run([*cmd, "--pool", POOL, *options], deploy_env, home)

    out = deploy("--models", MODEL, "--epochs", "1")
    name = retrain.full_deployment_name(DATASET)
    assert f"deployment:  {name} (registered)" in out
    assert f"work pool:   {POOL} (created, type process)" in out

    with servers.prefect_worker(server.url, POOL, tmp_path / "worker", **lab.traced) as worker_log:
        watch = [prefect, "deployment", "run", name, "--watch", "--watch-timeout"]
        watch.append(str(RUN_TIMEOUT_S))
        try:
            first = flow_run_id(run(watch, env, tmp_path, timeout=RUN_TIMEOUT_S + 30))
            store = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
            versions = store.search_model_versions(f"name = '{DATASET}-{MODEL}'")
            assert [int(v.version) for v in versions] == [1]
            experiment = store.get_experiment_by_name(f"musicflow/{DATASET}")
            assert len(store.search_runs([experiment.experiment_id])) == 1

            # Nothing changed: the second run trains nothing and logs nothing.
            second = flow_run_id(run(watch, env, tmp_path, timeout=RUN_TIMEOUT_S + 30))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nworker log:\n{servers.log_tail(worker_log, 60)}") from exc
        versions = store.search_model_versions(f"name = '{DATASET}-{MODEL}'")
        assert [int(v.version) for v in versions] == [1]
        assert len(store.search_runs([experiment.experiment_id])) == 1
    assert list((home / ".prefect" / "storage").iterdir())  # the cached results, in the workspace

    # The deployment, its schedule and the runs are in PostgreSQL; the pool's worker ran
    # both runs, and the second one took its training step from the cache.
    with psycopg2.connect(lab.pg.url("prefect")) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT s.schedule->>'cron', s.active FROM deployment_schedule s "
            "JOIN deployment d ON d.id = s.deployment_id WHERE d.name = %s",
            (retrain.deployment_name(DATASET),),
        )
        assert cur.fetchall() == [(DEFAULT_CRON, True)]
        cur.execute(
            "SELECT fr.id::text, fr.state_type::text, wp.name FROM flow_run fr "
            "JOIN work_queue wq ON wq.id = fr.work_queue_id "
            "JOIN work_pool wp ON wp.id = wq.work_pool_id WHERE fr.id::text IN (%s, %s)",
            (first, second),
        )
        assert sorted(cur.fetchall()) == sorted(
            [(first, "COMPLETED", POOL), (second, "COMPLETED", POOL)]
        )
        cur.execute(
            "SELECT state_name FROM task_run WHERE flow_run_id::text = %s AND task_key LIKE %s",
            (second, "train%"),
        )
        assert [row[0] for row in cur.fetchall()] == ["Cached"]

    # Paused (as serve leaves it on Ctrl-C), then deployed again with another schedule: the
    # same deployment, updated in place and active again.
    with prefect_api(server.url):
        assert retrain.pause_schedule(DATASET)
    with psycopg2.connect(lab.pg.url("prefect")) as conn, conn.cursor() as cur:
        cur.execute("SELECT paused FROM deployment")
        assert cur.fetchall() == [(True,)]
    deploy("--models", MODEL, "--cron", "30 4 * * *")
    with psycopg2.connect(lab.pg.url("prefect")) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT d.paused, d.parameters, s.schedule->>'cron', s.active FROM deployment d "
            "JOIN deployment_schedule s ON d.id = s.deployment_id"
        )
        [(paused, parameters, cron, active)] = cur.fetchall()
        assert (paused, cron, active) == (False, "30 4 * * *", True)
        assert "epochs" not in parameters

    # Nothing phoned home; and the tracer did run in the flow runs (they import TensorFlow).
    assert lab.outbound() == []
    records = [json.loads(line) for line in lab.trace.read_text().splitlines()]
    engine = [r for r in records if r["argv"][0].endswith("prefect/engine.py")]  # a flow run
    assert any(r["detail"] == "'tensorflow'" for r in engine), records


@pytest.mark.integration  # the Prefect server
def test_deploy_refuses_a_pool_of_another_type(tmp_path: Path, capsys) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    # on the session's workspace server (PREFECT_API_URL)
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="k8s", type="kubernetes"), overwrite=True)
    assert cli.main(["deploy", str(tmp_path), "--pool", "k8s"]) == 1
    assert "work pool 'k8s' is of type 'kubernetes'" in capsys.readouterr().err
