"""Real servers for integration tests: PostgreSQL, an MLflow tracking server, a Dask cluster,
a Prefect server and a Prefect worker.

Every process listens on 127.0.0.1 only, on a free port, keeps its files in a temp folder, and
is started in its own process group so a test stops it (and its children) even when it fails.
Every wait is bounded and fails with the server's log tail, not a bare timeout.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from musicflow.adapters.procs import stop_group

VENV_BIN = Path(sys.executable).parent
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it; the race window is tiny)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until(
    ready: Callable[[], bool], *, timeout: float, what: str, log: Path | None = None, proc=None
) -> None:
    """Poll ``ready`` every 0.2 s for at most ``timeout`` s; fail with the log tail otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log_tail(log) if log else ""
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready\n{tail}")
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.2)
    tail = log_tail(log) if log else ""
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s\n{tail}")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:  # loopback URLs only
        return resp.status == 200


def port_open(port: int) -> bool:
    with socket.create_connection((LOOPBACK, port), timeout=1):
        return True


def start(cmd: list[str], log: Path, **kw) -> subprocess.Popen:
    """Start ``cmd`` in a new session (its own process group), output appended to ``log``."""
    with open(log, "ab") as fh:
        return subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, **kw,
        )  # fmt: skip


# --- PostgreSQL ------------------------------------------------------------------------------


def postgres_bin() -> Path | None:
    """Debian's server binaries (``/usr/lib/postgresql/<major>/bin``), newest major first;
    else ``initdb`` on PATH. None when PostgreSQL's server package is not installed."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
        reverse=True,
    )
    if candidates:
        return candidates[0].parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def _unprivileged() -> dict:
    """PostgreSQL refuses to run as root: run its binaries as ``nobody`` when we are root."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam("nobody")
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


