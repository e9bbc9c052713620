"""Test session set-up: an isolated workspace, so no test touches the user's state.

The environment is set at import time, before any test module imports prefect, GX or MLflow:
they read PREFECT_HOME and friends when imported. The session's workspace Prefect server
(``musicflow/adapters/prefect_server.py``) starts in the background here; the tests' flows and the
CLI
subprocesses they start use it (``PREFECT_API_URL``), and it is stopped when the session ends
(and would stop by itself two minutes after a killed session).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import mido
import numpy as np
import pytest

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="musicflow-tests-"))
os.environ["MUSICFLOW_HOME"] = str(_SESSION_HOME)
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("PREFECT_API_URL", None)
os.environ["PREFECT_HOME"] = str(_SESSION_HOME / ".prefect")

os.environ["MUSICFLOW_SERVER_IDLE_MINUTES"] = "2"

from musicflow.adapters import prefect_server, workspace  # noqa: E402

workspace.configure_environment()
_SERVER = prefect_server.attach()  # boots while the test modules are collected


@pytest.fixture(scope="session", autouse=True)
def _prefect_server_ready() -> None:
    """Every test (and fixture) sees a ready Prefect API: session fixtures come first."""
    if _SERVER is not None:
        _SERVER.wait()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _SERVER is not None:
        prefect_server.stop_workspace_server(_SERVER.home)


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
