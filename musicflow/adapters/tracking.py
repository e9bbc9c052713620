"""MLflow in one place: the names musicflow gives things, and every call it makes to MLflow.

Names (docs/tracking.md): experiment ``musicflow/<dataset>``, registered model
``<dataset>-<model>``, version URI ``models:/<dataset>-<model>/<version>``, alias ``champion``.

Adapters, so no other module talks to MLflow's API directly:

- the store: :func:`check_reachable` (an ``http(s)://`` tracking server answers, checked in
  seconds before anything heavy loads), :func:`prepare_store` (the embedded sqlite store is
  created and migrated once, under a file lock, and a half-migrated one is repaired or
  reported in one line), :func:`client`, :func:`use_workspace_store`,
  :func:`ensure_experiment`, :func:`ui_command`;
- runs: :func:`start_run` (a new run), :func:`leave_running` (a run a later step finishes)
  and :func:`resume_run` (log more to a run), all tagged with their owner process so that
  :func:`mark_crashed_runs` can close runs a killed command left ``RUNNING``;
  :func:`set_tags`, :func:`log_params`, :func:`log_metrics`, :func:`log_dataset_input`,
  :func:`log_artifacts`, :func:`download_artifacts`, :func:`run_metrics`,
  :func:`set_run_description`;
- models: :func:`log_model` (log the model folder as a models-from-code pyfunc model, no
  pickle, register a version and record its files' digests), :func:`fetch_model` (the data
  files of a version, checked against those digests, refused when none are recorded:
  musicflow never unpickles or imports anything from the artifact store), :func:`describe_version`;
- the registry: :func:`version_metrics`, :func:`champion_version`, :func:`set_champion`,
  :func:`restore_champion`, :func:`latest_version`, :func:`dataset_versions` (read from
  sqlite directly for the embedded store), :func:`known_datasets`, :func:`require_dataset`;
- the UI: :func:`tag_training_experiment` (opens on the training runs, with the metric columns
  a user compares on: the saved view :data:`VIEW_KEY`), :func:`experiment_url`,
  :func:`run_url`; the in-page routes :func:`run_route`, :func:`experiment_route` and
  :func:`ui_address` for the pages' links (tasks/report.write_ui_link_page).

MLflow is imported inside the functions: importing this module costs nothing, so ``musicflow
--help`` stays fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from musicflow import __version__
from musicflow.adapters import atomic, procs, workspace
from musicflow.core.errors import DatasetError, ModelError, TrackingError
from musicflow.core.metrics import BASELINE_SUFFIX, HEADLINE_METRICS, MODEL_METRIC_INFO

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

EXPERIMENT_PREFIX = "musicflow/"
CHAMPION = "champion"
MODEL_ARTIFACT = "model"  # the logged pyfunc model's name in its run
MODEL_DIR_KEY = "model_dir"  # the pyfunc artifact holding the model folder
MODEL_FILES_TAG = "musicflow.model_files"  # {file name: sha256} of MODEL_DIR, at registration
OWNER_TAG = "musicflow.owner"  # <host>:<pid>:<start time> of the process running the run
END_TAG = "musicflow.end"  # why another process closed the run as FAILED
# A training run's tags (tasks/train.py sets them): what trained on what, from which code.
MODEL_TAG = "musicflow.model"
DATASET_TAG = "musicflow.dataset"
CODE_VERSION_TAG = "musicflow.code_version"
GIT_COMMIT_TAG = "musicflow.git_commit"
FLOW_RUN_TAG = "prefect.flow_run_id"
#: The only files musicflow reads from a model: JSON, Keras weights and the frame models'
#: numpy sampler (docs/tracking.md).
MODEL_FILE_RE = re.compile(
    r"(config|sampling|sampler)\.json|sampler\.npz|[A-Za-z0-9_]+\.weights\.h5"
)
#: The models-from-code entry point MLflow's own loader runs (musicflow's loader does not).
SAMPLER_MODULE = "musicflow.tasks.sampler_model"
REACH_TIMEOUT_S = 5.0

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
    *(f"{m}{s}" for m in HEADLINE_METRICS for s in ("", BASELINE_SUFFIX)),
    "unique_rate",
    "copy_rate",
    *MODEL_METRIC_INFO,
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


def check_reachable(timeout_s: float = REACH_TIMEOUT_S) -> None:
    """For an ``http(s)://`` tracking URI, TrackingError (one line) unless its server answers
    an HTTP request within ``timeout_s`` in all; nothing to check for the embedded store.

    Any answer passes (even 401 or 404: a server is there), so a server behind a proxy or with
    authentication passes; a socket that accepts and never answers does not (MLflow itself
    would wait and retry for minutes).
    """
    from urllib.parse import urlsplit

    uri = workspace.tracking_uri()
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    problem = http_answers(uri, timeout_s)
    if problem:
        raise TrackingError(
            f"the MLflow tracking server {uri} is unreachable ({problem}); start it, or "
            "unset MLFLOW_TRACKING_URI to use the workspace's own store"
        )


def http_answers(url: str, timeout_s: float) -> str | None:
    """None when the server of ``url`` sends the first bytes of an answer to ``GET /health``
    within ``timeout_s`` (connection, TLS and answer together); else why not, in a few words.
    No credentials are sent, and the answer is not read beyond its first bytes."""
    import socket
    import ssl
    import time
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    deadline = time.monotonic() + timeout_s
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            conn: socket.socket = sock
            if parts.scheme == "https":
                context = ssl.create_default_context()
                # only "does it answer" is asked here; MLflow verifies the certificate
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                sock.settimeout(max(deadline - time.monotonic(), 0.01))
                conn = context.wrap_socket(sock, server_hostname=host)
            conn.settimeout(max(deadline - time.monotonic(), 0.01))
            conn.sendall(f"GET /health HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            conn.settimeout(max(deadline - time.monotonic(), 0.01))
            if not conn.recv(1):
                return "it closed the connection without answering"
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def _store_stamp() -> str:
    from importlib.metadata import version

    return f"mlflow {version('mlflow')}"


def prepare_store() -> None:
    """Create and migrate the embedded sqlite store once, before anything uses it.

    Two processes creating a fresh store at once race in MLflow's schema migration and can
    leave it broken for good (docs/tracking.md), so creation and migration run under an
    exclusive lock on ``mlflow.db.lock``; a stamp file (``mlflow.db.ready``) lets later
    commands skip even the lock. A new store is migrated under a temp name and renamed into
    place (:func:`_create_fresh`), so a kill during the first migration leaves nothing to
    repair. For an existing store (a newer MLflow), leftover ``_alembic_tmp_*`` tables of an
    interrupted migration are repaired first; a store that still cannot be migrated is a
    TrackingError saying how to move it aside. Nothing to do for a tracking server.
    """
    path = _sqlite_path(workspace.tracking_uri())
    if path is None:
        return
    stamp = _stamp_path(path)
    if path.is_file() and _read(stamp) == _store_stamp():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    import fcntl

    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if path.is_file() and _read(stamp) == _store_stamp():
            return
        stamp.unlink(missing_ok=True)
        if path.is_file():
            _create_or_migrate(path, _repair_leftovers(path))
        else:
            _create_fresh(path)
        atomic.write_text(stamp, _store_stamp())
    finally:
        os.close(fd)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _repair_leftovers(path: Path) -> list[str]:
    """Undo what an interrupted SQLite "move and copy" migration leaves: a
    ``_alembic_tmp_<table>`` beside ``<table>`` is dropped (the copy never finished); without
    ``<table>`` it is renamed back (the copy finished, the rename did not)."""
    import sqlite3

    con = sqlite3.connect(path, timeout=60)
    try:
        tables = {
            name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        repaired = []
        for tmp in sorted(t for t in tables if t.startswith("_alembic_tmp_")):
            base = tmp.removeprefix("_alembic_tmp_")
            if base in tables:
                con.execute(f'DROP TABLE "{tmp}"')
            else:
                con.execute(f'ALTER TABLE "{tmp}" RENAME TO "{base}"')
            repaired.append(tmp)
        con.commit()
        return repaired
    finally:
        con.close()


def _create_fresh(path: Path) -> None:
    """A new store, created and migrated under a temp name and renamed into place once
    complete: a command killed meanwhile leaves no store (its temp file is swept), never a
    half-migrated one. Readable by its owner only (0600), as the journal files sqlite derives
    from it."""
    atomic.sweep(path.parent)
    for journal in path.parent.glob(f".{path.name}.*.tmp-journal"):
        journal.unlink(missing_ok=True)  # its store is gone: sweep ran, or this lock held
    atomic.atomic_write(path, lambda tmp: _create_or_migrate(tmp, []), fsync=True, mode=0o600)


def _create_or_migrate(path: Path, repaired: list[str]) -> None:
    """Open the tracking and the registry store once: MLflow creates and migrates them."""
    import logging

    uri = f"sqlite:///{path}"
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.store.sqlalchemy_store"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        from mlflow.store.model_registry.sqlalchemy_store import (
            SqlAlchemyStore as RegistryStore,
        )
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

        artifacts = path.parent / "artifacts"
        TrackingStore(uri, artifacts.as_uri()).engine.dispose()
        RegistryStore(uri).engine.dispose()
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        note = f" (repaired {', '.join(repaired)} first)" if repaired else ""
        raise TrackingError(
            f"the MLflow store {path} is half-migrated and cannot be repaired automatically"
            f"{note}: {first}. Move it aside and run again: mv {path} {path}.broken "
            "(runs and models recorded in it are then no longer listed; their files stay in "
            f"{path.parent / 'artifacts'})"
        ) from exc


def store_exists() -> bool:
    """False only for an embedded store not created yet (read-only commands then know there
    is nothing to read, and create nothing)."""
    path = _sqlite_path(workspace.tracking_uri())
    return path is None or path.is_file()


def client() -> MlflowClient:
    """A client of the workspace's store (``MLFLOW_TRACKING_URI`` or ``mlruns/mlflow.db``)."""
    from mlflow import MlflowClient

    prepare_store()
    return MlflowClient(tracking_uri=workspace.tracking_uri())


