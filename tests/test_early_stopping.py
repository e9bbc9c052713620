"""Training keeps its best validated epoch (tasks/train.py ``_fit``) and validates on training
files only (models/data.py ``validation_split``): the held-out files stay unseen until
evaluation. A fake model stands in for TensorFlow; the loop is the real one."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from musicflow.models import data as mdata
from musicflow.tasks import train
from musicflow.terminal import progress


def sha(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def test_validation_files_are_training_files_never_held_out_ones() -> None:
    shas = [sha(i) for i in range(100)]
    train_shas, heldout = mdata.split_files(shas, mdata.HELDOUT_FRACTION, mdata.SPLIT_SEED)
    fit, val = mdata.validation_split(train_shas)
    assert fit | val == train_shas and not fit & val and not val & heldout
    assert 3 <= len(val) <= 20
    # drawn with its own seed: not simply the files the held-out split scored next lowest
    assert val != mdata.split_files(train_shas, mdata.VALIDATION_FRACTION, mdata.SPLIT_SEED)[1]
    assert mdata.validation_split([sha(1), sha(2)])[1] and mdata.validation_split([sha(1)]) == (
        {sha(1)},
        set(),
    )


def test_best_epoch() -> None:
    best = train.BestEpoch(patience=2)
    assert best.improved(0, 3.0) and not best.improved(1, math.nan) and not best.exhausted(1)
    assert best.improved(2, 2.0) and not best.improved(3, 2.0) and not best.exhausted(3)
    assert best.exhausted(4) and (best.epoch, best.value) == (2, 2.0)
    assert not train.BestEpoch(patience=0).exhausted(99)


class FakeModel:
    """Weights are one number (the epoch that set them); validation reads a script."""

    def __init__(self, val: list[float] | None, patience: int) -> None:
        self.MONITOR = "val_nll" if val is not None else None
        self.config = {"patience": patience}
        self.val = val
        self.weights = -1

    def fit_epoch(self, batches) -> dict[str, float]:
        list(batches)
        self.weights += 1
        return {"loss": 1.0}

    def validate(self, batches) -> dict[str, float]:
        return {} if self.val is None else {"val_nll": self.val[self.weights]}

    def weights_snapshot(self) -> int:
        return self.weights

    def restore_snapshot(self, snapshot: int) -> None:
        self.weights = snapshot


def fit(model: FakeModel, epochs: int, monkeypatch: pytest.MonkeyPatch) -> train.FitResult:
    logged: list[dict] = []
    monkeypatch.setattr(train.tracking, "log_metrics", lambda m, step=None: logged.append(m))
    with progress.TrainingProgress("fake", epochs=epochs, batches=1, budget_s=None) as bar:
        batches = [np.zeros((2, 96, 96, 1), np.float32)]
        result = train._fit(model, batches, batches, epochs, None, bar)
    assert logged[-1]["epochs_completed"] == result.epochs_done
    return result


def test_stops_after_patience_and_keeps_the_best_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    model = FakeModel([5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 2.0], patience=3)
    result = fit(model, 7, monkeypatch)
    assert (result.epochs_done, result.kept_epoch, result.stopped_by) == (6, 3, "early_stopping")
    assert model.weights == 2  # the weights of epoch 3 (0-based 2), not the last epoch's
    assert result.history["val_nll"] == [5.0, 4.0, 3.0, 3.5, 3.2, 3.1]


def test_keeps_the_best_epoch_when_the_epochs_run_out(monkeypatch: pytest.MonkeyPatch) -> None:
    model = FakeModel([5.0, 4.0, 4.5], patience=5)
    result = fit(model, 3, monkeypatch)
    assert (result.epochs_done, result.kept_epoch, result.stopped_by) == (3, 2, "epochs")
    assert model.weights == 1


def test_a_model_without_a_monitor_keeps_its_last_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    model = FakeModel(None, patience=1)
    result = fit(model, 4, monkeypatch)
    assert (result.epochs_done, result.kept_epoch, result.stopped_by) == (4, 4, "epochs")
    assert model.weights == 3


@pytest.mark.integration
def test_a_snapshot_restores_every_network_of_a_real_model() -> None:
    import tensorflow as tf

    from musicflow.models import build_model

    model = build_model("vae", seed=0, hidden=16, enc_filters=[8, 8, 8], latent_dim=4)
    before = model.weights_snapshot()
    x = np.zeros((4, 96, 192, 1), np.float32)
    x[:, 40:60:4, ::6] = 1.0
    model.fit_epoch([tf.constant(x)])
    assert not np.array_equal(flat(model.weights_snapshot()), flat(before))  # the step moved them
    model.restore_snapshot(before)
    assert np.array_equal(flat(model.weights_snapshot()), flat(before))


def flat(snapshot: list[list[np.ndarray]]) -> np.ndarray:
    return np.concatenate([w.ravel() for net in snapshot for w in net])


class TwoPhaseModel(FakeModel):
    """A second phase (``gan``'s GAN over its codes) after the epochs: it records when it ran,
    on which weights and with how many seconds; each epoch takes 0.2 s."""

    name = "fake"

    def __init__(self, share: float) -> None:
        super().__init__([3.0, 2.0, 2.5, 2.6, 2.7, 2.8, 2.9, 3.0], patience=0)
        self.config["prior_budget_share"] = share
        self.calls: list[tuple[int, float | None]] = []

    def fit_epoch(self, batches) -> dict[str, float]:
        import time

        time.sleep(0.2)
        return super().fit_epoch(batches)

    def fit_prior(self, batches, val_batches, seconds: float | None) -> dict[str, float]:
        self.calls.append((self.weights, seconds))
        return {"d_loss": 1.0, "prior_steps_done": 5.0}


def test_a_second_phase_runs_last_on_the_kept_weights_in_its_share_of_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logged: list[dict] = []
    monkeypatch.setattr(train.tracking, "log_metrics", lambda m, step=None: logged.append(m))
    model = TwoPhaseModel(share=0.5)
    with progress.TrainingProgress("fake", epochs=8, batches=1, budget_s=2.0) as bar:
        batches = [np.zeros((2, 96, 96, 1), np.float32)]
        result = train._fit(model, batches, batches, 8, 2.0, bar)
    # the epochs stop at half the budget (about 5 epochs of 0.2 s), not at 2 s (about 10)
    assert result.stopped_by == "time_budget" and 4 <= result.epochs_done <= 6
    [(weights, seconds)] = model.calls
    assert weights == 1 and result.kept_epoch == 2  # after the best epoch's weights came back
    assert seconds is not None and 0.5 <= seconds <= 1.05  # what is left of the 2 s
    assert {"d_loss": 1.0, "prior_steps_done": 5.0} in logged
    assert "d_loss" not in result.history  # the run has it; the per-epoch curves do not
    without = TwoPhaseModel(share=0.5)
    with progress.TrainingProgress("fake", epochs=2, batches=1, budget_s=None) as bar:
        train._fit(without, batches, batches, 2, None, bar)
    assert without.calls == [(1, None)]  # no budget: the phase runs its own step count
