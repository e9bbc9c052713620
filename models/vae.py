"""This project's VAE (``vae``): a window-level latent code over the ``rnn``'s frame decoder.

A MusicVAE-style model (Roberts et al. 2018) at the scale of two bars: a convolutional encoder
reads a window's frames (time as the sequence axis, the 96 pitches' onset and hold bits as
channels) into a latent code z; the decoder is the frame LSTM of ``models/sequence.py``
conditioned on z in every frame and in its initial state, with the same count-then-set output
and key normalisation as ``rnn``. Why each choice:

- **An autoregressive decoder**, not a deconvolution of z into cell probabilities: decoding every
  cell independently from z gives blurry, cluster-shaped samples (the thesis VAE's noise, and
  this project's earlier convolutional VAE); the frame decoder keeps voices and held notes.
- **KL weight β = 0.2 with free bits** (0.5 nats per dimension; Kingma et al. 2016), reached by
  a linear warm-up (Bowman et al. 2016): MusicVAE's remedy for an autoregressive decoder that
  would otherwise ignore z.
- **Windows in pairs**: each training run of windows is encoded window by window, the decoder
  sees the z of the window each frame is in, and reads the window before it; a piece is a walk
  along the great circle between two codes (slerp, as MusicVAE interpolates), each window
  decoded after the one before, so consecutive windows are related and join without a seam.
- ``heldout_nll`` is the ELBO bound: reconstruction NLL + KL, nats per frame.
"""

from __future__ import annotations

from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from musicflow.core.errors import ModelError
from musicflow.models.base import kl_nats
from musicflow.models.frame_sampler import slerp
from musicflow.models.sequence import FrameModelBase, P, frame_bits