def use_workspace_store() -> str:
    """Point MLflow's fluent API (``mlflow.start_run`` …) at the workspace's store."""
    import mlflow

    prepare_store()
    uri = workspace.tracking_uri()
    mlflow.set_tracking_uri(uri)
    return uri


def local_artifacts() -> Path | None:
    """Where new experiments keep their artifacts (``workspace.artifact_root``), or None when
    a tracking server decides (``mlflow-artifacts:/…`` under ``--serve-artifacts``)."""
    return workspace.artifact_root(workspace.tracking_uri())


#: The environment of ``musicflow ui``'s server: MLflow's background job runner (GenAI jobs,
#: seven ``huey`` processes) is off, as musicflow never submits such jobs.
UI_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def ui_command(port: int) -> list[str] | None:
    """``mlflow server`` for the workspace's store on 127.0.0.1:port with one worker
    (``musicflow ui``); None when the store is a tracking server, which serves its own UI."""
    import sys

    uri = workspace.tracking_uri()
    if workspace.is_tracking_server(uri):
        return None
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri"]
    cmd += [uri, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
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
    """A new run in the dataset's experiment, active inside the ``with`` block, tagged with
    this process as its owner."""
    import mlflow

    experiment_id = ensure_experiment(dataset)
    tag_training_experiment(experiment_id, dataset)
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=run_name, tags={OWNER_TAG: procs.owner()}
    ) as run:
        yield run


