"""MLflow in one place: the names musicflow gives things, and every call it makes to MLflow.

Names (docs/tracking.md): experiment ``musicflow/<dataset>``, registered model
``<dataset>-<model>``, version URI ``models:/<dataset>-<model>/<version>``, alias ``champion``.

Adapters, so no other module talks to MLflow's API directly:

- the store: :func:`client`, :func:`use_workspace_store`, :func:`ensure_experiment` (where store
  creation, migration locking and experiment tags belong), :func:`ui_command`;
- runs: :func:`start_run` (a new run) and :func:`resume_run` (log more to a finished one),
  :func:`set_tags`, :func:`log_params`, :func:`log_metrics`, :func:`log_dataset_input`,
  :func:`log_artifacts`, :func:`download_artifacts`, :func:`run_metrics`;
- models: :func:`log_model` (log a pyfunc model and register a version), :func:`load_model`;
- the registry: :func:`version_metrics`, :func:`champion_version`, :func:`set_champion`,
  :func:`latest_version`, :func:`dataset_versions`.

MLflow is imported inside the functions: importing this module costs nothing, so ``musicflow
--help`` stays fast.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from musicflow import __version__, workspace
from musicflow.errors import ModelError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

EXPERIMENT_PREFIX = "musicflow/"
CHAMPION = "champion"
MODEL_ARTIFACT = "model"  # the logged pyfunc model's name in its run


def experiment_name(dataset: str) -> str:
    """``musicflow/<dataset>``: one experiment per dataset, every model's runs in it."""
    return f"{EXPERIMENT_PREFIX}{dataset}"


def registered_name(dataset: str, model: str) -> str:
    """``<dataset>-<model>``: one registered model per (dataset, model), one version per run."""
    return f"{dataset}-{model}"


def version_uri(name: str, version: int | str) -> str:
    """``models:/<name>/<version>``: what ``musicflow generate --model-uri`` takes."""
    return f"models:/{name}/{version}"


# --- the store ------------------------------------------------------------------------------


def client() -> MlflowClient:
    """A client of the workspace's store (``MLFLOW_TRACKING_URI`` or ``mlruns/mlflow.db``)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=workspace.tracking_uri())


def use_workspace_store() -> str:
    """Point MLflow's fluent API (``mlflow.start_run`` …) at the workspace's store."""
    import mlflow

    uri = workspace.tracking_uri()
    mlflow.set_tracking_uri(uri)
    return uri


def local_artifacts() -> Path | None:
    """Where new experiments keep their artifacts (``workspace.artifact_root``), or None when
    a tracking server decides (``mlflow-artifacts:/…`` under ``--serve-artifacts``)."""
    return workspace.artifact_root(workspace.tracking_uri())


def ui_command(port: int) -> list[str] | None:
    """``mlflow server`` for the workspace's store on 127.0.0.1:port (``musicflow ui``); None
    when the store is a tracking server, which serves its own UI."""
    import sys

    uri = workspace.tracking_uri()
    if workspace.is_tracking_server(uri):
        return None
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri"]
    cmd += [uri, "--host", "127.0.0.1", "--port", str(port)]
    artifacts = local_artifacts()
    if artifacts is not None:
        cmd += ["--artifacts-destination", artifacts.as_uri()]
    return cmd


def ensure_experiment(dataset: str) -> str:
    """Create the dataset's experiment once, up front (parallel creation races on sqlite).

    With a database store (the embedded sqlite one, or ``postgresql://`` used directly),
    artifacts go in the workspace (:func:`local_artifacts`; MLflow's default would be
    ``./mlartifacts`` in whatever directory the process started in). With a tracking server
    the server picks the location, so every client, on any machine, uploads and downloads
    through it instead of writing to a path that exists only where the experiment was made.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    use_workspace_store()
    name = experiment_name(dataset)
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    artifacts = local_artifacts()
    location = None if artifacts is None else (artifacts / dataset).as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except MlflowException:
        found = mlflow.get_experiment_by_name(name)  # another client of a shared server won
        if found is None:
            raise
        return found.experiment_id


# --- runs -----------------------------------------------------------------------------------


@contextlib.contextmanager
def start_run(dataset: str, run_name: str) -> Iterator[Run]:
    """A new run in the dataset's experiment, active inside the ``with`` block."""
    import mlflow

    experiment_id = ensure_experiment(dataset)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        yield run


@contextlib.contextmanager
def resume_run(run_id: str) -> Iterator[Run]:
    """Make a finished run active again, to log what a later step computed for it."""
    import mlflow

    use_workspace_store()
    with mlflow.start_run(run_id=run_id) as run:
        yield run


def set_tags(tags: dict[str, str]) -> None:
    """Tags of the active run."""
    import mlflow

    mlflow.set_tags(tags)


def log_params(params: dict[str, Any]) -> None:
    """Params of the active run; lists and dicts are logged as JSON."""
    import json

    import mlflow

    mlflow.log_params(
        {k: (json.dumps(v) if isinstance(v, list | dict) else v) for k, v in params.items()}
    )


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Metrics of the active run (at ``step``); undefined (non-finite) values are left out."""
    import math

    import mlflow

    mlflow.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)}, step=step)


def log_dataset_input(dataset_dir: Path, dataset: str, digest: str) -> None:
    """The shards folder as the active run's training input, with musicflow's own digest.

    MLflow's automatic digest samples 10,000 rows and skips binary columns, so it is replaced
    by the dataset digest (its first 32 hex digits, MLflow's limit).
    """
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are local
        warnings.simplefilter("ignore")
        source = resolve_dataset_source(Path(dataset_dir).resolve().as_uri())
    mlflow.log_input(MetaDataset(source=source, name=dataset, digest=digest[:32]), "training")


def log_artifacts(run_id: str, local_dir: Path, artifact_path: str) -> None:
    """Copy ``local_dir`` into the run's artifacts under ``artifact_path``."""
    client().log_artifacts(run_id, str(local_dir), artifact_path=artifact_path)


def download_artifacts(run_id: str, artifact_path: str, dst: Path) -> Path:
    """The run's artifact (file or folder) ``artifact_path``, copied under ``dst``."""
    import mlflow.artifacts

    Path(dst).mkdir(parents=True, exist_ok=True)
    return Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id,
            artifact_path=artifact_path,
            dst_path=str(dst),
            tracking_uri=workspace.tracking_uri(),
        )
    )


