"""Two commands at once on a fresh workspace, several times (issue #12 item 1): the MLflow
store is created and migrated once, one Prefect server is started, and both commands get
their honest outcome. Real processes, real MLflow, real Prefect."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_midi

from musicflow.adapters import prefect_server

pytestmark = pytest.mark.integration


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_", "MLFLOW_"))}
    env.update(
        MUSICFLOW_HOME=str(home),
        PREFECT_HOME=str(home / ".prefect"),
        MUSICFLOW_SERVER_IDLE_MINUTES="1",
    )
    return env


def _together(home: Path, *commands: list[str]) -> list[subprocess.CompletedProcess]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "musicflow.cli", *argv],
            cwd=home,
            env=_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in commands
    ]
    out = []
    for proc, argv in zip(procs, commands, strict=True):
        stdout, stderr = proc.communicate(timeout=600)
        out.append(subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr))
    return out


def _schema(db: Path) -> tuple[list[str], list[str]]:
    con = sqlite3.connect(db)
    try:
        tables = [n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        versions = [v for (v,) in con.execute("SELECT version_num FROM alembic_version")]
    finally:
        con.close()
    return [t for t in tables if t.startswith("_alembic_tmp_")], versions


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("attempt", range(3))
def test_two_uis_on_a_fresh_workspace(tmp_path: Path, attempt: int) -> None:
    """Both create the MLflow store (the race that broke it 3 times in 3), then serve it."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    from musicflow.adapters.prefect_server import free_port

    ports = [free_port(), free_port()]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "musicflow.cli", "ui", "--port", str(port)],
            cwd=tmp_path,
            env=_env(tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for port in ports
    ]
    try:
        deadline = time.monotonic() + 240
        while not all(map(_listening, ports)) and time.monotonic() < deadline:
            assert all(p.poll() is None for p in procs), [p.stderr.read() for p in procs]
            time.sleep(0.5)
        assert all(map(_listening, ports))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=60) for proc in procs]
    assert codes == [0, 0]
    leftovers, versions = _schema(tmp_path / "mlruns" / "mlflow.db")
    assert leftovers == [] and versions == [_get_latest_schema_revision()]
    done = _together(tmp_path, ["compare", "--dataset", "k"])[0]
    assert done.returncode == 1 and done.stderr.startswith("musicflow: error: no dataset 'k'")


def test_three_encodes_on_a_fresh_workspace_share_one_server(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            write_midi(tmp_path / name / f"{i}.mid", [50 + i + j % 12 for j in range(24)])
    try:
        results = _together(
            tmp_path,
            ["encode", str(tmp_path / "a"), "--dataset", "a"],
            ["encode", str(tmp_path / "b"), "--dataset", "b"],
            ["encode", str(tmp_path / "a"), "--dataset", "a"],  # the same dataset, at once
        )
        for done in results:
            assert done.returncode == 0, done.stderr[-3000:]
        servers = [
            p
            for p in Path("/proc").glob("[0-9]*/cmdline")
            if b"musicflow.adapters.prefect_server" in _read(p)
            and str(tmp_path).encode() in _read(p)
        ]
        assert len(servers) == 1
        state = prefect_server.server_status(tmp_path / ".prefect")
        assert state is not None and state["healthy"]
    finally:
        prefect_server.stop_workspace_server(tmp_path / ".prefect")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""