@contextlib.contextmanager
def resume_run(run_id: str) -> Iterator[Run]:
    """Make a finished run active again, to log what a later step computed for it."""
    import mlflow

    use_workspace_store()
    with mlflow.start_run(run_id=run_id) as run:
        mlflow.set_tag(OWNER_TAG, procs.owner())
        yield run


def leave_running() -> None:
    """End the active run's block with the run still RUNNING (its owner this process): the
    step that completes it resumes and finishes it (evaluation, for a training run). A run
    whose process dies first is closed as FAILED by the next command's
    :func:`mark_crashed_runs`, never left FINISHED with a step missing."""
    import mlflow

    mlflow.end_run("RUNNING")


def mark_crashed_runs() -> int:
    """Close as FAILED the musicflow runs still RUNNING whose owner process (on this host) is
    gone: a killed ``train`` or ``run`` leaves its run RUNNING for ever otherwise. Returns how
    many were closed."""
    c = client()
    experiments = [
        e.experiment_id
        for e in c.search_experiments(filter_string=f"name LIKE '{EXPERIMENT_PREFIX}%'")
    ]
    if not experiments:
        return 0
    closed = 0
    for run in c.search_runs(experiments, filter_string="attributes.status = 'RUNNING'"):
        owner = run.data.tags.get(OWNER_TAG)
        if owner is None or procs.owner_alive(owner) is not False:
            continue
        c.set_tag(run.info.run_id, END_TAG, f"process {owner} ended without closing it")
        c.set_terminated(run.info.run_id, status="FAILED")
        closed += 1
    return closed


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


