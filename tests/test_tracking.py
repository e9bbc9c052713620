"""musicflow/tracking.py: the MLflow names, and the store they live in (docs/tracking.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from musicflow import tracking


def test_names() -> None:
    assert tracking.experiment_name("bach") == "musicflow/bach"
    assert tracking.registered_name("bach", "gan-thesis") == "bach-gan-thesis"
    assert tracking.version_uri("bach-gan", 4) == "models:/bach-gan/4"
    assert tracking.CHAMPION == "champion"


def test_ui_serves_the_workspace_store_on_loopback(workspace_home: Path) -> None:
    cmd = tracking.ui_command(5001)
    assert cmd[1:4] == ["-m", "mlflow", "server"]
    assert cmd[cmd.index("--backend-store-uri") + 1].endswith("mlruns/mlflow.db")
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and "5001" in cmd
    artifacts = cmd[cmd.index("--artifacts-destination") + 1]
    assert artifacts == (workspace_home / "mlruns" / "artifacts").as_uri()


@pytest.mark.integration
def test_experiment_created_once_with_artifacts_beside_the_store(workspace_home: Path) -> None:
    first = tracking.ensure_experiment("bach")
    assert tracking.ensure_experiment("bach") == first
    experiment = tracking.client().get_experiment(first)
    assert experiment.name == "musicflow/bach"
    assert (
        experiment.artifact_location == (workspace_home / "mlruns" / "artifacts" / "bach").as_uri()
    )
    assert tracking.latest_version("bach-gan") is None
    assert tracking.champion_version("bach-gan") is None
    assert tracking.dataset_versions("bach") == []
