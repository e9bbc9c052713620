"""Local Prefect servers, started and stopped by musicflow (docs/cli.md, "The Prefect server").

Two kinds:

- **The workspace server** (:func:`attach`): every command that runs a flow (``audit``,
  ``encode``, ``train``, ``run``) uses one Prefect API server per workspace, started by the
  first such command on ``127.0.0.1`` (loopback only, a random port, a random password in
  ``.prefect/musicflow-server.json``, readable by the user only) and reused by later commands,
  which saves each of them the 10-25 s that Prefect's ephemeral per-process server costs. Its
  database is the workspace's ``.prefect/prefect.db`` and it serves the Prefect UI (the
  flow-run history; ``musicflow server status`` prints the address and the login). It has no
  background services. It stops by itself after ``MUSICFLOW_SERVER_IDLE_MINUTES`` (default 10)
  with no command attached, or with ``musicflow server stop``. Commands hold a shared
  ``flock`` on ``.prefect/musicflow-server.clients`` while they run, so the server never
  stops under one, and a killed command's lock is released by the kernel. One start lock
  (``.prefect/musicflow-server.lock``) means one server and one database migration per
  workspace, however many commands start at once. ``PREFECT_API_URL`` set by the user wins:
  then no server is started.
- **A scheduling server** for ``musicflow serve`` (:func:`ensure_local_server`): cron
  schedules live on a Prefect *server* whose scheduler service turns them into flow runs, so
  ``serve`` starts ``prefect server start`` (services on, loopback only) and stops it on exit.
  Prefect 3.8.8's scheduler needs SQLAlchemy 2.0: with 2.1 it fails on every loop ("Can't
  evaluate bulk DML statement") and cron never fires, hence the ``sqlalchemy==2.0.58`` pin.

A run that a killed command left ``Running`` is marked ``Crashed`` by the next command
(:func:`mark_crashed_runs`): flow runs carry their owner process in a tag
(:func:`owner_tags`).

Public functions: :func:`attach`, :func:`server_status`, :func:`stop_workspace_server`,
:func:`owner_tags`, :func:`mark_crashed_runs`, :func:`ensure_local_server`,
:func:`start_local_server`, :func:`stop_process`, :func:`prefect_api`, :func:`ui_url`,
:func:`free_port`, :func:`die_with_parent`, :func:`healthy`, :func:`check_api`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from musicflow.adapters import atomic, procs, workspace
from musicflow.adapters.procs import die_with_parent
from musicflow.core.errors import MusicflowError

SERVER_START_TIMEOUT_S = 90.0  # a fresh SQLite server takes ~30 s on this 2-core machine
SERVER_LOG = "server.log"
REACH_TIMEOUT_S = 5.0  # how long a server the user set may take to answer its health check


def free_port() -> int:
    """A free TCP port on the loopback interface (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prefect_command() -> list[str]:
    """Prefect's own CLI, from this interpreter's environment."""
    return [sys.executable, "-m", "prefect"]


def healthy(url: str, timeout_s: float = 2.0) -> bool:
    """True when the Prefect API at ``url`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout_s) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())


def stop_process(proc: subprocess.Popen | None, *, grace_s: float = 20.0) -> None:
    """Stop a process started in its own session: SIGTERM to its group, then SIGKILL.

    The group id is the process's own pid (``start_new_session=True``), so this reaches only
    what that process started.
    """
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def start_local_server(
    home: Path, *, port: int | None = None, timeout_s: float = SERVER_START_TIMEOUT_S
) -> tuple[str, subprocess.Popen]:
    """Start ``prefect server start`` on 127.0.0.1 with its database under ``home``.

    ``home`` becomes the server's PREFECT_HOME (SQLite ``prefect.db``, ``server.log``). Returns
    the API URL once ``/api/health`` answers; raises MusicflowError (with the log path) if the
    server exits or does not answer within ``timeout_s``.
    """
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}/api"
    log_path = home / SERVER_LOG
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",  # the workspace default (CRITICAL) hides causes
    )
    env.update(workspace.NO_TELEMETRY)
    cmd = [*_prefect_command(), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    # One start (and database migration) at a time per Prefect home: the workspace server
    # shares this database.
    with _locked(home / LOCK_NAME):
        proc = _launch(cmd, env, home, log_path, " ".join(cmd), with_parent=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise MusicflowError(
                    f"the local Prefect server exited (code {proc.returncode}) before "
                    f"answering; see {log_path}: {_log_tail(log_path)}"
                )
            if healthy(url):
                return url, proc
            time.sleep(0.5)
        stop_process(proc, grace_s=5)
    raise MusicflowError(
        f"the local Prefect server did not answer {url}/health within {timeout_s:.0f} s; "
        f"see {log_path}"
    )


def check_api(url: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """MusicflowError (one line) unless the Prefect API the user set answers its health check
    within ``timeout_s``: Prefect's client would wait and retry for minutes."""
    if not healthy(url.rstrip("/"), timeout_s):
        raise MusicflowError(
            f"the Prefect server {url} (PREFECT_API_URL) does not answer within "
            f"{timeout_s:g} s; start it, or unset PREFECT_API_URL to use the workspace's own"
        )


def ensure_local_server(home: Path) -> tuple[str, subprocess.Popen | None]:
    """The Prefect API to schedule against: ``PREFECT_API_URL`` if set, else a local server.

    ``home`` is the PREFECT_HOME for a server started here (database and ``server.log``).
    Returns ``(api_url, process)``; ``process`` is None when an existing server is used, else
    the caller owns it (``stop_process``). Sets ``os.environ["PREFECT_API_URL"]`` so that
    subprocesses (the flow runs) talk to the same server.
    """
    given = os.environ.get("PREFECT_API_URL")
    if given:
        return given.rstrip("/"), None
    url, proc = start_local_server(home)
    os.environ["PREFECT_API_URL"] = url
    return url, proc


@contextlib.contextmanager
def prefect_api(url: str) -> Iterator[None]:
    """Point this process's Prefect client at ``url``.

    Prefect reads its settings once, when imported; changing os.environ afterwards is not
    seen, so the setting is overridden in Prefect's settings context as well.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


def ui_url(api_url: str) -> str:
    """Where the Prefect UI of that API is: ``PREFECT_UI_URL`` or the API's origin."""
    given = os.environ.get("PREFECT_UI_URL")
    if given:
        return given.rstrip("/")
    return api_url.rstrip("/").removesuffix("/api")


# --- the workspace server -------------------------------------------------------------------

STATE_NAME = "musicflow-server.json"
CLIENTS_NAME = "musicflow-server.clients"
LOCK_NAME = "musicflow-server.lock"
WORKSPACE_LOG = "musicflow-server.log"
DEFAULT_IDLE_MINUTES = 10.0
OWNER_TAG = "musicflow-owner:"
_leases: dict[Path, int] = {}  # Prefect home → this process's shared lock on its clients file


def idle_seconds() -> float:
    """How long the workspace server waits with no command attached before it stops."""
    raw = os.environ.get("MUSICFLOW_SERVER_IDLE_MINUTES")
    try:
        minutes = float(raw) if raw else DEFAULT_IDLE_MINUTES
    except ValueError:
        minutes = DEFAULT_IDLE_MINUTES
    return max(minutes, 0.02) * 60


@contextlib.contextmanager
def _locked(path: Path, kind: int = fcntl.LOCK_EX) -> Iterator[int]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, kind)
        yield fd
    finally:
        os.close(fd)