def run_dataset_digest(run_id: str) -> str | None:
    """The dataset digest (its first 32 hex digits) a run logged as its training input
    (:func:`log_dataset_input`), or None when it logged none."""
    for entry in client().get_run(run_id).inputs.dataset_inputs:
        if any(t.key == "mlflow.data.context" and t.value == "training" for t in entry.tags):
            return entry.dataset.digest
    return None


def log_artifacts(run_id: str, local_dir: Path, artifact_path: str) -> None:
    """Copy ``local_dir`` into the run's artifacts under ``artifact_path``. A copy that fails
    (a full disk) leaves nothing of it in a local artifact store: what was copied is removed,
    which also frees the space the run's status update then needs."""
    import errno

    c = client()
    try:
        c.log_artifacts(run_id, str(local_dir), artifact_path=artifact_path)
    except OSError as exc:
        uri = c.get_run(run_id).info.artifact_uri
        dest = f"{uri}/{artifact_path}"
        if uri.startswith("file://"):
            dest = str(Path(uri.removeprefix("file://")) / artifact_path)
            shutil.rmtree(dest, ignore_errors=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # name where it was going, not the source
            raise OSError(exc.errno, os.strerror(exc.errno), dest) from exc
        raise


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


def file_digests(folder: Path) -> dict[str, str]:
    """``{name: sha256}`` of the files directly in ``folder``."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).iterdir())
        if p.is_file()
    }


def log_model(model_dir: Path, registered: str) -> int:
    """Log ``model_dir`` (config, weights, sampling settings) as the active run's pyfunc model
    and register it as a new version of ``registered``; returns the version number.

    Logged as MLflow "models from code" (``tasks/sampler_model.py``), so no pickle is written;
    the digests of the folder's files are recorded on the run and on the version (in the
    tracking store, not the artifact store), and :func:`fetch_model` checks them.
    """
    from importlib.util import find_spec

    import mlflow
    import mlflow.pyfunc

    digests = json.dumps(file_digests(model_dir), sort_keys=True)
    code = find_spec(SAMPLER_MODULE).origin  # the file, not imported here
    with warnings.catch_warnings(), _quiet_unless_debug():
        # "Successfully registered model …", "Created version …"
        warnings.simplefilter("ignore")
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=code,
            artifacts={"model_dir": str(model_dir)},
            # Explicit requirements: inferring them would load the model in a subprocess.
            pip_requirements=[f"musicflow=={__version__}"],
            registered_model_name=registered,
        )
    version = int(info.registered_model_version)
    mlflow.set_tag(MODEL_FILES_TAG, digests)
    client().set_model_version_tag(registered, str(version), MODEL_FILES_TAG, digests)
    return version


@contextlib.contextmanager
def _quiet_unless_debug() -> Iterator[None]:
    """Silence MLflow's own event messages (printed straight to stderr) unless ``--debug``."""
    from mlflow.utils import logging_utils

    from musicflow.terminal import progress

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


_MODELS_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))")
_RUNS_URI = re.compile(r"runs:/(?P<run_id>[0-9a-f]{32})/(?P<path>[\w.-]+)")


def parse_model_uri(uri: str) -> dict[str, str] | None:
    """The parts of ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` or
    ``runs:/RUN_ID/model``; None for anything else."""
    match = _MODELS_URI.fullmatch(uri) or _RUNS_URI.fullmatch(uri)
    return None if match is None else {k: v for k, v in match.groupdict().items() if v}


