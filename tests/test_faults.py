"""Faults and hostile input, whole commands with the real Prefect, MLflow and processes
(issue #12): nothing lost, nothing executed, nothing phoned home.

One workspace for the module, with its own Prefect server (started by the first command, as a
user's would be) and a tracer on every Python process of every command
(``tests/nettrace/sitecustomize.py``): name lookups and connections to other hosts are recorded
and blocked, imports of TensorFlow recorded. The environment carries none of the libraries'
telemetry opt-outs and none of the CI markers MLflow reads, so only musicflow's own settings
keep a command quiet. Kills are real SIGKILLs.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import write_midi

from musicflow.adapters import prefect_server

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parent
#: Variables that would switch telemetry off by themselves (or tell MLflow it runs in CI).
QUIETING = (
    "MLFLOW_DISABLE_TELEMETRY",
    "DO_NOT_TRACK",
    "GX_ANALYTICS_ENABLED",
    "PREFECT_SERVER_ANALYTICS_ENABLED",
    "PYTEST_CURRENT_TEST",
    "CI",
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "BUILDKITE",
    "JENKINS_URL",
    "TRAVIS",
    "CIRCLECI",
    "TF_BUILD",
)


@dataclass
class Workspace:
    root: Path
    home: Path
    source: Path
    env: dict[str, str]
    trace: Path

    def run(
        self, *args: str, timeout: float = 600, env: dict[str, str] | None = None
    ) -> tuple[subprocess.CompletedProcess, float]:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "musicflow.cli", *args],
            capture_output=True,
            text=True,
            cwd=self.home,
            env=env or self.env,
            timeout=timeout,
            preexec_fn=lambda: os.umask(0o022),
        )
        return done, time.monotonic() - started

    def traced(self, *kinds: str) -> list[dict]:
        if not self.trace.exists():
            return []
        lines = [json.loads(line) for line in self.trace.read_text().splitlines() if line]
        return [r for r in lines if r["kind"] in kinds]


def clean_env(**changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in QUIETING}
    for key in list(env):
        if key.startswith(("PREFECT_API_", "MLFLOW_")):
            del env[key]
    env.update(changes)
    return env


def midi_folder(folder: Path, n: int, offset: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(offset, offset + n):
        write_midi(folder / f"piece{i:02d}.mid", [48 + (i * 5 + j * 7) % 36 for j in range(64)])
    return folder


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("faults")
    home = root / "ws"
    home.mkdir()
    (root / "user").mkdir()
    trace = root / "trace.jsonl"
    env = clean_env(
        MUSICFLOW_HOME=str(home),
        PREFECT_HOME=str(home / ".prefect"),
        HOME=str(root / "user"),
        XDG_CONFIG_HOME=str(root / "user" / ".config"),
        PYTHONPATH=str(TESTS / "nettrace"),
        MUSICFLOW_TRACE=str(trace),
        MUSICFLOW_SERVER_IDLE_MINUTES="3",
    )
    workspace = Workspace(root, home, midi_folder(root / "src", 6), env, trace)
    yield workspace
    prefect_server.stop_workspace_server(home / ".prefect")


def test_the_tracer_sees_an_outbound_lookup(ws: Workspace) -> None:
    """Control: the tracer would catch a phone-home (and blocks it)."""
    code = (
        "import socket\ntry: socket.getaddrinfo('telemetry.example.org', 443)\nexcept OSError: pass"
    )
    subprocess.run([sys.executable, "-c", code], env=ws.env, check=True, timeout=60)
    assert [r["detail"] for r in ws.traced("lookup")] == ["'telemetry.example.org'"]
    ws.trace.unlink()


def test_run_and_train_make_no_outbound_connection(ws: Workspace) -> None:
    done, _ = ws.run("run", str(ws.source), "--dataset", "e2e", "--models", "vae", "--epochs", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    logs = done.stderr
    done, _ = ws.run("train", "--dataset", "e2e", "--model", "gan-thesis", "--epochs", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    # TensorFlow's C++ log stays hidden without --debug (it starts in the CLI, then in a task)
    assert "absl::InitializeLog" not in logs + done.stderr
    assert "oneDNN custom operations" not in logs + done.stderr
    assert ws.traced("lookup", "connect", "sendto") == []
    assert not (ws.root / "user" / ".config" / "mlflow").exists()  # no installation id
    # the workspace's Prefect server ran under the tracer too, on loopback only
    state = prefect_server.server_status(ws.home / ".prefect")
    assert state is not None and state["url"].startswith("http://127.0.0.1:")


def test_output_files_get_the_umask_permissions(ws: Workspace) -> None:
    files = [p for p in (ws.home / "data" / "rolls" / "e2e").iterdir() if p.is_file()]
    files += list((ws.home / "reports" / "e2e").rglob("*.html"))
    assert files and all(p.stat().st_mode & 0o777 == 0o644 for p in files if p.name != ".lock")


def test_no_heavy_package_is_first_imported_off_the_main_thread(ws: Workspace) -> None:
    """The intermittent ImportError of sqlalchemy (1 audit in 32) came from a background
    thread importing great_expectations while the main thread imported sqlalchemy: heavy
    packages are imported in the main thread only (checked on a cold audit, where that
    thread used to run)."""
    ws.trace.unlink(missing_ok=True)
    home = ws.root / "race"
    home.mkdir()
    env = dict(ws.env, MUSICFLOW_HOME=str(home), PREFECT_HOME=str(home / ".prefect"))
    try:
        done, _ = ws.run("audit", str(ws.source), env=env)
    finally:
        prefect_server.stop_workspace_server(home / ".prefect")
    assert done.returncode == 0, done.stderr[-3000:]
    # the command's own process (the Prefect server it started runs its database calls in
    # worker threads, which is its own business)
    in_cli = [r for r in ws.traced("thread-import") if "cli" in " ".join(r["argv"])]
    assert in_cli == []


def _flow_runs(ws: Workspace) -> list[dict]:
    state = json.loads((ws.home / ".prefect" / prefect_server.STATE_NAME).read_text())
    request = urllib.request.Request(
        f"{state['url']}/flow_runs/filter",
        data=json.dumps({"flow_runs": {"tags": {"all_": ["musicflow"]}}}).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(state["auth"].encode()).decode(),
        },
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


def _mlflow_runs(ws: Workspace):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{ws.home / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("musicflow/e2e")
    return client.search_runs([experiment.experiment_id])


def test_a_killed_train_is_marked_failed_and_crashed_on_the_next_start(ws: Workspace) -> None:
    argv = ["train", "--dataset", "e2e", "--model", "vae", "--epochs", "500", "--seed", "7"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "musicflow.cli", *argv],
        cwd=ws.home,
        env=ws.env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 400
    try:
        for line in proc.stderr:
            if "epoch 1/500" in line or time.monotonic() > deadline:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    killed = [r for r in _mlflow_runs(ws) if r.data.params.get("seed") == "7"]
    assert [r.info.status for r in killed] == ["RUNNING"]
    running = [r for r in _flow_runs(ws) if r["state_type"] == "RUNNING"]
    assert running, "the killed command's flow run should still say Running"

    # any later train (this one is cached: nothing is trained) closes what the kill left
    done, _ = ws.run("train", "--dataset", "e2e", "--model", "vae", "--epochs", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    again = {r.info.run_id: r for r in _mlflow_runs(ws)}
    assert again[killed[0].info.run_id].info.status == "FAILED"
    states = {r["id"]: r["state_type"] for r in _flow_runs(ws)}
    assert all(states[r["id"]] == "CRASHED" for r in running)
    assert "RUNNING" not in states.values()


def _version_files(ws: Workspace, name: str, version: str) -> Path:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{ws.home / 'mlruns' / 'mlflow.db'}")
    uri = client.get_model_version_download_uri(name, version)
    return Path(uri.removeprefix("file://"))


class _Plant:
    """Unpickling this creates the marker file: proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_tampered_model_runs_no_code_and_fails_in_one_line(ws: Workspace) -> None:
    model = _version_files(ws, "e2e-vae", "1")
    marker = ws.root / "pwned"
    # what MLflow's own loader would run: a pickle and the models-from-code file
    (model / "python_model.pkl").write_bytes(pickle.dumps(_Plant(marker)))
    for code in model.rglob("*.py"):
        code.write_text(f"open({str(marker)!r}, 'w').close()\n")
    out = ws.root / "generated"
    done, _ = ws.run("generate", "--model-uri", "models:/e2e-vae/1", "-n", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "sample-001.mid").is_file() and not marker.exists()

    weights = next((model / "artifacts").rglob("*.weights.h5"))
    arrays = next((model / "artifacts").rglob("sampler.npz"))  # what generate samples from
    for changed in (weights, arrays):
        original = changed.read_bytes()
        changed.write_bytes(original + b"\0")
        done, _ = ws.run(
            "generate", "--model-uri", "models:/e2e-vae/1", "-n", "1", "--out", str(out)
        )
        changed.write_bytes(original)
        assert done.returncode == 1 and not marker.exists()
        assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
        assert "does not match what was registered" in done.stderr and changed.name in done.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--dataset", "e2e", "--model", "vae", "--epochs", "1"],
        ["compare", "--dataset", "e2e"],
        ["generate", "--model-uri", "models:/e2e-vae/1"],
    ],
)
@pytest.mark.perf  # a time bound
def test_an_unreachable_tracking_server_fails_in_one_line_before_tensorflow(
    ws: Workspace, argv: list[str]
) -> None:
    record = ws.home / "data" / "rolls" / "e2e" / "dataset.json"
    if not record.is_file():
        # run alone (``pytest -m perf``): train first checks that the dataset was encoded; a
        # stand-in will do, as the tracking server is checked before the dataset is read
        record.parent.mkdir(parents=True)
        record.write_text("{}")
    env = dict(ws.env, MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    ws.trace.unlink(missing_ok=True)
    done, elapsed = ws.run(*argv, env=env, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "MLflow tracking server http://127.0.0.1:9 is unreachable" in done.stderr
    assert elapsed < 20
    assert ws.traced("import") == []  # TensorFlow never loaded
    assert "done in" not in done.stderr


def _dataset(ws: Workspace, name: str) -> tuple[dict, list[str]]:
    folder = ws.home / "data" / "rolls" / name
    record = json.loads((folder / "dataset.json").read_text())
    shards = pq.read_table([folder / s for s in record["shards"]])
    return record, sorted(set(shards.column("source_path").to_pylist()))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".tmp", ".pending")))


