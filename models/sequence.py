"""What the sequence models (``rnn``, ``vae``) share: an LSTM that reads a window frame by frame
and says, for the next frame, how many pitches sound and which (docs/models.md).

The representation is ``musicflow.core.frames``: four frames per beat, and per (frame, pitch) one of
OFF, ONSET, HOLD. Why each part of the model is there (each was measured on the Bach chorales,
held-out files, equal CPU budgets; docs/models.md has the numbers):

- **Time is the sequence axis, all 96 pitches are seen at once.** Every frame's input is the
  whole previous frame (onset and hold bits per pitch) and its position in the bar; an LSTM
  (Hochreiter & Schmidhuber 1997) carries the piece so far. Convolutions over the pitch × time
  image (the thesis models) see a few neighbouring rows at a time and paint clusters of
  neighbouring pitches; harmony lives in intervals 3 to 12 rows apart.
- **Onset and hold are separate decisions** (``musicflow.core.frames``): held notes stay held,
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
- **Key normalisation with the tonic as a condition** (``musicflow.core.frames``): windows are
  transposed to C for the model, which also sees the original tonic (so register and key stay
  related), and samples are moved back to a tonic drawn from the training data's counts. The
  model learns each harmony once instead of in twelve keys.
- **Trained on runs of consecutive windows** (``sequence_windows``, default 2; a shorter file
  gives one shorter run). An LSTM trained on single windows and run on for 16 bars drifts into
  silence (it learned that pieces end). Longer runs did not score better on held-out chorales
  at an equal CPU budget: 4 windows (8 bars) tied with 2 at equal frames per step, 8 windows
  lost (docs/models.md, "Longer memory").

The decoder is a Keras model; sampling runs the same LSTM equations in numpy (the decoder's
own weights), frame by frame, which is simpler and faster than stepping Keras layers on a CPU:
``models/frame_sampler.py``, which needs neither TensorFlow nor Keras.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from musicflow.core import frames
from musicflow.core.errors import ModelError
from musicflow.core.roll import COLS, DEFAULT_PITCH_LOW, ROWS
from musicflow.models.augment import translate
from musicflow.models.base import RollModelBase
from musicflow.models.frame_sampler import (
    FrameSampler,
    head_name,
    link_name,
    lstm_names,
    pitched_tracks,
    track_count,
)

P = ROWS  # pitches per frame
W = 3 * P + 2 * (P + 1)  # one track's output row: per-pitch logits, held and new counts
_NEG = -1e30  # a finite "log 0": keeps the dynamic programme free of inf - inf


INPUT_PROJECTION = "in_proj"
_FOLDED = (INPUT_PROJECTION, "mix_")  # linear maps the sampler gets folded into the next layer


def mix_name(k: int) -> str:
    """The layer through which track ``k``'s head reads this frame's tracks before it."""
    return f"mix_{k}"


def _fold(projection: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """A layer's kernel whose first rows read ``projection``'s output, as a kernel on the
    projection's input: (n, r) and (r + m, out) → (n + m, out). Exact, both being linear."""
    r = projection.shape[1]
    return np.concatenate([projection @ kernel[:r], kernel[r:]])


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


def track_states_tf(x: tf.Tensor, frame_steps: int, k: int) -> tuple[tf.Tensor, tf.Tensor]:
    """``roll_states_tf`` of each of the ``k`` tracks of (B, 96, T, K): onset, hold float
    (B, F, K, 96)."""
    if k == 1:
        onset, hold = roll_states_tf(x, frame_steps)
        return onset[:, :, None], hold[:, :, None]
    b, steps = tf.shape(x)[0], tf.shape(x)[2]
    flat = tf.reshape(tf.transpose(x, (0, 3, 1, 2)), (b * k, ROWS, steps, 1))
    onset, hold = roll_states_tf(flat, frame_steps)
    f = tf.shape(onset)[1]
    onset = tf.transpose(tf.reshape(onset, (b, k, f, P)), (0, 2, 1, 3))
    hold = tf.transpose(tf.reshape(hold, (b, k, f, P)), (0, 2, 1, 3))
    return onset, hold