def fetch_model(model_uri: str, dst: Path) -> Path:
    """The model folder of a registered version or run, downloaded under ``dst``.

    Only the data files are fetched (``config.json``, ``sampling.json``, ``*.weights.h5``,
    ``sampler.json``, ``sampler.npz``), never the pickles or code MLflow keeps beside them;
    each is checked against the digests recorded at registration (on the version and on its
    run, which must agree). A version of the embedded store kept in a local artifact folder is
    read with sqlite and copied without importing MLflow (:func:`_fetch_local`: ``generate``
    starts in a second). ModelError (one line) for an unknown or malformed URI, a missing file,
    an unexpected file, a file that changed since registration, or no recorded digests at all.
    """
    parts = parse_model_uri(model_uri)
    if parts is None:
        raise ModelError(
            f"not a model URI: {model_uri!r} (use models:/NAME/VERSION, models:/NAME@champion "
            "or runs:/RUN_ID/model)"
        )
    if not store_exists():
        raise ModelError(f"no model {model_uri}: nothing is tracked in this workspace yet")
    local = _fetch_local(model_uri, parts, Path(dst))
    if local is not None:
        return local
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    c = client()
    try:
        if "run_id" in parts:
            run = c.get_run(parts["run_id"])
            recorded = [run.data.tags.get(MODEL_FILES_TAG)]
            source = _run_model_source(c, parts["run_id"], parts["path"])
        else:
            name = parts["name"]
            mv = (
                c.get_model_version(name, parts["version"])
                if "version" in parts
                else c.get_model_version_by_alias(name, parts["alias"])
            )
            # recorded twice at registration: on the version and on the run that logged it
            recorded = [mv.tags.get(MODEL_FILES_TAG), _run_tag(c, mv.run_id, MODEL_FILES_TAG)]
            source = c.get_model_version_download_uri(name, mv.version)
    except MlflowException as exc:
        raise ModelError(f"no model {model_uri}: {_first_line(exc)}") from None
    digests = _recorded_digests(model_uri, recorded)
    try:
        subpath = _model_dir_path(source, Path(dst))
        folder = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"{source.rstrip('/')}/{subpath}",
                dst_path=str(dst),
                tracking_uri=workspace.tracking_uri(),
            )
        )
    except (MlflowException, OSError) as exc:
        raise ModelError(f"cannot read the files of {model_uri}: {_first_line(exc)}") from None
    _check_model_files(model_uri, folder, digests)
    return folder


def model_version(model_uri: str) -> str | None:
    """The version number a ``models:/`` URI names now (an alias resolved); None for a run.
    The embedded store is read with sqlite (no MLflow import), as :func:`fetch_model` does."""
    import sqlite3

    parts = parse_model_uri(model_uri) or {}
    if "version" in parts or "name" not in parts:
        return parts.get("version")
    with _store_reader() as con:
        if con is not None:
            with contextlib.suppress(sqlite3.Error):
                row = _version_row(con, parts)
                if row is not None:
                    return str(row[0])
    from mlflow.exceptions import MlflowException

    try:
        return str(client().get_model_version_by_alias(parts["name"], parts["alias"]).version)
    except MlflowException as exc:
        raise ModelError(f"no model {model_uri}: {_first_line(exc)}") from None


def _run_tag(c: MlflowClient, run_id: str | None, key: str) -> str | None:
    """A tag of a run, or None when the run (or the tag) is gone."""
    from mlflow.exceptions import MlflowException

    try:
        return c.get_run(run_id).data.tags.get(key) if run_id else None
    except MlflowException:
        return None


