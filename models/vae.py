"""This project's VAE (``vae``): cheaper than the thesis VAE and a usable generator.

Why each choice (the thesis VAE: latent 2, 48·48·64 dense decoder, full-resolution 3×3 convs,
mean BCE + 5e-4·KL, samples decoded from U(-4, 4)², noisy):
- Strided 4×4 convolutions from the first layer down to 6×6, transposed 4×4 convolutions back
  up: no layer runs at full resolution with many channels, so a training step costs a fraction
  of the thesis's (DCGAN-style all-convolutional design, Radford et al. 2016).
- Latent 32 with a small dense bottleneck instead of 2: two numbers cannot hold two bars of
  polyphony, and a 147,456-unit dense layer is most of the thesis model's weights.
- Reconstruction = BCE summed over cells, positive cells weighted by ``pos_weight``: only
  ~3% of cells are active, so an unweighted loss is minimised by predicting near-silence.
  The weight shifts probabilities up (a 0.5 threshold keeps cells with true probability
  > 1/(1 + pos_weight)); VAE outputs stay blurry, though, so after short training few cells
  pass 0.5: binarise samples with a threshold that matches the data's density.
- KL weight β = 0.2 on the per-window sums, reached by a linear warm-up (Bowman et al. 2016),
  with free bits per latent dimension (Kingma et al. 2016): MusicVAE's setting for 2-bar
  windows (Roberts et al. 2018). The thesis's 5e-4 on a per-cell mean is β ≈ 0.001 on this
  scale, so its posterior ignored N(0, I) and prior samples decoded to noise; β = 1 kept the
  prior but blurred everything (tried here: slower reconstruction, no better pitch match);
  free bits stop the code collapsing to the average window.
- ``PitchBias``: a learned per-pitch logit offset, the pitch histogram as one vector.
- Samples decode z ~ N(0, I), the prior the KL term trains towards.
- Default ``augment``: the data pipeline's whole-beat time shifts and small transpositions,
  since the small collections this targets (~300 windows) overfit quickly.
"""

from __future__ import annotations

from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from musicflow.models.base import RollModelBase, VaeMixin, kl_nats
from musicflow.models.layers import PitchBias


