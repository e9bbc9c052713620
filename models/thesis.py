"""Faithful reproductions of the seed thesis's models (``vae-thesis``, ``gan-thesis``).

Kept for comparison, as docs/models.md "The thesis's models" describes them: same layers,
activations, latent sizes, losses, optimisers and batch sizes. Two deliberate differences,
both forced: the GAN step is written with two GradientTapes (the Keras-2 ``trainable=False``
idiom does not train D in Keras 3), and validation uses the held-out files the caller passes
instead of Keras's ``validation_split=0.2`` of windows. Layer widths are config entries whose
defaults are the thesis's, so tests can build small copies.
"""

from __future__ import annotations

from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from musicflow.core.roll import COLS
from musicflow.models.base import GanMixin, RollModelBase, VaeMixin, kl_nats


class ThesisVAE(VaeMixin, RollModelBase):
    """The thesis VAE (after Chollet's Keras VAE): latent 2, mean BCE + 5e-4·KL, Adam."""

    name: ClassVar[str] = "vae-thesis"
    kind: ClassVar[str] = "vae"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "latent_dim": 2,
        "enc_filters": [32, 64, 64, 64],
        "dense_units": 32,
        "dec_dense_filters": 64,
        "dec_filters": 32,
        "kl_weight": 5e-4,
        "learning_rate": 1e-3,
        "batch_size": 32,
        "epochs": 100,
        "sample_range": 4.0,  # the thesis decodes z ~ U(-4, 4)^2
        "input_range": "[0, 1]",
    }

    def _build(self) -> None:
        c = self.config
        self._require_lengths(enc_filters=4)
        latent = int(c["latent_dim"])
        f1, f2, f3, f4 = (int(f) for f in c["enc_filters"])
        inp = keras.Input((96, 96, 1), name="window")
        x = layers.Conv2D(f1, 3, padding="same", activation="relu")(inp)
        x = layers.Conv2D(f2, 3, padding="same", activation="relu", strides=2)(x)
        x = layers.Conv2D(f3, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(f4, 3, padding="same", activation="relu")(x)
        x = layers.Flatten()(x)
        x = layers.Dense(int(c["dense_units"]), activation="relu")(x)
        # outputs in float32 under a mixed policy (a no-op otherwise): the losses need its range
        mu = layers.Dense(latent, name="z_mean", dtype="float32")(x)
        logvar = layers.Dense(latent, name="z_log_var", dtype="float32")(x)
        self.encoder = keras.Model(inp, [mu, logvar], name="encoder")

        z = keras.Input((latent,), name="z")
        dense = int(c["dec_dense_filters"])
        y = layers.Dense(48 * 48 * dense, activation="relu")(z)
        y = layers.Reshape((48, 48, dense))(y)
        y = layers.Conv2DTranspose(
            int(c["dec_filters"]), 3, padding="same", activation="relu", strides=2
        )(y)
        y = layers.Conv2DTranspose(1, 3, padding="same", activation="sigmoid", dtype="float32")(y)
        self.decoder = keras.Model(z, y, name="decoder")
        self._weights = self.encoder.trainable_weights + self.decoder.trainable_weights
        self.optimizer = self._optimizer_for(
            keras.optimizers.Adam(float(self.config["learning_rate"])), self._weights
        )
        self._train_step = self._train_function(self._train_step_impl)
        self._eval_step = tf.function(self._eval_step_impl, reduce_retracing=True)

    def networks(self) -> dict[str, keras.Model]:
        return {"encoder": self.encoder, "decoder": self.decoder}

    def _losses(self, x: tf.Tensor, seed: tf.Tensor, training: bool) -> dict[str, tf.Tensor]:
        mu, logvar = self.encoder(x, training=training)
        eps = tf.random.stateless_normal(tf.shape(mu), seed)
        z = mu + tf.exp(0.5 * logvar) * eps
        out = self.decoder(z, training=training)
        batch = tf.shape(x)[0]
        recon = keras.losses.binary_crossentropy(
            tf.reshape(x, (batch, -1)), tf.reshape(out, (batch, -1))
        )
        kl_term = -float(self.config["kl_weight"]) * tf.reduce_mean(
            1.0 + logvar - tf.square(mu) - tf.exp(logvar), axis=-1
        )
        return {
            "loss": tf.reduce_mean(recon + kl_term),
            "recon_loss": tf.reduce_mean(recon),
            "kl_loss": tf.reduce_mean(kl_nats(mu, logvar)),
        }

    def _train_step_impl(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        seed = self._step_seed()
        with tf.GradientTape() as tape:
            out = self._losses(x, seed, True)
            scaled = self._gradient_loss(self.optimizer, out["loss"])
        weights = self._weights
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, weights), weights, strict=True))
        return out

    def _eval_step_impl(self, x: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._losses(x, seed, False)

    def fit_epoch(self, batches: tf.data.Dataset) -> dict[str, float]:
        """One pass; ``loss`` is the thesis objective, ``recon_loss`` mean BCE per cell,
        ``kl_loss`` the KL divergence in nats per window."""
        metrics = self._run_epoch(self._train_step, batches, replicated=True)
        self.epochs_done += 1
        return metrics

    def validate(self, batches: tf.data.Dataset) -> dict[str, float]:
        """The training objective on held-out windows (noise seeded, so repeatable)."""
        seed = tf.constant([int(self.config["seed"]), -1], tf.int64)
        out = self._run_epoch(self._eval_step, batches, seed, allow_empty=True)
        return {f"val_{k}": v for k, v in out.items()}

    def heldout_nll(self, windows: np.ndarray) -> float:
        """The ELBO bound on windows (n, 96, 96): summed cell cross-entropy + KL in nats per
        window, divided by 32, i.e. per three roll steps (a sixteenth note), the time unit of the
        frame models' ``heldout_nll``. Its representation is the full 12-step binary roll, not
        their onset/hold frames, so the two are not the same quantity (docs/metrics.md)."""
        x = self._as_input(windows)
        if not len(x):
            return float("nan")
        seed = tf.constant([int(self.config["seed"]), -1], tf.int64)
        total = 0.0
        for i in range(0, len(x), 128):
            batch = tf.constant(x[i : i + 128])
            mu, logvar = self.encoder(batch, training=False)
            z = mu + tf.exp(0.5 * logvar) * tf.random.stateless_normal(tf.shape(mu), seed)
            probs = tf.clip_by_value(self.decoder(z, training=False), 1e-7, 1.0 - 1e-7)
            bce = -(batch * tf.math.log(probs) + (1.0 - batch) * tf.math.log(1.0 - probs))
            total += float(tf.reduce_sum(bce) + tf.reduce_sum(kl_nats(mu, logvar)))
        return total / len(x) / (COLS // 3)

    def sample(self, n: int, seed: int) -> np.ndarray:
        """Decode z ~ U(-r, r)^latent as the thesis did (r = ``sample_range``, 4)."""
        rng = np.random.default_rng(seed)
        r = float(self.config["sample_range"])
        z = rng.uniform(-r, r, size=(n, int(self.config["latent_dim"]))).astype(np.float32)
        return self.decode(z)


class ThesisGAN(GanMixin, RollModelBase):
    """The thesis DCGAN (after Brownlee's Keras DCGAN): tanh G, sigmoid D, Adam 2e-4 β1 0.5.

    D sees ``batch_size`` real + ``batch_size`` fake windows per step; G trains on
    2·``batch_size`` latent codes, as the thesis's 32 + 32 / 64 scheme.
    """

    name: ClassVar[str] = "gan-thesis"
    kind: ClassVar[str] = "gan"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "latent_dim": 100,
        "g_dense_filters": 128,
        "g_filters": [128, 64, 64],
        "d_filters": [64, 64],
        "learning_rate": 2e-4,
        "beta_1": 0.5,
        "batch_size": 32,
        "g_batch_factor": 2,
        "dropout": 0.4,
        "leaky_slope": 0.2,
        "epochs": 300,
        "latent_distribution": "uniform(-1, 1)",
        "input_range": "[-1, 1]",
    }

    def _build(self) -> None:
        c = self.config
        self._require_lengths(g_filters=3)
        slope = float(c["leaky_slope"])
        z = keras.Input((int(c["latent_dim"]),), name="z")
        dense = int(c["g_dense_filters"])
        x = layers.Dense(dense * 12 * 12)(z)
        x = layers.LeakyReLU(negative_slope=slope)(x)
        x = layers.Reshape((12, 12, dense))(x)
        for filters in c["g_filters"]:  # 12 → 24 → 48 → 96
            x = layers.Conv2DTranspose(int(filters), 4, strides=2, padding="same")(x)
            x = layers.LeakyReLU(negative_slope=slope)(x)
        x = layers.Conv2D(1, 7, padding="same", activation="tanh", dtype="float32")(x)
        self.generator = keras.Model(z, x, name="generator")

        inp = keras.Input((96, 96, 1), name="window")
        y = inp
        for filters in c["d_filters"]:  # 96 → 48 → 24
            y = layers.Conv2D(int(filters), 3, strides=2, padding="same")(y)
            y = layers.LeakyReLU(negative_slope=slope)(y)
            y = layers.Dropout(float(c["dropout"]), seed=int(c["seed"]))(y)
        y = layers.Flatten()(y)
        y = layers.Dense(1, activation="sigmoid", dtype="float32")(y)
        self.discriminator = keras.Model(inp, y, name="discriminator")

        lr, b1 = float(c["learning_rate"]), float(c["beta_1"])
        self.d_optimizer = self._optimizer_for(
            keras.optimizers.Adam(lr, beta_1=b1), self.discriminator.trainable_weights
        )
        self.g_optimizer = self._optimizer_for(
            keras.optimizers.Adam(lr, beta_1=b1), self.generator.trainable_weights
        )
        self._train_step = self._train_function(self._train_step_impl)
        self._eval_step = tf.function(self._eval_step_impl, reduce_retracing=True)

    def networks(self) -> dict[str, keras.Model]:
        return {"generator": self.generator, "discriminator": self.discriminator}

    def _latent(self, n: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        shape = tf.stack([n, int(self.config["latent_dim"])])
        return tf.random.stateless_uniform(shape, seed, -1.0, 1.0)

    def _train_step_impl(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        seeds = tf.random.experimental.stateless_split(self._step_seed(), 2)
        batch = tf.shape(x)[0]
        real = x * 2.0 - 1.0
        fake = self.generator(self._latent(batch, seeds[0]), training=False)
        inputs = tf.concat([real, fake], axis=0)
        labels = tf.concat([tf.ones((batch, 1)), tf.zeros((batch, 1))], axis=0)
        d_weights = self.discriminator.trainable_weights
        with tf.GradientTape() as d_tape:
            pred = self.discriminator(inputs, training=True)
            d_loss = tf.reduce_mean(keras.losses.binary_crossentropy(labels, pred))
            d_scaled = self._gradient_loss(self.d_optimizer, d_loss)
        self.d_optimizer.apply_gradients(
            zip(d_tape.gradient(d_scaled, d_weights), d_weights, strict=True)
        )

        g_weights = self.generator.trainable_weights
        n_g = batch * int(self.config["g_batch_factor"])
        with tf.GradientTape() as g_tape:
            fooled = self.discriminator(
                self.generator(self._latent(n_g, seeds[1]), training=True), training=True
            )
            g_loss = tf.reduce_mean(keras.losses.binary_crossentropy(tf.ones_like(fooled), fooled))
            g_scaled = self._gradient_loss(self.g_optimizer, g_loss)
        self.g_optimizer.apply_gradients(
            zip(g_tape.gradient(g_scaled, g_weights), g_weights, strict=True)
        )
        return {
            "d_loss": d_loss,
            "g_loss": g_loss,
            "d_acc_real": tf.reduce_mean(tf.cast(pred[:batch] > 0.5, tf.float32)),
            "d_acc_fake": tf.reduce_mean(tf.cast(pred[batch:] <= 0.5, tf.float32)),
        }

    def _eval_step_impl(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        pred = self.discriminator(x * 2.0 - 1.0, training=False)
        return {"val_d_acc_real": tf.reduce_mean(tf.cast(pred > 0.5, tf.float32))}

    def fit_epoch(self, batches: tf.data.Dataset) -> dict[str, float]:
        """One pass over the real windows: d_loss, g_loss, d_acc_real, d_acc_fake."""
        metrics = self._run_epoch(self._train_step, batches, replicated=True)
        self.epochs_done += 1
        return metrics

    def validate(self, batches: tf.data.Dataset) -> dict[str, float]:
        """``val_d_acc_real``: share of held-out real windows D calls real. Far below the
        training ``d_acc_real`` means D memorised the training windows."""
        return self._run_epoch(self._eval_step, batches, allow_empty=True)

    def sample(self, n: int, seed: int) -> np.ndarray:
        """G(z), z ~ U(-1, 1)^100, mapped from tanh's [-1, 1] to [0, 1]."""
        rng = np.random.default_rng(seed)
        z = rng.uniform(-1.0, 1.0, size=(n, int(self.config["latent_dim"]))).astype(np.float32)
        out = self._predict(self.generator, z)[..., 0]
        return np.clip((out + 1.0) / 2.0, 0.0, 1.0).astype(np.float32)
