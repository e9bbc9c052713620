"""This project's GAN (``gan``): 1-D temporal convolutions over frames, pitches as channels.

The generator writes a window as 32 sixteenth-note frames (``musicflow.core.frames``), each frame's
96 pitches at once as channels (an active and an onset bit per pitch); the discriminator reads
frames the same way. Why each choice (the thesis DCGAN and this project's earlier 2-D
convolutional GAN treated a window as an image: small kernels over pitch × time make
neighbouring rows fire together, so they paint clusters of neighbouring pitches; measured 1-NN
accuracy ≈ 1.0 on held-out music):

- **Pitches as channels, time as the axis** (the hypothesis of MuseGAN's temporal model, Dong et
  al. 2018, without its bar hierarchy at this window size): every layer sees all 96 pitches, so
  chords and voice leading are one linear map, not a stack of local kernels.
- **Binary outputs with a straight-through gradient** (BinaryMuseGAN, Dong & Yang 2018):
  ``binary="threshold"`` (the default) rounds, ``"stochastic"`` samples each bit from its
  probability; both pass the probability's gradient. The discriminator then sees 0/1 frames
  from both sides, as real rolls are, instead of telling soft fakes from hard reals. With
  ``match_binary`` the density matching below sees the rounded bits too. On the chorales at 6
  CPU-minutes, threshold + match_binary gave 7.0 notes per beat against 11.4 stochastic (real
  4.3) and the closer pitch-class histogram; 1-NN accuracy stayed 1.0 with every mode.
- **Key normalisation and the tonic as a condition** (``musicflow.core.frames``, as the sequence
  models): windows transposed to C, the tonic one-hot given to both networks, samples moved
  back to a tonic drawn from the training counts.
- **Chroma for the discriminator**: the frame's pitch classes (active and onset bits summed over
  octaves) as extra channels, so harmony does not have to be learnt in every octave.
- The small-data GAN recipe kept from the earlier model: non-saturating logistic loss with an
  R1 penalty on real frames (Mescheder et al. 2018), DiffAugment-style translations of both
  real and generated frames before the discriminator (beat shifts, small transpositions; Zhao
  et al. 2020), minibatch standard deviation (Karras et al. 2018), PixelNorm in the generator
  and an exponential moving average of its weights for sampling (Karras et al. 2018, 2020),
  and moment matching of the per-pitch density (Salimans et al. 2016), which pulls the
  generator out of the all-silent start where adversarial gradients vanish.
"""

from __future__ import annotations

from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from musicflow.core import frames
from musicflow.core.errors import ModelError
from musicflow.core.roll import COLS, DEFAULT_PITCH_LOW, ROWS
from musicflow.models.augment import translate
from musicflow.models.base import GanMixin, RollModelBase
from musicflow.models.layers import MinibatchStd, PixelNorm
from musicflow.models.sequence import KeyPrior, P, roll_states_tf, tonics_tf


def _shift(x: tf.Tensor, shift: tf.Tensor, axis: int) -> tf.Tensor:
    """Move each example of x (B, F, 96, C) by ``shift`` along ``axis`` (1 frames, 2 pitches),
    silence moved in."""
    n = tf.shape(x)[axis]
    index = tf.range(n)[None, :] - shift[:, None]
    index = tf.where((index >= 0) & (index < n), index, n)
    pad = [[0, 0]] * 4
    pad[axis] = [0, 1]
    return tf.gather(tf.pad(x, pad), index, axis=axis, batch_dims=1)


def _bernoulli_kl(target: tf.Tensor, mean: tf.Tensor) -> tf.Tensor:
    """Σ KL(Bernoulli(target) ‖ Bernoulli(mean)): 0 when the densities match."""
    t = tf.clip_by_value(target, 1e-6, 1.0 - 1e-6)
    m = tf.clip_by_value(mean, 1e-6, 1.0 - 1e-6)
    return tf.reduce_sum(t * tf.math.log(t / m) + (1.0 - t) * tf.math.log((1.0 - t) / (1.0 - m)))