class RollVAE(VaeMixin, RollModelBase):
    """Convolutional β-VAE over rolls in [0, 1]; see the module docstring for the why."""

    name: ClassVar[str] = "vae"
    kind: ClassVar[str] = "vae"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "latent_dim": 32,
        "enc_filters": [16, 32, 64, 128],
        "dec_filters": [128, 64, 32, 16],
        "dense_units": 256,
        "pos_weight": 3.0,
        "kl_weight": 0.2,
        "kl_warmup_epochs": 10,
        "free_bits": 0.5,
        "learning_rate": 1e-3,
        "batch_size": 32,
        "epochs": 100,
        "augment": True,
        "pitch_prior": 0.03,
        "input_range": "[0, 1]",
    }

    def _build(self) -> None:
        c = self.config
        self._require_lengths(enc_filters=4, dec_filters=4)
        latent = int(c["latent_dim"])
        inp = keras.Input((96, 96, 1), name="window")
        x = inp
        for filters in c["enc_filters"]:  # 96 → 48 → 24 → 12 → 6
            x = layers.Conv2D(int(filters), 4, strides=2, padding="same")(x)
            x = layers.LeakyReLU(negative_slope=0.2)(x)
        x = layers.Flatten()(x)
        x = layers.Dense(int(c["dense_units"]))(x)
        x = layers.LeakyReLU(negative_slope=0.2)(x)
        mu = layers.Dense(latent, name="z_mean")(x)
        logvar = layers.Dense(latent, name="z_log_var")(x)
        self.encoder = keras.Model(inp, [mu, logvar], name="encoder")

        z = keras.Input((latent,), name="z")
        first, *rest = (int(f) for f in c["dec_filters"])
        y = layers.Dense(6 * 6 * first, activation="relu")(z)
        y = layers.Reshape((6, 6, first))(y)
        for filters in rest:  # 6 → 12 → 24 → 48
            y = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", activation="relu")(y)
        y = layers.Conv2DTranspose(1, 4, strides=2, padding="same")(y)  # 48 → 96, logits
        logits = PitchBias(float(c["pitch_prior"]), name="pitch_bias")(y)
        self.decoder_logits = keras.Model(z, logits, name="decoder_logits")
        probs = layers.Activation("sigmoid", name="probability")(logits)
        self.decoder = keras.Model(z, probs, name="decoder")

        self.optimizer = keras.optimizers.Adam(float(c["learning_rate"]))
        self._train_step = tf.function(self._train_step_impl, reduce_retracing=True)
        self._eval_step = tf.function(self._eval_step_impl, reduce_retracing=True)

    def networks(self) -> dict[str, keras.Model]:
        return {"encoder": self.encoder, "decoder": self.decoder}

    def _beta(self) -> float:
        """KL weight of the coming epoch: linear warm-up to ``kl_weight``."""
        warm = max(int(self.config["kl_warmup_epochs"]), 1)
        return float(self.config["kl_weight"]) * min(1.0, (self.epochs_done + 1) / warm)

    def _losses(
        self, x: tf.Tensor, seed: tf.Tensor, beta: tf.Tensor, training: bool
    ) -> dict[str, tf.Tensor]:
        mu, logvar = self.encoder(x, training=training)
        z = mu + tf.exp(0.5 * logvar) * tf.random.stateless_normal(tf.shape(mu), seed)
        logits = self.decoder_logits(z, training=training)
        weighted = tf.nn.weighted_cross_entropy_with_logits(
            x, logits, pos_weight=float(self.config["pos_weight"])
        )
        recon = tf.reduce_mean(tf.reduce_sum(weighted, axis=[1, 2, 3]))
        kl_dim = 0.5 * (tf.square(mu) + tf.exp(logvar) - 1.0 - logvar)
        kl_free = tf.reduce_sum(
            tf.maximum(tf.reduce_mean(kl_dim, axis=0), float(self.config["free_bits"]))
        )
        bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits)
        return {
            "loss": recon + beta * kl_free,
            "recon_loss": tf.reduce_mean(bce),
            "kl_loss": tf.reduce_mean(kl_nats(mu, logvar)),
        }

    def _train_step_impl(self, x: tf.Tensor, beta: tf.Tensor) -> dict[str, tf.Tensor]:
        seed = self._step_seed()
        with tf.GradientTape() as tape:
            out = self._losses(x, seed, beta, True)
        weights = self.encoder.trainable_weights + self.decoder.trainable_weights
        self.optimizer.apply_gradients(
            zip(tape.gradient(out["loss"], weights), weights, strict=True)
        )
        self._step.assign_add(1)
        return out

    def _eval_step_impl(
        self, x: tf.Tensor, seed: tf.Tensor, beta: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        return self._losses(x, seed, beta, False)

    def fit_epoch(self, batches: tf.data.Dataset) -> dict[str, float]:
        """One pass. ``loss``: the objective per window (weighted BCE sum + β·KL with free
        bits); ``recon_loss``: unweighted mean BCE per cell (comparable with ``vae-thesis``);
        ``kl_loss``: KL in nats per window; ``beta``: the KL weight used."""
        beta = self._beta()
        metrics = self._run_epoch(self._train_step, batches, tf.constant(beta, tf.float32))
        metrics["beta"] = beta
        self.epochs_done += 1
        return metrics

    def validate(self, batches: tf.data.Dataset) -> dict[str, float]:
        """The objective at full β on held-out windows (fixed noise, so comparable across
        epochs): ``val_loss``, ``val_recon_loss``, ``val_kl_loss``."""
        seed = tf.constant([int(self.config["seed"]), -1], tf.int64)
        beta = tf.constant(float(self.config["kl_weight"]), tf.float32)
        out = self._run_epoch(self._eval_step, batches, seed, beta, allow_empty=True)
        return {f"val_{k}": v for k, v in out.items()}

    def sample(self, n: int, seed: int) -> np.ndarray:
        """Decode z ~ N(0, I): per-cell probabilities (n, 96, 96)."""
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((n, int(self.config["latent_dim"]))).astype(np.float32)
        return self.decode(z)