def test_a_killed_re_encode_leaves_the_committed_dataset_and_is_repaired(ws: Workspace) -> None:
    source = midi_folder(ws.root / "k-src", 4)
    folder = ws.home / "data" / "rolls" / "k"
    done, _ = ws.run("encode", str(source), "--dataset", "k")
    assert done.returncode == 0, done.stderr[-3000:]
    old, old_files = _dataset(ws, "k")
    midi_folder(source, 4, offset=4)  # 4 new files: every shard changes

    # killed while the first new shard is being written (the kill -9)
    env = dict(ws.env, MUSICFLOW_CRASH_AT="tmp:part-*")
    done, _ = ws.run("encode", str(source), "--dataset", "k", env=env)
    assert done.returncode == -signal.SIGKILL
    record, files = _dataset(ws, "k")
    assert (record["digest"], files) == (old["digest"], old_files)  # the old set, whole
    manifest = pq.read_table(folder / "manifest.parquet")
    assert manifest.num_rows == 4 and record["manifest_sha256"] == _sha(folder / "manifest.parquet")

    # killed right after the commit point: the new set is committed, the next run completes it
    env = dict(ws.env, MUSICFLOW_CRASH_AT="encode:committed")
    done, _ = ws.run("encode", str(source), "--dataset", "k", env=env)
    assert done.returncode == -signal.SIGKILL
    record, files = _dataset(ws, "k")
    assert record["n_files"] == 8 and len(files) == 8

    done, _ = ws.run("encode", str(source), "--dataset", "k")
    assert done.returncode == 0, done.stderr[-3000:]
    final, files = _dataset(ws, "k")
    assert final["digest"] == record["digest"] and len(files) == 8
    assert final["manifest_sha256"] == _sha(folder / "manifest.parquet")
    assert pq.read_table(folder / "manifest.parquet").num_rows == 8
    assert sorted(p.name for p in folder.glob("part-*.parquet")) == sorted(final["shards"])
    assert _leftovers(folder) == [] and _leftovers(ws.home / "data" / "cache") == []


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _as_nobody() -> list[str] | None:
    """A prefix that runs a command as an unprivileged user (root reads any file), or None."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def open_tmp():
    """A temp folder anyone can enter (pytest's own sits in a folder only its owner can)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="musicflow-nobody-"))
    path.chmod(0o777)
    yield path
    subprocess.run(["chmod", "-R", "u+rwx", str(path)], check=False)
    shutil.rmtree(path, ignore_errors=True)


def test_an_unreadable_file_is_quarantined_and_the_audit_goes_on(
    ws: Workspace, open_tmp: Path
) -> None:
    prefix = _as_nobody()
    if prefix is None:
        pytest.skip("cannot drop root privileges here")
    tmp_path = open_tmp
    home = tmp_path / "home"
    home.mkdir(mode=0o777)
    home.chmod(0o777)
    source = midi_folder(tmp_path / "src", 3)
    (source / "piece01.mid").chmod(0o000)
    locked = source / "locked"
    midi_folder(locked, 1, offset=9)
    locked.chmod(0o000)
    for path in (tmp_path / "src", *source.glob("*.mid")):
        if path.name != "piece01.mid":
            path.chmod(0o755 if path.is_dir() else 0o644)
    # the session's Prefect server (an unprivileged process cannot start the venv's python
    # again here: it lives under /root)
    env = clean_env(MUSICFLOW_HOME=str(home), PREFECT_HOME=str(home / ".prefect"), HOME=str(home))
    env.update({k: v for k, v in os.environ.items() if k.startswith("PREFECT_API_")})
    try:
        done = subprocess.run(
            [*prefix, sys.executable, "-m", "musicflow.cli", "audit", str(source)],
            capture_output=True,
            text=True,
            cwd=home,
            env=env,
            timeout=600,
        )
    finally:
        locked.chmod(0o755)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = pq.read_table(home / "data" / "rolls" / "src" / "manifest.parquet").to_pandas()
    row = manifest.set_index("source_path").loc["piece01.mid"]
    assert (row.status, row.reason) == ("quarantined", "unreadable")
    assert (manifest.status == "accepted").sum() == 2
    assert "skipped unreadable folder" in done.stderr and "locked" in done.stderr

    locked.chmod(0o000)
    try:
        done = subprocess.run(
            [*prefix, sys.executable, "-m", "musicflow.cli", "audit", str(locked)],
            capture_output=True,
            text=True,
            cwd=home,
            env=env,
            timeout=120,
        )
    finally:
        locked.chmod(0o755)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"musicflow: error: cannot read the source folder {locked}: permission denied"
    )


