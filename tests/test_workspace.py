"""musicflow/adapters/workspace.py: dataset names, where state lives, the environment (no
telemetry)."""

from __future__ import annotations

import os

import pytest

from musicflow.adapters import workspace


@pytest.mark.parametrize("name", ["bach-chorales", "k", "piano_midi_de", "a1", "x" * 64])
def test_good_dataset_names(name: str) -> None:
    assert workspace.check_dataset_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "../x", "/abs", "a/b", "..", ".hidden", "%", "a%", "Chopin", "a b", "x" * 65, "é"]
)
def test_bad_dataset_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid dataset name"):
        workspace.check_dataset_name(name)


def test_rolls_dir_refuses_a_name_that_leaves_the_workspace() -> None:
    with pytest.raises(ValueError):
        workspace.rolls_dir("../../etc")


def test_a_dataset_folder_names_every_path_of_the_dataset(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUSICFLOW_HOME", str(tmp_path))
    folder = workspace.DatasetFolder.named("chopin")
    root, reports = tmp_path / "data" / "rolls" / "chopin", tmp_path / "reports" / "chopin"
    assert (folder.root, folder.name) == (root, "chopin")
    assert (folder.manifest, folder.info) == (root / "manifest.parquet", root / "dataset.json")
    assert folder.staged_manifest("ab" * 32) == root / f".manifest.parquet.{'ab' * 8}.pending"
    assert (folder.audit_page, folder.data_docs_index) == (
        root / "audit.html",
        root / "data_docs" / "index.html",
    )
    assert folder.version_manifest(3) == root / "history" / "v3.manifest.parquet"
    assert folder.versions == root / "history" / "versions.json"
    assert (folder.index_page, folder.history_page) == (
        reports / "index.html",
        reports / "history.html",
    )
    assert folder.report_page("vae", 2) == reports / "vae-v2" / "report.html"
    # a folder chosen with --out: its reports still go by the dataset's name
    elsewhere = workspace.DatasetFolder(tmp_path / "out", "chopin")
    assert elsewhere.manifest == tmp_path / "out" / "manifest.parquet"
    assert elsewhere.reports == reports
    assert workspace.DatasetFolder(tmp_path / "out").name == "out"
    with pytest.raises(ValueError):
        workspace.DatasetFolder.named("../x")


def test_the_source_folder_check_says_what_is_wrong(tmp_path) -> None:
    from musicflow.core.errors import DatasetError

    (tmp_path / "f.mid").write_bytes(b"")
    with pytest.raises(DatasetError, match="source folder not found"):
        workspace.check_source(tmp_path / "nope")
    with pytest.raises(DatasetError, match="is a file, not a folder"):
        workspace.check_source(tmp_path / "f.mid")
    assert workspace.check_source(tmp_path) == tmp_path


def test_slug_is_always_a_valid_name() -> None:
    assert workspace.slug("Piano MIDI.de") == "piano-midi-de"
    assert workspace.slug("...") == "dataset"
    assert len(workspace.slug("y" * 300)) == 64


def test_telemetry_is_switched_off_even_against_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DO_NOT_TRACK", "false")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")
    workspace.configure_environment()
    for key, value in workspace.NO_TELEMETRY.items():
        assert os.environ[key] == value
    assert os.environ["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] == "false"


def test_run_environment_carries_the_workspace_to_a_worker(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUSICFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("PREFECT_HOME", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.lab.example:5000")
    env = workspace.run_environment()
    assert env["MUSICFLOW_HOME"] == str(tmp_path)
    assert env["PREFECT_HOME"] == str(tmp_path / ".prefect")  # where cached results live
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.lab.example:5000"  # the user's wins
    assert env["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] == "false"
    assert workspace.NO_TELEMETRY.items() <= env.items()
    settings = env.keys() - workspace.NO_TELEMETRY.keys()
    assert not [k for k in settings if k.startswith(("PREFECT_API_", "PREFECT_SERVER_"))]
