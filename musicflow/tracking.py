"""MLflow in one place: the names musicflow gives things, and every call it makes to MLflow.

Names (docs/tracking.md): experiment ``musicflow/<dataset>``, registered model
``<dataset>-<model>``, version URI ``models:/<dataset>-<model>/<version>``, alias ``champion``.

Adapters, so no other module talks to MLflow's API directly:

- the store: :func:`client`, :func:`use_workspace_store`, :func:`ensure_experiment` (where store
  creation, migration locking and experiment tags belong), :func:`ui_command`;
- runs: :func:`start_run` (a new run) and :func:`resume_run` (log more to a finished one),
  :func:`set_tags`, :func:`log_params`, :func:`log_metrics`, :func:`log_dataset_input`,
  :func:`log_artifacts`, :func:`download_artifacts`, :func:`run_metrics`,
  :func:`set_run_description`;
- models: :func:`log_model` (log a pyfunc model and register a version), :func:`load_model`,
  :func:`describe_version`;
- the registry: :func:`version_metrics`, :func:`champion_version`, :func:`set_champion`,
  :func:`latest_version`, :func:`dataset_versions`;
- the UI: :func:`tag_training_experiment` (opens on the training runs, with the metric columns
  a user compares on: the saved view :data:`VIEW_KEY`), :func:`experiment_url`,
  :func:`run_url`.

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

# MLflow 3's UI opens an experiment on its GenAI overview unless this tag says it holds model
# training runs.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
NOTE_TAG = "mlflow.note.content"  # the description the UI shows for an experiment or a run
# A saved view of the experiment's run list (the UI's "shared view" tag): the columns a user
# compares versions on, sorted by the champion rule's first key. Opened by experiment_url().
VIEW_PREFIX = "mlflow.sharedViewState."
VIEW_KEY = "musicflow"
VIEW_METRICS = (
    "onenn_accuracy",
    "onenn_accuracy_baseline",
    "pitch_hist_l1",
    "pitch_hist_l1_baseline",
    "blank_rate",
    "unique_rate",
    "copy_rate",
    "heldout_nll",
    "epochs_completed",
)
VIEW_PARAMS = ("model", "epochs", "max_epochs", "time_budget_s", "dataset_digest")
# The run's evaluation metrics, comma-separated (evaluate sets it): what compare and the index
# page list, whatever the metrics' names.
EVALUATION_METRICS_TAG = "musicflow.evaluation_metrics"
UI_HOST = "127.0.0.1"
UI_PORT = 5000


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
    tag_training_experiment(experiment_id, dataset)
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


def set_run_description(run_id: str, text: str) -> None:
    """The run's description (Markdown), shown at the top of its page in the MLflow UI."""
    client().set_tag(run_id, NOTE_TAG, text)


# --- models ---------------------------------------------------------------------------------


def log_model(python_model: Any, model_dir: Path, registered: str) -> int:
    """Log ``model_dir`` as the active run's pyfunc model, register it as a new version of
    ``registered``; returns the version number."""
    import mlflow.pyfunc

    with _quiet_unless_debug():  # "Successfully registered model …", "Created version …"
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=python_model,
            artifacts={"model_dir": str(model_dir)},
            # Explicit requirements: inferring them would load the model in a subprocess.
            pip_requirements=[f"musicflow=={__version__}"],
            registered_model_name=registered,
        )
    return int(info.registered_model_version)


@contextlib.contextmanager
def _quiet_unless_debug() -> Iterator[None]:
    """Silence MLflow's own event messages (printed straight to stderr) unless ``--debug``."""
    from mlflow.utils import logging_utils

    from musicflow import progress

    if progress.debug_enabled():
        yield
        return
    logging_utils.disable_logging()
    try:
        yield
    finally:
        logging_utils.enable_logging()


def describe_version(name: str, version: int | str, text: str, model_text: str = "") -> None:
    """The description of a registered version (and of its registered model, when given)."""
    c = client()
    c.update_model_version(name, str(version), description=text)
    if model_text:
        c.update_registered_model(name, description=model_text)


def load_model(model_uri: str) -> Any:
    """The Python model behind a pyfunc URI (``models:/…``, ``runs:/…``); ModelError if none."""
    import mlflow.pyfunc

    use_workspace_store()
    try:
        loaded = mlflow.pyfunc.load_model(model_uri)
    except Exception as exc:  # MLflow raises several types for a bad or unknown URI
        raise ModelError(f"cannot load model {model_uri!r}: {str(exc).splitlines()[0]}") from exc
    return loaded.unwrap_python_model()


# --- the UI ---------------------------------------------------------------------------------


def view_state() -> dict[str, Any]:
    """The run-list view :func:`tag_training_experiment` saves: columns and sort order."""
    return {
        "selectedColumns": [
            "attributes.`Models`",
            *(f"params.`{p}`" for p in VIEW_PARAMS),
            *(f"metrics.`{m}`" for m in VIEW_METRICS),
        ],
        "orderByKey": "metrics.`onenn_accuracy`",
        "orderByAsc": True,
    }