def _recorded_digests(uri: str, recorded: list[str | None]) -> dict[str, str]:
    """The file digests recorded for a model (on its version and its run); ModelError when
    none is left or the records disagree: a model that cannot be verified is not loaded."""
    found = []
    for text in filter(None, recorded):
        try:
            digests = json.loads(text)
        except ValueError:
            digests = None
        if not isinstance(digests, dict) or not digests:
            raise ModelError(f"model {uri} has an unreadable {MODEL_FILES_TAG} tag; re-register it")
        found.append(digests)
    if not found:
        raise ModelError(
            f"model {uri} has no recorded file digests (tag {MODEL_FILES_TAG} missing on the "
            "version and its run), so its files cannot be verified; retrain or re-register it"
        )
    if any(d != found[0] for d in found[1:]):
        raise ModelError(
            f"model {uri}: the file digests recorded on the version and on its run differ; "
            "the tracking store was modified; retrain or re-register it"
        )
    return found[0]


def _model_dir_path(source: str, dst: Path) -> str:
    """Where the model folder sits inside a logged model: its ``MLmodel`` file (YAML, read as
    data) names it (``artifacts/<folder>``)."""
    import mlflow.artifacts

    path = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{source.rstrip('/')}/MLmodel",
        dst_path=str(dst / "meta"),
        tracking_uri=workspace.tracking_uri(),
    )
    return _model_subpath(Path(path))


def _model_subpath(mlmodel: Path) -> str:
    """The model folder an ``MLmodel`` file (YAML, read as data) names."""
    import yaml

    try:
        meta = yaml.safe_load(mlmodel.read_text())
        subpath = meta["flavors"]["python_function"]["artifacts"][MODEL_DIR_KEY]["path"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise OSError(f"unreadable MLmodel file: {exc}") from None
    if not isinstance(subpath, str) or not re.fullmatch(r"artifacts/[\w.-]+", subpath):
        raise OSError(f"unexpected model folder {subpath!r} in the MLmodel file")
    return subpath


def _fetch_local(model_uri: str, parts: dict[str, str], dst: Path) -> Path | None:
    """:func:`fetch_model` for a ``models:/`` URI of the embedded store whose files sit in a
    local folder: the version, its alias and its digests read with sqlite, the files copied
    and checked. None where MLflow's client is needed (a tracking server, a ``runs:/`` URI,
    a remote artifact store, a store this MLflow version has not prepared)."""
    import shutil
    import sqlite3
    from urllib.parse import unquote, urlparse

    if "name" not in parts:
        return None
    with _store_reader() as con:
        if con is None:
            return None
        try:
            row = _version_row(con, parts)
            if row is None:
                raise ModelError(f"no model {model_uri}: no such registered version")
            version, location = row
            tag = con.execute(
                'SELECT value FROM model_version_tags WHERE name = ? AND version = ? AND "key" = ?',
                (parts["name"], version, MODEL_FILES_TAG),
            ).fetchone()
            # recorded twice at registration: on the version and on the run that logged it
            run_tag = con.execute(
                "SELECT t.value FROM tags t JOIN model_versions v ON t.run_uuid = v.run_id "
                'WHERE v.name = ? AND v.version = ? AND t."key" = ?',
                (parts["name"], version, MODEL_FILES_TAG),
            ).fetchone()
        except sqlite3.Error:
            return None
    digests = _recorded_digests(model_uri, [tag and tag[0], run_tag and run_tag[0]])
    url = urlparse(location or "")
    if url.scheme != "file" or url.netloc not in ("", "localhost"):
        return None
    source = Path(unquote(url.path))
    try:
        subpath = _model_subpath(source / "MLmodel")
        folder = dst / Path(subpath).name
        shutil.copytree(source / subpath, folder)
    except OSError as exc:
        raise ModelError(f"cannot read the files of {model_uri}: {_first_line(exc)}") from None
    _check_model_files(model_uri, folder, digests)
    return folder


def _version_row(con: Any, parts: dict[str, str]) -> tuple[int, str] | None:
    """(version, where its files are) of ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``,
    as MLflow's ``get_model_version_download_uri`` gives it; None when there is none."""
    version: Any = parts.get("version")
    if version is None:
        alias = con.execute(
            "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
            (parts["name"], parts["alias"]),
        ).fetchone()
        if alias is None:
            return None
        version = alias[0]
    row = con.execute(
        "SELECT storage_location, source FROM model_versions WHERE name = ? AND version = ? "
        "AND current_stage != 'Deleted_Internal'",
        (parts["name"], int(version)),
    ).fetchone()
    return None if row is None else (int(version), row[0] or row[1])


def _run_model_source(c: MlflowClient, run_id: str, name: str) -> str:
    """Where the model ``name`` logged by run ``run_id`` keeps its files."""
    run = c.get_run(run_id)
    models = c.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{name}'",
    )
    if not models:
        from mlflow.exceptions import MlflowException

        raise MlflowException(f"run {run_id} logged no model named {name!r}")
    return models[0].artifact_location