class FrameGAN(GanMixin, RollModelBase):
    """Temporal-convolution GAN over onset/active frames (see the module docstring)."""

    name: ClassVar[str] = "gan"
    kind: ClassVar[str] = "gan"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "frame_steps": frames.DEFAULT_FRAME_STEPS,
        "latent_dim": 128,
        "g_filters": [256, 256, 256, 256],
        "d_filters": [256, 256, 256, 256],
        "binary": "threshold",
        "r1_gamma": 1.0,
        "pitch_match_weight": 1.0,
        "match_binary": True,
        "g_learning_rate": 2e-4,
        "d_learning_rate": 2e-4,
        "beta_1": 0.5,
        "beta_2": 0.99,
        "ema_halflife_images": 10000,
        "ema_rampup": 0.05,
        "diffaug_max_beats": 1,
        "diffaug_max_transpose": 2,
        "key_normalize": True,
        "pitch_low": DEFAULT_PITCH_LOW,
        "density_prior": 0.04,
        "batch_size": 64,
        "epochs": 300,
    }

    def _generator(self) -> keras.Model:
        c = self.config
        first, *rest = (int(f) for f in c["g_filters"])
        start = self.frames // 2 ** len(rest)
        if start < 1 or start * 2 ** len(rest) != self.frames:
            raise ModelError(f"gan: {len(rest)} upsamplings do not reach {self.frames} frames")
        z = keras.Input((int(c["latent_dim"]) + 12,), name="z_and_tonic")
        x = PixelNorm()(z)
        x = layers.Dense(start * first)(x)
        x = layers.Reshape((start, first))(x)
        x = layers.LeakyReLU(negative_slope=0.2)(x)
        x = PixelNorm()(x)
        for filters in rest:  # frames double each stage: 4 → 8 → 16 → 32
            x = layers.UpSampling1D(2)(x)
            x = layers.Conv1D(filters, 3, padding="same")(x)
            x = layers.LeakyReLU(negative_slope=0.2)(x)
            x = PixelNorm()(x)
        prior = float(c["density_prior"])
        bias = keras.initializers.Constant(float(np.log(prior / (1.0 - prior))))
        # active, onset logits; float32 under a mixed policy, as the losses on them
        x = layers.Conv1D(2 * P, 1, bias_initializer=bias, dtype="float32")(x)
        x = layers.Reshape((self.frames, P, 2), dtype="float32")(x)
        probability = layers.Activation("sigmoid", name="probability", dtype="float32")(x)
        return keras.Model(z, probability, name="generator")

    def _build(self) -> None:
        c = self.config
        g = int(c["frame_steps"])
        if g < 1 or COLS % g:
            raise ModelError(f"gan: frame_steps must divide {COLS}, got {g}")
        if c["binary"] not in ("stochastic", "threshold"):
            raise ModelError(
                f"gan: binary must be 'stochastic' or 'threshold', got {c['binary']!r}"
            )
        self.frames = COLS // g
        self.generator = self._generator()
        self.generator_ema = self._generator()
        for ema, w in zip(self.generator_ema.weights, self.generator.weights, strict=True):
            ema.assign(w)
        bits = keras.Input((self.frames, P, 2), name="frames")
        tonic = keras.Input((12,), name="tonic")
        y = layers.Reshape((self.frames, 2 * P))(bits)
        fold = np.eye(12, dtype=np.float32)[(int(c["pitch_low"]) + np.arange(P)) % 12]
        chroma = layers.Reshape((self.frames, 24))(
            layers.Lambda(
                lambda t: tf.einsum("bfpk,pc->bfkc", t, tf.cast(fold, t.dtype)), name="chroma"
            )(bits)
        )
        key = layers.Lambda(
            lambda t: tf.repeat(t[0][:, None, :], tf.shape(t[1])[1], axis=1), name="key"
        )([tonic, y])
        y = layers.Concatenate()([y, chroma, key])
        widths = [int(f) for f in c["d_filters"]]
        y = layers.LeakyReLU(negative_slope=0.2)(layers.Conv1D(widths[0], 3, padding="same")(y))
        for filters in widths[1:]:  # 32 → 16 → 8 → 4 frames
            y = layers.Conv1D(filters, 4, strides=2, padding="same")(y)
            y = layers.LeakyReLU(negative_slope=0.2)(y)
        y = MinibatchStd()(y)
        y = layers.Dense(1, dtype="float32")(layers.Flatten()(y))
        self.discriminator = keras.Model([bits, tonic], y, name="discriminator")
        key_in = keras.Input((12,), name="tonic_count")
        self.key_prior = KeyPrior(name="key_prior")
        self.key_model = keras.Model(key_in, self.key_prior(key_in), name="key_prior")
        b1, b2 = float(c["beta_1"]), float(c["beta_2"])
        self.g_optimizer = self._optimizer_for(
            keras.optimizers.Adam(float(c["g_learning_rate"]), b1, b2),
            self.generator.trainable_weights,
        )
        self.d_optimizer = self._optimizer_for(
            keras.optimizers.Adam(float(c["d_learning_rate"]), b1, b2),
            self.discriminator.trainable_weights,
        )
        self._train_step = self._train_function(self._train_step_impl)
        self._eval_step = tf.function(self._eval_step_impl, reduce_retracing=True)

    def networks(self) -> dict[str, keras.Model]:
        return {
            "generator": self.generator,
            "generator_ema": self.generator_ema,
            "discriminator": self.discriminator,
            "key_prior": self.key_model,
        }

    # --- training -------------------------------------------------------------------------
    def _real(self, x: tf.Tensor, training: bool) -> tuple[tf.Tensor, tf.Tensor]:
        """Real windows → key-normalised (active, onset) frames (B, F, 96, 2) and tonic one-hot;
        training counts the tonics."""
        tonic = tonics_tf(x, int(self.config["pitch_low"]))
        if self.config["key_normalize"]:
            if training:
                self.key_prior.counts.assign_add(tf.reduce_sum(tf.one_hot(tonic, 12), axis=0))
            shift = tf.math.floormod(6 - tonic, 12) - 6
            x = translate(x, tf.zeros_like(shift), shift, circular_time=False)
        else:
            tonic = tf.zeros_like(tonic)
        onset, hold = roll_states_tf(x, int(self.config["frame_steps"]))
        return tf.stack([onset + hold, onset], axis=-1), tf.one_hot(tonic, 12)

    def _binary(self, probs: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """Generator probabilities (B, F, 96, 2) → 0/1 (active, onset ∧ active) frames whose
        gradient is the probabilities' (straight-through)."""
        mode = self.config["binary"]
        if mode == "stochastic":
            hard = tf.cast(tf.random.stateless_uniform(tf.shape(probs), seed) < probs, tf.float32)
        else:
            hard = tf.cast(probs > 0.5, tf.float32)
        bits = hard + probs - tf.stop_gradient(probs)
        return tf.stack([bits[..., 0], bits[..., 1] * bits[..., 0]], axis=-1)

    def _augment(self, x: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        c = self.config
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
        size = tf.shape(x)[0:1]
        beats, semis = int(c["diffaug_max_beats"]), int(c["diffaug_max_transpose"])
        per_beat = self.frames // 8
        if semis > 0:
            x = _shift(
                x, tf.random.stateless_uniform(size, seeds[0], -semis, semis + 1, tf.int32), 2
            )
        if beats > 0:
            steps = tf.random.stateless_uniform(size, seeds[1], -beats, beats + 1, tf.int32)
            x = _shift(x, steps * per_beat, 1)
        return x

    def _latent(self, batch: tf.Tensor, tonic: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        shape = tf.stack([batch, int(self.config["latent_dim"])])
        return tf.concat([tf.random.stateless_normal(shape, seed), tonic], axis=1)

    def _train_step_impl(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        c = self.config
        seeds = tf.random.experimental.stateless_split(self._step_seed(), 7)
        real, tonic = self._real(x, training=True)
        batch = tf.shape(real)[0]
        fake = self._binary(
            self.generator(self._latent(batch, tonic, seeds[0]), training=True), seeds[1]
        )
        real_in = self._augment(real, seeds[2])
        fake_in = self._augment(fake, seeds[3])
        d_weights = self.discriminator.trainable_weights
        gamma = float(c["r1_gamma"])
        with tf.GradientTape() as d_tape:
            with tf.GradientTape() as r1_tape:
                r1_tape.watch(real_in)
                d_real = self.discriminator([real_in, tonic], training=True)
                d_real_sum = tf.reduce_sum(d_real)
            d_fake = self.discriminator([fake_in, tonic], training=True)
            d_loss = tf.reduce_mean(tf.nn.softplus(-d_real)) + tf.reduce_mean(
                tf.nn.softplus(d_fake)
            )
            d_total = d_loss
            if gamma > 0:
                grad = r1_tape.gradient(d_real_sum, real_in)
                d_total += 0.5 * gamma * tf.reduce_mean(tf.reduce_sum(tf.square(grad), [1, 2, 3]))
            d_scaled = self._gradient_loss(self.d_optimizer, d_total)
        self.d_optimizer.apply_gradients(
            zip(d_tape.gradient(d_scaled, d_weights), d_weights, strict=True)
        )

        g_weights = self.generator.trainable_weights
        target = tf.reduce_mean(real[..., 0], axis=[0, 1])  # per-pitch active density
        with tf.GradientTape() as g_tape:
            probs = self.generator(self._latent(batch, tonic, seeds[4]), training=True)
            fake = self._binary(probs, seeds[5])
            d_out = self.discriminator([self._augment(fake, seeds[6]), tonic], training=False)
            g_loss = tf.reduce_mean(tf.nn.softplus(-d_out))
            density = fake[..., 0] if c["match_binary"] else probs[..., 0]
            pitch_loss = _bernoulli_kl(target, tf.reduce_mean(density, axis=[0, 1]))
            g_total = g_loss + float(c["pitch_match_weight"]) * pitch_loss
            g_scaled = self._gradient_loss(self.g_optimizer, g_total)
        self.g_optimizer.apply_gradients(
            zip(g_tape.gradient(g_scaled, g_weights), g_weights, strict=True)
        )
        return {
            "d_loss": d_loss,
            "g_loss": g_loss,
            "d_acc_real": tf.reduce_mean(tf.cast(d_real > 0.0, tf.float32)),
            "d_acc_fake": tf.reduce_mean(tf.cast(d_fake <= 0.0, tf.float32)),
            "pitch_loss": pitch_loss,
        }

    def _after_train_step(self, batch: tf.Tensor) -> None:
        """The generator's exponential moving average, once per step (all replicas have the
        same weights), then the step count."""
        c = self.config
        seen = tf.cast(self._step + 1, tf.float32) * tf.cast(batch, tf.float32)
        halflife = tf.minimum(float(c["ema_halflife_images"]), seen * float(c["ema_rampup"]))
        decay = tf.pow(0.5, tf.cast(batch, tf.float32) / tf.maximum(halflife, 1e-8))
        for ema, w in zip(self.generator_ema.weights, self.generator.weights, strict=True):
            ema.assign(decay * ema + (1.0 - decay) * w)
        super()._after_train_step(batch)

    def fit_epoch(self, batches: tf.data.Dataset) -> dict[str, float]:
        """One pass: d_loss (without R1), g_loss (adversarial part), d_acc_real, d_acc_fake
        (on the augmented frames D trains on), pitch_loss (density matching)."""
        metrics = self._run_epoch(self._train_step, batches, replicated=True)
        self.epochs_done += 1
        return metrics

    def validate(self, batches: tf.data.Dataset) -> dict[str, float]:
        """``val_d_acc_real``: share of held-out real windows D calls real (a large gap below
        the training ``d_acc_real`` means D memorises the training windows)."""
        return self._run_epoch(self._eval_step, batches, allow_empty=True)

    def _eval_step_impl(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        real, tonic = self._real(x, training=False)
        d = self.discriminator([real, tonic], training=False)
        return {"val_d_acc_real": tf.reduce_mean(tf.cast(d > 0.0, tf.float32))}

    # --- sampling -------------------------------------------------------------------------
    def sample(self, n: int, seed: int) -> np.ndarray:
        """n windows of the EMA generator, binarised as in training (a seeded draw per bit
        when ``binary`` is "stochastic") and moved to a tonic drawn from the training
        counts: float32 (n, 96, 96) of 0/1."""
        rng = np.random.default_rng([int(seed), 1])
        latent = rng.standard_normal((n, int(self.config["latent_dim"]))).astype(np.float32)
        tonic = np.zeros(n, int)
        if self.config["key_normalize"]:
            counts = np.asarray(self.key_prior.counts, np.float64) + 1.0
            tonic = rng.choice(12, size=n, p=counts / counts.sum())
        z = np.concatenate([latent, np.eye(12, dtype=np.float32)[tonic]], axis=1)
        probs = self._predict(self.generator_ema, z)
        if self.config["binary"] == "stochastic":
            bits = rng.random(probs.shape) < probs
        else:
            bits = probs > 0.5
        active = bits[..., 0]
        before = np.zeros_like(active)
        before[:, 1:] = active[:, :-1]
        onset = active & (bits[..., 1] | ~before)
        states = np.where(onset, frames.ONSET, np.where(active, frames.HOLD, frames.OFF))
        roll = frames.states_to_roll(states.astype(np.int8), int(self.config["frame_steps"]))
        if self.config["key_normalize"]:
            roll = frames.transpose_windows(roll, -frames.key_shifts(tonic))
        return roll.astype(np.float32).reshape(n, ROWS, COLS)
