"""Servers that accept a connection and never answer (issue #23, item 2): every command that
talks to one ends within seconds in one line, instead of waiting silently for minutes.

The server is real: a socket on 127.0.0.1 that accepts every connection, in a thread of the
test process, and never reads or writes; the commands are real processes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.perf]  # CLI processes, time bounds


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 whose server accepts connections, holds them open and says
    nothing."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


def _env(home: Path, **changes: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_API_", "MLFLOW_TRACKING_"))
    }
    env.update(MUSICFLOW_HOME=str(home), PREFECT_HOME=str(home / ".prefect"), **changes)
    return env


def _run(home: Path, env: dict[str, str], *argv: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "musicflow.cli", *argv],
        capture_output=True,
        text=True,
        cwd=home,
        env=env,
        timeout=60,  # the bug: silent for minutes
    )
    return done, time.monotonic() - started


@pytest.mark.parametrize(
    "argv",
    [
        ["compare", "--dataset", "s12"],
        ["generate", "--model-uri", "models:/s12-rnn/1"],
        ["train", "--dataset", "s12", "--model", "rnn", "--epochs", "1"],
    ],
    ids=["compare", "generate", "train"],
)
def test_a_silent_tracking_server_ends_the_command_in_one_line(
    tmp_path: Path, silent_port: int, argv: list[str]
) -> None:
    (tmp_path / "data" / "rolls" / "s12").mkdir(parents=True)
    (tmp_path / "data" / "rolls" / "s12" / "dataset.json").write_text("{}")  # train's check
    uri = f"http://127.0.0.1:{silent_port}"
    done, elapsed = _run(tmp_path, _env(tmp_path, MLFLOW_TRACKING_URI=uri), *argv)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"MLflow tracking server {uri} is unreachable (no answer within 5 s)" in lines[0]
    assert 4 < elapsed < 20, f"{elapsed:.1f} s"


def test_a_silent_prefect_server_ends_audit_in_one_line(tmp_path: Path, silent_port: int) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.mid").write_bytes(b"MThd")
    url = f"http://127.0.0.1:{silent_port}/api"
    done, elapsed = _run(tmp_path, _env(tmp_path, PREFECT_API_URL=url), "audit", str(source))
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert f"the Prefect server {url} (PREFECT_API_URL) does not answer within 5 s" in lines[-1]
    assert len(lines) == 1, done.stderr
    assert elapsed < 20, f"{elapsed:.1f} s"
    assert not (tmp_path / ".prefect" / "musicflow-server.json").exists()  # none started
