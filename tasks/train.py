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

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from musicflow.adapters import accelerate, atomic, lineage, results, tracking, workspace
from musicflow.adapters.store import DatasetInfo, holding
from musicflow.core import tracks
from musicflow.core.errors import DatasetError, UsageError
from musicflow.core.roll import COLS
from musicflow.core.settings import TrainSettings, budget_text
from musicflow.terminal import progress

CHECKPOINT = "checkpoint"  # the run's artifact folder holding the trained model (RollModel.save)
# Settings logged once as top-level params, so not again as model.<key>.
TOP_LEVEL_SETTINGS = ("seed", "epochs", "batch_size")


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
    digest: str = ""  # the dataset digest trained on
    code_version: str = ""
    epochs_done: int = 0  # epochs that really ran (fewer than max_epochs when the budget ends)
    kept_epoch: int = 0  # the epoch (1-based) whose weights were kept: the best validated one
    stopped_by: str = ""  # "epochs", "time_budget" or "early_stopping"
    max_epochs: int = 0  # the configured number of epochs
    time_budget_s: float | None = None
    train_seconds: float = 0.0
    placement: str = ""  # where it trained: replicas, devices, precision (accelerate.Placement)

    @property
    def pitch_low(self) -> int:
        return int(self.encoding["pitch_low"])


def train_model(
    version: DatasetInfo,
    dataset: str,
    model_name: str,
    training: TrainSettings,
) -> TrainedModel:
    """Train one model in a new MLflow run on ``version`` (the dataset version read once by
    the caller, :func:`musicflow.adapters.store.reading`); log params, losses and the checkpoint.

    ``training.distribute``, ``training.mixed_precision``: train on every visible GPU, in mixed
    precision (``musicflow/adapters/accelerate.py``); what is saved loads on a CPU either way."""
    tracked = tracks.policy_of(version.encoding) != tracks.MERGED
    if tracked and not tracks.takes_tracks(model_name):
        raise UsageError(tracks.refusal(model_name))
    from musicflow.models import build_model, model_defaults
    from musicflow.models.data import (
        HELDOUT_FRACTION,
        SPLIT_SEED,
        VALIDATION_FRACTION,
        heldout_split,
        validation_split,
    )

    seed, time_budget_s = training.seed, training.time_budget_s
    scope = accelerate.training_scope(
        distribute=training.distribute, mixed_precision=training.mixed_precision
    )
    # its shards stay while training reads them, whatever an encode commits meanwhile
    with holding(version) as info, scope as placement:
        shards = info.shard_paths
        train_shas, heldout_shas = heldout_split(shards)
        if not train_shas or not heldout_shas:
            raise DatasetError(f"dataset '{dataset}' needs at least 2 accepted files (1 held out)")
        fit_shas, val_shas = validation_split(train_shas)
        settings: dict[str, Any] = {}
        if training.epochs:
            settings["epochs"] = training.epochs
        if training.batch_size:
            settings["batch_size"] = training.batch_size
        if "pitch_low" in model_defaults(model_name):  # models that read pitches (key estimation)
            settings["pitch_low"] = info.pitch_low
        if tracked:  # the model records the tracks: generate names them without the dataset
            settings["tracks"] = list(info.encoding["tracks"])
        model = build_model(model_name, seed=seed, **settings)
        config = dict(model.config)
        n_epochs, batch = int(config["epochs"]), int(config["batch_size"])

        from musicflow.models.data import load_window_sources

        sources = load_window_sources(shards, fit_shas)
        n_train = len(sources)
        # a sequence model's batch holds runs of consecutive windows: about one run per window
        # but the last (sequence_windows - 1) of each file, and one for a shorter file
        runs = int(config.get("sequence_windows", 1))
        items = sum(max(n - runs + 1, 1) for n in Counter(sources.tolist()).values())
        batches = math.ceil(items / batch) if items else None
        budget = f", time budget {budget_text(time_budget_s)}" if time_budget_s else ""
        progress.stage(
            f"train {model_name}",
            f"{n_train} windows from {len(fit_shas)} files ({len(val_shas)} more validate), "
            f"{batches} batches per epoch, "
            f"up to {n_epochs} epochs{budget}; {placement.describe()}",
        )
        flow_run_id = _flow_run_id()
        with tracking.start_run(dataset, run_name=f"{model_name}-s{seed}") as run:
            tracking.set_tags(
                {
                    tracking.MODEL_TAG: model_name,
                    tracking.DATASET_TAG: dataset,
                    tracking.CODE_VERSION_TAG: lineage.code_version(),
                    tracking.GIT_COMMIT_TAG: lineage.git_commit() or "unknown",
                    tracking.FLOW_RUN_TAG: flow_run_id or "none",
                }
            )
            params = {
                **{f"model.{k}": v for k, v in config.items() if k not in TOP_LEVEL_SETTINGS},
                **{f"encoding.{k}": v for k, v in info.encoding.items()},
                "model": model_name,
                "seed": seed,
                "max_epochs": n_epochs,  # the configured number; "epochs" (logged after) what ran
                "batch_size": batch,
                "time_budget_s": time_budget_s,
                "dataset": dataset,
                "dataset_digest": info.digest,
                "code_version": lineage.code_version(),
                "heldout_fraction": HELDOUT_FRACTION,
                "split_seed": SPLIT_SEED,
                "n_train_files": len(fit_shas),
                "n_validation_files": len(val_shas),
                "validation_fraction": VALIDATION_FRACTION,
                "n_heldout_files": len(heldout_shas),
                **placement.params(),
            }
            tracking.log_params(params)
            tracking.log_dataset_input(info.folder, dataset, info.digest)

            train_ds, val_ds = training_data(
                config,
                shards,
                fit_shas,
                val_shas,
                seed=seed,
                tracks=tracks.track_count(info.encoding),
            )
            started = time.monotonic()
            with progress.TrainingProgress(
                model_name, epochs=n_epochs, batches=batches, budget_s=time_budget_s
            ) as bar:
                fit = _fit(model, train_ds, val_ds, n_epochs, time_budget_s, bar)
            history, epochs_done = fit.history, fit.epochs_done
            train_seconds = time.monotonic() - started
            tracking.log_params(
                {"epochs": epochs_done, "stopped_by": fit.stopped_by, "kept_epoch": fit.kept_epoch}
            )

            atomic.pause_point("train:checkpoint")
            with tempfile.TemporaryDirectory() as tmp:
                model.save(Path(tmp))
                tracking.log_artifacts(run.info.run_id, Path(tmp), CHECKPOINT)
            tracking.leave_running()  # FINISHED once evaluated (tasks/evaluate.py)
    return TrainedModel(
        run_id=run.info.run_id,
        dataset=dataset,
        model=model_name,
        seed=seed,
        encoding=dict(info.encoding),
        history=history,
        digest=info.digest,
        code_version=lineage.code_version(),
        epochs_done=epochs_done,
        kept_epoch=fit.kept_epoch,
        stopped_by=fit.stopped_by,
        max_epochs=n_epochs,
        time_budget_s=time_budget_s,
        train_seconds=train_seconds,
        placement=placement.describe(),
    )


