"""musicflow/adapters/tracking.py: the MLflow names, and the store they live in
(docs/tracking.md)."""

from __future__ import annotations

import math
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from musicflow.adapters import procs, tracking
from musicflow.core.errors import ModelError, TrackingError


def test_names() -> None:
    assert tracking.experiment_name("bach") == "musicflow/bach"
    assert tracking.registered_name("bach", "gan-thesis") == "bach-gan-thesis"
    assert tracking.version_uri("bach-gan", 4) == "models:/bach-gan/4"
    assert tracking.CHAMPION == "champion"


def test_ui_serves_the_workspace_store_on_loopback(workspace_home: Path) -> None:
    cmd = tracking.ui_command(5001)
    assert cmd[1:4] == ["-m", "mlflow", "server"]
    assert cmd[cmd.index("--backend-store-uri") + 1].endswith("mlruns/mlflow.db")
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and "5001" in cmd
    assert cmd[cmd.index("--workers") + 1] == "1"
    artifacts = cmd[cmd.index("--artifacts-destination") + 1]
    assert artifacts == (workspace_home / "mlruns" / "artifacts").as_uri()


@pytest.mark.integration
def test_experiment_created_once_with_artifacts_beside_the_store(workspace_home: Path) -> None:
    first = tracking.ensure_experiment("bach")
    assert tracking.ensure_experiment("bach") == first
    experiment = tracking.client().get_experiment(first)
    assert experiment.name == "musicflow/bach"
    assert (
        experiment.artifact_location == (workspace_home / "mlruns" / "artifacts" / "bach").as_uri()
    )
    assert tracking.latest_version("bach-gan") is None
    assert tracking.champion_version("bach-gan") is None
    assert tracking.dataset_versions("bach") == []


# --- the store: created once under concurrency, repaired or reported (issue #12 item 1) -------

PREPARE = (
    "import sys; from musicflow.adapters import tracking\n"
    "tracking.prepare_store(); tracking.ensure_experiment(sys.argv[1])\n"
)


