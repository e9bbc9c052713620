"""Faults around one training run's data and results (issue #23), whole commands with the real
Prefect, MLflow and processes: an encode committing a new dataset version while a train runs,
two identical runs at once. Interleavings are made exact with ``MUSICFLOW_PAUSE_AT``
(``musicflow/atomic.py``): the command waits at a named point until the test lets it go.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_faults import Workspace, clean_env, midi_folder

from musicflow import prefect_server

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
    prefect_server.stop_workspace_server(home / ".prefect")


def _client(ws: Workspace):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{ws.home / 'mlruns' / 'mlflow.db'}")


def _start(ws: Workspace, *args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "musicflow.cli", *args],
        cwd=ws.home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


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
    from musicflow.roll import unpack_windows

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
