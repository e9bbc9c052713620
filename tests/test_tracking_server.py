"""The whole pipeline against a real MLflow tracking server backed by a real PostgreSQL.

The test starts both itself: a throw-away PostgreSQL cluster (Debian's ``postgresql`` package,
``initdb`` into a temp folder, ``pg_ctl start`` on a free 127.0.0.1 port) and ``mlflow server``
on it with ``--serve-artifacts`` (artifacts in a temp folder), on another loopback port. Then
``musicflow run``, ``compare`` and ``generate`` run as subprocesses with
``MLFLOW_TRACKING_URI=http://127.0.0.1:PORT``, the way a lab's users would. Skipped, with the
reason, where the PostgreSQL server binaries or the psycopg2 driver are missing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import servers

pytestmark = [pytest.mark.integration, pytest.mark.server]

DATASET = "lab"
MODELS = ("rnn", "gan")


@pytest.fixture(scope="module")
def tracking() -> Iterator[tuple[servers.Postgres, servers.MlflowServer]]:
    if servers.postgres_bin() is None:
        pytest.skip(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin or initdb on "
            "PATH); Debian: apt-get install postgresql (.ci/run installs it)"
        )
    pytest.importorskip("psycopg2", reason="psycopg2 (the PostgreSQL driver) is not installed")
    with (
        servers.postgres_cluster() as pg,
        tempfile.TemporaryDirectory(prefix="musicflow-mlflow-") as root,
    ):
        backend = pg.createdb("mlflow")
        with servers.mlflow_server(backend, Path(root)) as server:
            yield pg, server


def musicflow(
    home: Path, uri: str, *args: str, timeout: float = 600
) -> subprocess.CompletedProcess:
    env = {**os.environ, "MUSICFLOW_HOME": str(home), "MLFLOW_TRACKING_URI": uri}
    env.pop("PREFECT_HOME", None)  # the subprocess's own, under its MUSICFLOW_HOME
    done = subprocess.run(
        [sys.executable, "-m", "musicflow.cli", *args],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"musicflow {args[0]} failed:\n{done.stderr[-4000:]}"
    return done


def test_run_compare_generate_on_mlflow_server_with_postgres(
    tracking: tuple[servers.Postgres, servers.MlflowServer], tmp_path: Path
) -> None:
    import psycopg2
    from mlflow import MlflowClient

    from musicflow.core.midi import scan_midi
    from musicflow.core.synth import write_corpus

    pg, server = tracking
    # Six small synthetic files (~110 windows): one epoch of each model takes seconds.
    source = tmp_path / "src"
    write_corpus(source, 6, seed=13)
    home = tmp_path / "home"
    home.mkdir()

    done = musicflow(
        home, server.url, "run", str(source), "--dataset", DATASET,
        "--models", ",".join(MODELS), "--epochs", "1",
    )  # fmt: skip
    assert "View run" not in done.stdout  # MLflow's per-run URL lines stay off stdout
    digest = json.loads((home / "data" / "rolls" / DATASET / "dataset.json").read_text())["digest"]

    client = MlflowClient(tracking_uri=server.url)
    experiment = client.get_experiment_by_name(f"musicflow/{DATASET}")
    assert experiment is not None
    # The server chose the artifact location: clients upload through it, not to a local path.
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["musicflow.model"] for r in runs) == sorted(MODELS)

    champions = {}
    for run in runs:
        model = run.data.tags["musicflow.model"]
        assert run.info.status == "FINISHED"
        assert run.data.params["dataset_digest"] == digest
        for metric in ("onenn_accuracy", "onenn_accuracy_baseline", "pitch_hist_l1", "blank_rate"):
            assert metric in run.data.metrics, (model, metric)
        assert client.get_metric_history(
            run.info.run_id, "val_nll" if model in ("rnn", "vae") else "d_loss"
        )
        # Dataset lineage: our own digest, not MLflow's 10,000-row sample.
        inputs = run.inputs.dataset_inputs
        assert [i.dataset.name for i in inputs] == [DATASET]
        assert inputs[0].dataset.digest == digest[:32]
        # The report and its figures went to the server's artifact store.
        report = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
        assert {"report/report.html", "report/figures", "report/midi"} <= report
        # One registered version per model; champion when not mostly blank (the rule).
        name = f"{DATASET}-{model}"
        versions = client.search_model_versions(f"name = '{name}'")
        assert [v.version for v in versions] == ["1"]
        assert versions[0].run_id == run.info.run_id
        champion = client.get_registered_model(name).aliases.get("champion")
        assert (champion == "1") == (run.data.metrics["blank_rate"] <= 0.5)
        if champion:
            champions[name] = champion
    assert champions, "no model became champion: nothing to generate from"

    # Everything landed on the servers, nothing in the workspace's local store.
    assert len(list(server.artifacts.rglob("report.html"))) == len(MODELS)
    assert not [p for p in (home / "mlruns").rglob("*") if p.is_file()]
    with psycopg2.connect(pg.url("mlflow")) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM runs WHERE experiment_id = %s", (experiment.experiment_id,)
        )
        assert cur.fetchone()[0] == len(MODELS)
        cur.execute("SELECT name, alias FROM registered_model_aliases")
        assert {name for name, alias in cur.fetchall() if alias == "champion"} == set(champions)

    table = musicflow(home, server.url, "compare", "--dataset", DATASET).stdout
    for model in MODELS:
        assert re.search(rf"^{DATASET}-{model}\s+1\b", table, re.M), table
    for name in champions:
        assert re.search(rf"^{name}\s+1\s+champion", table, re.M), table

    name = sorted(champions)[0]
    out = tmp_path / "generated"
    musicflow(
        home, server.url, "generate", "--model-uri", f"models:/{name}@champion",
        "-n", "2", "--out", str(out), "--seed", "3",
    )  # fmt: skip
    pieces = sorted(out.glob("*.mid"))
    assert len(pieces) == 2
    for piece in pieces:
        scan_midi(piece.read_bytes())  # valid SMF the project's own reader accepts
