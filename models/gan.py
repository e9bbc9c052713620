"""This project's GAN (``gan``): a latent-constraint GAN over the ``vae``'s code space.

Engel, Hoffman & Roberts 2017, "Latent Constraints: Learning to Generate Conditionally from
Unconditional Generative Models" (arXiv:1711.05772; the "realism" constraint of its reference
notebook, magenta/models/latent_constraints). Training has two phases:

1. **The frame VAE** (``models/vae.py``), trained as ``vae`` is, keeping its best epoch.
2. **A GAN in its 32-dimensional code space** (:meth:`LatentGAN.fit_prior`): the training
   windows are encoded once; a critic (an MLP) learns to tell codes of real windows, drawn from
   q(z|x), from the generator's; the generator (the "actor", an MLP) maps prior noise
   z ~ N(0, I) to z' = (1 − g)·z + g·Δz (gated residual) and learns to fool the critic, with a
   distance penalty log(1 + (z' − z)²)/σ̄² (σ̄: the encoder's mean standard deviation per
   dimension) that keeps z' near z, applied to prior and to real codes alike, so real codes
   stay where they are. Critic: logistic loss and a gradient penalty (λ 10) on points between
   real and generated codes; a tenth of its fake batches are raw prior draws; Adam with β₁ 0,
   β₂ 0.9, learning rate 3·10⁻⁴ (all as the paper's notebook). Smaller than the notebook's
   (2 × 256 units, not 4 × 2048, for 32 dimensions, not 1024), and the generator steps once
   per 5 critic steps (the notebook: 10), so that 3,000 critic steps take about a minute on
   a busy 2-core CPU. The generator's gates start nearly shut (bias −3), so an untrained
   generator is the ``vae``'s prior.

Sampling is the VAE's (``models/frame_sampler.py``, numpy): a piece walks along the great circle
between two prior draws, and every window's point passes through the generator before the
frame LSTM decodes it; so does the walk on from a prompt's last code, or between two pieces'
codes (``--interpolate``), whose real ends it leaves nearly unchanged.

Why: frame-level GANs of every variant tried here (the thesis DCGAN, a 2-D convolutional GAN,
a temporal-convolution GAN with binary outputs, R1, DiffAugment, EMA) were told from held-out
music every time (1-NN accuracy ≈ 1.0) and wrote about twice the notes per beat of the data.
Here the autoregressive decoder keeps voices and held notes, and the adversarial part only has
to learn where in 32 dimensions real music lies, which takes seconds on a CPU; the decoder is
never trained adversarially, so a GAN's mode collapse can cost variety but not voice leading.
The model has no likelihood of its own (its prior is implicit): it reports no ``heldout_nll``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from musicflow.core.errors import ModelError
from musicflow.models.frame_sampler import actor_names
from musicflow.models.vae import FrameVAE

_GATE_BIAS = -3.0  # sigmoid(−3) ≈ 0.05: the untrained generator nearly passes z through


class LatentGAN(FrameVAE):
    """The frame VAE, then a GAN over its codes (module docstring)."""

    name: ClassVar[str] = "gan"
    kind: ClassVar[str] = "gan"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        **FrameVAE.DEFAULTS,
        "actor_layers": [256, 256],
        "critic_layers": [256, 256],
        "prior_steps": 3000,  # critic steps of phase 2 (fewer when its budget ends first)
        "prior_epochs": 100,  # and at most this many passes over the codes (small datasets)
        "prior_budget_share": 0.15,  # of a time budget, kept for phase 2
        "prior_batch_size": 128,
        "critic_steps": 5,  # critic steps per generator step
        "prior_learning_rate": 3e-4,
        "gradient_penalty": 10.0,
        "distance_weight": 0.1,
        "prior_fake_share": 0.1,  # critic batches whose fakes are raw prior draws
    }
    #: No likelihood: the prior the samples come from is the generator's, not N(0, I).
    heldout_nll = None

    def _build(self) -> None:
        c = self.config
        for key in ("actor_layers", "critic_layers"):
            value = c[key]
            if not isinstance(value, list | tuple) or not all(int(w) > 0 for w in value):
                raise ModelError(f"gan: {key} must be a list of positive widths, got {value!r}")
        if not 0.0 <= float(c["prior_budget_share"]) < 1.0:
            raise ModelError("gan: prior_budget_share must be in [0, 1)")
        if int(c["critic_steps"]) < 1 or int(c["prior_batch_size"]) < 2:
            raise ModelError("gan: critic_steps must be >= 1 and prior_batch_size >= 2")
        super()._build()
        d = self._latent_dim()
        z = keras.Input((d,), name="z")
        y = z
        for i, width in enumerate(c["actor_layers"]):
            y = layers.Dense(int(width), activation="relu", name=f"actor{i}", dtype="float32")(y)
        gate_start = np.concatenate([np.zeros(d), np.full(d, _GATE_BIAS)])
        out = layers.Dense(
            2 * d,
            name="actor_out",
            bias_initializer=keras.initializers.Constant(gate_start),
            dtype="float32",
        )(y)
        moved = layers.Lambda(
            lambda t: (
                (1.0 - tf.sigmoid(t[1][:, d:])) * t[0] + tf.sigmoid(t[1][:, d:]) * t[1][:, :d]
            ),
            name="gated",
            dtype="float32",
        )([z, out])
        self.actor = keras.Model(z, moved, name="actor")
        code = keras.Input((d,), name="code")
        y = code
        for i, width in enumerate(c["critic_layers"]):
            y = layers.Dense(int(width), activation="relu", name=f"critic{i}", dtype="float32")(y)
        self.critic = keras.Model(code, layers.Dense(1, dtype="float32")(y), name="critic")
        # float32 under any policy, without loss scaling: the networks are tiny, and float16
        # with a strategy's loss scaling turned the gradient penalty's losses to NaN
        lr = float(c["prior_learning_rate"])
        self.actor_optimizer = keras.optimizers.Adam(lr, beta_1=0.0, beta_2=0.9)
        self.actor_optimizer.build(self.actor.trainable_weights)
        self.critic_optimizer = keras.optimizers.Adam(lr, beta_1=0.0, beta_2=0.9)
        self.critic_optimizer.build(self.critic.trainable_weights)
        # phase 2's own step count (seeds) and the encoder's mean σ² per dimension (its
        # distance penalty's scale), set when it starts
        self._prior_step = tf.Variable(
            0,
            dtype=tf.int64,
            trainable=False,
            name="prior_step",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )
        self._spread = tf.Variable(tf.ones((1, d)), trainable=False, name="spread")
        self._prior_round = tf.function(
            lambda codes: self._on_replicas(self._prior_round_impl, codes), reduce_retracing=True
        )
        self._code_step = tf.function(self._code_step_impl, reduce_retracing=True)

    def networks(self) -> dict[str, keras.Model]:
        return {**super().networks(), "actor": self.actor, "critic": self.critic}

    # --- phase 2: the GAN over codes ------------------------------------------------------
    def _code_step_impl(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """A batch of rolls (B, 96, k·96, 1) → the codes' means and standard deviations
        (B·k, d), key-normalised as in training (tonics not counted again)."""
        x, _ = self._prepare(x, training=False)
        onset, hold = self._states(x)
        mu, logvar = self.encoder(self._window_bits(onset, hold), training=False)
        return mu, tf.exp(0.5 * logvar)

    def _codes(self, batches: Iterable) -> tuple[np.ndarray, np.ndarray]:
        mus, sigmas = [], []
        for batch in batches:
            x = batch[0] if isinstance(batch, tuple | list) else batch
            mu, sigma = self._code_step(tf.convert_to_tensor(x, tf.float32))
            mus.append(np.asarray(mu))
            sigmas.append(np.asarray(sigma))
        d = self._latent_dim()
        if not mus:
            return np.zeros((0, d), np.float32), np.zeros((0, d), np.float32)
        return np.concatenate(mus), np.concatenate(sigmas)

    def _prior_round_impl(self, codes: tf.Tensor) -> dict[str, tf.Tensor]:
        """One round on this replica's codes (n, 2d: means | standard deviations):
        ``critic_steps`` critic steps (a graph loop), then one generator step,
        each on a batch drawn from the codes. One compiled call per round: a step is too
        small to pay Python's overhead each."""
        k = int(self.config["critic_steps"])
        batch = max(int(self.config["prior_batch_size"]) // self.replicas, 1)
        base = self._step_seed(self._prior_step)
        n = tf.shape(codes)[0]

        def draw(i: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            seeds = tf.random.experimental.stateless_split(
                tf.random.experimental.stateless_fold_in(base, i), 2
            )
            pick = tf.random.stateless_uniform((batch,), seeds[0], 0, n, tf.int32)
            return tf.gather(codes, pick), seeds[1]

        sums = {key: tf.constant(0.0) for key in ("d_loss", "d_acc_real", "d_acc_fake")}
        # a graph loop traces one critic step, not k; a strategy's updates (merge_call) cannot
        # run inside one, so they are unrolled there
        for i in range(k) if self._strategy is not None else tf.range(k):
            out = self._critic_update(*draw(i))
            sums = {key: sums[key] + out[key] / k for key in sums}
        return sums | self._actor_update(*draw(tf.constant(k)))

    def _real_and_prior(self, x: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """A draw from q(z|x) for each row of x (means | standard deviations), and as many
        prior draws."""
        d = self._latent_dim()
        mu, sigma = x[:, :d], x[:, d:]
        seeds = tf.random.experimental.stateless_split(seed, 2)
        real = mu + sigma * tf.random.stateless_normal(tf.shape(mu), seeds[0])
        return real, tf.random.stateless_normal(tf.shape(mu), seeds[1])

    def _critic_update(self, x: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        c = self.config
        seeds = tf.random.experimental.stateless_split(seed, 3)
        real, prior = self._real_and_prior(x, seeds[0])
        raw = tf.random.stateless_uniform((), seeds[1]) < float(c["prior_fake_share"])
        fake = tf.where(raw, prior, self.actor(prior, training=False))
        alpha = tf.random.stateless_uniform((tf.shape(real)[0], 1), seeds[2])
        between = real + alpha * (fake - real)
        weights = self.critic.trainable_weights
        with tf.GradientTape() as tape:
            with tf.GradientTape() as inner:
                inner.watch(between)
                d_between = tf.reduce_sum(self.critic(between, training=True))
            grad = inner.gradient(d_between, between)
            slopes = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=1) + 1e-10)
            d_real = self.critic(real, training=True)
            d_fake = self.critic(fake, training=True)
            d_loss = tf.reduce_mean(tf.nn.softplus(-d_real)) + tf.reduce_mean(
                tf.nn.softplus(d_fake)
            )
            penalty = tf.reduce_mean(tf.square(slopes - 1.0))
            total = d_loss + float(c["gradient_penalty"]) * penalty
            scaled = self._gradient_loss(self.critic_optimizer, total)
        grads = tape.gradient(scaled, weights)
        self.critic_optimizer.apply_gradients(zip(grads, weights, strict=True))
        return {
            "d_loss": d_loss,
            "d_acc_real": tf.reduce_mean(tf.cast(d_real > 0.0, tf.float32)),
            "d_acc_fake": tf.reduce_mean(tf.cast(d_fake <= 0.0, tf.float32)),
        }

    def _actor_update(self, x: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        real, prior = self._real_and_prior(x, seed)
        weight = float(self.config["distance_weight"])
        weights = self.actor.trainable_weights
        with tf.GradientTape() as tape:
            losses = []
            for z in (prior, real):  # real codes too: the generator leaves them in place
                moved = self.actor(z, training=True)
                fool = tf.reduce_mean(tf.nn.softplus(-self.critic(moved, training=False)))
                distance = tf.reduce_mean(tf.math.log1p(tf.square(moved - z)) / self._spread)
                losses.append((fool, distance))
            total = tf.add_n([fool + weight * distance for fool, distance in losses])
            scaled = self._gradient_loss(self.actor_optimizer, total)
        grads = tape.gradient(scaled, weights)
        self.actor_optimizer.apply_gradients(zip(grads, weights, strict=True))
        return {"g_loss": losses[0][0], "z_distance": losses[0][1]}

    def fit_prior(
        self, batches: Iterable, val_batches: Iterable = (), seconds: float | None = None
    ) -> dict[str, float]:
        """Phase 2: encode the training windows once, then train critic and generator for
        ``prior_steps`` critic steps, or ``prior_epochs`` passes over the codes if fewer (in
        whole rounds of ``critic_steps``), or until ``seconds`` pass. Returns the means over
        the last tenth of the rounds: d_loss, g_loss, d_acc_real, d_acc_fake, z_distance (the
        penalty before its weight), ``val_d_acc_real`` (share of validation codes, one draw
        each, the critic calls real) when there are validation windows, and
        ``prior_steps_done``."""
        started = time.monotonic()
        mu, sigma = self._codes(batches)
        if not len(mu):
            raise ModelError("gan: no training windows to encode for the latent GAN")
        c = self.config
        self._spread.assign(np.square(sigma.mean(axis=0, keepdims=True)) + 1e-6)
        codes = tf.constant(np.concatenate([mu, sigma], axis=1))
        k = int(c["critic_steps"])
        passes = math.ceil(float(c["prior_epochs"]) * len(mu) / int(c["prior_batch_size"]))
        history: list[dict[str, float]] = []
        for step in range(0, min(int(c["prior_steps"]), passes), k):
            if step and seconds is not None and time.monotonic() - started >= seconds:
                break
            history.append({key: float(v) for key, v in self._prior_round(codes).items()})
            self._prior_step.assign_add(1)
        tail = history[-max(len(history) // 10, 1) :]
        metrics = {key: float(np.mean([h[key] for h in tail])) for key in tail[-1]}
        val_mu, val_sigma = self._codes(val_batches)
        if len(val_mu):
            draw = val_mu + val_sigma * np.random.default_rng([int(c["seed"]), 3]).standard_normal(
                val_mu.shape
            )
            d_val = self._predict(self.critic, draw.astype(np.float32))
            metrics["val_d_acc_real"] = float(np.mean(d_val > 0.0))
        metrics["prior_steps_done"] = float(len(history) * k)
        bad = [k for k, v in metrics.items() if not math.isfinite(v)]
        if bad:
            raise ModelError(f"training diverged: non-finite {', '.join(bad)}")
        return metrics

    # --- sampling (numpy: models/frame_sampler.py) -----------------------------------------
    def sampler_arrays(self) -> dict[str, np.ndarray]:
        """The VAE's arrays and the generator's (``frame_sampler.actor_names``)."""
        arrays = super().sampler_arrays()
        dense = [x for x in self.actor.layers if isinstance(x, layers.Dense)]
        names = actor_names(self.config)
        for layer, i in zip(dense, range(0, len(names), 2), strict=True):
            arrays[names[i]], arrays[names[i + 1]] = (np.asarray(w) for w in layer.weights)
        return arrays
