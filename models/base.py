"""What the four models share: configuration, seeding, the epoch loop, saving and loading.

A model is a plain Python object holding Keras networks and its own tf.function training step,
not a ``keras.Model`` subclass: the GAN needs two optimisers and two gradient tapes (Keras 3
breaks the Keras-2 ``trainable = False`` idiom, docs/models.md), and one shape for all four
keeps the training task simple.

Randomness: ``keras.utils.set_random_seed(seed)`` before building (weight initialisers,
dropout seeds); every random draw inside a training step is a stateless op keyed by
``(seed, step)``, and ``sample`` draws its latent codes with numpy from its own ``seed``, so
results never depend on what else ran in the process.

Accelerators (``musicflow/adapters/accelerate.py``): a model built inside a
``tf.distribute`` strategy's scope runs its training step on every replica, each on an equal
slice of the batch, and the optimisers sum the replicas' gradients (so each replica's loss is
divided by their number); a model built under a mixed dtype policy keeps its outputs and losses
in float32 and, for float16, scales its losses (``_gradient_loss``). Built outside both, the
step is the plain one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf

from musicflow.adapters import atomic
from musicflow.core.errors import ModelError
from musicflow.core.roll import COLS, ROWS

FORMAT_VERSION = 1
_SAMPLE_CHUNK = 128


def seed_everything(seed: int) -> None:
    """Seed Python, numpy, TensorFlow and Keras (initialisers, dropout)."""
    keras.utils.set_random_seed(int(seed))


def kl_nats(mu: tf.Tensor, logvar: tf.Tensor) -> tf.Tensor:
    """KL(q(z|x) || N(0, I)) per window, in nats (reported as ``kl_loss`` by both VAEs)."""
    return -0.5 * tf.reduce_sum(1.0 + logvar - tf.square(mu) - tf.exp(logvar), axis=-1)


class RollModelBase:
    """Common machinery; subclasses define ``DEFAULTS``, ``_build`` and the step functions."""

    name: ClassVar[str]
    kind: ClassVar[str]
    DEFAULTS: ClassVar[dict[str, Any]]
    #: The validation metric whose lowest epoch training keeps (``None``: the last epoch).
    MONITOR: ClassVar[str | None] = None

    def __init__(self, *, seed: int, **overrides: Any) -> None:
        unknown = sorted(set(overrides) - set(self.DEFAULTS))
        if unknown:
            raise ModelError(
                f"unknown hyperparameter(s) for {self.name}: {', '.join(unknown)}; "
                f"known: {', '.join(sorted(self.DEFAULTS))}"
            )
        self.config: dict[str, Any] = {**self.DEFAULTS, **overrides, "seed": int(seed)}
        json.dumps(self.config)  # must stay JSON-serialisable (logged as MLflow params)
        self.epochs_done = 0
        seed_everything(int(seed))
        self._strategy = tf.distribute.get_strategy() if tf.distribute.has_strategy() else None
        self._step = tf.Variable(
            0,
            dtype=tf.int64,
            trainable=False,
            name="step",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )
        self._build()

    # --- subclass hooks -------------------------------------------------------------------
    def _build(self) -> None:
        raise NotImplementedError

    def networks(self) -> dict[str, keras.Model]:
        """The Keras networks whose weights make up the model (saved by ``save``)."""
        raise NotImplementedError

    # --- helpers --------------------------------------------------------------------------
    def _require_lengths(self, **lengths: int) -> None:
        """Layer-width lists must have the length the fixed 96 ↔ 6 resolution ladder needs."""
        for key, n in lengths.items():
            value = self.config[key]
            if not isinstance(value, list | tuple) or len(value) != n:
                raise ModelError(f"{self.name}: {key} must be a list of {n} widths, got {value!r}")

    def _step_seed(self, step: tf.Variable | None = None) -> tf.Tensor:
        """A stateless-op seed unique to (model seed, training step, replica); call inside a
        step. ``step``: another step counter than the model's (a second training phase's)."""
        count = self._step if step is None else step
        seed = tf.stack([tf.constant(self.config["seed"], tf.int64), count])
        context = tf.distribute.get_replica_context()
        if self._strategy is None or context is None:
            return seed
        replica = tf.cast(context.replica_id_in_sync_group, tf.int64)
        return seed + tf.stack([tf.constant(0, tf.int64), replica * 1_000_003])

    @property
    def replicas(self) -> int:
        """Replicas a training step runs on (1 unless built under a tf.distribute strategy)."""
        return self._strategy.num_replicas_in_sync if self._strategy is not None else 1

    def _optimizer_for(
        self, optimizer: keras.optimizers.Optimizer, variables: list
    ) -> keras.optimizers.Optimizer:
        """``optimizer`` with dynamic loss scaling under a float16 policy, built now (its slots
        are created under the strategy's scope, not lazily inside a replica)."""
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(variables)
        return optimizer

    def _gradient_loss(self, optimizer: keras.optimizers.Optimizer, loss: tf.Tensor) -> tf.Tensor:
        """What to differentiate for ``loss`` on one replica: divided by the replicas (their
        gradients are summed) and loss-scaled under float16."""
        return optimizer.scale_loss(loss / float(self.replicas))

    def _train_function(self, replica_step: Any) -> Any:
        """The compiled training step: ``replica_step`` on each replica's slice of the batch,
        its metrics averaged, then ``_after_train_step`` once."""

        def step(x: tf.Tensor) -> dict[str, tf.Tensor]:
            out = self._on_replicas(replica_step, x)
            self._after_train_step(tf.shape(x)[0])
            return out

        return tf.function(step, reduce_retracing=True)

    def _after_train_step(self, batch: tf.Tensor) -> None:
        """Updates made once per step, outside the replicas (the GAN's weight average)."""
        self._step.assign_add(1)

    def _on_replicas(self, fn: Any, x: tf.Tensor) -> dict[str, tf.Tensor]:
        if self._strategy is None:
            return fn(x)

        def local(x: tf.Tensor) -> dict[str, tf.Tensor]:
            context = tf.distribute.get_replica_context()
            size = tf.shape(x)[0] // context.num_replicas_in_sync
            start = size * tf.cast(context.replica_id_in_sync_group, tf.int32)
            return fn(x[start : start + size])

        out = self._strategy.run(local, args=(x,))
        mean = tf.distribute.ReduceOp.MEAN
        return {k: self._strategy.reduce(mean, v, axis=None) for k, v in out.items()}

    def _run_epoch(
        self,
        step: Any,
        batches: Iterable[tf.Tensor],
        *args: Any,
        allow_empty: bool = False,
        replicated: bool = False,
    ) -> dict[str, float]:
        """Apply ``step`` to every batch; average its metrics weighted by batch size.

        An empty dataset is an error for training and ``{}`` for validation
        (``allow_empty``): a collection of one file has no held-out windows. A ``replicated``
        step (training) on several replicas gets each batch cut to a multiple of their number
        (at most replicas − 1 windows of a batch are left out), so every slice is the same size.
        """
        sums: dict[str, float] = {}
        count = 0
        for batch in batches:
            x = batch[0] if isinstance(batch, tuple | list) else batch
            size = int(x.shape[0])
            if replicated:
                size -= size % self.replicas
            if size == 0:
                continue
            out = step(tf.convert_to_tensor(x[:size], tf.float32), *args)
            for key, value in out.items():
                sums[key] = sums.get(key, 0.0) + float(value) * size
            count += size
        if count == 0:
            if allow_empty:
                return {}
            raise ModelError("the dataset yielded no windows")
        metrics = {key: value / count for key, value in sums.items()}
        bad = [k for k, v in metrics.items() if not math.isfinite(v)]
        if bad:
            raise ModelError(f"training diverged: non-finite {', '.join(bad)}")
        return metrics

    @staticmethod
    def _as_input(windows: np.ndarray) -> np.ndarray:
        """bool/float (n, 96, 96) or (n, 96, 96, 1) → float32 (n, 96, 96, 1) in [0, 1]."""
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim == 2:
            x = x[None]
        if x.ndim == 3:
            x = x[..., None]
        if x.shape[1:] != (ROWS, COLS, 1):
            raise ModelError(
                f"expected windows of shape (n, {ROWS}, {COLS}), got {np.shape(windows)}"
            )
        return x

    @staticmethod
    def _predict(net: keras.Model, inputs: np.ndarray) -> np.ndarray:
        """Inference in fixed-size chunks, so results do not depend on ``n``."""
        outs = [
            np.asarray(net(inputs[i : i + _SAMPLE_CHUNK], training=False))
            for i in range(0, len(inputs), _SAMPLE_CHUNK)
        ]
        return np.concatenate(outs) if outs else np.zeros((0, *net.output_shape[1:]), np.float32)

    # --- persistence ----------------------------------------------------------------------
    def weights_snapshot(self) -> list[list[np.ndarray]]:
        """Every network's weights as numpy copies (training keeps its best epoch's)."""
        return [net.get_weights() for net in self.networks().values()]

    def restore_snapshot(self, snapshot: list[list[np.ndarray]]) -> None:
        for net, weights in zip(self.networks().values(), snapshot, strict=True):
            net.set_weights(weights)

    def save(self, directory: Path) -> None:
        """Write ``config.json`` and one ``<network>.weights.h5`` per network."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for key, net in self.networks().items():
            net.save_weights(str(directory / f"{key}.weights.h5"))
        meta = {
            "format": FORMAT_VERSION,
            "name": self.name,
            "kind": self.kind,
            "config": self.config,
            "state": {"epochs_done": self.epochs_done, "steps_done": int(self._step.numpy())},
            "keras_version": keras.__version__,
            "tensorflow_version": tf.__version__,
        }
        atomic.write_text(directory / "config.json", json.dumps(meta, indent=2, sort_keys=True))

    def _restore(self, directory: Path, meta: dict[str, Any]) -> None:
        for key, net in self.networks().items():
            path = directory / f"{key}.weights.h5"
            if not path.is_file():
                raise ModelError(f"missing weights file {path}")
            net.load_weights(str(path))
        state = meta.get("state", {})
        self.epochs_done = int(state.get("epochs_done", 0))
        self._step.assign(int(state.get("steps_done", 0)))


class VaeMixin:
    """VAE-only parts of the interface; ``encode`` and ``interpolate`` need an encoder."""

    encoder: keras.Model
    decoder: keras.Model

    def encode(self, windows: np.ndarray) -> np.ndarray:
        """Latent means (n, latent_dim) of windows (n, 96, 96) bool or float."""
        x = RollModelBase._as_input(windows)
        outs = [
            np.asarray(self.encoder(x[i : i + _SAMPLE_CHUNK], training=False)[0])
            for i in range(0, len(x), _SAMPLE_CHUNK)
        ]
        return np.concatenate(outs).astype(np.float32)

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Per-cell probabilities (n, 96, 96) for latent codes z (n, latent_dim)."""
        probs = RollModelBase._predict(self.decoder, np.asarray(z, np.float32))
        return np.clip(probs[..., 0], 0.0, 1.0).astype(np.float32)

    def interpolate(self, a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
        """Decode ``steps`` points on the line between the encodings of windows a and b.

        Returns float32 (steps, 96, 96); the first and last are the reconstructions of a, b.
        """
        if steps < 2:
            raise ModelError("interpolate needs steps >= 2")
        za, zb = self.encode(
            np.stack([np.asarray(a).reshape(ROWS, COLS), np.asarray(b).reshape(ROWS, COLS)])
        )
        t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
        return self.decode((1.0 - t) * za[None] + t * zb[None])

    def sample_pieces(self, n: int, n_windows: int, seed: int) -> np.ndarray:
        """``n`` pieces of ``n_windows`` consecutive windows, each a walk through the latent
        space between two samples, so neighbouring windows are related. float32
        (n, n_windows, 96, 96) in [0, 1]; piece i depends only on (seed, i)."""

        def piece(i: int) -> np.ndarray:
            ends = self.sample(2, seed=piece_seed(seed, i))  # type: ignore[attr-defined]
            if n_windows < 2:
                return ends[:n_windows]
            return self.interpolate(ends[0], ends[1], n_windows)

        return _stack_pieces([piece(i) for i in range(n)], n_windows)


class GanMixin:
    """GANs have no encoder."""

    def encode(self, windows: np.ndarray) -> np.ndarray:
        raise NotImplementedError("a GAN has no encoder")

    def interpolate(self, a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
        raise NotImplementedError("a GAN has no encoder to interpolate between windows")

    def sample_pieces(self, n: int, n_windows: int, seed: int) -> np.ndarray:
        """``n`` pieces of ``n_windows`` independent samples chained in time (the GAN has no
        way to relate them). float32 (n, n_windows, 96, 96); piece i depends on (seed, i)."""
        pieces = [
            self.sample(n_windows, seed=piece_seed(seed, i))  # type: ignore[attr-defined]
            for i in range(n)
        ]
        return _stack_pieces(pieces, n_windows)


def piece_seed(seed: int, i: int) -> int:
    """The seed of piece i of a call with ``seed`` (so a piece does not depend on how many)."""
    return int(seed) * 100_003 + i


def _stack_pieces(pieces: list[np.ndarray], n_windows: int) -> np.ndarray:
    if not pieces:
        return np.zeros((0, n_windows, ROWS, COLS), np.float32)
    return np.stack(pieces).astype(np.float32)
