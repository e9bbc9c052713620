"""This project's GAN (``gan``): trains on a few hundred windows without collapsing, cheaply.

Why each choice (the thesis DCGAN stalled on 298 and 3,207 windows: D ≈100% accurate, black
images; and it spends ~1 GMAC per generated window in 128·12·12 dense + three big
transposed convolutions). The recipe is StyleGAN2-ADA's for small data (non-saturating
logistic loss + R1 + augmentation of D's inputs + generator EMA; Karras et al. 2020) on a
small DCGAN-shaped network, plus one music-specific term:
- Non-saturating logistic loss (Goodfellow et al. 2014) with an R1 gradient penalty on real
  windows (Mescheder et al. 2018): real rolls are binary and fakes soft, so the two never
  overlap and an unpenalised D separates them perfectly; R1 keeps D smooth around the real
  windows so its gradients still point somewhere useful. Spectral norm (Miyato et al. 2018) and
  the hinge loss are options (``spectral_norm``, ``loss``), off by default: Keras's SN wrapper
  tripled tracing time and did not stop the collapse in short trials here. Adam 2e-4,
  β1 = 0.5 (Radford et al. 2016), one D step per G step.
- DiffAugment (Zhao et al. 2020): real and generated batches both pass the same kind of
  random, differentiable transforms before D (time shifts by whole beats, transpositions of a
  few semitones, a cutout rectangle), so D cannot memorise a small training set. Whole beats
  keep the within-beat onset positions D judges.
- Minibatch standard deviation in D (Karras et al. 2018): collapse to a few windows is visible.
- Generator: inputs and outputs in [0, 1] with a sigmoid (rolls are binary and sparse, tanh's
  [-1, 1] centre buys nothing), a ``PitchBias`` per-pitch logit offset initialised to the
  data's ~3% density so training starts near sparse rolls, not grey noise. From 6×6, each
  stage is nearest-neighbour upsampling + 3×3 conv, not a transposed conv: strided transposed
  convs printed checkerboard dots instead of held notes (Odena et al. 2016), and channels halve
  as resolution doubles, so no layer is costly. PixelNorm instead of BatchNorm (Karras et al.
  2018): no batch statistics, the same function in training and sampling, EMA-friendly.
- ``pitch_match_weight``, ``time_match_weight``: moment matching (feature matching, Salimans et
  al. 2016, on fixed musical features): the per-pitch and per-time-step densities of the fake
  batch must match the real batch's, as Bernoulli KLs. The first targets the pitch histogram
  directly and, unlike the adversarial gradient, does not vanish when sigmoid outputs sit near
  0, which is how generators fall into the all-black state of the thesis (seen here too
  without it, after ~100 steps). The second forbids what D was slow to see in trials: clusters
  of notes stuck to the window's first and last steps (zero-padding artefacts).
- An exponential moving average of the generator's weights is what ``sample`` uses (Yazıcı et
  al. 2019; Karras et al. 2018): smoother, more stable samples at no training cost. Its
  half-life is counted in images and ramped up early (StyleGAN2-ADA's ema_kimg/ema_rampup), so
  it behaves the same at any batch size and does not lag far behind in short runs.
- G trains on ``batch_size`` codes, not twice as many as the thesis: half the generator cost.
"""

from __future__ import annotations

from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from musicflow.errors import ModelError
from musicflow.models.augment import diff_augment
from musicflow.models.base import GanMixin, RollModelBase
from musicflow.models.layers import MinibatchStd, PitchBias, PixelNorm

_BEAT = 12


def _bernoulli_kl(target: tf.Tensor, mean: tf.Tensor) -> tf.Tensor:
    """Sum over positions of KL(Bernoulli(target) || Bernoulli(mean)), 0 when they match.

    On batch means of sigmoid outputs its gradient w.r.t. each logit stays ≈ (mean - target) / N
    however small the probabilities get, so it pulls a generator out of the all-silent state in
    which sigmoid gradients vanish (the thesis's black images).
    """
    eps = 1e-6
    t = tf.clip_by_value(target, eps, 1.0 - eps)
    m = tf.clip_by_value(mean, eps, 1.0 - eps)
    return tf.reduce_sum(t * tf.math.log(t / m) + (1.0 - t) * tf.math.log((1.0 - t) / (1.0 - m)))


