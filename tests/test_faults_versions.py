"""Faults around one training run's data and results (issue #23), whole commands with the real
Prefect, MLflow and processes: an encode committing a new dataset version while a train runs,
two identical runs at once. Interleavings are made exact with ``MUSICFLOW_PAUSE_AT``
(``musicflow/adapters/atomic.py``): the command waits at a named point until the test lets it go.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_faults import Workspace, _can_mount_tmpfs, clean_env, midi_folder

from musicflow.adapters import prefect_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("versions")
    home = root / "ws"
    home.mkdir()
    env = clean_env(
        MUSICFLOW_HOME=str(home),
        PREFECT_HOME=str(home / ".prefect"),
        HOME=str(root),
        MUSICFLOW_SERVER_IDLE_MINUTES="3",
    )
    workspace = Workspace(root, home, midi_folder(root / "src", 6), env, root / "no-trace")
    yield workspace
    for proc in _STARTED:  # a failed test's commands, still held or waiting
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    prefect_server.stop_workspace_server(home / ".prefect")


def _client(ws: Workspace):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{ws.home / 'mlruns' / 'mlflow.db'}")


_STARTED: list[subprocess.Popen] = []


def _start(ws: Workspace, *args: str, env: dict[str, str]) -> subprocess.Popen:
    _STARTED.append(
        subprocess.Popen(
            [sys.executable, "-m", "musicflow.cli", *args],
            cwd=ws.home,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    )
    return _STARTED[-1]


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the command never reached its pause point"
        time.sleep(0.1)


def _heldout(folder: Path, record: dict) -> np.ndarray:
    from musicflow.models.data import heldout_split, load_windows

    shards = [folder / s for s in record["shards"]]
    return load_windows(shards, heldout_split(shards)[1])


def test_an_encode_during_train_changes_nothing_the_run_uses(ws: Workspace) -> None:
    """The issue's item 1: ``encode --pitch-low 31`` commits while ``train`` is between
    training and evaluation; the run is still evaluated, calibrated and registered on the
    version it trained on, and that version's shards stay until the run is done."""
    folder = ws.home / "data" / "rolls" / "s12"
    done, _ = ws.run("encode", str(ws.source), "--dataset", "s12")
    assert done.returncode == 0, done.stderr[-3000:]
    old = json.loads((folder / "dataset.json").read_text())
    expected = _heldout(folder, old)

    flag = ws.root / "paused"
    env = dict(ws.env, MUSICFLOW_PAUSE_AT=f"pipeline:trained={flag}")
    train = _start(ws, "train", "--dataset", "s12", "--model", "vae", "--epochs", "1", env=env)
    try:
        _wait_for(flag, train)
        done, _ = ws.run("encode", str(ws.source), "--dataset", "s12", "--pitch-low", "31")
        assert done.returncode == 0, done.stderr[-3000:]
        new = json.loads((folder / "dataset.json").read_text())
        assert new["encoding"]["pitch_low"] == 31 and new["digest"] != old["digest"]
        assert all((folder / s).is_file() for s in old["shards"])  # kept for the reader
        assert not np.array_equal(_heldout(folder, new), expected)  # what the bug evaluated on
    finally:
        flag.unlink(missing_ok=True)
    _, err = train.communicate(timeout=600)
    assert train.returncode == 0, err[-3000:]

    client = _client(ws)
    version = client.get_model_version("s12-vae", "1")
    run = client.get_run(version.run_id)
    assert run.data.params["dataset_digest"] == old["digest"]
    assert run.data.params["encoding.pitch_low"] == "21"
    tmp = ws.root / "artifacts"
    windows = np.load(client.download_artifacts(run.info.run_id, "evaluation/windows.npz", tmp))
    from musicflow.core.roll import unpack_windows

    assert np.array_equal(unpack_windows(windows["heldout"]), expected)
    model_dir = _version_dir(ws, "s12-vae", "1")
    sampling = json.loads((model_dir / "sampling.json").read_text())
    assert sampling["encoding"]["pitch_low"] == 21
    assert sampling["threshold"] == pytest.approx(float(run.data.params["sampling_threshold"]))

    # the next encode, with no reader left, removes the replaced version's shards
    done, _ = ws.run("encode", str(ws.source), "--dataset", "s12", "--pitch-low", "31")
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in folder.glob("part-*.parquet")) == sorted(new["shards"])


def _version_dir(ws: Workspace, name: str, version: str) -> Path:
    uri = _client(ws).get_model_version_download_uri(name, version)
    return next(Path(uri.removeprefix("file://")).rglob("sampling.json")).parent