def run_metrics(run_id: str) -> dict[str, float]:
    """The latest value of every metric of a run."""
    return dict(client().get_run(run_id).data.metrics)


# --- models ---------------------------------------------------------------------------------


def log_model(python_model: Any, model_dir: Path, registered: str) -> int:
    """Log ``model_dir`` as the active run's pyfunc model, register it as a new version of
    ``registered``; returns the version number."""
    import mlflow.pyfunc

    info = mlflow.pyfunc.log_model(
        name=MODEL_ARTIFACT,
        python_model=python_model,
        artifacts={"model_dir": str(model_dir)},
        # Explicit requirements: inferring them would load the model in a subprocess.
        pip_requirements=[f"musicflow=={__version__}"],
        registered_model_name=registered,
    )
    return int(info.registered_model_version)


def load_model(model_uri: str) -> Any:
    """The Python model behind a pyfunc URI (``models:/…``, ``runs:/…``); ModelError if none."""
    import mlflow.pyfunc

    use_workspace_store()
    try:
        loaded = mlflow.pyfunc.load_model(model_uri)
    except Exception as exc:  # MLflow raises several types for a bad or unknown URI
        raise ModelError(f"cannot load model {model_uri!r}: {str(exc).splitlines()[0]}") from exc
    return loaded.unwrap_python_model()


# --- the registry ---------------------------------------------------------------------------


def version_metrics(name: str, version: int | str) -> dict[str, float]:
    """The metrics of the run that produced a registered version (``{}`` without a run)."""
    c = client()
    mv = c.get_model_version(name, str(version))
    return dict(c.get_run(mv.run_id).data.metrics) if mv.run_id else {}


def champion_version(name: str) -> str | None:
    """The version holding the ``champion`` alias, or None (no alias, or no such model)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client().get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def set_champion(name: str, version: int | str) -> None:
    client().set_registered_model_alias(name, CHAMPION, str(version))


def latest_version(name: str) -> ModelVersion | None:
    """The highest version of a registered model, or None when it has none."""
    versions = client().search_model_versions(f"name = '{name}'")
    return max(versions, key=lambda v: int(v.version)) if versions else None


@dataclass
class VersionRow:
    """One registered version of a dataset's models, as ``musicflow compare`` lists it."""

    model: str  # the registered name, <dataset>-<model>
    version: int
    champion: bool
    metrics: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "champion": self.champion,
            **self.metrics,
        }


def dataset_versions(dataset: str) -> list[VersionRow]:
    """Every registered version of the dataset's models with its run's metrics, sorted."""
    c = client()
    rows = []
    for model in c.search_registered_models(filter_string=f"name LIKE '{dataset}-%'"):
        champion = model.aliases.get(CHAMPION) if hasattr(model, "aliases") else None
        for mv in c.search_model_versions(f"name = '{model.name}'"):
            metrics = dict(c.get_run(mv.run_id).data.metrics) if mv.run_id else {}
            rows.append(
                VersionRow(model.name, int(mv.version), str(mv.version) == str(champion), metrics)
            )
    return sorted(rows, key=lambda r: (r.model, r.version))