class FrameVAE(FrameModelBase):
    """Convolutional encoder over frames → z; the frame LSTM decoder conditioned on z."""

    name: ClassVar[str] = "vae"
    kind: ClassVar[str] = "vae"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        **FrameModelBase.BASE_DEFAULTS,
        "latent_dim": 32,
        "enc_filters": [256, 256, 256],
        "kl_weight": 0.2,
        "free_bits": 0.5,
        "kl_warmup_steps": 500,
        # full rank with tracks: at 5 minutes on four voices the ranks gave a better ELBO but
        # pieces with noise windows (each voice 51-65 % inside its range against 82-87 %;
        # docs/models.md, "Tracks")
        "input_rank": 0,
        "mix_rank": 0,
    }

    def _latent_dim(self) -> int:
        return int(self.config["latent_dim"])

    def _build(self) -> None:
        c = self.config
        if not isinstance(c["enc_filters"], list | tuple) or not c["enc_filters"]:
            raise ModelError(f"{self.name}: enc_filters must be a non-empty list of widths")
        self._build_decoder()
        window = keras.Input((self.frames, 2 * P * self.n_tracks), name="frames")
        y = window
        for filters in c["enc_filters"]:  # strided over time: 32 → 16 → 8 → 4 frames
            y = layers.Conv1D(int(filters), 4, strides=2, padding="same")(y)
            y = layers.LeakyReLU(negative_slope=0.2)(y)
        y = layers.Flatten()(y)
        # float32 under a mixed policy: the KL and the code's noise need float32's range
        mu = layers.Dense(self._latent_dim(), name="z_mean", dtype="float32")(y)
        logvar = layers.Dense(self._latent_dim(), name="z_log_var", dtype="float32")(y)
        self.encoder = keras.Model(window, [mu, logvar], name="encoder")
        self._weights = (
            self.encoder.trainable_weights
            + self.decoder.trainable_weights
            + self.count_link.trainable_weights
        )
        self.optimizer = self._optimizer_for(self._optimizer(), self._weights)
        self._train_step = self._train_function(self._train_step_impl)
        self._eval_step = tf.function(self._eval_step_impl, reduce_retracing=True)

    def networks(self):
        return {
            "encoder": self.encoder,
            "decoder": self.decoder,
            "count_link": self.count_link,
            "key_prior": self.key_model,
        }

    def _beta(self) -> tf.Tensor:
        warm = max(float(self.config["kl_warmup_steps"]), 1.0)
        frac = tf.minimum(1.0, tf.cast(self._step + 1, tf.float32) / warm)
        return float(self.config["kl_weight"]) * frac

    def _losses(
        self, x: tf.Tensor, seed: tf.Tensor, beta: tf.Tensor | float, training: bool
    ) -> dict[str, tf.Tensor]:
        x, tonic = self._prepare(x, training=training)
        onset, hold = self._states(x)
        b, n_frames = tf.shape(onset)[0], tf.shape(onset)[1]
        n_windows = n_frames // self.frames
        d = self._latent_dim()
        windows = self._window_bits(onset, hold)
        mu, logvar = self.encoder(windows, training=training)
        z = mu + tf.exp(0.5 * logvar) * tf.random.stateless_normal(tf.shape(mu), seed)
        cond = tf.repeat(tf.reshape(z, (b, n_windows, d)), self.frames, axis=1)
        key = self._key_frames(tonic, n_frames)
        if key is not None:
            cond = tf.concat([cond, key], axis=2)
        heads = self._heads(onset, hold, cond, training)
        kl_dim = 0.5 * (tf.square(mu) + tf.exp(logvar) - 1.0 - logvar)
        kl_free = tf.reduce_sum(
            tf.maximum(tf.reduce_mean(kl_dim, axis=0), float(self.config["free_bits"]))
        )
        kl = tf.reduce_sum(tf.reshape(kl_nats(mu, logvar), (b, n_windows)), axis=1)
        per_frame = tf.cast(n_frames, tf.float32)
        out = {"kl_loss": tf.reduce_mean(kl) / tf.cast(n_windows, tf.float32)}
        if training:
            recon = tf.reduce_mean(self._nll(onset, hold, heads, exact=False))
            windows_f = tf.cast(n_windows, tf.float32)
            out["loss"] = (recon + beta * kl_free * windows_f) / per_frame
            out["recon_loss"] = recon / per_frame
        else:
            recon = self._nll(onset, hold, heads, exact=True)
            elbo = recon + kl + self._tonic_nll(tonic)
            out["val_nll"] = tf.reduce_mean(elbo) / per_frame
            out["val_recon_loss"] = tf.reduce_mean(recon) / per_frame
        return out

    def _window_bits(self, onset: tf.Tensor, hold: tf.Tensor) -> tf.Tensor:
        """The encoder's input: each window's frames (onset, hold (B, F, K, 96)) as
        (B · windows, frames, 2 · 96 · K), every track's bits side by side."""
        return tf.reshape(frame_bits(onset, hold), (-1, self.frames, 2 * P * self.n_tracks))

    def _train_step_impl(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        weights = self._weights
        with tf.GradientTape() as tape:
            out = self._losses(x, self._step_seed(), self._beta(), True)
            scaled = self._gradient_loss(self.optimizer, out["loss"])
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, weights), weights, strict=True))
        return out

    def _eval_step_impl(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        seed = tf.constant([int(self.config["seed"]), -1], tf.int64)
        out = self._losses(x, seed, float(self.config["kl_weight"]), False)
        return {
            "val_nll": out["val_nll"],
            "val_recon_loss": out["val_recon_loss"],
            "val_kl_loss": out["kl_loss"],
        }

    def validate(self, batches: tf.data.Dataset) -> dict[str, float]:
        """``val_nll``: the ELBO bound on the validation windows (nats per frame; fixed noise),
        ``val_recon_loss`` and ``val_kl_loss`` (KL in nats per window)."""
        return self._run_epoch(self._eval_step, batches, allow_empty=True)

    def sampler_arrays(self) -> dict[str, np.ndarray]:
        """The decoder's arrays and the encoder's (``frame_sampler.encoder_names``): the
        numpy sampler encodes prompts and the ends of an interpolation itself."""
        arrays = super().sampler_arrays()
        convs = [x for x in self.encoder.layers if isinstance(x, layers.Conv1D)]
        for i, layer in enumerate([*convs, self.encoder.get_layer("z_mean")]):
            name = "z_mean" if i == len(convs) else f"enc{i}"
            arrays[f"{name}.kernel"], arrays[f"{name}.bias"] = (
                np.asarray(w) for w in layer.weights
            )
        return arrays

    def encode(self, windows: np.ndarray) -> np.ndarray:
        """Latent means (n, latent_dim) of windows (n, 96, 96) (with tracks (n, K, 96, 96)),
        key-normalised as in training."""
        x = tf.constant(self._as_input(windows))
        x, _ = self._prepare(x, training=False)
        onset, hold = self._states(x)
        mu, _ = self.encoder(self._window_bits(onset, hold), training=False)
        return np.asarray(mu, np.float32)

    def interpolate(self, a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
        """``steps`` windows decoded along the great circle between the codes of windows a and
        b, each after the one before (one sample; seed 0), float32 (steps, 96, 96)."""
        if steps < 2:
            raise ModelError("interpolate needs steps >= 2")
        za, zb = self.encode(
            np.stack([np.asarray(a).reshape(96, 96), np.asarray(b).reshape(96, 96)])
        )
        sampler = self.sampler()
        latents = sampler.constrain(slerp(za[None], zb[None], np.linspace(0.0, 1.0, steps)))
        return sampler._pieces(1, steps, 0, latents)[0]
