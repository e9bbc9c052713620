"""Where a run keeps its state, and the environment every library must see before import.

All state lives under the current directory, or ``MUSICFLOW_HOME`` when set (docs/cli.md):
``data/``, ``reports/``, ``mlruns/`` and the Prefect home ``.prefect/``.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The workspace root: ``$MUSICFLOW_HOME`` or the current directory."""
    return Path(os.environ.get("MUSICFLOW_HOME") or os.getcwd()).resolve()


def rolls_dir(dataset: str) -> Path:
    """Default ``--out`` of ``encode``: ``data/rolls/<dataset>/``."""
    return home() / "data" / "rolls" / dataset


def cache_dir() -> Path:
    """Content-addressed per-file cache of parsed and encoded MIDI (keyed by sha256)."""
    return home() / "data" / "cache"


def reports_dir() -> Path:
    return home() / "reports"


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the embedded sqlite store under ``mlruns/``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home() / 'mlruns' / 'mlflow.db'}"


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
    return home() / "mlruns" / "artifacts"


def configure_environment() -> None:
    """Point Prefect, GX and MLflow at the workspace and switch off every phone-home.

    Must run before prefect, great_expectations or mlflow is imported: they read these
    variables at import time. Values the user already set win.
    """
    root = home()
    (root / "mlruns").mkdir(parents=True, exist_ok=True)
    defaults = {
        "PREFECT_HOME": str(root / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",
        # The ephemeral API server starts in a subprocess; on a busy 2-core machine it can
        # take longer than the 20 s default.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
        "GX_ANALYTICS_ENABLED": "false",
        "MLFLOW_TRACKING_URI": tracking_uri(),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        # MLflow >= 3.2 sends usage telemetry unless told not to.
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # With a tracking server MLflow prints "View run … at: URL" on stdout for every run;
        # the CLI prints the run ids itself and keeps stdout for its results.
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "TF_ENABLE_ONEDNN_OPTS": "0",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
