"""What the sequence models (``rnn``, ``vae``) share: an LSTM that reads a window frame by frame
and says, for the next frame, how many pitches sound and which (docs/models.md).

The representation is ``musicflow.frames``: four frames per beat, and per (frame, pitch) one of
OFF, ONSET, HOLD. Why each part of the model is there (each was measured on the Bach chorales,
held-out files, equal CPU budgets; docs/models.md has the numbers):

- **Time is the sequence axis, all 96 pitches are seen at once.** Every frame's input is the
  whole previous frame (onset and hold bits per pitch) and its position in the bar; an LSTM
  (Hochreiter & Schmidhuber 1997) carries the piece so far. Convolutions over the pitch × time
  image (the thesis models) see a few neighbouring rows at a time and paint clusters of
  neighbouring pitches; harmony lives in intervals 3 to 12 rows apart.
- **Onset and hold are separate decisions** (``musicflow.frames``): held notes stay held,
  re-struck notes are explicit. Sampling every 12-step cell on its own flickers.
- **Counts first, then which pitches** (the output head). Independent per-pitch outputs let
  the number of sounding pitches drift from frame to frame: four-voice chorales came out with
  one to seven voices, and with too many notes on weak sixteenths. Per frame the head gives the
  number of held notes ``h`` (0 to the number sounding before), the number of new notes ``o``
  given ``h``, and per pitch three logits (off / onset / hold). A frame is sampled as ``h``,
  the held set from the conditional Bernoulli distribution of the hold odds given its size
  (Chen, Dempster & Liu 1994), ``o``, then the set of onsets among the other pitches likewise.
  The likelihood is exact (each normaliser is an elementary symmetric polynomial of the odds,
  a dynamic programme over the 96 pitches), so the held-out NLL is that of the sampler.
  Training uses a cheaper surrogate (per-pitch cross-entropy plus the counts'); validation
  reports the exact NLL.
- **Key normalisation with the tonic as a condition** (``musicflow.frames``): windows are
  transposed to C for the model, which also sees the original tonic (so register and key stay
  related), and samples are moved back to a tonic drawn from the training data's counts. The
  model learns each harmony once instead of in twelve keys.
- **Trained on runs of consecutive windows** (``sequence_windows``, default 2), generated the
  same way: the first window of a piece from a fresh state, each later one after reading the
  window before it. An LSTM trained on single windows and run on for 16 bars drifts into
  silence (it learned that pieces end); reading one window back keeps every window within the
  horizon it was trained on.

The decoder is a Keras model; sampling runs the same LSTM equations in numpy (the decoder's
own weights), frame by frame, which is simpler and faster than stepping Keras layers on a CPU.
"""

from __future__ import annotations

from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from musicflow import frames
from musicflow.errors import ModelError
from musicflow.models.augment import translate
from musicflow.models.base import RollModelBase
from musicflow.roll import COLS, DEFAULT_PITCH_LOW, ROWS

P = ROWS  # pitches per frame
_NEG = -1e30  # a finite "log 0": keeps the dynamic programme free of inf - inf


def roll_states_tf(x: tf.Tensor, frame_steps: int) -> tuple[tf.Tensor, tf.Tensor]:
    """TF twin of ``frames.roll_to_states``: (B, 96, T, 1) in {0, 1} → onset, hold float
    (B, T // frame_steps, 96), pitches low → high."""
    r = x[..., 0] > 0.5
    prev = tf.pad(r[:, :, :-1], [[0, 0], [0, 0], [1, 0]])
    b = tf.shape(r)[0]
    f = tf.shape(r)[2] // frame_steps
    shape = (b, ROWS, f, frame_steps)
    onset = tf.reduce_any(tf.reshape(r & ~prev, shape), axis=-1)
    hold = tf.reduce_any(tf.reshape(r, shape), axis=-1) & ~onset
    onset = tf.reverse(tf.transpose(onset, (0, 2, 1)), axis=[2])
    hold = tf.reverse(tf.transpose(hold, (0, 2, 1)), axis=[2])
    return tf.cast(onset, tf.float32), tf.cast(hold, tf.float32)


