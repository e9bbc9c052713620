"""Test session set-up: an isolated workspace, so no test touches the user's state.

The environment is set at import time, before any test module imports prefect, GX or MLflow:
they read PREFECT_HOME and friends when imported. The session's workspace Prefect server
(``musicflow/adapters/prefect_server.py``) gets its address here too (Prefect reads
``PREFECT_API_URL`` once, at import), but starts only when a selected test is marked
``integration`` or ``server`` (for the whole suite, ``make test``, while the modules are
collected); a unit run (``make test-fast``) starts none. The tests' flows and the CLI
subprocesses they start use it, and it is stopped when the session ends (and would stop by
itself two minutes after a killed session).

A unit test (no ``integration``/``server`` marker) fails when it starts a Prefect server or a
CLI subprocess, or imports TensorFlow, MLflow or Great Expectations: mark it (pyproject.toml,
docs/architecture.md "Tests").
"""

from __future__ import annotations

import importlib.abc
import os
import secrets
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import mido
import numpy as np
import pytest

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="musicflow-tests-"))
os.environ["MUSICFLOW_HOME"] = str(_SESSION_HOME)
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("PREFECT_API_URL", None)
os.environ["PREFECT_HOME"] = str(_SESSION_HOME / ".prefect")

os.environ["MUSICFLOW_SERVER_IDLE_MINUTES"] = "2"
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    # ``make test`` runs one worker per core: one compute thread per process (TensorFlow's
    # intra-op pool, BLAS), inherited by the CLI processes, so the workers share the cores
    # instead of spinning against each other
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from musicflow.adapters import prefect_server, workspace  # noqa: E402

workspace.configure_environment()

# The server's port is bound (not listened on) until the server starts, so nothing else takes
# it meanwhile and a unit test that calls the API is refused at once.
_PORT_HOLD = socket.socket()
_PORT_HOLD.bind(("127.0.0.1", 0))
_PORT = _PORT_HOLD.getsockname()[1]
_AUTH = f"musicflow:{secrets.token_urlsafe(24)}"
os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{_PORT}/api"
os.environ["PREFECT_API_AUTH_STRING"] = _AUTH
_SERVER: prefect_server.WorkspaceServer | None = None

NEEDS_SERVER = ("integration", "server")  # the markers whose tests get the Prefect server
HEAVY = ("tensorflow", "mlflow", "great_expectations")  # what a unit test must not import

#: The slowest test files (half a minute to four each, measured one at a time on a loaded
#: 2-core machine), slowest first. ``make test``'s workers take whole files from one queue, so
#: these go first and the workers end on short files together; pytest-xdist's own order (the
#: files with the most tests first) would leave the one-test files, among the slowest, to the
#: end, one worker running them while the other waits.
SLOWEST_FIRST = (
    # first, before any file trains in the worker's process: a rebuild of a seeded model once
    # repeated its first epoch only to 0.3 % (loss 7.3537 against 7.3316) after other files
    # had trained in-process (not reproduced alone; cause not found)
    "test_models.py",
    "test_faults_versions.py",
    "test_faults.py",
    "test_train_flow.py",
    "test_concurrency.py",
    "test_tracking_server.py",
    "test_watch.py",
    "test_watch_emit.py",
    "test_accelerate.py",
    "test_deploy.py",
    "test_pipeline.py",
    "test_server_loss.py",
    "test_tracked_models.py",
    "test_serve.py",
    "test_tracking.py",
    "test_dask_cluster.py",
    "test_dataset_flows.py",
    "test_cli.py",
    "test_soundfont_faults.py",
    "test_directed.py",
)


def _start_server() -> prefect_server.WorkspaceServer:
    """Start the session's server at its address (once; returns at once, ``wait()`` blocks)."""
    global _SERVER
    if _SERVER is None:
        home = workspace.prefect_home().resolve()
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        prefect_server._take_lease(home)
        _PORT_HOLD.close()
        with prefect_server._locked(home / prefect_server.LOCK_NAME):
            state, proc = prefect_server._spawn(home, _PORT, _AUTH)
        _SERVER = prefect_server.WorkspaceServer(
            home, state["url"], state["auth"], state["pid"], proc
        )
    return _SERVER


def _needs_server(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(name) for name in NEEDS_SERVER)


def _runs_tests(config: pytest.Config) -> bool:
    """False in pytest-xdist's controller (``make test`` runs ``-n 2``): it only hands tests to
    its workers, and each worker, importing this module, has its own workspace and server."""
    return hasattr(config, "workerinput") or getattr(config.option, "dist", "no") == "no"


def pytest_configure(config: pytest.Config) -> None:
    whole_suite = (
        _runs_tests(config)
        and config.args_source is pytest.Config.ArgsSource.TESTPATHS
        and not config.option.markexpr
        and not config.option.keyword
        and not config.option.collectonly
    )
    if whole_suite:  # make test: it boots while the test modules are collected
        _start_server()
    if getattr(config.option, "dist", "no") != "no":
        config.option.loadscopereorder = False  # the order of SLOWEST_FIRST, not by test count


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: the order the queue hands out
        rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole
    if not config.option.collectonly and any(_needs_server(item) for item in items):
        _start_server()  # boots in the background until the first such test waits for it


