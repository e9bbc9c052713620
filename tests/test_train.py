"""tasks/train.py: the time budget, the cache keys, and a result small enough to cache."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from musicflow.adapters.store import DatasetInfo
from musicflow.core.settings import TrainSettings
from musicflow.tasks import train as t


def test_time_budget_cuts_an_epoch_between_batches() -> None:
    import time

    batches = [np.zeros((4, 96, 96)) for _ in range(5)]
    seen = t._Counter()
    assert len(list(t._until(None, batches, seen))) == 5 and seen.windows == 20
    past = time.monotonic() - 1
    seen = t._Counter()
    assert len(list(t._until(past, batches, seen))) == 1 and seen.windows == 4  # never empty


def _version(digest: str) -> DatasetInfo:
    return DatasetInfo("d", Path("rolls/d"), digest, {"pitch_low": 21}, [], 0, 0)


def _key(version: DatasetInfo, model_name: str = "vae", **settings) -> str:
    params = {
        "version": version,
        "dataset": "d",
        "model_name": model_name,
        "training": TrainSettings(**settings),
    }
    return t.train_cache_key(None, params)


def test_train_key_follows_the_dataset_digest_and_settings() -> None:
    version = _version("1" * 64)
    key = _key(version)
    assert key == _key(version) and key.startswith("train-")
    assert key == _key(version, seed=0, epochs=None)  # the defaults spelled out: the same
    assert _key(version, model_name="gan") != key
    changed = dict(
        epochs=3,
        batch_size=8,
        seed=1,
        time_budget_s=60.0,
        distribute=True,
        mixed_precision=True,
    )
    keys = {_key(version, **{name: value}) for name, value in changed.items()}
    assert len(keys) == len(changed) and key not in keys  # every setting counts, each its own
    assert _key(_version("2" * 64)) != key  # new data: train again


def test_later_steps_are_keyed_per_training_run() -> None:
    a = t.TrainedModel("run-a", "d", "vae", 0, {"pitch_low": 21})
    b = dataclasses.replace(a, run_id="run-b")
    evaluate_key, register_key = t.run_cache_key("evaluate"), t.run_cache_key("register")
    assert evaluate_key(None, {"trained": a}) == evaluate_key(None, {"trained": a})
    assert evaluate_key(None, {"trained": a}) != evaluate_key(None, {"trained": b})
    assert evaluate_key(None, {"trained": a}) != register_key(None, {"trained": a})


def test_the_cached_result_is_small_plain_data() -> None:
    trained = t.TrainedModel(
        "run-a", "d", "gan", 3, {"name": "roll-v1", "pitch_low": 30}, {"g_loss": [1.0, 0.5]}
    )
    assert json.loads(json.dumps(dataclasses.asdict(trained))) == dataclasses.asdict(trained)
    assert trained.pitch_low == 30


def test_each_batch_is_reported_once_the_model_is_done_with_it() -> None:
    batches = [np.zeros((4, 96, 96)) for _ in range(3)]
    done: list[int] = []
    seen = t._Counter()
    for i, _ in enumerate(t._until(None, batches, seen, on_batch=lambda: done.append(1))):
        assert len(done) == i  # not yet counted while the model works on it
    assert len(done) == 3
