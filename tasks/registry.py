"""Register: a trained and evaluated run becomes a model version; the champion rule.

``register`` logs the run's checkpoint with its sampling settings (the calibrated threshold and
the encoding, ``sampling.json``) as an MLflow pyfunc model from code (no pickle) that loads and
samples in a fresh process, registered as a new version of ``<dataset>-<model>``
(docs/tracking.md). It is cached per training run, so a cached training result finds its
version again and registers nothing.

The champion rule itself (``is_better``, and the best version of a dataset across its models)
lives in ``musicflow/core/champion.py``, pure, so ``musicflow compare`` applies it without importing
Prefect; ``promote`` gives a new version the alias ``champion`` only when it beats the current
one by that rule. ``register`` also writes the version's description (what was trained, for how
long, its main scores beside their baselines), which the MLflow UI shows.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from musicflow.adapters import results, tracking
from musicflow.core.champion import RULE_TEXT, is_better
from musicflow.core.sampling import write_settings
from musicflow.tasks.evaluate import Evaluation, run_summary
from musicflow.tasks.train import CHECKPOINT, TrainedModel, run_cache_key

__all__ = ["RegisteredModel", "is_better", "promote", "register"]


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
        write_settings(
            model_dir,
            threshold=evaluation.threshold,
            encoding=trained.encoding,
            dataset=trained.dataset,
            target_density=evaluation.target_density,
        )
        with tracking.resume_run(trained.run_id):
            version = tracking.log_model(model_dir, name)
    tracking.describe_version(
        name,
        version,
        run_summary(trained, evaluation),
        model_text=(
            f"`{trained.model}` generators trained by musicflow on the dataset "
            f"**{trained.dataset}**, one version per training run. The alias `champion` marks "
            f"the best version. {RULE_TEXT}"
        ),
    )
    return RegisteredModel(name=name, version=version, run_id=trained.run_id)


def promote_if_better(registered: RegisteredModel) -> bool:
    """Give the version the champion alias when it beats the current champion; True if so."""
    new = tracking.version_metrics(registered.name, registered.version)
    current = tracking.champion_version(registered.name)
    old = None if current is None else tracking.version_metrics(registered.name, current)
    if is_better(new, old):
        tracking.set_champion(registered.name, registered.version)
        return True
    return False


@contextlib.contextmanager
def champion_once_complete(registered: RegisteredModel) -> Iterator[bool]:
    """Promote ``registered`` (:func:`promote`) for the block that completes its run (its
    pieces and report); if the block fails, the alias goes back to the previous champion (or
    is removed), so a run that did not finish never leaves a new champion. The version stays
    registered: the next run finds it, writes its report and applies the rule again."""
    previous = tracking.champion_version(registered.name)
    promoted = promote(registered)
    try:
        yield promoted
    except BaseException:
        if promoted:
            tracking.restore_champion(registered.name, previous)
        raise


register = results.cached_task(
    register_run, name="register", cache_key_fn=run_cache_key("register")
)
promote = task(name="promote", cache_policy=NONE, persist_result=False)(promote_if_better)
