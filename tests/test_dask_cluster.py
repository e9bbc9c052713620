"""``musicflow encode`` on a real Dask cluster: a ``dask scheduler`` and two ``dask worker``
processes started by the test on 127.0.0.1, as separate processes, the way a lab runs them.

Checked: the dataset digest equals a threaded run's; the workers really ran the parse tasks and
reported them to the flow's Prefect API (no worker starts a temporary Prefect server of its
own); a worker killed with SIGKILL in the middle of its parse task does not change the result.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import servers

from musicflow.adapters.procs import stop_group

pytestmark = [pytest.mark.integration, pytest.mark.server]

N_FILES = 2000  # ~1 s of parsing per chunk of 500: long enough to kill a worker inside one


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from musicflow.core.synth import write_corpus

    folder = tmp_path_factory.mktemp("dask-src")
    write_corpus(folder, N_FILES, seed=7)
    return folder


def encode_cmd(source: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "musicflow.cli", "encode", str(source), "--dataset", "d", *args]


def workspace_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MUSICFLOW_HOME": str(home)}
    env.pop("PREFECT_HOME", None)  # the command's own, under its MUSICFLOW_HOME
    return env


def encode(home: Path, source: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        encode_cmd(source, *args),
        cwd=home,
        env=workspace_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def dataset(home: Path) -> tuple[dict, object]:
    folder = home / "data" / "rolls" / "d"
    info = json.loads((folder / "dataset.json").read_text())
    return info, pq.read_table([folder / s for s in info["shards"]])


@pytest.fixture(scope="module")
def threaded(source: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, object]:
    """The reference: the same source encoded on local threads (the default runner)."""
    home = tmp_path_factory.mktemp("threaded")
    encode(home, source)
    return dataset(home)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[servers.DaskCluster]:
    # Workers get a Prefect home of their own: if one ever started its own temporary Prefect
    # server or stored results there, it would show up in this folder.
    env = {"PREFECT_HOME": str(tmp_path / "worker-prefect-home")}
    with servers.dask_cluster(tmp_path / "dask", n_workers=2, env=env) as c:
        yield c


def worker_logs(cluster: servers.DaskCluster) -> str:
    return "\n".join(
        p.read_text(errors="replace") for p in sorted(cluster.root.glob("worker*.log"))
    )


def test_encode_on_dask_cluster_matches_threads(
    source: Path, threaded: tuple[dict, object], cluster: servers.DaskCluster, tmp_path: Path
) -> None:
    from distributed import Client

    home = tmp_path / "home"
    done = encode(home, source, "--task-runner", "dask", "--dask-address", cluster.address)
    info, table = dataset(home)
    ref_info, ref_table = threaded
    assert info["digest"] == ref_info["digest"]
    assert info["n_files"] == N_FILES and info["n_windows"] == ref_info["n_windows"]
    assert table.equals(ref_table)
    assert f"parsed {N_FILES} file(s), 0 from cache" in done.stdout

    # Both worker processes ran parse tasks (the client's own process ran none).
    with Client(cluster.address, timeout=10) as client:
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(executed) == 2 and all(n > 0 for n in executed.values()), executed
    # They reported to the flow's API: no temporary Prefect server, nothing in their own home.
    assert "temporary server" not in worker_logs(cluster)
    # (Importing prefect creates the folder; a server database or stored results would be files.)
    assert not [p for p in (tmp_path / "worker-prefect-home").rglob("*") if p.is_file()]

    # A warm re-run on the cluster parses nothing and writes nothing.
    again = encode(home, source, "--task-runner", "dask", "--dask-address", cluster.address)
    assert "parsed 0 file(s)" in again.stdout and "nothing written" in again.stdout


def test_worker_killed_mid_task(
    source: Path, threaded: tuple[dict, object], cluster: servers.DaskCluster, tmp_path: Path
) -> None:
    """SIGKILL one worker while it runs a parse task: Dask reruns the task on the other worker
    and the run completes; should it fail instead, it must say so in one line, and a re-run
    must complete. Either way the digest is the threaded run's."""
    from distributed import Client

    home = tmp_path / "home"
    cache = home / "data" / "cache"
    # --workers 1: 4 chunks of 500 files, two per worker, each ~1 s.
    proc = subprocess.Popen(
        encode_cmd(source, "--task-runner", "dask", "--dask-address", cluster.address,
                   "--workers", "1"),
        cwd=home, env=workspace_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    killed_at = None
    try:
        with Client(cluster.address, timeout=10) as client:
            w0 = next(
                addr
                for addr, w in client.scheduler_info(n_workers=-1)["workers"].items()
                if w["name"] == "w0"
            )
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and proc.poll() is None:
                # Kill once parsing has begun and w0 is busy with a parse task.
                started = cache.exists() and any(cache.rglob("*.npz"))
                if started and client.processing(workers=[w0]).get(w0):
                    killed_at = len(list(cache.rglob("*.npz")))
                    os.kill(cluster.workers[0].pid, signal.SIGKILL)
                    break
                time.sleep(0.02)
        assert killed_at is not None, "the encode never had a parse task running on w0"
        out, err = proc.communicate(timeout=300)
    finally:
        stop_group(proc)
    assert killed_at < N_FILES, "parsing had already finished when the worker was killed"
    assert cluster.workers[0].wait(timeout=10) == -signal.SIGKILL
    assert cluster.n_workers() == 1

    if proc.returncode != 0:
        # Allowed, if it says so in one line; then a re-run resumes from the cache.
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines[-1].startswith("musicflow: error:") and "Traceback" not in err, err
        out = encode(
            home, source, "--task-runner", "dask", "--dask-address", cluster.address
        ).stdout
    info, table = dataset(home)
    assert info["digest"] == threaded[0]["digest"]
    assert table.equals(threaded[1])
    assert "dataset digest: " + info["digest"] in out