def _generate(ws: Workspace, uri: str) -> subprocess.CompletedProcess:
    out = ws.root / "generated"
    done, _ = ws.run("generate", "--model-uri", uri, "-n", "1", "--out", str(out))
    return done


def test_a_model_without_recorded_digests_is_refused(ws: Workspace) -> None:
    """Item 11: with the version's digest tag removed, the run's (recorded beside it) still
    catches changed weights; with both removed, the model is refused."""
    from musicflow.adapters.tracking import MODEL_FILES_TAG

    client = _client(ws)
    version = client.get_model_version("s12-vae", "1")
    client.delete_model_version_tag("s12-vae", "1", MODEL_FILES_TAG)
    weights = next(_version_dir(ws, "s12-vae", "1").glob("*.weights.h5"))
    original = weights.read_bytes()
    weights.write_bytes(original[:-1000] + bytes(1000))  # 1,000 bytes overwritten
    done = _generate(ws, "models:/s12-vae/1")
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "does not match what was registered" in done.stderr and weights.name in done.stderr

    weights.write_bytes(original)
    client.delete_tag(version.run_id, MODEL_FILES_TAG)
    done = _generate(ws, "models:/s12-vae/1")
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "no recorded file digests" in done.stderr


def test_a_run_killed_before_its_evaluation_is_not_left_finished(ws: Workspace) -> None:
    """Item 12: a train killed after training, before evaluation, leaves its run RUNNING (then
    FAILED), never FINISHED unevaluated; the next identical train evaluates and finishes it."""
    flag = ws.root / "paused-kill"
    env = dict(ws.env, MUSICFLOW_PAUSE_AT=f"pipeline:trained={flag}")
    args = ("train", "--dataset", "s12", "--model", "vae", "--epochs", "1", "--seed", "3")
    proc = _start(ws, *args, env=env)
    try:
        _wait_for(flag, proc)
        proc.kill()
        proc.communicate(timeout=60)
    finally:
        flag.unlink(missing_ok=True)
    client = _client(ws)
    experiment = client.get_experiment_by_name("musicflow/s12")
    (run,) = client.search_runs([experiment.experiment_id], "params.seed = '3'")
    assert run.info.status == "RUNNING" and "onenn_accuracy" not in run.data.metrics

    done, _ = ws.run(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "train vae: nothing changed, skipped" in done.stderr  # the trained run is reused
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED" and "onenn_accuracy" in run.data.metrics


def test_two_identical_runs_at_once_train_and_register_once(ws: Workspace) -> None:
    """Item 12: the second identical ``run`` waits for the first, then finds its results.
    The first is held before its training result is cached: without the wait, the second
    would train and register a twin."""
    flag = ws.root / "paused-twin"
    args = ("run", str(ws.source), "--dataset", "twins", "--models", "vae", "--epochs", "1")
    first = _start(ws, *args, env=dict(ws.env, MUSICFLOW_PAUSE_AT=f"train:checkpoint={flag}"))
    try:
        _wait_for(flag, first)
        second = _start(ws, *args, env=ws.env)
        waiting = ""
        for line in second.stderr:  # the second says it waits, while the first is held
            waiting += line
            if "waiting for it to finish" in line or second.poll() is not None:
                break
        assert "another musicflow command is training vae" in waiting, waiting[-3000:]
    finally:
        flag.unlink(missing_ok=True)
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    _, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-3000:]
    assert "train vae: nothing changed, skipped" in err
    versions = _client(ws).search_model_versions("name = 'twins-vae'")
    assert [int(v.version) for v in versions] == [1]


def test_the_workspace_state_is_private(ws: Workspace) -> None:
    """Item 12: the stores and the result cache are the user's only (the commands ran with
    umask 022, as the output files' 0644 shows)."""
    state = ws.home / ".prefect"
    assert state.stat().st_mode & 0o777 == 0o700
    for db in (state / "prefect.db", ws.home / "mlruns" / "mlflow.db"):
        assert db.stat().st_mode & 0o777 == 0o600, db
    storage = state / "storage"
    assert storage.stat().st_mode & 0o777 == 0o700
    records = [p for p in storage.iterdir() if p.is_file()]
    assert records and all(p.stat().st_mode & 0o777 == 0o600 for p in records)
    assert (ws.home / "data" / "rolls" / "twins" / "dataset.json").stat().st_mode & 0o777 == 0o644


KILL_DURING_MIGRATION = """
import os, signal, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine

@event.listens_for(Engine, "after_cursor_execute")
def _kill(conn, cursor, statement, *args):
    if sys.argv[1] in statement:  # that step's DDL ran, its alembic version is not recorded
        os.kill(os.getpid(), signal.SIGKILL)

from musicflow.adapters import tracking
tracking.prepare_store()
"""


