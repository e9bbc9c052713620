"""This project's autoregressive model (``rnn``): an LSTM over sixteenth-note frames.

The likelihood baseline of the seeds' survey (an RNN over note sequences; Boulanger-Lewandowski
et al. 2012 for polyphonic frames), with this project's frame representation, voice-count head,
key normalisation and window-pair training (``models/sequence.py`` explains each). It is the
default generator: on held-out Bach chorales it is the model that comes closest to real music
at every budget measured (docs/models.md).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import tensorflow as tf

from musicflow.models.sequence import FrameModelBase


class FrameRNN(FrameModelBase):
    """LSTM over frames with a count-then-set output per frame (see the module docstring)."""

    name: ClassVar[str] = "rnn"
    kind: ClassVar[str] = "ar"
    DEFAULTS: ClassVar[dict[str, Any]] = dict(FrameModelBase.BASE_DEFAULTS)

    def _build(self) -> None:
        self._build_decoder()
        self._weights = self.decoder.trainable_weights + self.count_link.trainable_weights
        self.optimizer = self._optimizer_for(self._optimizer(), self._weights)
        self._train_step = self._train_function(self._train_step_impl)
        self._eval_step = tf.function(self._eval_step_impl, reduce_retracing=True)
        self._sequence_nll = tf.function(self._eval_nll, reduce_retracing=True)

    def networks(self):
        return {"decoder": self.decoder, "count_link": self.count_link, "key_prior": self.key_model}

    def _train_step_impl(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        x, tonic = self._prepare(x, training=True)
        onset, hold = self._states(x)
        n_frames = tf.shape(onset)[1]
        weights = self._weights
        with tf.GradientTape() as tape:
            heads = self._heads(onset, hold, self._key_frames(tonic, n_frames), True)
            loss = tf.reduce_mean(self._nll(onset, hold, heads, exact=False))
            loss /= tf.cast(n_frames, tf.float32)
            scaled = self._gradient_loss(self.optimizer, loss)
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, weights), weights, strict=True))
        return {"loss": loss}

    def _eval_step_impl(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        n_frames = tf.shape(x)[2] // int(self.config["frame_steps"])
        return {"val_nll": tf.reduce_mean(self._eval_nll(x)) / tf.cast(n_frames, tf.float32)}

    def sequence_nll(self, songs: np.ndarray) -> np.ndarray:
        """Exact NLL in nats of each whole song (n, 96, T) (with tracks (n, K, 96, T)) of one
        length T (a multiple of ``frame_steps``), read from a fresh state, the tonic's price
        included: float64 (n,). ``heldout_nll`` is the same per frame over 2-bar windows; this
        scores pieces of any length (``bench/jsb_benchmark.py``)."""
        x = np.asarray(songs, np.float32)
        x = x[..., None] if x.ndim == 3 else x.transpose(0, 2, 3, 1)
        x = tf.constant(x)
        return np.asarray(self._sequence_nll(x), np.float64)

    def _eval_nll(self, x: tf.Tensor) -> tf.Tensor:
        x, tonic = self._prepare(x, training=False)
        onset, hold = self._states(x)
        n_frames = tf.shape(onset)[1]
        heads = self._heads(onset, hold, self._key_frames(tonic, n_frames), False)
        return self._nll(onset, hold, heads, exact=True) + self._tonic_nll(tonic)

    def encode(self, windows):
        raise NotImplementedError("an autoregressive model has no encoder")

    def interpolate(self, a, b, steps):
        raise NotImplementedError("an autoregressive model has no latent space")
