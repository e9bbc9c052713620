"""Train: one model on one encoded dataset, tracked in an MLflow run (docs/tracking.md).

The run gets every hyperparameter, the encoding, the dataset digest and the code version as
params; per-epoch losses; the dataset as an MLflow input with our own digest; and the trained
model as the run's ``checkpoint/`` artifact, from which the evaluate and register steps load it.
Evaluation (``tasks/evaluate.py``) and registration (``tasks/registry.py``) are their own
steps, logged to the same run.

The Prefect task is cached on (dataset digest, model, settings, seed, code version, tracking
store): repeating an identical call trains nothing and creates no run. Its result is a small
:class:`TrainedModel` (ids, names, numbers), so a cached result stays cheap to store and read.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from musicflow import lineage, results, tracking, workspace
from musicflow.errors import DatasetError
from musicflow.tasks.encode import read_dataset_info, reading

CHECKPOINT = "checkpoint"  # the run's artifact folder holding the trained model (RollModel.save)


@results.result_type
@dataclass(frozen=True)
class TrainedModel:
    """What training hands on: the MLflow run holding the model, and what it was trained on."""

    run_id: str
    dataset: str
    model: str
    seed: int
    encoding: dict  # the dataset's encoding (dataset.json), pitch window included
    history: dict[str, list[float]] = field(default_factory=dict)  # per-epoch metrics

    @property
    def pitch_low(self) -> int:
        return int(self.encoding["pitch_low"])


def train_model(
    dataset_dir: Path,
    dataset: str,
    model_name: str,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    time_budget_s: float | None = None,
    overrides: dict | None = None,
) -> TrainedModel:
    """Train one model in a new MLflow run; log params, losses and the checkpoint."""
    from musicflow.models import build_model
    from musicflow.models.data import HELDOUT_FRACTION, SPLIT_SEED, heldout_split, window_dataset

    with reading(Path(dataset_dir)) as info:  # its shards stay while training reads them
        shards = info.shard_paths
        train_shas, heldout_shas = heldout_split(shards)
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

        flow_run_id = _flow_run_id()
        with tracking.start_run(dataset, run_name=f"{model_name}-s{seed}") as run:
            tracking.set_tags(
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
                **{f"encoding.{k}": v for k, v in info.encoding.items()},
                "model": model_name,
                "seed": seed,
                "epochs": n_epochs,
                "batch_size": batch,
                "time_budget_s": time_budget_s,
                "dataset": dataset,
                "dataset_digest": info.digest,
                "code_version": lineage.code_version(),
                "heldout_fraction": HELDOUT_FRACTION,
                "split_seed": SPLIT_SEED,
                "n_train_files": len(train_shas),
                "n_heldout_files": len(heldout_shas),
            }
            tracking.log_params(params)
            tracking.log_dataset_input(Path(dataset_dir), dataset, info.digest)

            train_ds = window_dataset(
                shards,
                train_shas,
                batch_size=batch,
                seed=seed,
                shuffle=True,
                augment=bool(config.get("augment", False)),
            )
            val_ds = window_dataset(
                shards, heldout_shas, batch_size=batch, seed=seed, shuffle=False
            )
            history = _fit(model, model_name, train_ds, val_ds, n_epochs, time_budget_s)

            with tempfile.TemporaryDirectory() as tmp:
                model.save(Path(tmp))
                tracking.log_artifacts(run.info.run_id, Path(tmp), CHECKPOINT)
    return TrainedModel(
        run_id=run.info.run_id,
        dataset=dataset,
        model=model_name,
        seed=seed,
        encoding=dict(info.encoding),
        history=history,
    )


def _fit(
    model, model_name: str, train_ds, val_ds, n_epochs: int, time_budget_s: float | None
) -> dict[str, list[float]]:
    """The epoch loop, logging each epoch's metrics to the active run; returns the history."""
    history: dict[str, list[float]] = {}
    started = time.monotonic()
    deadline = started + time_budget_s if time_budget_s else None
    seen = _Counter()
    for epoch in range(n_epochs):
        metrics = model.fit_epoch(_until(deadline, train_ds, seen)) | model.validate(val_ds)
        tracking.log_metrics(metrics, step=epoch)
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
    tracking.log_metrics(
        {
            "epochs_completed": len(next(iter(history.values()), [])),
            "train_windows_seen": seen.windows,
            "train_seconds": time.monotonic() - started,
        }
    )
    return history


def load_trained(trained: TrainedModel, dst: Path):
    """The trained model back from its run's checkpoint (copied under ``dst``)."""
    from musicflow.models import load_model

    return load_model(tracking.download_artifacts(trained.run_id, CHECKPOINT, dst))


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


def _flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return flow_run.id


def train_cache_key(_context, parameters: dict) -> str:
    """Identical dataset digest, model, settings, seed and code give the same key."""
    info = read_dataset_info(Path(parameters["dataset_dir"]))
    payload = {
        "digest": info.digest if info else None,
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


def run_cache_key(step: str):
    """A cache key function for a step that follows training: one result per training run
    (and code version), so a cached training run finds its evaluation and version again."""

    def key(_context, parameters: dict) -> str:
        trained: TrainedModel = parameters["trained"]
        payload = [step, trained.run_id, lineage.code_version(), workspace.tracking_uri()]
        return f"{step}-" + hashlib.sha256(json.dumps(payload).encode()).hexdigest()

    return key


train = results.cached_task(train_model, name="train", cache_key_fn=train_cache_key)