@pytest.mark.parametrize("statement", ["CREATE TABLE secrets", "ADD COLUMN routing_strategy"])
def test_a_kill_during_the_first_store_migration_leaves_nothing_half_done(
    tmp_path: Path, statement: str
) -> None:
    """Item 10: SIGKILL in the middle of a migration step of a fresh store (the issue's
    ``table secrets already exists``, ``duplicate column name: routing_strategy``): the next
    command creates the store from scratch."""
    env = clean_env(MUSICFLOW_HOME=str(tmp_path), HOME=str(tmp_path))
    code = subprocess.run(
        [sys.executable, "-c", KILL_DURING_MIGRATION, statement],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert code.returncode == -9, code.stderr[-3000:]
    store = tmp_path / "mlruns" / "mlflow.db"
    assert not store.exists()  # the half-migrated copy never took the store's name
    check = (
        "from musicflow.adapters import tracking; tracking.prepare_store(); print(tracking.client()"
    )
    check += ".create_experiment('musicflow/after-kill'))"
    done = subprocess.run(
        [sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert store.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in store.parent.iterdir()) == [
        "mlflow.db",
        "mlflow.db.lock",
        "mlflow.db.ready",
    ]


TRAIN_DISK_FULL_SCRIPT = r"""
set -u
mount -t tmpfs -o size=150m tmpfs "$WS"
cd "$WS"
"$PY" -m musicflow.cli encode "$SRC" --dataset d > /dev/null 2> "$KEEP"/encode.err
MUSICFLOW_PAUSE_AT="train:checkpoint=$KEEP/paused" \
  "$PY" -m musicflow.cli train --dataset d --model vae --epochs 1 > /dev/null 2> "$KEEP"/train.err &
pid=$!
while [ ! -e "$KEEP"/paused ] && kill -0 $pid 2>/dev/null; do sleep 0.2; done
avail=$(df -k --output=avail "$WS" | tail -1)
dd if=/dev/zero of=filler bs=1k count=$((avail - 200)) 2>/dev/null
rm -f "$KEEP"/paused
wait $pid; echo $? > "$KEEP"/train.rc
rm -f filler
cp mlruns/mlflow.db "$KEEP"/
find mlruns/artifacts -path '*checkpoint*' > "$KEEP"/checkpoints
"$PY" -m musicflow.cli server stop > /dev/null 2>&1
"""


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="cannot mount a small tmpfs here")
def test_a_disk_full_while_logging_the_checkpoint_leaves_nothing_half_done(tmp_path: Path) -> None:
    """Item 9: the disk fills just before training logs its checkpoint (the workspace on a
    tmpfs, filled to 200 KB while ``train`` waits at that point; the Prefect server is the
    test session's, its database outside it): one line, the run FAILED, no partial
    checkpoint, no version."""
    import sqlite3

    ws_dir, keep = tmp_path / "ws", tmp_path / "keep"
    ws_dir.mkdir()
    keep.mkdir()
    env = clean_env(
        WS=str(ws_dir),
        KEEP=str(keep),
        SRC=str(midi_folder(tmp_path / "src", 6)),
        PY=sys.executable,
        MUSICFLOW_HOME=str(ws_dir),
        PREFECT_HOME=str(keep / ".prefect"),
        MUSICFLOW_MIN_FREE_MB="1",
        MUSICFLOW_SERVER_IDLE_MINUTES="1",
    )
    # the session's server (PREFECT_API_URL): no workspace server to start and stop for this
    env.update({k: v for k, v in os.environ.items() if k.startswith("PREFECT_API_")})
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the CLI's own default (TensorFlow's C++ log off)
    subprocess.run(
        ["unshare", "-rm", "bash", "-c", TRAIN_DISK_FULL_SCRIPT], env=env, timeout=900, check=True
    )
    err = (keep / "train.err").read_text().strip()
    assert (keep / "train.rc").read_text().strip() == "1", err
    *steps, last = err.splitlines()
    assert last.startswith("musicflow: error: no space left on device writing "), err
    assert "/mlruns/artifacts/" in last and "/checkpoint;" in last, err
    # before it, progress lines only (and TensorFlow's C++ start-up log, as in every train)
    tf_log = re.compile(r"[IWE]\d{4} |WARNING: All log messages before absl")
    assert all(line.startswith(("==> ", "    ")) or tf_log.match(line) for line in steps), err
    con = sqlite3.connect(keep / "mlflow.db")
    assert [s for (s,) in con.execute("SELECT status FROM runs")] == ["FAILED"]
    assert con.execute("SELECT count(*) FROM model_versions").fetchone() == (0,)
    assert (keep / "checkpoints").read_text().strip() == ""