def _take_lease(home: Path) -> None:
    """Hold a shared lock on the clients file for the rest of this process: the server does
    not stop while any command holds one (the kernel drops it when a command dies)."""
    if home in _leases:
        return
    fd = os.open(home / CLIENTS_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)  # waits while a server is stopping
    _leases[home] = fd


def release_lease(home: Path | None = None) -> None:
    """Give up this process's lease (the tests' sessions and ``server stop`` do)."""
    for key in [home] if home is not None else list(_leases):
        fd = _leases.pop(key, None) if key is not None else None
        if fd is not None:
            os.close(fd)


def _read_state(home: Path) -> dict | None:
    try:
        state = json.loads((home / STATE_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not {"pid", "url", "auth", "port"} <= state.keys():
        return None
    return state


def _is_server(pid: int) -> bool:
    """True when ``pid`` is a workspace server process (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return procs.pid_alive(pid)  # no /proc: trust the pid
    return b"musicflow.adapters.prefect_server" in cmdline


def _forget(home: Path, pid: int) -> None:
    """Remove the state file if it still describes server ``pid``."""
    state = _read_state(home)
    if state is not None and state["pid"] == pid:
        (home / STATE_NAME).unlink(missing_ok=True)


def _launch(
    cmd: list[str], env: dict, home: Path, log_path: Path, header: str, *, with_parent: bool
) -> subprocess.Popen:
    """Start a server process in its own session (Ctrl-C in the terminal stops the command,
    not the server), its output appended to ``log_path`` under a dated header line; with
    ``with_parent`` it dies with this process (Linux). Files it creates are private (umask
    077)."""
    linked = with_parent and sys.platform.startswith("linux")

    def child() -> None:
        os.umask(0o077)  # its database (prefect.db) and logs are the user's only
        if linked:
            die_with_parent()

    with open(log_path, "ab") as log:
        log.write(f"\n--- {datetime.now(UTC).isoformat()} {header}\n".encode())
        log.flush()
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=home,
            start_new_session=True,
            preexec_fn=child,
        )


def _spawn(
    home: Path, port: int | None = None, auth: str | None = None
) -> tuple[dict, subprocess.Popen]:
    """Start a workspace server process and write its state file (call under the start lock);
    on a new port with a new password unless both are given (a restart: attached commands
    keep their address and login)."""
    port = port or free_port()
    auth = auth or f"musicflow:{secrets.token_urlsafe(24)}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env.update(workspace.NO_TELEMETRY)
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_API_AUTH_STRING=auth,
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_UI_ENABLED="true",
        PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api",  # where its UI finds the API
    )
    log_path = home / WORKSPACE_LOG
    cmd = [sys.executable, "-m", "musicflow.adapters.prefect_server", "--home", str(home)]
    cmd += ["--port", str(port)]
    proc = _launch(cmd, env, home, log_path, f"port {port}", with_parent=False)
    state = {
        "pid": proc.pid,
        "port": port,
        "url": f"http://127.0.0.1:{port}/api",
        "auth": auth,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "idle_minutes": idle_seconds() / 60,
    }
    atomic.write_text(home / STATE_NAME, json.dumps(state, indent=2), mode=0o600)
    return state, proc


@dataclass
class WorkspaceServer:
    """The workspace's Prefect server as one command sees it (:func:`attach`)."""

    home: Path
    url: str
    auth: str
    pid: int
    proc: subprocess.Popen | None  # set when this command started it
    timeout_s: float = SERVER_START_TIMEOUT_S

    @property
    def started_here(self) -> bool:
        return self.proc is not None

    def _alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return _is_server(self.pid)

    def wait(self) -> WorkspaceServer:
        """Block until the server answers; MusicflowError (one line, the log's path) if it
        exits first or does not answer within ``timeout_s``."""
        deadline = time.monotonic() + self.timeout_s
        retried = False
        while not healthy(self.url):
            if not self._alive():
                if self.started_here and not retried:  # e.g. its port was taken meanwhile
                    retried = True
                    with _locked(self.home / LOCK_NAME):
                        _forget(self.home, self.pid)
                        state, self.proc = _spawn(self.home)
                    self._adopt(state)
                    continue
                log = self.home / WORKSPACE_LOG
                raise MusicflowError(
                    f"the workspace's Prefect server exited before answering; see {log}: "
                    f"{_log_tail(log, 3)}"
                )
            if time.monotonic() > deadline:
                raise MusicflowError(
                    f"the workspace's Prefect server did not answer {self.url}/health within "
                    f"{self.timeout_s:.0f} s; see {self.home / WORKSPACE_LOG} "
                    "(stop it with 'musicflow server stop')"
                )
            time.sleep(0.2)
        return self

    def watch(self, say: Callable[[str], None], interval_s: float = 0.5) -> None:
        """Watch the server for the rest of this command (a daemon thread): when it dies
        (killed, crashed) while its state file still names it, start it again at the same
        address with the same login, from the same database, so that this command's Prefect
        client carries on (it retries a lost connection for about a minute), and say so in
        one line. When it cannot be restarted, or was stopped on purpose (``musicflow server
        stop``), say so in one line and end the command (exit 1) rather than let it wait on
        a server that is gone: what finished before is kept (cached results, committed
        datasets, registered versions), and the same command resumes."""
        import threading

        def loop() -> None:
            while True:
                time.sleep(interval_s)
                if self._alive():
                    continue
                try:
                    self._restart(say)
                except MusicflowError as exc:
                    say(f"musicflow: error: {exc}")
                    os._exit(1)  # no API to report to: end as a killed command would

        threading.Thread(target=loop, name="prefect-server-watch", daemon=True).start()

    def _restart(self, say: Callable[[str], None]) -> None:
        old = self.pid
        with _locked(self.home / LOCK_NAME):
            state = _read_state(self.home)
            if state is None:
                raise MusicflowError(
                    "the workspace's Prefect server was stopped during this command; finished "
                    "steps are kept: run the same command again to resume"
                )
            if state["pid"] == old or not _is_server(state["pid"]):
                port = int(self.url.rsplit(":", 1)[1].split("/", 1)[0])
                state, self.proc = _spawn(self.home, port, self.auth)
                started = True
            else:  # another command restarted it already
                self.proc, started = None, False
        if state["url"] != self.url or state["auth"] != self.auth:
            raise MusicflowError(
                f"the workspace's Prefect server (pid {old}) stopped during this command and "
                "another took its place at a new address; finished steps are kept: run the "
                "same command again to resume"
            )
        self.pid = state["pid"]
        began = time.monotonic()
        try:
            self.wait()
        except MusicflowError as exc:
            raise MusicflowError(
                f"{exc}; finished steps are kept: run the same command again to resume"
            ) from None
        how = "restarted it" if started else "another command restarted it"
        say(
            f"the workspace's Prefect server (pid {old}) stopped during this command; {how} "
            f"at {self.url} (pid {self.pid}, {time.monotonic() - began:.0f} s) and carried on"
        )

    def _adopt(self, state: dict) -> None:
        self.url, self.auth, self.pid = state["url"], state["auth"], state["pid"]
        os.environ["PREFECT_API_URL"] = self.url
        os.environ["PREFECT_API_AUTH_STRING"] = self.auth


def attach(
    home: Path | None = None, *, timeout_s: float = SERVER_START_TIMEOUT_S
) -> WorkspaceServer | None:
    """Use the workspace's Prefect server, starting it when none runs; None when the user's
    ``PREFECT_API_URL`` is set (then that server is used and nothing is started).

    Returns at once (the server may still be starting: call ``wait()`` before Prefect's
    first API call) and sets ``PREFECT_API_URL`` and ``PREFECT_API_AUTH_STRING`` in
    ``os.environ``, so call it before importing prefect. This process holds a lease on the
    server until it exits.
    """
    if os.environ.get("PREFECT_API_URL"):
        return None
    home = Path(home or workspace.prefect_home()).resolve()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)  # the database, results, password
    _take_lease(home)
    proc = None
    state = _read_state(home)
    if state is None or not _is_server(state["pid"]):
        with _locked(home / LOCK_NAME):
            state = _read_state(home)
            if state is None or not _is_server(state["pid"]):
                state, proc = _spawn(home)
    server = WorkspaceServer(home, state["url"], state["auth"], state["pid"], proc, timeout_s)
    server._adopt(state)
    return server


def server_status(home: Path | None = None) -> dict | None:
    """The running workspace server's state (pid, url, port, login, since), None if none."""
    home = Path(home or workspace.prefect_home()).resolve()
    state = _read_state(home)
    if state is None or not _is_server(state["pid"]):
        return None
    return state | {"healthy": healthy(state["url"]), "ui": ui_url(state["url"])}


def stop_workspace_server(home: Path | None = None, *, grace_s: float = 15.0) -> bool:
    """Stop the workspace's server (SIGTERM, then SIGKILL); True if one was running.

    Commands attached to it fail; stop it between commands.
    """
    home = Path(home or workspace.prefect_home()).resolve()
    release_lease(home)
    with _locked(home / LOCK_NAME):
        state = _read_state(home)
        if state is None:
            return False
        pid = int(state["pid"])
        running = _is_server(pid)
        if running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while _is_server(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _is_server(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        (home / STATE_NAME).unlink(missing_ok=True)
        return running


def _serve_workspace(home: Path, port: int) -> int:
    """The server process: Prefect's API and UI (no services) until idle or stopped."""
    import threading

    import uvicorn
    from prefect.server.api.server import create_app

    app = create_app(webserver_only=True, final=True)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="error", lifespan="on", access_log=False
    )
    server = uvicorn.Server(config)
    threading.Thread(target=_watch_idle, args=(server, home, idle_seconds()), daemon=True).start()
    try:
        server.run()
    finally:
        _forget(home, os.getpid())
    return 0


def _watch_idle(server, home: Path, idle_s: float) -> None:
    """Stop the server once no command has held a lease for ``idle_s``, or when its state
    file no longer names it (``musicflow server stop``, or a newer server took over)."""
    fd = os.open(home / CLIENTS_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    while not server.started and not server.should_exit:
        time.sleep(0.2)
    idle_since = time.monotonic()
    while not server.should_exit:
        time.sleep(1.0)
        state = _read_state(home)
        if state is None or state["pid"] != os.getpid():
            server.should_exit = True
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a command is attached
            idle_since = time.monotonic()
            continue
        if time.monotonic() - idle_since >= idle_s:
            _forget(home, os.getpid())  # while holding the lock: no command attaches now
            server.should_exit = True
            return  # the lock is kept until this process exits
        fcntl.flock(fd, fcntl.LOCK_UN)


# --- runs a killed command left behind ------------------------------------------------------


def owner_tags() -> list[str]:
    """Tags for this command's flow runs: ``musicflow`` and its owner process."""
    return ["musicflow", OWNER_TAG + procs.owner()]


def mark_crashed_runs() -> int:
    """Mark ``Crashed`` the musicflow flow runs (and their task runs) still Running or Pending
    whose owner process on this host is gone; returns how many flow runs were marked."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    active = [StateType.RUNNING, StateType.PENDING]
    marked = 0
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=active)),
                tags=FlowRunFilterTags(all_=["musicflow"]),
            )
        )
        for run in runs:
            owner = next((t for t in run.tags if t.startswith(OWNER_TAG)), None)
            if owner is None or procs.owner_alive(owner.removeprefix(OWNER_TAG)) is not False:
                continue
            message = f"process {owner.removeprefix(OWNER_TAG)} ended without finishing the run"
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            marked += 1
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])),
                task_run_filter=TaskRunFilter(
                    state=TaskRunFilterState(type=TaskRunFilterStateType(any_=active))
                ),
            )
            for task_run in tasks:
                client.set_task_run_state(task_run.id, Crashed(message=message), force=True)
    return marked


def _main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m musicflow.adapters.prefect_server")
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    args = parser.parse_args(argv)
    return _serve_workspace(args.home.resolve(), args.port)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
