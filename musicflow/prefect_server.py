"""A local Prefect server, started and stopped by musicflow (for ``musicflow serve``).

Why a real server: cron schedules live on a Prefect *server*, whose scheduler service turns them
into scheduled flow runs; the ephemeral API that Prefect starts on demand runs no scheduler. So
``serve`` uses ``PREFECT_API_URL`` when it is set, and otherwise starts ``prefect server start``
here (SQLite under the workspace's PREFECT_HOME, loopback only), which also serves the Prefect
UI, and stops it on exit.

Prefect 3.8.8's scheduler needs SQLAlchemy 2.0: with 2.1 it fails on every loop ("Can't
evaluate bulk DML statement") and cron never fires, hence the ``sqlalchemy==2.0.58`` pin.

Public functions: :func:`ensure_local_server` (the API to use, starting a server if needed),
:func:`start_local_server`, :func:`stop_process`, :func:`prefect_api` (point this process's
client at a URL), :func:`ui_url`, :func:`free_port`, :func:`die_with_parent`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from musicflow.errors import MusicflowError

SERVER_START_TIMEOUT_S = 90.0  # a fresh SQLite server takes ~30 s on this 2-core machine
SERVER_LOG = "server.log"


def free_port() -> int:
    """A free TCP port on the loopback interface (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prefect_command() -> list[str]:
    """Prefect's own CLI, from this interpreter's environment."""
    return [sys.executable, "-m", "prefect"]


def die_with_parent() -> None:
    """Child side of fork (Linux): get SIGTERM if the parent dies, even by SIGKILL.

    Without it a killed ``musicflow serve`` (or a killed test run) would leave the server
    listening forever. The server runs in its own session so that Ctrl-C in the terminal
    reaches only ``serve``, which must still talk to the server to pause its schedule.
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux, or no prctl: the finally blocks still stop the server
        pass


def healthy(url: str) -> bool:
    """True when the Prefect API at ``url`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
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
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",  # the workspace default (CRITICAL) hides causes
    )
    cmd = [*_prefect_command(), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "ab") as log:
        log.write(f"\n--- {datetime.now(UTC).isoformat()} {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=home,
            start_new_session=True,
            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise MusicflowError(
                f"the local Prefect server exited (code {proc.returncode}) before answering; "
                f"see {log_path}: {_log_tail(log_path)}"
            )
        if healthy(url):
            return url, proc
        time.sleep(0.5)
    stop_process(proc, grace_s=5)
    raise MusicflowError(
        f"the local Prefect server did not answer {url}/health within {timeout_s:.0f} s; "
        f"see {log_path}"
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
