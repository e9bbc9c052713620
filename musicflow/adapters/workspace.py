"""Where a run keeps its state, and the environment every library must see before import.

All state lives under the current directory, or ``MUSICFLOW_HOME`` when set (docs/cli.md):
``data/``, ``reports/``, ``mlruns/`` and the Prefect home ``.prefect/``. Every path of one
dataset comes from its :class:`DatasetFolder`; a source folder is checked by
:func:`check_source`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from musicflow.core.errors import DatasetError

#: Dataset names: lowercase letters, digits, ``-`` and ``_``, starting with a letter or digit,
#: at most 64 characters. A name becomes a folder (``data/rolls/<name>/``), an MLflow
#: experiment (``musicflow/<name>``) and registered models (``<name>-<model>``), so nothing
#: that could leave the workspace (``/``, ``..``) or act as a wildcard (``%``) gets in.
DATASET_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
DATASET_NAME_RULE = (
    "lowercase letters, digits, '-' and '_', starting with a letter or digit, at most 64 characters"
)


def check_dataset_name(name: str) -> str:
    """``name`` when it follows :data:`DATASET_NAME_RE`, else ValueError saying the rule."""
    if not isinstance(name, str) or not DATASET_NAME_RE.fullmatch(name):
        raise ValueError(f"invalid dataset name {name!r}: use {DATASET_NAME_RULE}")
    return name


def slug(text: str) -> str:
    """A valid dataset name made from any text (a folder's name): ``Piano MIDI.de`` →
    ``piano-midi-de``; ``dataset`` when nothing is left."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:64].strip("-")
    return cleaned or "dataset"


def home() -> Path:
    """The workspace root: ``$MUSICFLOW_HOME`` or the current directory."""
    return Path(os.environ.get("MUSICFLOW_HOME") or os.getcwd()).resolve()


def rolls_dir(dataset: str) -> Path:
    """Default ``--out`` of ``encode``: ``data/rolls/<dataset>/`` (the name is checked)."""
    return home() / "data" / "rolls" / check_dataset_name(dataset)


def cache_dir() -> Path:
    """Content-addressed per-file cache of parsed and encoded MIDI (keyed by sha256)."""
    return home() / "data" / "cache"


def reports_dir() -> Path:
    return home() / "reports"


def exported_source(name: str) -> Path:
    """``data/sources/<name>/``: a source folder musicflow exports itself (music21's chorales)."""
    return home() / "data" / "sources" / name


def mlruns_dir() -> Path:
    """``mlruns/``: the embedded tracking store, its artifacts and the UI's log."""
    return home() / "mlruns"


def ui_log() -> Path:
    """Where ``musicflow ui`` appends its server's output."""
    return mlruns_dir() / "ui.log"


@dataclass(frozen=True)
class DatasetFolder:
    """Every path of one dataset (docs/dataset.md): its folder (``data/rolls/<name>/``, or
    what ``--out`` chose), what the store, the audit and GX write there, and its reports
    folder ``reports/<name>/``.

    ``name`` defaults to the folder's own name, which is the dataset's for every folder the
    workspace makes (:meth:`named`); only the reports' paths use it.
    """

    root: Path
    name: str = ""

    MANIFEST = "manifest.parquet"

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        if not self.name:
            object.__setattr__(self, "name", self.root.name)

    @classmethod
    def named(cls, name: str) -> DatasetFolder:
        """The workspace's folder of dataset ``name`` (the name is checked)."""
        return cls(rolls_dir(name), name)

    # In the dataset folder: the store's files (musicflow/adapters/store.py) …
    @property
    def manifest(self) -> Path:
        return self.root / self.MANIFEST

    def staged_manifest(self, sha256: str) -> Path:
        """The manifest of a publication between staging and commit (hidden, by its hash)."""
        return self.root / f".{self.MANIFEST}.{sha256[:16]}.pending"

    def staged_manifests(self) -> list[Path]:
        return list(self.root.glob(f".{self.MANIFEST}.*.pending"))

    @property
    def info(self) -> Path:
        """``dataset.json``: the commit point (digest, encoding, shards)."""
        return self.root / "dataset.json"

    @property
    def lock(self) -> Path:
        """The writers' lock (``flock``)."""
        return self.root / ".lock"

    @property
    def readers(self) -> Path:
        """The readers' shared lock, which keeps a replaced set's shards while they read."""
        return self.root / ".readers"

    def train_lock(self, model: str) -> Path:
        """One training of ``model`` on this dataset at a time."""
        return self.root / f".train-{model}.lock"

    @property
    def history(self) -> Path:
        """``history/``: one record per committed version (``versions.json``)."""
        return self.root / "history"

    @property
    def versions(self) -> Path:
        return self.history / "versions.json"

    def version_manifest(self, number: int) -> Path:
        """The manifest of committed version ``number``."""
        return self.history / f"v{number}.{self.MANIFEST}"

    # … the audit's pages …
    @property
    def audit_page(self) -> Path:
        return self.root / "audit.html"

    @property
    def data_docs(self) -> Path:
        """The GX Data Docs site of the dataset's validations."""
        return self.root / "data_docs"

    @property
    def data_docs_index(self) -> Path:
        return self.data_docs / "index.html"

    # … and its reports.
    @property
    def reports(self) -> Path:
        """``reports/<name>/``: the dataset's index, history page and version reports."""
        return reports_dir() / self.name

    @property
    def index_page(self) -> Path:
        return self.reports / "index.html"

    @property
    def history_page(self) -> Path:
        return self.reports / "history.html"

    def report_page(self, model: str, version: int) -> Path:
        """The report of registered version ``version`` of ``model``."""
        return self.reports / f"{model}-v{version}" / "report.html"


def check_source(source: Path) -> Path:
    """The source folder, or DatasetError saying in one line what is wrong with it."""
    source = Path(source)
    if not source.exists():
        raise DatasetError(f"source folder not found: {source}")
    if not source.is_dir():
        raise DatasetError(
            f"{source} is a file, not a folder: give the folder that holds the MIDI files"
        )
    try:
        with os.scandir(source) as entries:
            next(entries, None)
    except PermissionError:
        raise DatasetError(f"cannot read the source folder {source}: permission denied") from None
    except OSError as exc:
        raise DatasetError(
            f"cannot read the source folder {source}: {exc.strerror or exc}"
        ) from None
    return source


def watch_state(dataset: str) -> Path:
    """What ``musicflow watch`` last trained for a dataset: ``data/watch/<dataset>.json``."""
    return home() / "data" / "watch" / f"{check_dataset_name(dataset)}.json"


def prefect_home() -> Path:
    """Prefect's home: ``$PREFECT_HOME`` when set, else ``.prefect/`` in the workspace (the
    workspace's Prefect server keeps its database and state file there)."""
    return Path(os.environ.get("PREFECT_HOME") or home() / ".prefect").resolve()


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the embedded sqlite store under ``mlruns/``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mlruns_dir() / 'mlflow.db'}"