def _check_model_files(uri: str, folder: Path, recorded: dict[str, str]) -> None:
    found = file_digests(folder)
    odd = sorted(n for n in found if not MODEL_FILE_RE.fullmatch(n))
    if odd or any(p.is_dir() for p in folder.iterdir()):
        raise ModelError(
            f"model {uri} holds unexpected files ({', '.join(odd) or 'a folder'}); musicflow "
            "reads only config.json, sampling.json, *.weights.h5, sampler.json and sampler.npz: "
            "the artifact store was changed after registration"
        )
    changed = sorted(n for n in set(found) | set(recorded) if found.get(n) != recorded.get(n))
    if changed:
        raise ModelError(
            f"model {uri} does not match what was registered ({', '.join(changed)} changed, "
            "added or missing): the artifact store was modified; retrain or re-register it"
        )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


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


def experiment_route(experiment_id: str) -> str:
    """The UI's in-page route (after ``#``) of the experiment's runs, on the saved view."""
    return f"/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}&{UI_MODE}"


def run_route(experiment_id: str, run_id: str) -> str:
    """The UI's in-page route (after ``#``) of a run's page."""
    return f"/experiments/{experiment_id}/runs/{run_id}?{UI_MODE}"


def experiment_url(experiment_id: str, port: int = UI_PORT) -> str:
    """The experiment's run list in ``musicflow ui``, opened on the saved view."""
    return f"{ui_base(port)}/#{experiment_route(experiment_id)}"


def run_url(experiment_id: str, run_id: str, port: int = UI_PORT) -> str:
    """A run's page in ``musicflow ui``."""
    return f"{ui_base(port)}/#{run_route(experiment_id, run_id)}"


def ui_address(port: int = UI_PORT) -> str:
    """Where the MLflow UI is: the tracking server's address when the store is one (it serves
    its own UI), else ``musicflow ui`` on 127.0.0.1:port."""
    uri = workspace.tracking_uri()
    return uri.rstrip("/") if workspace.is_tracking_server(uri) else ui_base(port)


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


def restore_champion(name: str, version: str | None) -> None:
    """Give the champion alias back to ``version``, or remove it when there was none."""
    if version is None:
        client().delete_registered_model_alias(name, CHAMPION)
    else:
        set_champion(name, version)


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
        from musicflow.core.metrics import evaluation_names

        tagged = [n for n in self.tags.get(EVALUATION_METRICS_TAG, "").split(",") if n]
        return evaluation_names(self.metrics, tagged)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "champion": self.champion,
            **self.metrics,
        }


@contextlib.contextmanager
def _store_reader() -> Iterator[Any]:
    """A read-only sqlite3 connection to the embedded store, or None (a tracking server, or a
    store not yet prepared by this MLflow version: then MLflow's own client is used).

    ``compare`` answers in well under a second this way: importing MLflow alone takes longer.
    The queries read the tables MLflow's registry and tracking stores define for the schema
    the stamp (``mlflow.db.ready``) names; tests check they agree with MLflow's client.
    """
    import sqlite3

    path = _sqlite_path(workspace.tracking_uri())
    if path is None or not path.is_file() or _read(_stamp_path(path)) != _store_stamp():
        yield None
        return
    con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        yield con
    finally:
        con.close()


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".ready")


