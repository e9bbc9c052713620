"""The workspace's Prefect server (musicflow/adapters/prefect_server.py): started once, reused, on
loopback with a password, stopped on demand or when idle; runs a killed command left Running
are marked Crashed. Real processes and a real Prefect server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from musicflow.adapters import prefect_server

pytestmark = pytest.mark.integration

ATTACH = (
    "import sys, json; from musicflow.adapters import prefect_server as p\n"
    "s = p.attach(); s.wait(); print(json.dumps([s.pid, s.url, s.started_here]))\n"
)


def _env(home: Path, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env.update(PREFECT_HOME=str(home), MUSICFLOW_HOME=str(home.parent), **more)
    return env


def _attach(home: Path, **more: str) -> tuple[int, str, bool]:
    done = subprocess.run(
        [sys.executable, "-c", ATTACH],
        env=_env(home, **more),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    pid, url, started = json.loads(done.stdout)
    return pid, url, started


def test_started_once_reused_password_protected_and_stopped(tmp_path: Path) -> None:
    home = tmp_path / ".prefect"
    try:
        pid, url, started = _attach(home)
        assert started and url.startswith("http://127.0.0.1:")
        assert _attach(home) == (pid, url, False)  # the next command reuses it
        assert (home / prefect_server.STATE_NAME).stat().st_mode & 0o777 == 0o600
        with pytest.raises(urllib.error.HTTPError) as denied:  # no password, no API
            urllib.request.urlopen(
                urllib.request.Request(f"{url}/flow_runs/filter", data=b"{}", method="POST"),
                timeout=10,
            )
        assert denied.value.code == 401
        status = prefect_server.server_status(home)
        assert status is not None and status["pid"] == pid and status["healthy"]
        # its UI (the flow-run history) knows where its API is, and asks for the login
        with urllib.request.urlopen(f"{status['ui']}/ui-settings", timeout=10) as resp:
            settings = json.loads(resp.read())
        assert settings["api_url"] == url and settings["auth"] == "BASIC"
    finally:
        assert prefect_server.stop_workspace_server(home)
    assert prefect_server.server_status(home) is None
    assert not Path(f"/proc/{pid}").exists() or b"prefect_server" not in _cmdline(pid)


def test_stops_by_itself_when_idle(tmp_path: Path) -> None:
    home = tmp_path / ".prefect"
    pid, _, _ = _attach(home, MUSICFLOW_SERVER_IDLE_MINUTES="0.05")  # 3 s
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    alive = Path(f"/proc/{pid}").exists() and b"prefect_server" in _cmdline(pid)
    if alive:
        prefect_server.stop_workspace_server(home)
    assert not alive and not (home / prefect_server.STATE_NAME).exists()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_a_dead_owners_flow_run_is_marked_crashed() -> None:
    """Against the session's server: a Running flow run whose process is gone."""
    from prefect import flow, tags
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import Running

    from musicflow.adapters import procs

    @flow(name="musicflow-test-owner")
    def noop() -> None:
        pass

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    owner = procs.owner(dead.pid).rsplit(":", 1)[0] + ":1"  # its pid is gone (start time moot)
    with get_client(sync_client=True) as client:
        with tags("musicflow", prefect_server.OWNER_TAG + owner):
            run = client.create_flow_run(noop, tags=["musicflow", prefect_server.OWNER_TAG + owner])
        client.set_flow_run_state(run.id, Running(), force=True)
        alive = client.create_flow_run(
            noop, tags=["musicflow", prefect_server.OWNER_TAG + procs.owner()]
        )
        client.set_flow_run_state(alive.id, Running(), force=True)
        assert prefect_server.mark_crashed_runs() >= 1
        assert client.read_flow_run(run.id).state.type == StateType.CRASHED
        assert client.read_flow_run(alive.id).state.type == StateType.RUNNING