@dataclass
class Postgres:
    bin: Path
    root: Path  # data/, the socket dir and the log live here
    port: int
    user: str = "musicflow"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://{self.user}@{LOOPBACK}:{self.port}/{database}"

    def run(self, *args: str, timeout: float = 120) -> None:
        done = subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,  # a directory the unprivileged user can enter
            **_unprivileged(),
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{args[0]} failed ({done.returncode}): {done.stderr.strip() or done.stdout}"
            )

    def createdb(self, name: str) -> str:
        """Create database ``name``; returns its SQLAlchemy URL."""
        self.run("createdb", "-h", LOOPBACK, "-p", str(self.port), "-U", self.user, name)
        return self.url(name)


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Postgres]:
    """A throw-away cluster in a fresh temp folder on a free loopback port (trust auth, fsync
    off), removed afterwards. The folder is directly under the temp dir, not under pytest's
    ``tmp_path`` (mode 0700, which the unprivileged user could not enter), and keeps the
    socket path short."""
    bindir = postgres_bin()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL server binaries not found")
    root = Path(tempfile.mkdtemp(prefix="musicflow-pg-"))
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
    pg = Postgres(bin=bindir, root=root, port=free_port())
    pg.run("initdb", "-D", str(pg.data), "-U", pg.user, "--auth=trust", "-E", "UTF8", "--no-sync")
    options = (
        f"-p {pg.port} -c listen_addresses={LOOPBACK} -k {root} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    try:
        pg.run(
            "pg_ctl", "-D", str(pg.data), "-o", options, "-l", str(pg.log), "-w", "-t", "60",
            "start",
        )  # fmt: skip
        yield pg
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n{log_tail(pg.log)}") from exc
    finally:
        _stop_postgres(pg)
        shutil.rmtree(root, ignore_errors=True)


def _stop_postgres(pg: Postgres) -> None:
    try:
        pg.run("pg_ctl", "-D", str(pg.data), "-m", "immediate", "-w", "-t", "30", "stop")
    except Exception:
        # pg_ctl could not stop it (or it never started): kill the postmaster by its pid file.
        with contextlib.suppress(OSError, ValueError):
            pid = int((pg.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)


# --- MLflow tracking server ------------------------------------------------------------------


@dataclass
class MlflowServer:
    url: str
    artifacts: Path
    log: Path
    proc: subprocess.Popen


@contextlib.contextmanager
def mlflow_server(backend_uri: str, root: Path, timeout: float = 120) -> Iterator[MlflowServer]:
    """``mlflow server`` on a free loopback port, serving artifacts from ``root/artifacts``."""
    root.mkdir(parents=True, exist_ok=True)
    artifacts = root / "artifacts"
    artifacts.mkdir(exist_ok=True)
    port = free_port()
    log = root / "mlflow-server.log"
    cmd = [
        str(VENV_BIN / "mlflow"), "server",
        "--backend-store-uri", backend_uri,
        "--serve-artifacts", "--artifacts-destination", artifacts.as_uri(),
        "--host", LOOPBACK, "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no job runners: this server runs none
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = start(cmd, log, cwd=root, env=env)
    server = MlflowServer(url=f"http://{LOOPBACK}:{port}", artifacts=artifacts, log=log, proc=proc)
    try:
        wait_until(
            lambda: http_ok(f"{server.url}/health"),
            timeout=timeout,
            what="mlflow server",
            log=log,
            proc=proc,
        )
        yield server
    finally:
        # uvicorn waits for idle keep-alive connections on SIGTERM: a short grace is enough.
        stop_group(proc, grace_s=3)


# --- Prefect server and worker ---------------------------------------------------------------


def prefect_env(api_url: str, home: Path, **extra: str) -> dict[str, str]:
    """The test's environment for a Prefect process: this server, its own PREFECT_HOME (not the
    session's workspace server, its login or its workspace), telemetry off as musicflow has it."""
    from musicflow.adapters.workspace import NO_TELEMETRY

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREFECT_API_") and k not in ("MUSICFLOW_HOME", "MLFLOW_TRACKING_URI")
    }
    return {**env, **NO_TELEMETRY, "PREFECT_API_URL": api_url, "PREFECT_HOME": str(home), **extra}


@dataclass
class PrefectServer:
    url: str  # the API: http://127.0.0.1:PORT/api
    log: Path
    proc: subprocess.Popen


@contextlib.contextmanager
def prefect_server(
    database_url: str, root: Path, timeout: float = 180, **env: str
) -> Iterator[PrefectServer]:
    """``prefect server start`` (API, UI and services: the scheduler) on a free loopback port,
    its database at ``database_url`` (``postgresql+asyncpg://…``); ``env``: more variables."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://{LOOPBACK}:{port}/api"
    log = root / "prefect-server.log"
    server_env = prefect_env(url, root, PREFECT_API_DATABASE_CONNECTION_URL=database_url, **env)
    del server_env["PREFECT_API_URL"]  # a server does not talk to one
    cmd = [str(VENV_BIN / "prefect"), "server", "start", "--host", LOOPBACK, "--port", str(port)]
    proc = start(cmd, log, cwd=root, env=server_env)
    try:
        wait_until(
            lambda: http_ok(f"{url}/health"), timeout=timeout, what="prefect server", log=log,
            proc=proc,
        )  # fmt: skip
        yield PrefectServer(url=url, log=log, proc=proc)
    finally:
        stop_group(proc)


@contextlib.contextmanager
def prefect_worker(api_url: str, pool: str, root: Path, **env: str) -> Iterator[Path]:
    """``prefect worker start --pool POOL`` from this ``.venv``; yields its log (the flow
    runs' output goes there too). ``env``: more variables."""
    root.mkdir(parents=True, exist_ok=True)
    log = root / "prefect-worker.log"
    cmd = [str(VENV_BIN / "prefect"), "worker", "start", "--pool", pool]
    proc = start(cmd, log, cwd=root, env=prefect_env(api_url, root, **env))
    try:
        yield log
    finally:
        stop_group(proc)  # the group: the worker and any flow run it started


# --- Dask ------------------------------------------------------------------------------------


@dataclass
class DaskCluster:
    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]
    root: Path

    def n_workers(self) -> int:
        from distributed import Client

        with Client(self.address, timeout=10) as client:
            return len(client.scheduler_info(n_workers=-1)["workers"])


@contextlib.contextmanager
def dask_cluster(
    root: Path, n_workers: int = 2, env: dict | None = None, timeout: float = 90
) -> Iterator[DaskCluster]:
    """``dask scheduler`` plus ``n_workers`` ``dask worker`` processes, each its own process
    (one thread each, no nanny, so killing one really loses it), on loopback ports."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    address = f"tcp://{LOOPBACK}:{port}"
    dask = str(VENV_BIN / "dask")
    env = {**os.environ, **(env or {})}
    procs: list[subprocess.Popen] = []
    try:
        scheduler = start(
            [dask, "scheduler", "--host", LOOPBACK, "--port", str(port), "--no-dashboard"],
            root / "scheduler.log", cwd=root, env=env,
        )  # fmt: skip
        procs.append(scheduler)
        wait_until(
            lambda: port_open(port),
            timeout=timeout,
            what="dask scheduler",
            log=root / "scheduler.log",
            proc=scheduler,
        )
        workers = []
        for i in range(n_workers):
            worker = start(
                [
                    dask, "worker", address, "--host", LOOPBACK, "--nthreads", "1",
                    "--no-nanny", "--no-dashboard", "--name", f"w{i}",
                    "--local-directory", str(root / f"w{i}"),
                ],
                root / f"worker{i}.log", cwd=root, env=env,
            )  # fmt: skip
            procs.append(worker)
            workers.append(worker)
        cluster = DaskCluster(address=address, scheduler=scheduler, workers=workers, root=root)
        wait_until(
            lambda: cluster.n_workers() == n_workers,
            timeout=timeout,
            what=f"{n_workers} dask workers",
            log=root / "worker0.log",
        )
        yield cluster
    finally:
        for proc in reversed(procs):
            stop_group(proc)
