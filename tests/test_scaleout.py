"""Unit tests for the scale-out paths (no server started): where artifacts go for each kind of
tracking URI, ``ui`` with a tracking server, clear errors when Dask workers cannot see the files,
and the synthetic corpus that the Dask test and the scale benchmark use."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from musicflow.adapters import workspace
from musicflow.cli import main
from musicflow.core.errors import DatasetError, MusicflowError
from musicflow.core.scan import scan_file
from musicflow.core.synth import synth_midi, write_corpus
from musicflow.flows.dataset import is_loopback_address, prefect_api_for_workers
from musicflow.tasks.parse import ParseJob, parse_chunk_files


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sqlite:////srv/mf/mlruns/mlflow.db", Path("/srv/mf/mlruns/artifacts")),
        ("postgresql://u@db:5432/mlflow", "home"),  # a database used directly: the workspace
        ("http://127.0.0.1:5000", None),  # a tracking server decides (--serve-artifacts)
        ("HTTPS://mlflow.lab.example", None),
    ],
)
def test_artifact_root_per_tracking_uri(uri: str, expected, workspace_home: Path) -> None:
    if expected == "home":
        expected = workspace_home / "mlruns" / "artifacts"
    assert workspace.artifact_root(uri) == expected


def test_ui_with_a_tracking_server_points_at_it(
    monkeypatch: pytest.MonkeyPatch, capsys, workspace_home: Path
) -> None:
    def no_server(*args, **kwargs):
        raise AssertionError("ui must not start a second server")

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    monkeypatch.setattr(subprocess, "call", no_server)
    assert main(["ui"]) == 0
    assert "http://127.0.0.1:5999" in capsys.readouterr().out
    link_page = workspace_home / "reports" / "mlflow-ui.html"
    assert '"http://127.0.0.1:5999/"' in link_page.read_text()  # the reports' links open it


def test_unreadable_source_on_a_worker_is_one_clear_error(tmp_path: Path) -> None:
    job = ParseJob(path=str(tmp_path / "gone.mid"), sha="ab" * 32, entry=str(tmp_path / "e.npz"))
    with pytest.raises(DatasetError, match=r"not readable on .*Dask worker"):
        parse_chunk_files([job], pitch_low=21)


def test_synthetic_corpus_is_deterministic_and_valid(tmp_path: Path) -> None:
    assert synth_midi(3) == synth_midi(3) and synth_midi(3) != synth_midi(4)
    paths = write_corpus(tmp_path, 25, seed=1, per_folder=10)
    assert [p.relative_to(tmp_path).as_posix() for p in paths[9:11]] == [
        "d000/f000009.mid",
        "d001/f000010.mid",
    ]
    for path in paths:
        scan = scan_file(path.read_bytes(), pitch_low=21)
        assert scan.record["error"] is None
        assert scan.record["n_notes"] >= 3 * 150
        assert len(scan.segments) > 0
        assert not any(
            scan.record[k]
            for k in ("n_out_of_range", "n_unterminated", "n_orphan_note_off", "n_drum_notes")
        )


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("tcp://127.0.0.1:8786", True),
        ("tcp://localhost:8786", True),
        ("127.0.0.2:8786", True),
        ("tcp://[::1]:8786", True),
        ("tcp://10.0.0.5:8786", False),
        ("tls://scheduler.lab.example:8786", False),
    ],
)
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback_address(address) is loopback


def test_remote_scheduler_without_prefect_api_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Refused before anything is contacted: no connection to that address is ever tried.
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    # an earlier test of this process may have attached to a server: the setting as unset
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with (
            pytest.raises(MusicflowError, match="set PREFECT_API_URL"),
            prefect_api_for_workers("dask", "tcp://10.0.0.5:8786"),
        ):
            pass
        with prefect_api_for_workers("threads", "tcp://10.0.0.5:8786") as url:
            assert url is None  # threads need no API handed to anyone