def _can_mount_tmpfs() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = subprocess.run(
        [unshare, "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt 2>/dev/null || "
         "mount -t tmpfs -o size=1m tmpfs /tmp"],
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return probe.returncode == 0


DISK_FULL_SCRIPT = r"""
set -u
mount -t tmpfs -o size="$SIZE" tmpfs "$WS"
cd "$WS"
"$PY" -m musicflow.cli encode "$SRC" --dataset d > first.out 2> first.err; echo $? > first.rc
cp first.rc first.out first.err "$KEEP"/ 2>/dev/null
cp -r data/rolls/d "$KEEP"/before 2>/dev/null
if [ "$FILL" = 1 ]; then
  avail=$(df -k --output=avail "$WS" | tail -1)
  dd if=/dev/zero of=filler bs=1k count=$((avail - 150)) 2>/dev/null
  cp "$MORE"/*.mid "$SRC"/
  "$PY" -m musicflow.cli encode "$SRC" --dataset d > second.out 2> second.err; echo $? > second.rc
  cp second.rc second.out second.err "$KEEP"/
  rm -f filler
  cp -r data/rolls/d "$KEEP"/after
  find "$WS"/data -name '*.tmp' -o -name '*.pending' > "$KEEP"/leftovers
fi
"$PY" -m musicflow.cli server stop > /dev/null 2>&1
"""


@pytest.mark.perf  # a time bound
@pytest.mark.skipif(not _can_mount_tmpfs(), reason="cannot mount a small tmpfs here")
@pytest.mark.parametrize("case", ["3m", "full"])
def test_a_full_disk_gives_one_honest_line_and_commits_nothing(tmp_path: Path, case: str) -> None:
    """3m: a 3 MB workspace refuses to start; full: a disk that fills during a re-encode."""
    ws_dir, keep, src = tmp_path / "ws", tmp_path / "keep", tmp_path / "src"
    ws_dir.mkdir()
    keep.mkdir()
    midi_folder(src, 3)
    more = midi_folder(tmp_path / "more", 40, offset=10)
    env = clean_env(
        WS=str(ws_dir),
        KEEP=str(keep),
        SRC=str(src),
        MORE=str(more),
        PY=sys.executable,
        SIZE="3m" if case == "3m" else "80m",
        FILL="0" if case == "3m" else "1",
        MUSICFLOW_HOME=str(ws_dir),
        PREFECT_HOME=str(ws_dir / ".prefect"),
        MUSICFLOW_MIN_FREE_MB="64" if case == "3m" else "1",
        MUSICFLOW_SERVER_IDLE_MINUTES="1",
    )
    started = time.monotonic()
    subprocess.run(
        ["unshare", "-rm", "bash", "-c", DISK_FULL_SCRIPT], env=env, timeout=900, check=True
    )
    if case == "3m":
        err = (keep / "first.err").read_text().strip()
        assert (keep / "first.rc").read_text().strip() == "1"
        assert err.startswith("musicflow: error: no space left on device") and "\n" not in err
        assert time.monotonic() - started < 60
        return
    assert (keep / "first.rc").read_text().strip() == "0", (keep / "first.err").read_text()
    err = (keep / "second.err").read_text().strip()
    assert (keep / "second.rc").read_text().strip() == "1", err
    assert "no space left on device" in err.lower() and "\n" not in err, err
    assert "Traceback" not in err and "Timed out" not in err
    before = json.loads((keep / "before" / "dataset.json").read_text())
    after = json.loads((keep / "after" / "dataset.json").read_text())
    assert after == before  # nothing committed half-way: the old dataset, whole
    assert _sha(keep / "after" / "manifest.parquet") == after["manifest_sha256"]
    assert all((keep / "after" / s).is_file() for s in after["shards"])
    assert (keep / "leftovers").read_text().strip() == ""
