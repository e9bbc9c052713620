"""Train: one model on one encoded dataset, tracked in MLflow and registered.

Every run logs (DESIGN.md Contract 4): every hyperparameter, the encoding, the dataset digest and
the code version as params; per-epoch losses; the dataset as an MLflow input with our own digest
(MLflow's automatic one samples 10,000 rows and skips binary columns); the evaluation metrics of
generated vs held-out windows with their ``_baseline``; figures; and the model, as a pyfunc that
loads and samples in a fresh process, registered as a new version of ``<dataset>-<model>``.

The Prefect task is cached on (dataset digest, model, settings, seed, code version, tracking
store): repeating an identical call trains nothing and creates no run or version.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import task

from musicflow import lineage, workspace
from musicflow.errors import DatasetError
from musicflow.tasks.encode import read_dataset_info

HELDOUT_FRACTION = 0.1
SPLIT_SEED = 0  # fixed, not the model seed: every model of a dataset is judged on the same files


def experiment_name(dataset: str) -> str:
    return f"musicflow/{dataset}"


def registered_name(dataset: str, model: str) -> str:
    return f"{dataset}-{model}"


def ensure_experiment(dataset: str) -> str:
    """Create the dataset's experiment once, up front (parallel creation races on sqlite).

    With a database store (the embedded sqlite one, or ``postgresql://`` used directly),
    artifacts go in the workspace (``workspace.artifact_root``). With a tracking server the
    server picks the location (``mlflow-artifacts:/…`` under ``--serve-artifacts``), so every
    client, on any machine, uploads and downloads through it instead of writing to a path
    that exists only on the machine that created the experiment.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = workspace.tracking_uri()
    mlflow.set_tracking_uri(uri)
    name = experiment_name(dataset)
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    root = workspace.artifact_root(uri)
    location = (root / dataset).as_uri() if root is not None else None
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except MlflowException:
        # Another client of a shared server created it in the meantime.
        found = mlflow.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def dataset_shards(dataset_dir: Path) -> tuple[dict, list[Path]]:
    info = read_dataset_info(dataset_dir)
    if info is None:
        raise DatasetError(
            f"no encoded dataset in {dataset_dir}; "
            "run 'musicflow encode SOURCE --dataset NAME' first"
        )
    return info, [Path(dataset_dir) / s for s in info["shards"]]


def train_and_log(
    dataset_dir: Path,
    dataset: str,
    model_name: str,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    time_budget_s: float | None = None,
    overrides: dict | None = None,
) -> dict:
    """Train, evaluate, log and register one model; returns run id, version, URI and metrics."""
    import mlflow
    from mlflow.data.meta_dataset import MetaDataset

    from musicflow.models import build_model
    from musicflow.models.data import source_shas, split_files, window_dataset
    from musicflow.tasks.evaluate import evaluate_model
    from musicflow.tasks.generate import log_pyfunc_model

    info, shards = dataset_shards(Path(dataset_dir))
    train_shas, heldout_shas = split_files(source_shas(shards), HELDOUT_FRACTION, seed=SPLIT_SEED)
    if not train_shas or not heldout_shas:
        raise DatasetError(f"dataset '{dataset}' needs at least 2 accepted files (1 held out)")
    settings = dict(overrides or {})
    if epochs:
        settings["epochs"] = epochs
    if batch_size:
        settings["batch_size"] = batch_size
    model = build_model(model_name, seed=seed, **settings)
    config = dict(model.config)
    n_epochs = int(config.get("epochs", epochs or 10))
    batch = int(config.get("batch_size", batch_size or 32))

    experiment_id = ensure_experiment(dataset)
    flow_run_id = _flow_run_id()
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{model_name}-s{seed}") as run:
        mlflow.set_tags(
            {
                "musicflow.model": model_name,
                "musicflow.dataset": dataset,
                "musicflow.code_version": lineage.code_version(),
                "musicflow.git_commit": lineage.git_commit() or "unknown",
                "prefect.flow_run_id": flow_run_id or "none",
            }
        )
        params = {
            **{f"model.{k}": v for k, v in config.items()},
            **{f"encoding.{k}": v for k, v in info["encoding"].items()},
            "model": model_name,
            "seed": seed,
            "epochs": n_epochs,
            "batch_size": batch,
            "time_budget_s": time_budget_s,
            "dataset": dataset,
            "dataset_digest": info["digest"],
            "code_version": lineage.code_version(),
            "heldout_fraction": HELDOUT_FRACTION,
            "split_seed": SPLIT_SEED,
            "n_train_files": len(train_shas),
            "n_heldout_files": len(heldout_shas),
        }
        mlflow.log_params(
            {k: (json.dumps(v) if isinstance(v, list | dict) else v) for k, v in params.items()}
        )
        mlflow.log_input(
            MetaDataset(
                source=_dataset_source(dataset_dir), name=dataset, digest=info["digest"][:32]
            ),
            context="training",
        )

        train_ds = window_dataset(
            shards,
            train_shas,
            batch_size=batch,
            seed=seed,
            shuffle=True,
            augment=bool(config.get("augment", False)),
        )
        val_ds = window_dataset(shards, heldout_shas, batch_size=batch, seed=seed, shuffle=False)
        history: dict[str, list[float]] = {}
        started = time.monotonic()
        deadline = started + time_budget_s if time_budget_s else None
        seen = _Counter()
        for epoch in range(n_epochs):
            metrics = model.fit_epoch(_until(deadline, train_ds, seen)) | model.validate(val_ds)
            mlflow.log_metrics(metrics, step=epoch)
            for key, value in metrics.items():
                history.setdefault(key, []).append(float(value))
            elapsed = time.monotonic() - started
            shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            print(
                f"  {model_name} epoch {epoch + 1}/{n_epochs} ({elapsed:.0f} s): {shown}",
                file=sys.stderr,
                flush=True,
            )
            if deadline is not None and time.monotonic() >= deadline:
                print(
                    f"  {model_name}: time budget reached in epoch {epoch + 1} "
                    f"({seen.windows} training windows seen)",
                    file=sys.stderr,
                )
                break
        mlflow.log_metric("epochs_completed", len(next(iter(history.values()), [])))
        mlflow.log_metric("train_windows_seen", seen.windows)
        mlflow.log_metric("train_seconds", time.monotonic() - started)

        evaluation = evaluate_model(model, shards, train_shas, heldout_shas, seed=seed)
        scores = evaluation.scores
        mlflow.log_metrics({k: v for k, v in scores.items() if np.isfinite(v)})
        mlflow.log_params(
            {
                "sampling_threshold": evaluation.threshold,
                "eval_windows": len(evaluation.generated),
                "n_heldout_windows": len(evaluation.heldout),
                "n_train_sample": len(evaluation.train_sample),
            }
        )

        with tempfile.TemporaryDirectory() as tmp:
            model_dir = Path(tmp) / "model"
            model.save(model_dir)
            (model_dir / "sampling.json").write_text(
                json.dumps(
                    {
                        "threshold": evaluation.threshold,
                        "encoding": info["encoding"],
                        "dataset": dataset,
                        "target_density": evaluation.target_density,
                    }
                )
            )
            version = log_pyfunc_model(model_dir, registered_name(dataset, model_name))
        result = {
            "run_id": run.info.run_id,
            "model": model_name,
            "registered_model": registered_name(dataset, model_name),
            "version": version,
            "model_uri": f"models:/{registered_name(dataset, model_name)}/{version}",
            "metrics": scores,
            "history": history,
        }
    return result


@dataclass
class _Counter:
    windows: int = 0


def _until(deadline: float | None, batches: Iterable, seen: _Counter) -> Iterator:
    """The batches of one epoch, cut short once the wall-clock ``deadline`` passes.

    Checked before every batch, so a budget holds to about one step even when an epoch is
    longer than the budget (the thesis GAN needs ~40 min per piano-midi-de epoch here). The
    first batch always runs, so an epoch is never empty.
    """
    for i, batch in enumerate(batches):
        if i and deadline is not None and time.monotonic() >= deadline:
            return
        x = batch[0] if isinstance(batch, tuple | list) else batch
        seen.windows += int(x.shape[0])
        yield batch


def _dataset_source(dataset_dir: Path):
    """The shards folder as an MLflow dataset source (a local-artifact source of its URI)."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source

    with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are local
        warnings.simplefilter("ignore")
        return resolve_dataset_source(Path(dataset_dir).resolve().as_uri())


def _flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return flow_run.id


def train_cache_key(_context, parameters: dict) -> str:
    """Identical dataset digest, model, settings, seed and code give the same key."""
    info = read_dataset_info(Path(parameters["dataset_dir"])) or {}
    payload = {
        "digest": info.get("digest"),
        "dataset": parameters["dataset"],
        "model": parameters["model_name"],
        "epochs": parameters.get("epochs"),
        "batch_size": parameters.get("batch_size"),
        "seed": parameters.get("seed", 0),
        "time_budget_s": parameters.get("time_budget_s"),
        "overrides": parameters.get("overrides"),
        "code": lineage.code_version(),
        "tracking": workspace.tracking_uri(),
    }
    return (
        "train-"
        + hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    )


train = task(name="train", cache_key_fn=train_cache_key, persist_result=True)(train_and_log)
