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


def _start(home: Path, env: dict[str, str], *argv: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "musicflow.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=home,
        env=env,
    )


TRACKING_COMMANDS = {
    "compare": ["compare", "--dataset", "s12"],
    "generate": ["generate", "--model-uri", "models:/s12-rnn/1"],
    "train": ["train", "--dataset", "s12", "--model", "rnn", "--epochs", "1"],
}


def test_silent_tracking_and_prefect_servers_end_each_command_in_one_line(
    tmp_path: Path, silent_port: int
) -> None:
    """The four commands run at once (each waits out its 5 s timeout), each in its own
    workspace."""
    tracking_uri = f"http://127.0.0.1:{silent_port}"
    prefect_url = f"http://127.0.0.1:{silent_port}/api"
    started = time.monotonic()
    procs: dict[str, subprocess.Popen] = {}
    for name, argv in TRACKING_COMMANDS.items():
        home = tmp_path / name
        (home / "data" / "rolls" / "s12").mkdir(parents=True)
        (home / "data" / "rolls" / "s12" / "dataset.json").write_text("{}")  # train's check
        procs[name] = _start(home, _env(home, MLFLOW_TRACKING_URI=tracking_uri), *argv)
    audit_home = tmp_path / "audit"
    source = audit_home / "src"
    source.mkdir(parents=True)
    (source / "a.mid").write_bytes(b"MThd")
    env = _env(audit_home, PREFECT_API_URL=prefect_url)
    procs["audit"] = _start(audit_home, env, "audit", str(source))
    try:
        ended: dict[str, tuple[int, str, float]] = {}
        for name, proc in procs.items():
            _, err = proc.communicate(timeout=60)  # the bug: silent for minutes
            ended[name] = (proc.returncode, err, time.monotonic() - started)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    for name in TRACKING_COMMANDS:
        code, err, elapsed = ended[name]
        assert code == 1, (name, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, (name, err)
        message = f"MLflow tracking server {tracking_uri} is unreachable (no answer within 5 s)"
        assert message in lines[0], (name, err)
        assert 4 < elapsed < 20, f"{name}: {elapsed:.1f} s"

    code, err, elapsed = ended["audit"]
    assert code == 1, err
    lines = err.strip().splitlines()
    assert (
        f"the Prefect server {prefect_url} (PREFECT_API_URL) does not answer within 5 s"
        in (lines[-1])
    )
    assert len(lines) == 1, err
    assert elapsed < 20, f"{elapsed:.1f} s"
    assert not (audit_home / ".prefect" / "musicflow-server.json").exists()  # none started
