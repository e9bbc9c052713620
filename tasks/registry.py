"""Register: a trained and evaluated run becomes a model version; the champion rule.

``register`` logs the run's checkpoint with its sampling settings (the calibrated threshold and
the encoding, ``sampling.json``) as an MLflow pyfunc model from code (no pickle) that loads and
samples in a fresh process, registered as a new version of ``<dataset>-<model>``
(docs/tracking.md). It is cached per training run, so a cached training result finds its
version again and registers nothing.

Champion rule (documented in the README): a version is eligible when its ``blank_rate`` is at
most 0.5 (a generator that mostly outputs silence is never the best known). Among eligible
versions, lower ``onenn_accuracy`` wins (0.5 means a nearest-neighbour test cannot tell generated
from held-out windows); when two are within 0.01 of each other, lower ``pitch_hist_l1`` wins.
A new version takes the alias ``champion`` only when it beats the current one by this rule.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from musicflow import results, tracking
from musicflow.tasks.evaluate import Evaluation
from musicflow.tasks.train import CHECKPOINT, TrainedModel, run_cache_key

MAX_BLANK_RATE = 0.5
ONENN_TIE = 0.01


@results.result_type
@dataclass(frozen=True)
class RegisteredModel:
    """A registered version: ``models:/<name>/<version>`` loads it anywhere."""

    name: str  # <dataset>-<model>
    version: int
    run_id: str

    @property
    def model_uri(self) -> str:
        return tracking.version_uri(self.name, self.version)


def register_run(trained: TrainedModel, evaluation: Evaluation) -> RegisteredModel:
    """Log the run's model with its sampling settings as a pyfunc model; register a version."""
    name = tracking.registered_name(trained.dataset, trained.model)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = tracking.download_artifacts(trained.run_id, CHECKPOINT, Path(tmp))
        (model_dir / "sampling.json").write_text(
            json.dumps(
                {
                    "threshold": evaluation.threshold,
                    "encoding": trained.encoding,
                    "dataset": trained.dataset,
                    "target_density": evaluation.target_density,
                }
            )
        )
        with tracking.resume_run(trained.run_id):
            version = tracking.log_model(model_dir, name)
    return RegisteredModel(name=name, version=version, run_id=trained.run_id)


def is_better(new: dict[str, float], old: dict[str, float] | None) -> bool:
    """The champion rule on two metric dicts (pure, so it is easy to test)."""
    if not _finite(new.get("blank_rate")) or new["blank_rate"] > MAX_BLANK_RATE:
        return False
    if not _finite(new.get("onenn_accuracy")):
        return False
    if old is None or not _finite(old.get("onenn_accuracy")):
        return True
    if abs(new["onenn_accuracy"] - old["onenn_accuracy"]) > ONENN_TIE:
        return new["onenn_accuracy"] < old["onenn_accuracy"]
    return new.get("pitch_hist_l1", math.inf) < old.get("pitch_hist_l1", math.inf)


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def promote_if_better(registered: RegisteredModel) -> bool:
    """Give the version the champion alias when it beats the current champion; True if so."""
    new = tracking.version_metrics(registered.name, registered.version)
    current = tracking.champion_version(registered.name)
    old = None if current is None else tracking.version_metrics(registered.name, current)
    if is_better(new, old):
        tracking.set_champion(registered.name, registered.version)
        return True
    return False


register = results.cached_task(
    register_run, name="register", cache_key_fn=run_cache_key("register")
)
promote = task(name="promote", cache_policy=NONE, persist_result=False)(promote_if_better)