def frame_bits(onset: tf.Tensor, hold: tf.Tensor) -> tf.Tensor:
    """Onset, hold (B, F, K, 96) → (B, F, 2 · 96 · K): per track its onset bits, then its hold
    bits, track after track (for one track: onset, hold, as before tracks existed)."""
    b, f, k = tf.shape(onset)[0], tf.shape(onset)[1], onset.shape[2]
    return tf.reshape(tf.stack([onset, hold], axis=3), (b, f, 2 * P * k))


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
        # the dataset's tracks (``dataset.json``'s encoding.tracks: name, program, channel,
        # drums), played jointly; empty: merged rolls (docs/models.md, "Tracks")
        "tracks": [],
        # with tracks only: the frame's K · 192 bits reach the LSTM through a linear map of
        # this rank, and track k's head reads the tracks before it through one of ``mix_rank``
        # (0: full rank). Both are folded into full matrices for the sampler (same function,
        # fewer multiplications per training step; docs/models.md, "Tracks").
        "input_rank": 128,
        "mix_rank": 64,
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
        self.n_tracks = k_tracks = track_count(c)
        self.pitched = pitched_tracks(c)
        hidden = int(c["hidden"])
        inp = keras.Input((None, 2 * P * k_tracks + self.period), name="frames")
        inputs, y = [inp], inp
        self.input_rank = int(c["input_rank"]) if k_tracks > 1 else 0
        self.mix_rank = int(c["mix_rank"]) if k_tracks > 1 else 0
        if self.input_rank:
            y = layers.Dense(self.input_rank, use_bias=False, name=INPUT_PROJECTION)(inp)
        cdim = self._cond_dim()
        if cdim:
            cond = keras.Input((None, cdim), name="cond")  # per frame
            inputs.append(cond)
            y = layers.Concatenate()([y, cond])
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

        def head(k: int) -> layers.Dense:
            # float32 under a mixed policy: the likelihood's dynamic programme needs its range
            return layers.Dense(
                W,
                name=head_name(k),
                bias_initializer=keras.initializers.Constant(start),
                dtype="float32",
            )

        if k_tracks == 1:
            out = head(0)(y)
        else:
            # track k's head also reads this frame's bits of tracks 0 … k − 1 (teacher-forced
            # here, the sampled ones when sampling): the tracks' notes depend on each other
            current = keras.Input((None, 2 * P * k_tracks), name="current")
            inputs.append(current)
            outs = [head(0)(y)]
            for k in range(1, k_tracks):
                before = layers.Lambda(lambda t, n=2 * P * k: t[..., :n], name=f"before_{k}")
                seen = before(current)
                if self.mix_rank:
                    seen = layers.Dense(self.mix_rank, use_bias=False, name=mix_name(k))(seen)
                outs.append(head(k)(layers.Concatenate()([y, seen])))
            out = layers.Concatenate(name="heads", dtype="float32")(outs)
        self.decoder = keras.Model(inputs, out, name="decoder")
        held = keras.Input((P + 1,), name="held_count")
        self.links = [
            layers.Dense(P + 1, use_bias=False, name=link_name(k), dtype="float32")
            for k in range(k_tracks)
        ]
        link_out = [link(held) for link in self.links]
        self.count_link = keras.Model(
            held, link_out[0] if k_tracks == 1 else link_out, name="count_link"
        )
        key_in = keras.Input((12,), name="tonic")
        self.key_prior = KeyPrior(name="key_prior")
        self.key_model = keras.Model(key_in, self.key_prior(key_in), name="key_prior")

    def _optimizer(self) -> keras.optimizers.Optimizer:
        c = self.config
        return keras.optimizers.Adam(float(c["learning_rate"]), clipnorm=float(c["clip_norm"]))

    # --- the model's view of a batch ------------------------------------------------------
    def _prepare(self, x: tf.Tensor, training: bool) -> tuple[tf.Tensor, tf.Tensor | None]:
        """Key-normalise a batch of rolls (B, 96, T, K), all pitched tracks by the same shift
        (the tonic of them laid over each other; a drum track stays); count tonics while
        training."""
        if not self.config["key_normalize"]:
            return x, None
        keyed = x
        if self.n_tracks > 1:
            use = np.flatnonzero(self.pitched) if self.pitched.any() else np.arange(self.n_tracks)
            keyed = tf.reduce_max(tf.gather(x, use, axis=3), axis=3, keepdims=True)
        tonic = tonics_tf(keyed, int(self.config["pitch_low"]))
        if training:
            self.key_prior.counts.assign_add(tf.reduce_sum(tf.one_hot(tonic, 12), axis=0))
        shift = tf.math.floormod(6 - tonic, 12) - 6
        moved = translate(x, tf.zeros_like(shift), shift, circular_time=False)
        if not self.pitched.all():
            moved = tf.where(tf.constant(self.pitched)[None, None, None, :], moved, x)
        return moved, tf.one_hot(tonic, 12)

    def _states(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Onset, hold (B, F, K, 96) of a batch of rolls (B, 96, T, K)."""
        return track_states_tf(x, int(self.config["frame_steps"]), self.n_tracks)

    def _as_input(self, windows: np.ndarray) -> np.ndarray:  # type: ignore[override]
        """Windows (n, 96, 96), or (n, K, 96, 96) with tracks → float32 (n, 96, 96, K)."""
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim == 4 and x.shape[1] == self.n_tracks and x.shape[1:] != (ROWS, COLS, 1):
            x = x.transpose(0, 2, 3, 1)
        if self.n_tracks == 1:
            return RollModelBase._as_input(x)
        if x.ndim == 3:
            x = x[None]
        if x.shape[1:] != (ROWS, COLS, self.n_tracks):
            raise ModelError(
                f"expected windows of shape (n, {self.n_tracks}, {ROWS}, {COLS}), "
                f"got {np.shape(windows)}"
            )
        return x

    def _inputs(self, bits: tf.Tensor) -> tf.Tensor:
        """Per frame: the previous frame (``frame_bits`` of every track; zeros before the
        first) and the position in the bar (one-hot)."""
        b, f = tf.shape(bits)[0], tf.shape(bits)[1]
        prev = tf.pad(bits[:, :-1], [[0, 0], [1, 0], [0, 0]])
        pos = tf.one_hot(tf.range(f) % self.period, self.period)
        return tf.concat([prev, tf.tile(pos[None], [b, 1, 1])], axis=-1)

    def _key_frames(self, tonic_1h: tf.Tensor | None, n_frames: tf.Tensor) -> tf.Tensor | None:
        if tonic_1h is None:
            return None
        return tf.repeat(tonic_1h[:, None, :], n_frames, axis=1)

    def _heads(
        self, onset: tf.Tensor, hold: tf.Tensor, cond: tf.Tensor | None, training: bool
    ) -> list[dict[str, tf.Tensor]]:
        """Per track, everything its likelihood needs, teacher-forced on the true frames
        (onset, hold (B, F, K, 96)): see ``_track_head``."""
        bits = frame_bits(onset, hold)
        inputs = [self._inputs(bits)] + ([cond] if cond is not None else [])
        if self.n_tracks > 1:
            inputs.append(bits)  # this frame's bits: track k's head reads those of tracks < k
        out = self.decoder(inputs, training=training)
        return [
            self._track_head(out[..., k * W : (k + 1) * W], onset[:, :, k], hold[:, :, k], k)
            for k in range(self.n_tracks)
        ]

    def _track_head(
        self, out: tf.Tensor, onset: tf.Tensor, hold: tf.Tensor, k: int
    ) -> dict[str, tf.Tensor]:
        """Track ``k``'s head from its output row ``out`` (B, F, W) and its true frames
        (B, F, 96): per-pitch logits (B, F, 96, 3), the held-count and new-count logits
        (B, F, 97) with impossible counts masked, and the true counts (B, F)."""
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
        link = self.links[k](tf.reshape(tf.one_hot(k_hold, P + 1), (-1, P + 1)))
        new_logits = out[..., P * 3 + P + 1 :] + tf.reshape(link, (b, f, P + 1))
        new_mask = tf.cast(classes[None, None] > (P - k_hold)[..., None], tf.float32) * _NEG
        return {
            "logits": logits,
            "held_counts": out[..., P * 3 : P * 3 + P + 1] + held_mask,
            "new_counts": new_logits + new_mask,
            "k_hold": k_hold,
            "k_on": k_on,
        }

    def _nll(
        self, onset: tf.Tensor, hold: tf.Tensor, heads: list[dict[str, tf.Tensor]], exact: bool
    ) -> tf.Tensor:
        """Per sequence (B,): the sum over tracks of each track's NLL (exact, or the training
        surrogate) given the tracks before it: the chain rule over the tracks of a frame."""
        part = self._exact_nll if exact else self._surrogate_nll
        total = part(onset[:, :, 0], hold[:, :, 0], heads[0])
        for k in range(1, len(heads)):
            total += part(onset[:, :, k], hold[:, :, k], heads[k])
        return total

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
        """Negative log-likelihood of windows (n, 96, 96) (with tracks (n, K, 96, 96), all
        tracks' notes) in nats per frame (a sixteenth note
        at the default 3 steps per frame) of the onset/hold representation, the tonic's
        included; a VAE gives its ELBO bound. NaN for no window."""
        x = self._as_input(windows)
        if not len(x):
            return float("nan")
        out = self._run_epoch(self._eval_step, [x[i : i + 128] for i in range(0, len(x), 128)])
        return float(out["val_nll"])

    # --- sampling (numpy: models/frame_sampler.py) -----------------------------------------
    def sampler_arrays(self) -> dict[str, np.ndarray]:
        """The named numpy arrays a ``FrameSampler`` runs from (``frame_sampler.array_names``):
        what registration stores beside the Keras weights (docs/tracking.md)."""
        arrays = {"key_prior.counts": np.asarray(self.key_prior.counts, np.float32)}
        for k, link in enumerate(self.links):
            arrays[f"{link_name(k)}.kernel"] = np.asarray(link.weights[0])
        for i, layer in enumerate(self.lstms):
            weights = [np.asarray(w) for w in layer.cell.weights]
            if i == 0 and self.input_rank:  # the projection folded into the LSTM's kernel
                weights[0] = _fold(self._kernel(INPUT_PROJECTION), weights[0])
            arrays.update(zip(lstm_names(i), weights, strict=True))
        for layer in self.decoder.layers:
            if not isinstance(layer, layers.Dense) or layer.name.startswith(_FOLDED):
                continue
            for w, part in zip(layer.weights, ("kernel", "bias"), strict=False):
                arrays[f"{layer.name}.{part}"] = np.asarray(w)
        if self.mix_rank:  # head k's view of the tracks before it, folded into its kernel
            for k in range(1, self.n_tracks):
                head = arrays[f"{head_name(k)}.kernel"]
                hidden = head.shape[0] - self.mix_rank
                arrays[f"{head_name(k)}.kernel"] = np.concatenate(
                    [head[:hidden], self._kernel(mix_name(k)) @ head[hidden:]]
                )
        return arrays

    def _kernel(self, name: str) -> np.ndarray:
        return np.asarray(self.decoder.get_layer(name).weights[0])

    def save(self, directory: Path) -> None:
        """``RollModelBase.save``, plus the sampler's data-only files (``sampler.npz``,
        ``sampler.json``): what ``musicflow generate`` loads without TensorFlow."""
        super().save(directory)
        self.sampler().save(Path(directory))

    def sampler(self) -> FrameSampler:
        """This model's sampler, in numpy: what ``sample_pieces`` runs."""
        return FrameSampler(self.name, self.config, self.sampler_arrays())

    def sample_pieces(self, n: int, n_windows: int, seed: int) -> np.ndarray:
        """``FrameSampler.sample_pieces``: ``n`` pieces of ``n_windows`` consecutive windows,
        float32 (n, n_windows, 96, 96) of 0/1; piece i depends only on (seed, i)."""
        return self.sampler().sample_pieces(n, n_windows, seed)

    def sample_track_pieces(self, n: int, n_windows: int, seed: int) -> np.ndarray:
        """``FrameSampler.sample_track_pieces``: float32 (n, n_windows, K, 96, 96)."""
        return self.sampler().sample_track_pieces(n, n_windows, seed)

    def sample(self, n: int, seed: int) -> np.ndarray:
        """``n`` independent windows (each the first window of a piece): float32 (n, 96, 96)."""
        return self.sampler().sample(n, seed)

    def direct(self, n: int, bars: int, seed: int, **direction: Any) -> np.ndarray:
        """``FrameSampler.direct``: pieces as ``musicflow generate`` directs them."""
        return self.sampler().direct(n, bars, seed, **direction)