class RollGAN(GanMixin, RollModelBase):
    """Small GAN: logistic loss + R1, DiffAugment, pitch matching, EMA generator (see module)."""

    name: ClassVar[str] = "gan"
    kind: ClassVar[str] = "gan"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "latent_dim": 128,
        "g_filters": [128, 64, 32, 16, 8],
        "d_filters": [16, 32, 64, 128],
        "loss": "nonsaturating",
        "spectral_norm": False,
        "r1_gamma": 0.1,
        "pitch_match_weight": 1.0,
        "time_match_weight": 1.0,
        "g_learning_rate": 2e-4,
        "d_learning_rate": 2e-4,
        "beta_1": 0.5,
        "beta_2": 0.999,
        "ema_halflife_images": 10000,
        "ema_rampup": 0.05,
        "diffaug_max_beats": 1,
        "diffaug_max_transpose": 2,
        "diffaug_cutout": 0.5,
        "minibatch_std": True,
        "batch_size": 32,
        "epochs": 300,
        "augment": False,
        "pitch_prior": 0.03,
        "input_range": "[0, 1]",
    }

    def _generator(self) -> keras.Model:
        c = self.config
        first, *rest = (int(f) for f in c["g_filters"])
        z = keras.Input((int(c["latent_dim"]),), name="z")
        x = PixelNorm()(z)
        x = layers.Dense(6 * 6 * first)(x)
        x = layers.Reshape((6, 6, first))(x)
        x = layers.LeakyReLU(negative_slope=0.2)(x)
        x = PixelNorm()(x)
        for filters in rest:  # 6 → 12 → 24 → 48 → 96
            x = layers.UpSampling2D(2)(x)
            x = layers.Conv2D(filters, 3, padding="same")(x)
            x = layers.LeakyReLU(negative_slope=0.2)(x)
            x = PixelNorm()(x)
        x = layers.Conv2D(1, 3, padding="same")(x)
        x = PitchBias(float(c["pitch_prior"]), name="pitch_bias")(x)
        x = layers.Activation("sigmoid", name="probability")(x)
        return keras.Model(z, x, name="generator")

    def _build(self) -> None:
        c = self.config
        if c["loss"] not in ("hinge", "nonsaturating"):
            raise ModelError(f"gan loss must be 'hinge' or 'nonsaturating', got {c['loss']!r}")
        self._require_lengths(g_filters=5, d_filters=4)
        self.generator = self._generator()
        self.generator_ema = self._generator()
        for ema, w in zip(self.generator_ema.weights, self.generator.weights, strict=True):
            ema.assign(w)

        def sn(layer: keras.layers.Layer) -> keras.layers.Layer:
            if c["spectral_norm"]:
                return keras.layers.SpectralNormalization(layer)
            return layer

        inp = keras.Input((96, 96, 1), name="window")
        y = inp
        for filters in c["d_filters"]:  # 96 → 48 → 24 → 12 → 6
            y = sn(layers.Conv2D(int(filters), 4, strides=2, padding="same"))(y)
            y = layers.LeakyReLU(negative_slope=0.2)(y)
        if c["minibatch_std"]:
            y = MinibatchStd()(y)
        y = layers.Flatten()(y)
        y = sn(layers.Dense(1))(y)
        self.discriminator = keras.Model(inp, y, name="discriminator")

        b1, b2 = float(c["beta_1"]), float(c["beta_2"])
        self.g_optimizer = keras.optimizers.Adam(float(c["g_learning_rate"]), b1, b2)
        self.d_optimizer = keras.optimizers.Adam(float(c["d_learning_rate"]), b1, b2)
        self._train_step = tf.function(self._train_step_impl, reduce_retracing=True)
        self._eval_step = tf.function(self._eval_step_impl, reduce_retracing=True)

    def networks(self) -> dict[str, keras.Model]:
        return {
            "generator": self.generator,
            "generator_ema": self.generator_ema,
            "discriminator": self.discriminator,
        }

    def _augment(self, x: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        c = self.config
        return diff_augment(
            x,
            seed,
            max_time_shift=int(c["diffaug_max_beats"]),
            max_transpose=int(c["diffaug_max_transpose"]),
            time_unit=_BEAT,
            cutout=float(c["diffaug_cutout"]),
        )

    def _d_losses(self, real: tf.Tensor, fake: tf.Tensor) -> tf.Tensor:
        if self.config["loss"] == "hinge":
            return tf.reduce_mean(tf.nn.relu(1.0 - real)) + tf.reduce_mean(tf.nn.relu(1.0 + fake))
        return tf.reduce_mean(tf.nn.softplus(-real)) + tf.reduce_mean(tf.nn.softplus(fake))

    def _g_loss(self, fake: tf.Tensor) -> tf.Tensor:
        if self.config["loss"] == "hinge":
            return -tf.reduce_mean(fake)
        return tf.reduce_mean(tf.nn.softplus(-fake))

    def _train_step_impl(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        seeds = tf.random.experimental.stateless_split(self._step_seed(), 5)
        batch = tf.shape(x)[0]
        shape = tf.stack([batch, int(self.config["latent_dim"])])
        fake = self.generator(tf.random.stateless_normal(shape, seeds[0]), training=True)
        real_in = self._augment(x, seeds[1])
        fake_in = self._augment(fake, seeds[2])
        d_weights = self.discriminator.trainable_weights
        gamma = float(self.config["r1_gamma"])
        with tf.GradientTape() as d_tape:
            with tf.GradientTape() as r1_tape:
                r1_tape.watch(real_in)
                d_real = self.discriminator(real_in, training=True)
                d_real_sum = tf.reduce_sum(d_real)
            d_fake = self.discriminator(fake_in, training=True)
            d_loss = self._d_losses(d_real, d_fake)
            d_total = d_loss
            if gamma > 0:
                grad = r1_tape.gradient(d_real_sum, real_in)
                r1 = tf.reduce_mean(tf.reduce_sum(tf.square(grad), axis=[1, 2, 3]))
                d_total = d_loss + 0.5 * gamma * r1
        self.d_optimizer.apply_gradients(
            zip(d_tape.gradient(d_total, d_weights), d_weights, strict=True)
        )

        g_weights = self.generator.trainable_weights
        pitch_target = tf.reduce_mean(x, axis=[0, 2, 3])  # per-pitch density of the real batch
        time_target = tf.reduce_mean(x, axis=[0, 1, 3])  # per-step density
        with tf.GradientTape() as g_tape:
            fake = self.generator(tf.random.stateless_normal(shape, seeds[3]), training=True)
            g_loss = self._g_loss(self.discriminator(self._augment(fake, seeds[4]), training=False))
            pitch_loss = _bernoulli_kl(pitch_target, tf.reduce_mean(fake, axis=[0, 2, 3]))
            time_loss = _bernoulli_kl(time_target, tf.reduce_mean(fake, axis=[0, 1, 3]))
            g_total = (
                g_loss
                + float(self.config["pitch_match_weight"]) * pitch_loss
                + float(self.config["time_match_weight"]) * time_loss
            )
        self.g_optimizer.apply_gradients(
            zip(g_tape.gradient(g_total, g_weights), g_weights, strict=True)
        )

        seen = tf.cast(self._step + 1, tf.float32) * tf.cast(batch, tf.float32)
        halflife = tf.minimum(
            float(self.config["ema_halflife_images"]), seen * float(self.config["ema_rampup"])
        )
        decay = tf.pow(0.5, tf.cast(batch, tf.float32) / tf.maximum(halflife, 1e-8))
        for ema, w in zip(self.generator_ema.weights, self.generator.weights, strict=True):
            ema.assign(decay * ema + (1.0 - decay) * w)
        self._step.assign_add(1)
        return {
            "d_loss": d_loss,
            "g_loss": g_loss,
            "d_acc_real": tf.reduce_mean(tf.cast(d_real > 0.0, tf.float32)),
            "d_acc_fake": tf.reduce_mean(tf.cast(d_fake <= 0.0, tf.float32)),
            "pitch_loss": pitch_loss,
            "time_loss": time_loss,
        }

    def _eval_step_impl(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"val_d_acc_real": tf.reduce_mean(tf.cast(self.discriminator(x) > 0.0, tf.float32))}

    def fit_epoch(self, batches: tf.data.Dataset) -> dict[str, float]:
        """One pass: d_loss (without R1), g_loss (adversarial part), d_acc_real, d_acc_fake
        (logit > 0 ⇔ p > 0.5, on the augmented inputs D trains on), pitch_loss, time_loss."""
        metrics = self._run_epoch(self._train_step, batches)
        self.epochs_done += 1
        return metrics

    def validate(self, batches: tf.data.Dataset) -> dict[str, float]:
        """``val_d_acc_real``: share of held-out real windows D calls real. A large gap below
        the training ``d_acc_real`` means D is memorising the training windows."""
        return self._run_epoch(self._eval_step, batches, allow_empty=True)

    def sample(self, n: int, seed: int) -> np.ndarray:
        """The EMA generator on z ~ N(0, I): per-cell probabilities (n, 96, 96)."""
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((n, int(self.config["latent_dim"]))).astype(np.float32)
        out = self._predict(self.generator_ema, z)[..., 0]
        return np.clip(out, 0.0, 1.0).astype(np.float32)