def tonics_tf(x: tf.Tensor, pitch_low: int) -> tf.Tensor:
    """TF twin of ``frames.window_tonics`` for (B, 96, T, 1) rolls: int32 (B,)."""
    r = x[..., 0]
    prev = tf.pad(r[:, :, :-1], [[0, 0], [0, 0], [1, 0]])
    per_row = tf.reduce_sum(r * (1.0 - prev), axis=2)
    pcs = (pitch_low + ROWS - 1 - np.arange(ROWS)) % 12
    per_pc = per_row @ tf.constant(np.eye(12, dtype=np.float32)[pcs])
    scores = per_pc @ tf.constant(frames._major_masks().T.astype(np.float32))
    return tf.argmax(scores, axis=1, output_type=tf.int32)


def _logaddexp(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    m = tf.maximum(a, b)
    return m + tf.math.log1p(tf.exp(-tf.abs(a - b)))


def log_esp(log_w: tf.Tensor) -> tf.Tensor:
    """log e_r(w) for r = 0..P: elementary symmetric polynomials of the odds (N, P) → (N, P+1),
    by the recursion e_r(w_1..w_j) = e_r(w_1..w_{j-1}) + w_j e_{r-1}(w_1..w_{j-1})."""
    n = tf.shape(log_w)[0]
    start = tf.concat([tf.zeros((n, 1)), tf.fill((n, P), _NEG)], axis=1)

    def add_pitch(e: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
        return tf.concat([e[:, :1], _logaddexp(e[:, 1:], w[:, None] + e[:, :-1])], axis=1)

    # a loop in the graph, not 96 unrolled steps: tracing stays fast
    return tf.foldl(add_pitch, tf.transpose(log_w), initializer=start)


@keras.saving.register_keras_serializable(package="musicflow")
class KeyPrior(keras.layers.Layer):
    """Counts of the training windows' tonics (a non-trainable weight, saved with the model):
    the distribution samples are transposed back to. Identity on its input."""

    def build(self, input_shape: tuple[int, ...]) -> None:
        # summed over replicas: each counts the tonics of its own slice of the batch
        self.counts = self.add_weight(
            shape=(12,), initializer="zeros", trainable=False, name="counts", aggregation="sum"
        )

    def call(self, x: Any) -> Any:
        return x


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class FrameModelBase(RollModelBase):
    """The frame decoder and everything around it; subclasses add conditioning (``vae``)."""

    MONITOR: ClassVar[str | None] = "val_nll"
    BASE_DEFAULTS: ClassVar[dict[str, Any]] = {
        "frame_steps": frames.DEFAULT_FRAME_STEPS,
        "hidden": 256,
        "layers": 1,
        "learning_rate": 3e-3,
        "clip_norm": 1.0,
        "batch_size": 64,
        "epochs": 100,
        "patience": 5,  # epochs without a lower validation NLL before training stops
        "sequence_windows": 2,
        "key_normalize": True,
        "pitch_low": DEFAULT_PITCH_LOW,
        "temperature": 1.0,
    }

    # --- subclass hooks -------------------------------------------------------------------
    def _latent_dim(self) -> int:
        return 0

    # --- building -------------------------------------------------------------------------
    def _cond_dim(self) -> int:
        return self._latent_dim() + (12 if self.config["key_normalize"] else 0)

    def _build_decoder(self) -> None:
        c = self.config
        g = int(c["frame_steps"])
        if g < 1 or COLS % g:
            raise ModelError(f"{self.name}: frame_steps must divide {COLS}, got {g}")
        if int(c["sequence_windows"]) < 1:
            raise ModelError(f"{self.name}: sequence_windows must be at least 1")
        self.frames = COLS // g
        self.period = 4 * 12 // g  # frames per 4/4 bar: the position input
        hidden = int(c["hidden"])
        inp = keras.Input((None, 2 * P + self.period), name="frames")
        inputs, y = [inp], inp
        cdim = self._cond_dim()
        if cdim:
            cond = keras.Input((None, cdim), name="cond")  # per frame
            inputs.append(cond)
            y = layers.Concatenate()([inp, cond])
            first = layers.Lambda(lambda t: t[:, 0], name="cond0")(cond)
        self.lstms: list[layers.LSTM] = []
        for i in range(int(c["layers"])):
            lstm = layers.LSTM(hidden, return_sequences=True, name=f"lstm{i}")
            self.lstms.append(lstm)
            if cdim:
                h0 = layers.Dense(hidden, activation="tanh", name=f"h0_{i}")(first)
                c0 = layers.Dense(hidden, name=f"c0_{i}")(first)
                y = lstm(y, initial_state=[h0, c0])
            else:
                y = lstm(y)
        # per-pitch logits (3 per pitch), held-count logits, new-count logits before the
        # held count's offset (``count_link``: one row per held count). Biases start at few
        # onsets and small counts, so an untrained model samples sparse frames, not noise.
        counts = -0.5 * np.arange(P + 1)
        start = np.concatenate([np.tile([0.0, -3.0, 0.0], P), counts, counts])
        # float32 under a mixed policy: the likelihood's dynamic programme needs its range
        out = layers.Dense(
            P * 3 + 2 * (P + 1),
            name="out",
            bias_initializer=keras.initializers.Constant(start),
            dtype="float32",
        )(y)
        self.decoder = keras.Model(inputs, out, name="decoder")
        held = keras.Input((P + 1,), name="held_count")
        self.count_link = keras.Model(
            held,
            layers.Dense(P + 1, use_bias=False, name="link", dtype="float32")(held),
            name="count_link",
        )
        key_in = keras.Input((12,), name="tonic")
        self.key_prior = KeyPrior(name="key_prior")
        self.key_model = keras.Model(key_in, self.key_prior(key_in), name="key_prior")

    def _optimizer(self) -> keras.optimizers.Optimizer:
        c = self.config
        return keras.optimizers.Adam(float(c["learning_rate"]), clipnorm=float(c["clip_norm"]))

    # --- the model's view of a batch ------------------------------------------------------
    def _prepare(self, x: tf.Tensor, training: bool) -> tuple[tf.Tensor, tf.Tensor | None]:
        """Key-normalise a batch of rolls (B, 96, T, 1); count tonics while training."""
        if not self.config["key_normalize"]:
            return x, None
        tonic = tonics_tf(x, int(self.config["pitch_low"]))
        if training:
            self.key_prior.counts.assign_add(tf.reduce_sum(tf.one_hot(tonic, 12), axis=0))
        shift = tf.math.floormod(6 - tonic, 12) - 6
        return translate(x, tf.zeros_like(shift), shift, circular_time=False), tf.one_hot(tonic, 12)

    def _inputs(self, onset: tf.Tensor, hold: tf.Tensor) -> tf.Tensor:
        """Per frame: the previous frame (onset, hold bits; zeros before the first) and the
        position in the bar (one-hot)."""
        b, f = tf.shape(onset)[0], tf.shape(onset)[1]
        prev = tf.pad(tf.concat([onset, hold], -1)[:, :-1], [[0, 0], [1, 0], [0, 0]])
        pos = tf.one_hot(tf.range(f) % self.period, self.period)
        return tf.concat([prev, tf.tile(pos[None], [b, 1, 1])], axis=-1)

    def _key_frames(self, tonic_1h: tf.Tensor | None, n_frames: tf.Tensor) -> tf.Tensor | None:
        if tonic_1h is None:
            return None
        return tf.repeat(tonic_1h[:, None, :], n_frames, axis=1)

    def _heads(
        self, onset: tf.Tensor, hold: tf.Tensor, cond: tf.Tensor | None, training: bool
    ) -> dict[str, tf.Tensor]:
        """Everything the likelihood needs, teacher-forced on the true frames: per-pitch logits
        (B, F, 96, 3), the held-count and new-count logits (B, F, 97) with impossible counts
        masked, and the true counts (B, F)."""
        inputs = [self._inputs(onset, hold)] + ([cond] if cond is not None else [])
        out = self.decoder(inputs, training=training)
        b, f = tf.shape(onset)[0], tf.shape(onset)[1]
        logits = tf.reshape(out[..., : P * 3], (b, f, P, 3))
        prev_active = tf.pad((onset + hold)[:, :-1], [[0, 0], [1, 0], [0, 0]])
        zero = tf.zeros_like(prev_active)
        logits += tf.stack([zero, zero, (1.0 - prev_active) * _NEG], axis=-1)
        k_hold = tf.cast(tf.reduce_sum(hold, axis=2), tf.int32)
        k_on = tf.cast(tf.reduce_sum(onset, axis=2), tf.int32)
        classes = tf.range(P + 1)
        n_prev = tf.cast(tf.reduce_sum(prev_active, axis=2), tf.int32)
        held_mask = tf.cast(classes[None, None] > n_prev[..., None], tf.float32) * _NEG
        link = self.count_link(tf.reshape(tf.one_hot(k_hold, P + 1), (-1, P + 1)))
        new_logits = out[..., P * 3 + P + 1 :] + tf.reshape(link, (b, f, P + 1))
        new_mask = tf.cast(classes[None, None] > (P - k_hold)[..., None], tf.float32) * _NEG
        return {
            "logits": logits,
            "held_counts": out[..., P * 3 : P * 3 + P + 1] + held_mask,
            "new_counts": new_logits + new_mask,
            "k_hold": k_hold,
            "k_on": k_on,
        }

    @staticmethod
    def _surrogate_nll(onset: tf.Tensor, hold: tf.Tensor, heads: dict[str, tf.Tensor]) -> tf.Tensor:
        """Training objective per sequence (B,): per-pitch cross-entropy + both counts'."""
        target = tf.cast(onset + 2.0 * hold, tf.int32)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits
        pitch = tf.reduce_sum(ce(labels=target, logits=heads["logits"]), axis=[1, 2])
        held = ce(labels=heads["k_hold"], logits=heads["held_counts"])
        new = ce(labels=heads["k_on"], logits=heads["new_counts"])
        return pitch + tf.reduce_sum(held + new, axis=1)

    @staticmethod
    def _exact_nll(onset: tf.Tensor, hold: tf.Tensor, heads: dict[str, tf.Tensor]) -> tf.Tensor:
        """NLL per sequence (B,) of the sampler: −log P(h) − log P(o | h) + log e_h(w_hold)
        − Σ_held log w_hold + log e_o(w_new) − Σ_new log w_new, where the hold odds run over
        the pitches sounding before and the onset odds over the pitches not held."""
        logits = heads["logits"]
        b, f = tf.shape(onset)[0], tf.shape(onset)[1]
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits
        nll = ce(labels=heads["k_hold"], logits=heads["held_counts"])
        nll += ce(labels=heads["k_on"], logits=heads["new_counts"])
        l_off = logits[..., 0]
        log_w_hold = logits[..., 2] - l_off  # _NEG where the pitch was silent
        log_w_new = tf.where(hold > 0, _NEG, logits[..., 1] - l_off)
        for log_w, k, chosen in (
            (log_w_hold, heads["k_hold"], hold),
            (log_w_new, heads["k_on"], onset),
        ):
            e = log_esp(tf.reshape(log_w, (-1, P)))
            log_ek = tf.reshape(tf.gather(e, tf.reshape(k, (-1,)), batch_dims=1), (b, f))
            nll += log_ek - tf.reduce_sum(chosen * log_w, axis=2)
        return tf.reduce_sum(nll, axis=1)

    def _tonic_nll(self, tonic_1h: tf.Tensor | None) -> tf.Tensor | float:
        """−log P(tonic) under the training counts (add-one), per window: the price of key
        normalisation in the likelihood."""
        if tonic_1h is None:
            return 0.0
        counts = self.key_prior.counts + 1.0
        log_p = tf.math.log(counts / tf.reduce_sum(counts))
        return -tf.reduce_sum(tonic_1h * log_p[None], axis=1)

    # --- RollModel ------------------------------------------------------------------------
    def fit_epoch(self, batches: tf.data.Dataset) -> dict[str, float]:
        metrics = self._run_epoch(self._train_step, batches, replicated=True)
        self.epochs_done += 1
        return metrics

    def validate(self, batches: tf.data.Dataset) -> dict[str, float]:
        """``val_nll``: the validation windows' negative log-likelihood, nats per frame (see
        ``heldout_nll``)."""
        return self._run_epoch(self._eval_step, batches, allow_empty=True)

    def heldout_nll(self, windows: np.ndarray) -> float:
        """Negative log-likelihood of windows (n, 96, 96) in nats per frame (a sixteenth note
        at the default 3 steps per frame) of the onset/hold representation, the tonic's
        included; a VAE gives its ELBO bound. NaN for no window."""
        x = self._as_input(windows)
        if not len(x):
            return float("nan")
        out = self._run_epoch(self._eval_step, [x[i : i + 128] for i in range(0, len(x), 128)])
        return float(out["val_nll"])

    # --- sampling (numpy) -----------------------------------------------------------------
    def _numpy_weights(self) -> tuple[list[tuple[np.ndarray, ...]], dict[str, list[np.ndarray]]]:
        lstm = [tuple(np.asarray(w) for w in layer.cell.weights) for layer in self.lstms]
        dense = {
            layer.name: [np.asarray(w) for w in layer.weights]
            for layer in self.decoder.layers
            if isinstance(layer, layers.Dense)
        }
        return lstm, dense

    def _sample_tonics(self, rngs: list[np.random.Generator]) -> np.ndarray:
        counts = np.asarray(self.key_prior.counts, np.float64) + 1.0
        return np.array([rng.choice(12, p=counts / counts.sum()) for rng in rngs])

    def _cond_frames(self, n: int, n_frames: int, latents: np.ndarray | None, tonic) -> np.ndarray:
        """(n, n_frames, C): each frame's window latent (latents (n, windows, d)) and tonic."""
        parts = []
        if latents is not None:
            parts.append(np.repeat(latents, self.frames, axis=1)[:, :n_frames])
        if self.config["key_normalize"]:
            parts.append(np.repeat(np.eye(12, dtype=np.float32)[tonic][:, None], n_frames, 1))
        if not parts:
            return np.zeros((n, n_frames, 0), np.float32)
        return np.concatenate(parts, axis=2).astype(np.float32)

    def _decode_window(
        self,
        cond: np.ndarray,
        noise: np.ndarray,
        context: np.ndarray | None,
        temperature: float,
    ) -> np.ndarray:
        """Sample one window's states (n, F, 96) from a fresh LSTM state, after reading
        ``context`` (n, Fc, 96) states; ``cond`` (n, Fc + F, C); ``noise`` (n, F, 1 + 2·96)
        uniforms in [0, 1)."""
        lstm, dense = self._numpy_weights()
        n = len(noise)
        hsz = lstm[0][1].shape[0]
        if cond.shape[2]:
            h = [
                np.tanh(cond[:, 0] @ dense[f"h0_{i}"][0] + dense[f"h0_{i}"][1])
                for i in range(len(lstm))
            ]
            c = [cond[:, 0] @ dense[f"c0_{i}"][0] + dense[f"c0_{i}"][1] for i in range(len(lstm))]
        else:
            h = [np.zeros((n, hsz), np.float32) for _ in lstm]
            c = [np.zeros((n, hsz), np.float32) for _ in lstm]
        n_context = 0 if context is None else context.shape[1]
        position = np.eye(self.period, dtype=np.float32)
        w_out, b_out = dense["out"]
        link = np.asarray(self.count_link.weights[0])
        prev = np.zeros((n, P), np.int8)
        out = np.zeros((n, self.frames, P), np.int8)
        for f in range(n_context + self.frames):
            y = np.concatenate(
                [
                    (prev == frames.ONSET).astype(np.float32),
                    (prev == frames.HOLD).astype(np.float32),
                    np.broadcast_to(position[f % self.period], (n, self.period)),
                    cond[:, f],
                ],
                axis=1,
            )
            for i, (kernel, recurrent, bias) in enumerate(lstm):
                z = y @ kernel + h[i] @ recurrent + bias
                gate_i, gate_f = _sigmoid(z[:, :hsz]), _sigmoid(z[:, hsz : 2 * hsz])
                cand, gate_o = np.tanh(z[:, 2 * hsz : 3 * hsz]), _sigmoid(z[:, 3 * hsz :])
                c[i] = gate_f * c[i] + gate_i * cand
                h[i] = gate_o * np.tanh(c[i])
                y = h[i]
            if f < n_context:
                prev = context[:, f]
                continue
            full = (y @ w_out + b_out) / temperature
            state = _sample_frame(full, link / temperature, prev, noise[:, f - n_context])
            out[:, f - n_context] = state
            prev = state
        return out

    def _piece_latents(self, rngs: list[np.random.Generator], n_windows: int) -> np.ndarray | None:
        return None

    def sample_pieces(self, n: int, n_windows: int, seed: int) -> np.ndarray:
        """``n`` pieces of ``n_windows`` consecutive windows, float32 (n, n_windows, 96, 96) of
        0/1. Window 0 is sampled from a fresh state, window k after reading window k − 1.
        Piece i depends only on (seed, i), not on ``n``."""
        return self._pieces(n, n_windows, seed, None)

    def _pieces(self, n: int, n_windows: int, seed: int, latents: np.ndarray | None) -> np.ndarray:
        """``sample_pieces``, with given window codes (n, n_windows, d) for a VAE."""
        if n < 0 or n_windows < 1:
            raise ModelError("need n >= 0 pieces of at least one window")
        rngs = [np.random.default_rng([int(seed), i]) for i in range(n)]
        tonic = self._sample_tonics(rngs) if self.config["key_normalize"] else None
        if latents is None:
            latents = self._piece_latents(rngs, n_windows)
        width = 2 + 2 * P
        noise = (
            np.stack([rng.random((n_windows * self.frames, width)) for rng in rngs])
            if n
            else (np.zeros((0, n_windows * self.frames, width)))
        )
        t = float(self.config["temperature"])
        states: list[np.ndarray] = []
        for k in range(n_windows):
            window_noise = noise[:, k * self.frames : (k + 1) * self.frames]
            lat = None if latents is None else latents[:, max(k - 1, 0) : k + 1]
            if k == 0:
                cond = self._cond_frames(n, self.frames, lat, tonic)
                states.append(self._decode_window(cond, window_noise, None, t))
            else:
                cond = self._cond_frames(n, 2 * self.frames, lat, tonic)
                states.append(self._decode_window(cond, window_noise, states[-1], t))
        g = int(self.config["frame_steps"])
        song = frames.states_to_roll(np.concatenate(states, axis=1), g)  # (n, 96, T)
        if tonic is not None:
            song = frames.transpose_windows(song, -frames.key_shifts(tonic))
        pieces = song.reshape(n, ROWS, n_windows, COLS).transpose(0, 2, 1, 3)
        return np.ascontiguousarray(pieces).astype(np.float32)

    def sample(self, n: int, seed: int) -> np.ndarray:
        """``n`` independent windows (each the first window of a piece): float32 (n, 96, 96)."""
        return self.sample_pieces(n, 1, seed)[:, 0]


def _sample_set(log_w: np.ndarray, k: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Bool (n, 96): a set of exactly ``k[i]`` pitches from the conditional Bernoulli
    distribution with odds ``exp(log_w)`` (−inf: never), by the suffix recursion of the
    elementary symmetric polynomials; ``u`` (n, 96) uniforms."""
    n = len(log_w)
    kmax = int(k.max()) if n else 0
    chosen = np.zeros((n, P), bool)
    if kmax == 0:
        return chosen
    suffix = np.full((n, P + 1, kmax + 1), -np.inf)  # log e_r(w_j, …, w_95)
    suffix[:, :, 0] = 0.0
    for j in range(P - 1, -1, -1):
        suffix[:, j, 1:] = np.logaddexp(
            suffix[:, j + 1, 1:], log_w[:, j, None] + suffix[:, j + 1, :-1]
        )
    rows = np.arange(n)
    left = k.copy()
    for j in range(P):
        r = np.maximum(left, 1)
        with np.errstate(invalid="ignore"):
            p = np.exp(log_w[:, j] + suffix[rows, j + 1, r - 1] - suffix[rows, j, r])
        take = (left > 0) & (u[:, j] < np.nan_to_num(p, nan=1.0))
        chosen[:, j] = take
        left -= take
    return chosen


def _categorical(logits: np.ndarray, u: np.ndarray) -> np.ndarray:
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    cdf = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    return (u[:, None] > cdf[:, :-1]).sum(axis=1)


def _sample_frame(
    full: np.ndarray, link: np.ndarray, prev: np.ndarray, u: np.ndarray
) -> np.ndarray:
    """One frame's states (n, 96) from the decoder's output row ``full`` (n, 96·3 + 2·97): the
    held count, the held set, the new count given it, the set of onsets. ``link`` (97, 97):
    the new count's offset per held count; ``u`` (n, 2 + 2·96): this frame's uniforms."""
    n = len(full)
    logits = full[:, : P * 3].reshape(n, P, 3).astype(np.float64)
    classes = np.arange(P + 1)
    was_on = prev != frames.OFF
    held_logits = np.where(
        classes[None] <= was_on.sum(axis=1)[:, None], full[:, P * 3 : P * 3 + P + 1], -np.inf
    )
    k_hold = _categorical(held_logits, u[:, 0])
    log_w_hold = np.where(was_on, logits[:, :, 2] - logits[:, :, 0], -np.inf)
    held = _sample_set(log_w_hold, k_hold, u[:, 2 : 2 + P])
    new_logits = full[:, P * 3 + P + 1 :] + link[k_hold]
    new_logits = np.where(classes[None] <= (P - k_hold)[:, None], new_logits, -np.inf)
    k_on = _categorical(new_logits, u[:, 1])
    log_w_new = np.where(held, -np.inf, logits[:, :, 1] - logits[:, :, 0])
    new = _sample_set(log_w_new, k_on, u[:, 2 + P :])
    return np.where(held, frames.HOLD, np.where(new, frames.ONSET, frames.OFF)).astype(np.int8)
