"""The frame models' sampler (``rnn``, ``vae``) in numpy alone: no TensorFlow, no Keras.

A :class:`FrameSampler` is built from the model's config and a dict of named numpy arrays (the
decoder's LSTM and dense weights, the count link, the key prior's tonic counts; see
``ARRAY_NAMES``), so ``musicflow generate`` samples a registered model without importing
TensorFlow (the arrays are stored beside the Keras weights, docs/tracking.md). The Keras model
builds the same object from its own weights (``FrameModelBase.sampler``) and delegates its
``sample_pieces`` here, so the two paths give the same pieces bit for bit.

It runs the decoder's LSTM equations (Keras' gate order i, f, c, o) frame by frame, then samples
each frame as ``models/sequence.py`` describes: the held count, the held set from the
conditional Bernoulli distribution of the hold odds, the new count given it, the set of onsets.
A VAE's piece is a walk along the great circle between two latent codes (:func:`slerp`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from musicflow import atomic, frames
from musicflow.errors import ModelError
from musicflow.roll import COLS, ROWS

P = ROWS  # pitches per frame
ARRAYS_FILE = "sampler.npz"  # the named arrays (numpy's zip of .npy files, no pickle)
META_FILE = "sampler.json"  # format, model name, config, each array's shape and dtype
FORMAT_VERSION = 1


def lstm_names(i: int) -> tuple[str, str, str]:
    """The array names of LSTM layer ``i``: kernel, recurrent kernel, bias."""
    return f"lstm{i}.kernel", f"lstm{i}.recurrent_kernel", f"lstm{i}.bias"


def array_names(config: Mapping[str, Any]) -> list[str]:
    """The arrays a sampler of this config needs: per LSTM layer its three weights (and, when
    conditioned, the dense layers ``h0_i``, ``c0_i`` giving its initial state), the output
    layer, the count link and the key prior's counts."""
    names = ["out.kernel", "out.bias", "link.kernel", "key_prior.counts"]
    conditioned = int(config.get("latent_dim", 0)) > 0 or bool(config["key_normalize"])
    for i in range(int(config["layers"])):
        names += lstm_names(i)
        if conditioned:
            names += [f"h0_{i}.kernel", f"h0_{i}.bias", f"c0_{i}.kernel", f"c0_{i}.bias"]
    return names


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation between codes a, b (n, d) at fractions t (m,) → (n, m, d)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cos = np.sum(a64 * b64, axis=1) / (
        np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1) + 1e-12
    )
    omega = np.arccos(np.clip(cos, -1.0, 1.0))[:, None]
    sin = np.sin(omega)
    tt = np.asarray(t, np.float64)[None, :]
    wa = np.where(sin > 1e-6, np.sin((1 - tt) * omega) / np.maximum(sin, 1e-12), 1 - tt)
    wb = np.where(sin > 1e-6, np.sin(tt * omega) / np.maximum(sin, 1e-12), tt)
    return (wa[..., None] * a64[:, None] + wb[..., None] * b64[:, None]).astype(np.float32)


class FrameSampler:
    """Samples pieces of a frame model from its config and named arrays (module docstring)."""

    def __init__(self, name: str, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]):
        self.name = name
        self.config = dict(config)
        missing = [k for k in array_names(self.config) if k not in arrays]
        if missing:
            raise ModelError(f"{name} sampler: missing arrays {', '.join(missing)}")
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        g = int(self.config["frame_steps"])
        if g < 1 or COLS % g:
            raise ModelError(f"{name}: frame_steps must divide {COLS}, got {g}")
        self.frames = COLS // g
        self.period = 4 * 12 // g  # frames per 4/4 bar: the position input
        self.latent_dim = int(self.config.get("latent_dim", 0))

    # --- data-only files (docs/tracking.md) ------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write ``sampler.npz`` (the arrays) and ``sampler.json`` into ``directory``."""
        import io

        buffer = io.BytesIO()
        np.savez(buffer, **self.arrays)
        atomic.write_bytes(Path(directory) / ARRAYS_FILE, buffer.getvalue())
        meta = {
            "format": FORMAT_VERSION,
            "name": self.name,
            "config": self.config,
            "arrays": {
                k: {"shape": list(v.shape), "dtype": str(v.dtype)}
                for k, v in sorted(self.arrays.items())
            },
        }
        atomic.write_text(Path(directory) / META_FILE, json.dumps(meta, indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> FrameSampler:
        """The sampler ``save`` wrote: arrays read without pickle, each checked against the
        shape and dtype ``sampler.json`` records. ModelError (one line) when unreadable."""
        directory = Path(directory)
        try:
            meta = json.loads((directory / META_FILE).read_text())
            if meta["format"] != FORMAT_VERSION:
                raise ValueError(
                    f"format {meta['format']!r}, this musicflow reads {FORMAT_VERSION}"
                )
            expected = {k: (tuple(v["shape"]), str(v["dtype"])) for k, v in meta["arrays"].items()}
            with np.load(directory / ARRAYS_FILE, allow_pickle=False) as stored:
                arrays = {k: stored[k] for k in stored.files}
            name, config = str(meta["name"]), dict(meta["config"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"unreadable sampler files in {directory}: {exc}") from exc
        found = {k: (v.shape, str(v.dtype)) for k, v in arrays.items()}
        if found != expected:
            odd = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
            raise ModelError(f"sampler files in {directory} disagree on arrays {', '.join(odd)}")
        return cls(name, config, arrays)

    # --- the decoder's weights ------------------------------------------------------------
    def _numpy_weights(self) -> tuple[list[tuple[np.ndarray, ...]], dict[str, list[np.ndarray]]]:
        a = self.arrays
        n_layers = int(self.config["layers"])
        lstm = [tuple(a[k] for k in lstm_names(i)) for i in range(n_layers)]
        dense = {
            k[: -len(".kernel")]: [a[k], a[k[: -len(".kernel")] + ".bias"]]
            for k in a
            if k.endswith(".kernel") and (k.startswith(("h0_", "c0_")) or k == "out.kernel")
        }
        return lstm, dense

    # --- sampling -------------------------------------------------------------------------
    def _sample_tonics(self, rngs: list[np.random.Generator]) -> np.ndarray:
        counts = np.asarray(self.arrays["key_prior.counts"], np.float64) + 1.0
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
        link = self.arrays["link.kernel"]
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
        """A VAE's window codes (n, n_windows, d): a walk between two normal draws; None for
        a model without latent codes."""
        if not self.latent_dim:
            return None
        d = self.latent_dim
        ends = (
            np.stack([rng.standard_normal((2, d)) for rng in rngs])
            if rngs
            else (np.zeros((0, 2, d)))
        )
        t = np.linspace(0.0, 1.0, n_windows) if n_windows > 1 else np.zeros(1)
        return slerp(ends[:, 0], ends[:, 1], t)

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