#: Every usage-telemetry switch of the libraries musicflow runs (their documented opt-outs):
#: MLflow >= 3.2 (``MLFLOW_DISABLE_TELEMETRY``, also the cross-tool ``DO_NOT_TRACK``, which
#: Prefect's client honours too), Prefect's server analytics, Great Expectations' analytics.
NO_TELEMETRY = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "false",
}


def is_tracking_server(uri: str) -> bool:
    """True for an MLflow tracking server (``http(s)://``): it decides where artifacts go."""
    return uri.split(":", 1)[0].lower() in ("http", "https")


def artifact_root(uri: str) -> Path | None:
    """Where new experiments keep their artifacts, or None to let the tracking server decide.

    A database URI (the embedded sqlite store, or a direct ``postgresql://`` one) stores no
    files: artifacts go in ``artifacts/`` beside a sqlite file, else in the workspace's
    ``mlruns/artifacts/`` (MLflow's default would be ``./mlartifacts`` in whatever directory
    the process started in). A tracking server serves its own (``--serve-artifacts``).
    """
    if is_tracking_server(uri):
        return None
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent / "artifacts"
    return mlruns_dir() / "artifacts"


def _defaults(root: Path) -> dict[str, str]:
    """The variables :func:`configure_environment` sets when the user has not."""
    return {
        "PREFECT_HOME": str(root / ".prefect"),
        "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",
        # The ephemeral API server starts in a subprocess; on a busy 2-core machine it can
        # take longer than the 20 s default.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        # Only the tasks that say so persist results, in musicflow's JSON format
        # (musicflow/adapters/results.py): a default pickle result would be code run on reading.
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
        "MLFLOW_TRACKING_URI": tracking_uri(),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        # A tracking server that stops answering mid-command: each request gives up after
        # 30 s and two retries (MLflow's defaults, 120 s and 7 retries, wait ~15 minutes).
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        # With a tracking server MLflow prints "View run … at: URL" on stdout for every run;
        # the CLI prints the run ids itself and keeps stdout for its results.
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        # TF_ENABLE_ONEDNN_OPTS is left at TensorFlow's default (on for x86): with it off the
        # convolutional models trained 3-5x slower here (bench/bench_models.py --onednn both)
    }


def configure_environment() -> None:
    """Point Prefect, GX and MLflow at the workspace and switch off every phone-home.

    Must run before prefect, great_expectations or mlflow is imported: they read these
    variables at import time. Values the user already set win, except the telemetry
    switches, which are always off (docs/cli.md: no command phones home).
    """
    root = home()
    mlruns_dir().mkdir(parents=True, exist_ok=True)
    for key, value in _defaults(root).items():
        os.environ.setdefault(key, value)
    os.environ.update(NO_TELEMETRY)


def run_environment() -> dict[str, str]:
    """The environment a flow run of this workspace needs when a ``prefect worker`` starts it
    instead of the CLI (``musicflow deploy``, docs/cli.md): the workspace, its Prefect home
    (where cached results live, so a run with nothing new is a no-op), its tracking store, and
    no telemetry. Values the user set win, as in :func:`configure_environment`.

    Left out: the ephemeral server's settings (a worker's run talks to the worker's server)
    and the log level (the deployment chooses it).
    """
    root = home()
    env = {
        key: os.environ.get(key, value)
        for key, value in _defaults(root).items()
        if not key.startswith(("PREFECT_SERVER_", "PREFECT_LOGGING_"))
    }
    return {"MUSICFLOW_HOME": str(root), **env, **NO_TELEMETRY}