@pytest.mark.integration
@pytest.mark.parametrize("attempt", range(2))
def test_processes_creating_a_fresh_store_at_once(tmp_path: Path, attempt: int) -> None:
    from mlflow.store.db.utils import _get_latest_schema_revision

    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    procs = [
        subprocess.Popen([sys.executable, "-c", PREPARE, f"d{i}"], env=env, stderr=subprocess.PIPE)
        for i in range(4)
    ]
    errors = [p.communicate(timeout=600)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    con = sqlite3.connect(tmp_path / "mlflow.db")
    tables = [n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    version = con.execute("SELECT version_num FROM alembic_version").fetchall()
    names = sorted(n for (n,) in con.execute("SELECT name FROM experiments"))
    con.close()
    assert not [t for t in tables if t.startswith("_alembic_tmp_")]
    assert version == [(_get_latest_schema_revision(),)]
    assert names == ["Default", "musicflow/d0", "musicflow/d1", "musicflow/d2", "musicflow/d3"]


def _store_at(path: Path, revision: str) -> None:
    """A store migrated up to ``revision`` only, as an interrupted first use leaves it."""
    from alembic import command
    from mlflow.store.db.db_types import SQLITE  # noqa: F401  (the dialect MLflow expects)
    from mlflow.store.db.utils import _get_alembic_config, create_sqlalchemy_engine
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    engine = create_sqlalchemy_engine(f"sqlite:///{path}")
    InitialBase.metadata.create_all(engine)
    config = _get_alembic_config(str(engine.url))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    engine.dispose()


@pytest.mark.integration
def test_a_half_migrated_store_is_repaired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Leftover ``_alembic_tmp_runs`` of a migration that died (the race's aftermath):
    without the repair MLflow's next migration fails on it for ever."""
    db = tmp_path / "mlflow.db"
    _store_at(db, "2b4d017a5e9b")  # the next migration rebuilds ``runs`` "move and copy"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE _alembic_tmp_runs AS SELECT * FROM runs")
    con.commit()
    con.close()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    tracking.prepare_store()
    assert tracking.known_datasets() == []
    con = sqlite3.connect(db)
    tables = [n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    con.close()
    assert "_alembic_tmp_runs" not in tables and "runs" in tables


@pytest.mark.integration
def test_a_store_that_cannot_be_migrated_is_reported_in_one_line_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    tracking.prepare_store()
    (tmp_path / "mlflow.db.ready").unlink()
    con = sqlite3.connect(db)  # the schema is new, its recorded version old
    con.execute("UPDATE alembic_version SET version_num = '2b4d017a5e9b'")
    con.commit()
    con.close()
    with pytest.raises(TrackingError) as info:
        tracking.prepare_store()
    message = str(info.value)
    assert "\n" not in message and "half-migrated" in message
    assert f"mv {db} {db}.broken" in message


def test_an_unreachable_server_is_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    with pytest.raises(TrackingError, match=r"http://127.0.0.1:9 is unreachable"):
        tracking.check_reachable()


def test_a_reachable_server_passes_whatever_it_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def answer() -> None:  # any HTTP answer means a server is there: auth and proxies pass
            conn, _ = server.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{server.getsockname()[1]}")
        tracking.check_reachable()
        thread.join(timeout=5)


def test_a_server_that_accepts_and_never_answers_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as server:  # the kernel accepts; nothing ever answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{server.getsockname()[1]}")
        with pytest.raises(TrackingError, match=r"unreachable \(no answer within 1 s\)"):
            tracking.check_reachable(timeout_s=1)


@pytest.mark.perf
def test_unreachable_and_silent_servers_are_told_in_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    started = time.monotonic()
    with pytest.raises(TrackingError):
        tracking.check_reachable()
    assert time.monotonic() - started < 6
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{server.getsockname()[1]}")
        started = time.monotonic()
        with pytest.raises(TrackingError):
            tracking.check_reachable(timeout_s=1)
        assert time.monotonic() - started < 3


def test_read_only_commands_create_no_store(workspace_home: Path) -> None:
    assert tracking.known_datasets() == [] and tracking.dataset_versions("d") == []
    with pytest.raises(ModelError, match="no model"):
        tracking.fetch_model("models:/d-vae/1", workspace_home)
    assert not (workspace_home / "mlruns" / "mlflow.db").exists()


@pytest.mark.integration
def test_compare_reads_the_same_rows_as_mlflows_client(workspace_home: Path) -> None:
    """The fast read of ``compare`` (sqlite, no MLflow import) agrees with MLflow's client."""
    import mlflow

    tracking.use_workspace_store()
    c = tracking.client()
    for model, scores in (("vae", [0.9, 0.7]), ("gan", [0.8])):
        name = tracking.registered_name("d_1", model)
        c.create_registered_model(name)
        for score in scores:
            with tracking.start_run("d_1", run_name=model) as run:
                mlflow.log_metric("onenn_accuracy", score)
                mlflow.log_metric("loss", float("nan"))
            c.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
        tracking.set_champion(name, 1)
    c.create_registered_model("dx1-vae")  # '_' would match 'x' in a LIKE pattern
    fast = tracking.dataset_versions("d_1")
    slow = tracking._versions_from_client("d_1")

    def rows(found):
        return [(r.model, r.version, r.champion, r.metrics["onenn_accuracy"]) for r in found]

    assert (
        rows(fast)
        == rows(slow)
        == [
            ("d_1-gan", 1, True, 0.8),
            ("d_1-vae", 1, True, 0.9),
            ("d_1-vae", 2, False, 0.7),
        ]
    )
    assert all(math.isnan(r.metrics["loss"]) for r in fast)
    assert tracking.known_datasets() == ["d_1"]


@pytest.mark.integration
def test_runs_a_killed_process_left_running_are_closed(workspace_home: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    c = tracking.client()
    experiment = tracking.ensure_experiment("d")
    orphan = c.create_run(experiment, tags={tracking.OWNER_TAG: procs.owner(dead.pid)})
    mine = c.create_run(experiment, tags={tracking.OWNER_TAG: procs.owner()})
    assert tracking.mark_crashed_runs() == 1
    assert c.get_run(orphan.info.run_id).info.status == "FAILED"
    assert c.get_run(mine.info.run_id).info.status == "RUNNING"


def _log_model_folder(folder: Path, name: str) -> int:
    """Log a model folder of data files (the numpy sampler's among them) as a version."""
    folder.mkdir()
    (folder / "config.json").write_text('{"name": "rnn"}')
    (folder / "sampling.json").write_text('{"threshold": 0.5}')
    (folder / "sampler.json").write_text('{"format": 1}')
    (folder / "sampler.npz").write_bytes(b"PK arrays")
    with tracking.start_run("d", run_name="rnn"):
        version = tracking.log_model(folder, name)
    return version


@pytest.mark.integration
def test_a_version_is_fetched_without_mlflow_as_mlflow_fetches_it(
    workspace_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast fetch (sqlite and a copy, no MLflow import) gives the files MLflow's client
    gives, by version and by alias, and checks the digests the same way."""
    tracking.use_workspace_store()
    version = _log_model_folder(workspace_home / "model", "d-rnn")
    tracking.set_champion("d-rnn", version)
    fetched = {}
    for how in ("sqlite", "mlflow"):
        with monkeypatch.context() as patch:
            if how == "mlflow":
                patch.setattr(tracking, "_fetch_local", lambda *a: None)
            for uri in ("models:/d-rnn/1", "models:/d-rnn@champion"):
                dst = workspace_home / "fetched" / how / uri[-3:]
                fetched[how, uri] = tracking.file_digests(tracking.fetch_model(uri, dst))
            with pytest.raises(ModelError, match="no model"):
                tracking.fetch_model("models:/d-rnn/7", workspace_home / "none" / how)
    assert len(fetched) == 4 and len({json_of(d) for d in fetched.values()}) == 1
    assert set(fetched["sqlite", "models:/d-rnn/1"]) == {
        "config.json",
        "sampling.json",
        "sampler.json",
        "sampler.npz",
    }
    stored = Path(tracking.client().get_model_version_download_uri("d-rnn", "1")[7:])
    arrays = next(stored.rglob("sampler.npz"))
    arrays.write_bytes(b"PK other arrays")
    with pytest.raises(ModelError, match=r"does not match what was registered \(sampler\.npz"):
        tracking.fetch_model("models:/d-rnn/1", workspace_home / "tampered")


def json_of(digests: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(digests.items()))


def test_model_files_without_recorded_digests_are_refused() -> None:
    with pytest.raises(ModelError, match="no recorded file digests"):
        tracking._recorded_digests("models:/d-vae/1", [None, None])
    with pytest.raises(ModelError, match="differ"):
        tracking._recorded_digests("models:/d-vae/1", ['{"a": "1"}', '{"a": "2"}'])
    assert tracking._recorded_digests("models:/d-vae/1", [None, '{"a": "1"}']) == {"a": "1"}