def known_datasets() -> list[str]:
    """Datasets with an experiment in the store (``musicflow/<dataset>``), sorted."""
    import sqlite3

    if not store_exists():
        return []
    with _store_reader() as con:
        if con is not None:
            with contextlib.suppress(sqlite3.Error):
                rows = con.execute(
                    "SELECT name FROM experiments WHERE lifecycle_stage = 'active' "
                    "AND substr(name, 1, ?) = ?",
                    (len(EXPERIMENT_PREFIX), EXPERIMENT_PREFIX),
                ).fetchall()
                return sorted(name.removeprefix(EXPERIMENT_PREFIX) for (name,) in rows)
    c = client()
    found = c.search_experiments(filter_string=f"name LIKE '{EXPERIMENT_PREFIX}%'")
    return sorted(
        e.name.removeprefix(EXPERIMENT_PREFIX)
        for e in found
        if e.name.startswith(EXPERIMENT_PREFIX)
    )


def dataset_versions(dataset: str) -> list[VersionRow]:
    """Every registered version of the dataset's models with its run's metrics, params and
    tags, sorted: read from the embedded store with sqlite directly (``compare`` answers in
    well under a second), else through MLflow's client. Nothing is created: without a store
    there is nothing to list."""
    import sqlite3

    if not store_exists():
        return []
    with _store_reader() as con:
        if con is not None:
            with contextlib.suppress(sqlite3.Error):
                return _versions_from_sqlite(con, dataset)
    return _versions_from_client(dataset)


def _versions_from_sqlite(con: Any, dataset: str) -> list[VersionRow]:
    """:func:`_versions_from_client`'s rows, from the store's tables (the same filter: names
    ``<dataset>-…`` whose run says it trained on ``dataset``, or a known model's exact name)."""
    prefix = f"{dataset}-"
    names = [
        name
        for (name,) in con.execute(
            "SELECT name FROM registered_models WHERE substr(name, 1, ?) = ?",
            (len(prefix), prefix),
        )
    ]
    rows = []
    for name in names:
        champion = con.execute(
            "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
            (name, CHAMPION),
        ).fetchone()
        versions = con.execute(
            "SELECT version, run_id, creation_time FROM model_versions WHERE name = ? "
            "AND current_stage != 'Deleted_Internal'",
            (name,),
        ).fetchall()
        for version, run_id, created in versions:
            run = con.execute(
                "SELECT experiment_id FROM runs WHERE run_uuid = ?", (run_id,)
            ).fetchone()
            tags = dict(con.execute('SELECT "key", value FROM tags WHERE run_uuid = ?', (run_id,)))
            trained_on = tags.get(DATASET_TAG) if run else None
            if trained_on != dataset and not _same_dataset(name, dataset):
                continue
            metrics = {
                key: (float("nan") if is_nan else float(value))
                for key, value, is_nan in con.execute(
                    'SELECT "key", value, is_nan FROM latest_metrics WHERE run_uuid = ?',
                    (run_id,),
                )
            }
            params = dict(
                con.execute('SELECT "key", value FROM params WHERE run_uuid = ?', (run_id,))
            )
            rows.append(
                VersionRow(
                    name,
                    int(version),
                    champion is not None and int(champion[0]) == int(version),
                    metrics if run else {},
                    run_id=run_id or "",
                    experiment_id=str(run[0]) if run else "",
                    params=params if run else {},
                    tags=tags if run else {},
                    created_ms=int(created or 0),
                )
            )
    return sorted(rows, key=lambda r: (r.model, r.version))


def _versions_from_client(dataset: str) -> list[VersionRow]:
    """Every registered version of the dataset's models, through MLflow's client."""
    c = client()
    rows = []
    for model in c.search_registered_models(filter_string=f"name LIKE '{dataset}-%'"):
        champion = model.aliases.get(CHAMPION) if hasattr(model, "aliases") else None
        for mv in c.search_model_versions(f"name = '{model.name}'"):
            run = c.get_run(mv.run_id) if mv.run_id else None
            trained_on = run.data.tags.get(DATASET_TAG) if run else None
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
    from musicflow.core.catalog import MODEL_NAMES

    return any(registered == registered_name(dataset, m) for m in MODEL_NAMES)


def require_dataset(dataset: str) -> None:
    """DatasetError (one line, the known ones listed) when the store knows no such dataset."""
    known = known_datasets()
    if dataset not in known:
        listed = ", ".join(known) if known else "none yet"
        raise DatasetError(
            f"no dataset '{dataset}' in the MLflow store {workspace.tracking_uri()} "
            f"(known: {listed})"
        )