def training_data(config: dict, shards, fit_shas, val_shas, *, seed: int, tracks: int = 1):
    """(training batches, validation batches) as the model's config asks: runs of
    ``sequence_windows`` consecutive windows for the sequence models, shuffled single windows
    for the others; validation always on single windows of the validation files (none when
    there are none). ``tracks``: the dataset's K (batches (B, 96, T, K))."""
    from musicflow.models.data import sequence_dataset, window_dataset

    batch = int(config["batch_size"])
    windows = int(config.get("sequence_windows", 1))
    if windows > 1:
        train_ds = sequence_dataset(
            shards, fit_shas, windows=windows, batch_size=batch, seed=seed, tracks=tracks
        )
    else:
        train_ds = window_dataset(
            shards, fit_shas, batch_size=batch, seed=seed, shuffle=True, tracks=tracks
        )
    if not val_shas:
        return train_ds, []
    val_ds = window_dataset(
        shards, val_shas, batch_size=batch, seed=seed, shuffle=False, tracks=tracks
    )
    return train_ds, val_ds


@dataclass
class BestEpoch:
    """The epoch with the lowest validation metric so far, and whether ``patience`` epochs
    have passed without a lower one (``patience`` 0: never)."""

    patience: int
    epoch: int = -1
    value: float = math.inf

    def improved(self, epoch: int, value: float) -> bool:
        """Record ``epoch``'s ``value``; True when it is the lowest so far (NaN never is)."""
        if math.isfinite(value) and value < self.value:
            self.epoch, self.value = epoch, value
            return True
        return False

    def exhausted(self, epoch: int) -> bool:
        return self.patience > 0 and self.epoch >= 0 and epoch - self.epoch >= self.patience


@dataclass
class FitResult:
    history: dict[str, list[float]]
    epochs_done: int
    kept_epoch: int  # 1-based; the weights the model holds after _fit
    stopped_by: str  # "epochs", "time_budget" or "early_stopping"