@pytest.hookimpl(tryfirst=True)  # before the test's fixtures, of whatever scope
def pytest_runtest_setup(item: pytest.Item) -> None:
    if _needs_server(item):
        _start_server().wait()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A unit test that reached the session's Prefect API (not started for it) says why."""
    report = yield
    if report.failed and not _needs_server(item) and f"127.0.0.1:{_PORT}" in report.longreprtext:
        hint = "a unit test called the Prefect API (a flow?): mark it integration"
        report.sections.append(("musicflow", hint))
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _SERVER is not None:
        prefect_server.stop_workspace_server(_SERVER.home)
    _PORT_HOLD.close()


def _refuse(what: str) -> Callable[..., NoReturn]:
    def refuse(*args: object, **kwargs: object) -> NoReturn:
        pytest.fail(f"a unit test {what}: mark it integration (or server)", pytrace=False)

    return refuse


class _UnitPopen(subprocess.Popen):
    """Popen for unit tests: refuses the musicflow CLI and the Prefect server."""

    def __init__(self, args, *rest, **kwargs) -> None:
        argv = [str(a) for a in ([args] if isinstance(args, str | bytes | Path) else args)]
        if any(
            a in ("musicflow.cli", "prefect", "musicflow.adapters.prefect_server") for a in argv
        ) or (argv and Path(argv[0]).name == "musicflow"):
            _refuse("starts a musicflow CLI or Prefect server process")()
        super().__init__(args, *rest, **kwargs)


class _NoHeavyImports(importlib.abc.MetaPathFinder):
    """Refuses, in a unit test, the first import of what only integration tests may use."""

    def find_spec(self, name: str, path=None, target=None) -> None:
        if name.partition(".")[0] in HEAVY:
            raise ImportError(f"a unit test imports {name}: mark it integration")


@pytest.fixture(autouse=True)
def _what_a_test_needs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Unit tests get no Prefect server, and fail when they reach for one or for what only
    integration tests may use (see the module docstring)."""
    if _needs_server(request.node):
        return
    monkeypatch.setattr(sys, "meta_path", [_NoHeavyImports(), *sys.meta_path])
    monkeypatch.setattr(prefect_server, "_spawn", _refuse("starts a Prefect server"))
    monkeypatch.setattr(prefect_server, "start_local_server", _refuse("starts a Prefect server"))
    monkeypatch.setattr(subprocess, "Popen", _UnitPopen)


SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PIANO = SHARED / "data" / "piano-midi-de"
HOSTILE = SHARED / "data" / "hostile-midi"


# The quarantine codes in precedence order, and the warning codes (docs/dataset.md).
QUARANTINE_ORDER = [
    "unreadable",
    "too_large",
    "not_midi",
    "truncated",
    "async_type2",
    "smpte_division",
    "bad_ticks_per_beat",
    "no_notes",
    "voice_count",
]
WARNING_CODES = {"notes_out_of_range", "unterminated_notes", "orphan_note_off", "drums_ignored"}


def write_midi(path: Path, pitches: list[int]) -> None:
    """A small type-1 file: one note per beat on channel 0, ``pitches`` in turn."""
    mid = mido.MidiFile(type=1, ticks_per_beat=96)
    track = mido.MidiTrack()
    for pitch in pitches:
        track.append(mido.Message("note_on", note=pitch, velocity=80, time=0))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=96))
    mid.tracks.append(track)
    mid.save(path)


@pytest.fixture(scope="session")
def piano_dir() -> Path:
    if not PIANO.is_dir():
        pytest.skip(f"corpus not found at {PIANO}")
    return PIANO


@pytest.fixture(scope="session")
def hostile_dir() -> Path:
    if not HOSTILE.is_dir():
        pytest.skip(f"hostile corpus not found at {HOSTILE}")
    return HOSTILE


@pytest.fixture
def workspace_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh MUSICFLOW_HOME for one test (data/, reports/, mlruns/ inside tmp_path)."""
    monkeypatch.setenv("MUSICFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    (tmp_path / "mlruns").mkdir()
    return tmp_path


def random_windows(n: int, seed: int) -> np.ndarray:
    """``n`` windows of random short notes in the middle rows (seeded)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 96, 96), dtype=bool)
    for i in range(n):
        for r, s in zip(rng.integers(30, 70, 20), rng.integers(0, 90, 20), strict=True):
            x[i, r, s : s + rng.integers(2, 12)] = True
    return x


@pytest.fixture(scope="session")
def figures() -> dict[str, bytes]:
    """One of each report figure, drawn from random windows."""
    from musicflow.pages import plots

    real, gen = random_windows(20, 0), random_windows(20, 1)
    history = {"loss": [1.0, 0.6, 0.4], "val_loss": [1.1, 0.8, 0.7]}
    return {
        "note frequency": plots.note_frequency_figure(real, gen),
        "losses": plots.loss_curves_figure(history),
        "discriminator": plots.discriminator_accuracy_figure(
            {"d_acc_real": [0.9, 0.8], "d_acc_fake": [0.95, 0.7]}
        ),
        "latent 2-d": plots.latent_scatter_figure(np.random.default_rng(2).normal(size=(50, 2))),
        "latent 8-d": plots.latent_scatter_figure(
            np.random.default_rng(3).normal(size=(50, 8)), labels=["a", "b"] * 25
        ),
        "samples": plots.sample_grid_figure(gen[:6], ncols=3),
    }