def training_experiment_tags(dataset: str) -> dict[str, str]:
    """Tags that make the MLflow UI open the dataset's experiment where a user needs it."""
    import json
    import time

    now = int(time.time() * 1000)
    view = {
        "name": "musicflow: versions and evaluation metrics",
        "createdAt": now,
        "updatedAt": now,
        "state": json.dumps(view_state()),
    }
    return {
        EXPERIMENT_KIND_TAG: TRAINING_KIND,
        NOTE_TAG: (
            f"Training runs of musicflow on the dataset **{dataset}**: one run per trained "
            "model (params, per-epoch losses, held-out evaluation with a `_baseline` for each "
            "metric, figures, the HTML report, the registered version). Compare versions with "
            f"`musicflow compare --dataset {dataset}` or `reports/{dataset}/index.html`."
        ),
        f"{VIEW_PREFIX}{VIEW_KEY}": json.dumps(view),
    }


def tag_training_experiment(experiment_id: str, dataset: str) -> None:
    """Tag the experiment as a model-training one, with a description and the saved view
    (only the tags it lacks, so a user's own edits stay)."""
    c = client()
    have = c.get_experiment(experiment_id).tags
    for key, value in training_experiment_tags(dataset).items():
        if key not in have:
            c.set_experiment_tag(experiment_id, key, value)


def ui_base(port: int = UI_PORT) -> str:
    return f"http://{UI_HOST}:{port}"


# The UI's side bar has a GenAI and a model-training mode, kept in the browser; this query
# parameter opens the model-training one.
UI_MODE = "workflowType=machine_learning"


def experiment_url(experiment_id: str, port: int = UI_PORT) -> str:
    """The experiment's run list in ``musicflow ui``, opened on the saved view."""
    return (
        f"{ui_base(port)}/#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}&{UI_MODE}"
    )


def run_url(experiment_id: str, run_id: str, port: int = UI_PORT) -> str:
    """A run's page in ``musicflow ui``."""
    return f"{ui_base(port)}/#/experiments/{experiment_id}/runs/{run_id}?{UI_MODE}"


def experiment_links(port: int = UI_PORT) -> list[tuple[str, str]]:
    """``(dataset, address)`` of every musicflow experiment in the store, for ``musicflow ui``
    to print; empty while the embedded store does not exist yet (creating it here would race
    with the UI server's own migration)."""
    artifacts = local_artifacts()
    if artifacts is not None and not (artifacts.parent / "mlflow.db").is_file():
        return []
    found = client().search_experiments(filter_string=f"name LIKE '{EXPERIMENT_PREFIX}%'")
    return [
        (e.name.removeprefix(EXPERIMENT_PREFIX), experiment_url(e.experiment_id, port))
        for e in sorted(found, key=lambda e: e.name)
    ]


def experiment_id_of(dataset: str) -> str | None:
    """The dataset's experiment id, or None before its first run."""
    found = client().get_experiment_by_name(experiment_name(dataset))
    return None if found is None else found.experiment_id


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
    champion: bool  # holds its registered model's champion alias
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str = ""
    experiment_id: str = ""
    params: dict[str, str] = field(default_factory=dict)  # the run's params
    tags: dict[str, str] = field(default_factory=dict)  # the run's tags
    created_ms: int = 0  # when the version was registered (ms since the epoch)

    @property
    def model_kind(self) -> str:
        """The model's name (``vae``, ``gan`` …): the run's param, else the name's suffix."""
        return self.params.get("model") or self.model.rsplit("-", 1)[-1]

    @property
    def uri(self) -> str:
        return version_uri(self.model, self.version)

    def evaluation_names(self) -> list[str]:
        """The run's evaluation metrics in report order (the tag evaluate sets; for older
        runs, the metrics musicflow knows)."""
        from musicflow.metrics import evaluation_names

        tagged = [n for n in self.tags.get(EVALUATION_METRICS_TAG, "").split(",") if n]
        return evaluation_names(self.metrics, tagged)

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
            run = c.get_run(mv.run_id) if mv.run_id else None
            trained_on = run.data.tags.get("musicflow.dataset") if run else None
            if trained_on != dataset and not _same_dataset(model.name, dataset):
                continue  # "<dataset>-…" of another dataset whose name starts the same
            rows.append(
                VersionRow(
                    model.name,
                    int(mv.version),
                    str(mv.version) == str(champion),
                    dict(run.data.metrics) if run else {},
                    run_id=mv.run_id or "",
                    experiment_id=run.info.experiment_id if run else "",
                    params=dict(run.data.params) if run else {},
                    tags=dict(run.data.tags) if run else {},
                    created_ms=int(mv.creation_timestamp or 0),
                )
            )
    return sorted(rows, key=lambda r: (r.model, r.version))


def _same_dataset(registered: str, dataset: str) -> bool:
    """``registered`` is ``<dataset>-<model>`` for one of the models musicflow knows."""
    from musicflow.models import MODEL_NAMES

    return any(registered == registered_name(dataset, m) for m in MODEL_NAMES)