def _fit(
    model,
    train_ds,
    val_ds,
    n_epochs: int,
    time_budget_s: float | None,
    bar: progress.TrainingProgress,
) -> FitResult:
    """The epoch loop, logging each epoch's metrics to the active run. A model with a
    ``MONITOR`` metric stops after ``patience`` epochs without a lower one and ends holding the
    weights of its lowest epoch; others end with their last epoch's. A model with a second
    phase (``fit_prior``: the ``gan``'s GAN over its VAE's codes) runs it last, on the kept
    weights, in the share of the budget its config keeps for it (``prior_budget_share``); its
    metrics go to the run, not to the per-epoch history."""
    history: dict[str, list[float]] = {}
    started = time.monotonic()
    fit_prior = getattr(model, "fit_prior", None)
    share = float(model.config.get("prior_budget_share", 0.0)) if fit_prior else 0.0
    deadline = started + time_budget_s * (1.0 - share) if time_budget_s else None
    seen = _Counter()
    monitor = model.MONITOR
    best = BestEpoch(int(model.config.get("patience", 0)))
    snapshot = None
    stopped_by = "epochs"
    for epoch in range(n_epochs):
        bar.start_epoch(epoch)
        batches = _until(deadline, train_ds, seen, on_batch=bar.advance)
        metrics = model.fit_epoch(batches) | model.validate(val_ds)
        tracking.log_metrics(metrics, step=epoch)
        for key, value in metrics.items():
            history.setdefault(key, []).append(float(value))
        bar.end_epoch(metrics)
        if monitor in metrics:
            if best.improved(epoch, float(metrics[monitor])):
                snapshot = model.weights_snapshot()
            elif best.exhausted(epoch):
                stopped_by = "early_stopping"
                bar.stopped_early(monitor, best.epoch, best.patience)
                break
        if deadline is not None and time.monotonic() >= deadline:
            if epoch + 1 < n_epochs:
                stopped_by = "time_budget"
                bar.stopped_by_budget(seen.windows)
            break
    epochs_done = len(next(iter(history.values()), []))
    kept = epochs_done
    if snapshot is not None and best.epoch + 1 != epochs_done:
        model.restore_snapshot(snapshot)
        kept = best.epoch + 1
    if fit_prior is not None:
        left = started + time_budget_s - time.monotonic() if time_budget_s else None
        metrics = fit_prior(train_ds, val_ds, None if left is None else max(left, 0.0))
        # logged at the last epoch's step, kept out of the per-epoch history (one value, not
        # a curve over the epochs the report's figures draw)
        tracking.log_metrics(metrics, step=epochs_done - 1)
        progress.note(
            f"{model.name} GAN over the codes: {int(metrics['prior_steps_done'])} critic steps, "
            + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if k != "prior_steps_done")
        )
    tracking.log_metrics(
        {
            "epochs_completed": epochs_done,
            "train_windows_seen": seen.windows,
            "train_seconds": time.monotonic() - started,
        }
    )
    return FitResult(history, epochs_done, kept, stopped_by)


def load_trained(trained: TrainedModel, dst: Path):
    """The trained model back from its run's checkpoint (copied under ``dst``)."""
    from musicflow.models import load_model

    return load_model(tracking.download_artifacts(trained.run_id, CHECKPOINT, dst))


@dataclass
class _Counter:
    windows: int = 0


def _until(
    deadline: float | None,
    batches: Iterable,
    seen: _Counter,
    on_batch: Callable[[], object] | None = None,
) -> Iterator:
    """The batches of one epoch, cut short once the wall-clock ``deadline`` passes.

    Checked before every batch, so a budget holds to about one step even when an epoch is
    longer than the budget (the thesis GAN needs ~40 min per piano-midi-de epoch here). The
    first batch always runs, so an epoch is never empty. ``on_batch`` is called once the
    consumer has finished with a batch (it asks for the next one, or the epoch ends).
    """
    for i, batch in enumerate(batches):
        if i and deadline is not None and time.monotonic() >= deadline:
            return
        x = batch[0] if isinstance(batch, tuple | list) else batch
        runs = int(x.shape[2]) // COLS if len(x.shape) == 4 else 1  # windows laid end to end
        seen.windows += int(x.shape[0]) * runs
        yield batch
        if on_batch is not None:
            on_batch()


@contextlib.contextmanager
def one_at_a_time(dataset_dir: Path, model_name: str) -> Iterator[None]:
    """An exclusive lock on training ``model_name`` on the dataset in ``dataset_dir`` (the
    file ``.train-<model>.lock`` there), held from training to the report: a second identical
    command waits for the first, then finds its cached run and version instead of training
    and registering a twin. Says so when it has to wait."""
    lock = workspace.DatasetFolder(dataset_dir).train_lock(model_name)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress.note(
                f"another musicflow command is training {model_name} on this dataset; "
                "waiting for it to finish"
            )
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return flow_run.id


def train_cache_key(_context, parameters: dict) -> str:
    """Identical dataset digest, model, training settings and code give the same key."""
    payload = {
        "digest": parameters["version"].digest,
        "dataset": parameters["dataset"],
        "model": parameters["model_name"],
        "training": dataclasses.asdict(parameters["training"]),
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
