"""The workspace's Prefect server killed in the middle of a command (issue #23, item 7): the
command notices within a second, restarts the server at the same address from the same
database, says so in one line, and finishes: the version is trained, evaluated, registered
and reported. Real processes: the server is SIGKILLed while ``train`` runs its epochs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_midi

from musicflow.adapters import prefect_server

pytestmark = pytest.mark.integration


# not perf: its one bound (400 s after the kill) holds on a loaded machine, so it runs with
# the other integration tests in make test's parallel pass
def test_a_server_killed_during_train_is_restarted_and_the_train_finishes(tmp_path: Path) -> None:
    src, home = tmp_path / "src", tmp_path / "ws"
    src.mkdir()
    home.mkdir()
    for i in range(6):
        write_midi(src / f"p{i}.mid", [48 + (i * 5 + j * 7) % 36 for j in range(64)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env.update(
        MUSICFLOW_HOME=str(home),
        PREFECT_HOME=str(home / ".prefect"),
        MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlruns' / 'mlflow.db'}",
    )
    state_file = home / ".prefect" / prefect_server.STATE_NAME
    try:
        done = subprocess.run(
            [sys.executable, "-m", "musicflow.cli", "encode", str(src), "--dataset", "lost"],
            capture_output=True, text=True, cwd=home, env=env, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        before = json.loads(state_file.read_text())
        argv = ["train", "--dataset", "lost", "--model", "rnn", "--epochs", "5"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "musicflow.cli", *argv],
            cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        stderr: list[str] = []
        try:
            deadline = time.monotonic() + 300
            for line in proc.stderr:
                stderr.append(line)
                if "epoch 1/" in line or time.monotonic() > deadline:
                    break
            os.kill(before["pid"], signal.SIGKILL)
            killed_at = time.monotonic()
            stderr += proc.stderr.readlines()
            stdout = proc.stdout.read()
            proc.wait(timeout=400)
        finally:
            if proc.poll() is None:
                proc.kill()
        text = "".join(stderr)
        assert proc.returncode == 0, text[-3000:]
        said = [line for line in stderr if "stopped during this command" in line]
        assert len(said) == 1 and "restarted it at " + before["url"] in said[0], text[-3000:]
        assert "Traceback" not in text and "ERROR" not in text, text[-3000:]
        assert "models:/lost-rnn/1" in stdout
        assert (home / "reports" / "lost" / "rnn-v1" / "report.html").is_file()
        after = json.loads(state_file.read_text())
        assert (after["url"], after["auth"]) == (before["url"], before["auth"])
        assert after["pid"] != before["pid"] and prefect_server.server_status(home / ".prefect")
        assert time.monotonic() - killed_at < 400
    finally:
        prefect_server.stop_workspace_server(home / ".prefect")
