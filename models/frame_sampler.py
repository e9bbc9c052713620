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
A VAE's piece is a walk along the great circle between two latent codes (:func:`slerp`); a
latent GAN's (``gan``) passes every code of the walk through its generator (:meth:`constrain`).

With K tracks (the config's ``tracks``) states are (n, F, K, 96): each frame's tracks are drawn
one after the other, track k's head reading the LSTM output and the bits just drawn for tracks
0 … k − 1 (:func:`_sample_tracks`); a merged model is K = 1, the arrays and draws it always had.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from musicflow.adapters import atomic
from musicflow.core import frames
from musicflow.core.errors import ModelError
from musicflow.core.roll import COLS, ROWS

P = ROWS  # pitches per frame
ARRAYS_FILE = "sampler.npz"  # the named arrays (numpy's zip of .npy files, no pickle)
META_FILE = "sampler.json"  # format, model name, config, each array's shape and dtype
FORMAT_VERSION = 1


def track_count(config: Mapping[str, Any]) -> int:
    """K, the tracks a model plays jointly: its config's ``tracks`` (the dataset's track list,
    docs/encoding.md "Tracks"), 1 for a model of merged rolls (no ``tracks`` or an empty one)."""
    return max(1, len(config.get("tracks") or ()))


def pitched_tracks(config: Mapping[str, Any]) -> np.ndarray:
    """Bool (K,): the tracks whose rows are pitches (key normalisation moves them); a drum
    track's rows are drum keys and stay where they are."""
    specs = config.get("tracks") or ()
    if not specs:
        return np.ones(1, bool)
    return np.array([not bool(t.get("drums", False)) for t in specs])


def head_name(k: int) -> str:
    """Track ``k``'s output layer: ``out`` (the only one of a merged model), ``out_1``, …"""
    return "out" if k == 0 else f"out_{k}"


def link_name(k: int) -> str:
    """Track ``k``'s count link: ``link`` (the only one of a merged model), ``link_1``, …"""
    return "link" if k == 0 else f"link_{k}"


def lstm_names(i: int) -> tuple[str, str, str]:
    """The array names of LSTM layer ``i``: kernel, recurrent kernel, bias."""
    return f"lstm{i}.kernel", f"lstm{i}.recurrent_kernel", f"lstm{i}.bias"


def array_names(config: Mapping[str, Any]) -> list[str]:
    """The arrays a sampler of this config needs: per LSTM layer its three weights (and, when
    conditioned, the dense layers ``h0_i``, ``c0_i`` giving its initial state), per track its
    output layer and count link (``head_name``, ``link_name``), and the key prior's counts."""
    names = ["key_prior.counts"]
    for k in range(track_count(config)):
        names += [f"{head_name(k)}.kernel", f"{head_name(k)}.bias", f"{link_name(k)}.kernel"]
    conditioned = int(config.get("latent_dim", 0)) > 0 or bool(config["key_normalize"])
    for i in range(int(config["layers"])):
        names += lstm_names(i)
        if conditioned:
            names += [f"h0_{i}.kernel", f"h0_{i}.bias", f"c0_{i}.kernel", f"c0_{i}.bias"]
    return names + encoder_names(config) + actor_names(config)


def actor_names(config: Mapping[str, Any]) -> list[str]:
    """A latent GAN's generator arrays (``gan``: its dense layers ``actor0``, ``actor1``, …
    and ``actor_out``), which move prior draws to where real codes lie; none for others."""
    if "actor_layers" not in config:
        return []
    names = []
    for i in range(len(config["actor_layers"])):
        names += [f"actor{i}.kernel", f"actor{i}.bias"]
    return [*names, "actor_out.kernel", "actor_out.bias"]


def encoder_names(config: Mapping[str, Any]) -> list[str]:
    """A VAE's encoder arrays (its strided convolutions ``enc0``, ``enc1``, … and ``z_mean``),
    which encode a prompt or the ends of an interpolation; none for a model without codes."""
    if not int(config.get("latent_dim", 0)):
        return []
    names = []
    for i in range(len(config["enc_filters"])):
        names += [f"enc{i}.kernel", f"enc{i}.bias"]
    return [*names, "z_mean.kernel", "z_mean.bias"]


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
        self.n_tracks = track_count(self.config)
        self.pitched = pitched_tracks(self.config)

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
            if k.endswith(".kernel") and k.startswith(("h0_", "c0_", "out"))
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

    def _heads_and_links(self, temperature: float) -> tuple[list, list[np.ndarray]]:
        """Per track: its output layer's (kernel, bias) and its count link over
        ``temperature``."""
        _, dense = self._numpy_weights()
        heads = [dense[head_name(k)] for k in range(self.n_tracks)]
        links = [self.arrays[f"{link_name(k)}.kernel"] / temperature for k in range(self.n_tracks)]
        return heads, links

    def _decode_window(
        self,
        cond: np.ndarray,
        noise: np.ndarray,
        context: np.ndarray | None,
        temperature: float,
    ) -> np.ndarray:
        """Sample one window's states (n, F, K, 96) from a fresh LSTM state, after reading
        ``context`` (n, Fc, K, 96) states; ``cond`` (n, Fc + F, C); ``noise``
        (n, F, K · (2 + 2·96)) uniforms in [0, 1)."""
        lstm, dense = self._numpy_weights()
        n = len(noise)
        h, c = _initial_state(cond[:, 0], lstm, dense)
        n_context = 0 if context is None else context.shape[1]
        position = np.eye(self.period, dtype=np.float32)
        heads, links = self._heads_and_links(temperature)
        prev = np.zeros((n, self.n_tracks, P), np.int8)
        out = np.zeros((n, self.frames, self.n_tracks, P), np.int8)
        for f in range(n_context + self.frames):
            y = _lstm_step(_frame_input(prev, position[f % self.period], cond[:, f]), h, c, lstm)
            if f < n_context:
                prev = context[:, f]
                continue
            state = _sample_tracks(y, heads, links, prev, noise[:, f - n_context], temperature)
            out[:, f - n_context] = state
            prev = state
        return out

    def head_rows(self, states: np.ndarray, cond: np.ndarray) -> np.ndarray:
        """Every track's output row (n, F, K, 3·96 + 2·97) teacher-forced on ``states``
        (n, F, K, 96) with ``cond`` (n, F, C), at temperature 1: what the sampler's heads
        compute, for comparison with the Keras decoder's rows (tests)."""
        lstm, dense = self._numpy_weights()
        n, n_frames = states.shape[:2]
        h, c = _initial_state(cond[:, 0], lstm, dense)
        position = np.eye(self.period, dtype=np.float32)
        heads, _ = self._heads_and_links(1.0)
        prev = np.zeros((n, self.n_tracks, P), np.int8)
        rows = []
        for f in range(n_frames):
            y = _lstm_step(_frame_input(prev, position[f % self.period], cond[:, f]), h, c, lstm)
            rows.append([_track_row(y, heads, states[:, f], k) for k in range(self.n_tracks)])
            prev = states[:, f]
        return np.asarray(rows, np.float32).transpose(2, 0, 1, 3)

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
        return self.constrain(slerp(ends[:, 0], ends[:, 1], t))

    def constrain(self, codes: np.ndarray) -> np.ndarray:
        """Codes (..., d) through a latent GAN's generator (``models/gan.py``): the gated
        residual z' = (1 − g)·z + g·Δz of its ReLU layers; unchanged for a model without one."""
        if "actor_layers" not in self.config:
            return codes
        a = self.arrays
        z = np.asarray(codes, np.float32)
        y = z
        for i in range(len(self.config["actor_layers"])):
            y = np.maximum(y @ a[f"actor{i}.kernel"] + a[f"actor{i}.bias"], 0.0)
        out = y @ a["actor_out.kernel"] + a["actor_out.bias"]
        d = z.shape[-1]
        gate = _sigmoid(out[..., d:])
        return ((1.0 - gate) * z + gate * out[..., :d]).astype(np.float32)

    def sample_pieces(self, n: int, n_windows: int, seed: int) -> np.ndarray:
        """``n`` pieces of ``n_windows`` consecutive windows, float32 (n, n_windows, 96, 96) of
        0/1: the pieces of :meth:`direct` without direction, cut into windows (what
        ``generate`` writes and evaluation scores). Piece i depends only on (seed, i)."""
        if n_windows < 1:
            raise ModelError("need n >= 0 pieces of at least one window")
        return self.sample_track_pieces(n, n_windows, seed).any(axis=2).astype(np.float32)

    def sample_track_pieces(self, n: int, n_windows: int, seed: int) -> np.ndarray:
        """:meth:`sample_pieces` with each track apart: float32 (n, n_windows, K, 96, 96) of
        0/1 (K = 1 for a merged model); ``sample_pieces`` is this laid over the tracks."""
        if n_windows < 1:
            raise ModelError("need n >= 0 pieces of at least one window")
        song = self.direct_tracks(n, n_windows * self.frames // self.period, seed)
        pieces = song.reshape(n, self.n_tracks, ROWS, n_windows, COLS).transpose(0, 3, 1, 2, 4)
        return np.ascontiguousarray(pieces)

    def _pieces(self, n: int, n_windows: int, seed: int, latents: np.ndarray | None) -> np.ndarray:
        """Pieces of window codes (n, n_windows, d) (a VAE's ``interpolate``; None for an
        rnn), each window from a fresh state after reading the window before it: the sampler
        before :meth:`direct`, the "before" of bench/silence.py."""
        if n < 0 or n_windows < 1:
            raise ModelError("need n >= 0 pieces of at least one window")
        rngs = [np.random.default_rng([int(seed), i]) for i in range(n)]
        tonic = self._sample_tonics(rngs) if self.config["key_normalize"] else None
        width = self.n_tracks * (2 + 2 * P)
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
        song = self._rolls(np.concatenate(states, axis=1))  # (n, K, 96, T)
        if tonic is not None:
            song = self._move(song, -frames.key_shifts(tonic))
        pieces = song.any(axis=1).reshape(n, ROWS, n_windows, COLS).transpose(0, 2, 1, 3)
        return np.ascontiguousarray(pieces).astype(np.float32)

    def _rolls(self, states: np.ndarray) -> np.ndarray:
        """States (n, F, K, 96) → bool rolls (n, K, 96, F · frame_steps)."""
        n, n_frames, k = states.shape[:3]
        flat = states.transpose(0, 2, 1, 3).reshape(n * k, n_frames, P)
        rolls = frames.states_to_roll(flat, int(self.config["frame_steps"]))
        return rolls.reshape(n, k, ROWS, -1)

    def _move(self, songs: np.ndarray, shifts: np.ndarray) -> np.ndarray:
        """Each song (n, K, 96, T) moved by ``shifts[i]`` semitones, its pitched tracks only
        (a drum track's rows are drum keys)."""
        out = songs.copy()
        for k in np.flatnonzero(self.pitched):
            out[:, k] = frames.transpose_windows(songs[:, k], shifts)
        return out

    def _merged(self, windows: np.ndarray) -> np.ndarray:
        """The pitched tracks of windows (n, K, 96, T), laid over each other: (n, 96, T).
        What key estimation reads (all tracks when none is pitched)."""
        mask = self.pitched if self.pitched.any() else np.ones(self.n_tracks, bool)
        return windows[:, mask].any(axis=1)

    def _as_tracks(self, windows: np.ndarray) -> np.ndarray:
        """Bool windows (n, K, 96, T); a merged model also takes (n, 96, T)."""
        x = np.asarray(windows, bool)
        if x.ndim == 3 and self.n_tracks == 1:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1] != self.n_tracks or x.shape[2] != ROWS:
            raise ModelError(
                f"{self.name}: expected windows (n, {self.n_tracks}, {ROWS}, T), got {x.shape}"
            )
        return x

    def sample(self, n: int, seed: int) -> np.ndarray:
        """``n`` independent windows (each the first window of a piece): float32 (n, 96, 96)."""
        return self.sample_pieces(n, 1, seed)[:, 0]

    # --- directed sampling (musicflow generate's controls) ---------------------------------
    def tonics_of(self, songs: np.ndarray) -> np.ndarray:
        """The tonic the model reads in each song (n, 96, T) (merged: its pitched tracks laid
        over each other): its best-fitting major scale."""
        return frames.window_tonics(songs, int(self.config["pitch_low"]))

    def encode(self, windows: np.ndarray) -> np.ndarray:
        """A VAE's latent means (n, d) of windows (n, 96, 96) (with tracks (n, K, 96, 96)),
        key-normalised as in training: the encoder's strided convolutions ("same" padding,
        leaky ReLU 0.2) over every track's onset and hold bits, and ``z_mean``."""
        if not self.latent_dim:
            raise ModelError(f"a {self.name} model has no encoder")
        a = self.arrays
        x = self._as_tracks(windows)
        if self.config["key_normalize"]:
            x = self._move(x, frames.key_shifts(self.tonics_of(self._merged(x))))
        n, k = x.shape[:2]
        states = frames.roll_to_states(x.reshape(n * k, ROWS, -1), int(self.config["frame_steps"]))
        states = states.reshape(n, k, -1, P).transpose(0, 2, 1, 3)  # (n, F, K, 96)
        y = _bits(states)
        for i in range(len(self.config["enc_filters"])):
            kernel, bias = a[f"enc{i}.kernel"], a[f"enc{i}.bias"]
            width, steps = kernel.shape[0], y.shape[1]
            out_steps = -(-steps // 2)
            pad = max((out_steps - 1) * 2 + width - steps, 0)
            y = np.pad(y, ((0, 0), (pad // 2, pad - pad // 2), (0, 0)))
            y = sum(y[:, j : j + 2 * out_steps : 2] @ kernel[j] for j in range(width)) + bias
            y = np.where(y > 0, y, 0.2 * y)
        return (y.reshape(len(y), -1) @ a["z_mean.kernel"] + a["z_mean.bias"]).astype(np.float32)

    def direct(self, n: int, bars: int, seed: int, **direction: Any) -> np.ndarray:
        """:meth:`direct_tracks` laid over the tracks: float32 (n, 96, bars · 48) of 0/1."""
        return self.direct_tracks(n, bars, seed, **direction).any(axis=1).astype(np.float32)

    def direct_tracks(
        self,
        n: int,
        bars: int,
        seed: int,
        *,
        prompt: np.ndarray | None = None,
        ends: tuple[np.ndarray, np.ndarray] | None = None,
        tonic: int | None = None,
        temperature: float | None = None,
        first: int = 0,
    ) -> np.ndarray:
        """float32 (n, K, 96, bars · 48) of 0/1, each track apart (K = 1 for a merged model):
        pieces ``first`` … ``first + n − 1`` of ``bars`` 4/4 bars, piece i a function of
        (seed, i) only (so a caller may ask for many pieces a few at a time).

        - ``prompt`` (bool (96, 48·N), the model's pitch window): each piece continues it. The
          LSTM reads the prompt, key-normalised by its own tonic, and samples on from the
          state it reached; a VAE also gives the prompt's windows their codes and walks on
          from the last one's.
        - ``ends`` (a VAE's two songs A, B): the walk goes from A's code to B's, in A's key
          for the first half of the windows and B's for the second.
        - ``tonic`` (0–11, the major scale's): the key of new pieces, else drawn from the
          training data's counts. ``temperature`` divides every logit (default: the config's).

        The state is carried through the whole piece (no restart per window), and a rest in
        every voice ends before it fills a bar (the frame after 15 silent ones gets at least
        one onset): no bar is wholly silent (docs/models.md, "No drift into silence"). With
        tracks, silence counts over all of them and the first track takes the onset.

        A model with tracks takes neither ``prompt`` nor ``ends`` (a prompt is one merged roll:
        which voice plays which note is not known).
        """
        if n < 0 or bars < 1:
            raise ModelError("need n >= 0 pieces of at least one bar")
        k_tracks = self.n_tracks
        if k_tracks > 1 and ends is not None:
            raise ModelError(
                f"a {self.name} model trained on {k_tracks} tracks cannot interpolate yet"
            )
        t = float(self.config["temperature"] if temperature is None else temperature)
        g = int(self.config["frame_steps"])
        rngs = [np.random.default_rng([int(seed), i]) for i in range(first, first + n)]
        # the prompt's tracks (K, 96, T) (a merged model's prompt: (96, T)), and them merged
        parts = np.zeros((k_tracks, ROWS, 0), bool) if prompt is None else np.asarray(prompt, bool)
        if parts.ndim == 2 and k_tracks == 1:
            parts = parts[None]
        if parts.ndim != 3 or len(parts) != k_tracks or parts.shape[1] != ROWS:
            raise ModelError(
                f"a {self.name} model plays {k_tracks} tracks: its prompt must be "
                f"({k_tracks}, {ROWS}, T), got {parts.shape}"
            )
        head = self._merged(parts[None])[0]
        n_head = head.shape[1] // g
        n_frames = n_head + bars * self.period
        n_windows = -(-n_frames // self.frames)
        # the tonic of every frame (key_normalize), and the window codes (VAE)
        keyed = bool(self.config["key_normalize"])
        frame_tonic = np.zeros((n, n_frames), int)
        if keyed:
            if prompt is not None:
                frame_tonic[:] = self.tonics_of(head[None])[0]
            elif ends is not None:
                ta, tb = self.tonics_of(np.stack([_first_window(e) for e in ends]))
                half = -(-n_windows // 2) * self.frames
                frame_tonic[:, :half], frame_tonic[:, half:] = ta, tb
            elif tonic is not None:
                frame_tonic[:] = int(tonic) % 12
            else:
                frame_tonic[:] = self._sample_tonics(rngs)[:, None]
        latents = self._direct_latents(rngs, n_windows, parts, ends)
        cond = [] if latents is None else [np.repeat(latents, self.frames, axis=1)[:, :n_frames]]
        if keyed:
            cond.append(np.eye(12, dtype=np.float32)[frame_tonic])
        cond_frames = (
            np.concatenate(cond, axis=2).astype(np.float32)
            if cond
            else np.zeros((n, n_frames, 0), np.float32)
        )
        known = np.zeros((n, n_head, k_tracks, P), np.int8)
        if n_head:
            normal = parts[None]
            if keyed:  # every pitched track by the prompt's shift
                normal = self._move(normal, frames.key_shifts(frame_tonic[:1, 0]))
            known[:] = frames.roll_to_states(normal[0], g).transpose(1, 0, 2)
        width = k_tracks * (2 + 2 * P)
        noise = (
            np.stack([rng.random((n_frames, width)) for rng in rngs])
            if n
            else np.zeros((0, n_frames, width))
        )
        states = self._carry(cond_frames, known, noise, t)
        song = self._rolls(states)[..., head.shape[1] :]  # (n, K, 96, bars · 48)
        if keyed:  # back from C, window by window (an interpolation changes key half-way)
            steps = self.period * g * 2  # the steps of a window
            for start in range(0, song.shape[3], steps):
                f = (head.shape[1] + start) // g
                block = song[..., start : start + steps]
                shift = -frames.key_shifts(frame_tonic[:, f])
                song[..., start : start + steps] = self._move(block, shift)
        return np.ascontiguousarray(song).astype(np.float32)

    def _direct_latents(
        self,
        rngs: list[np.random.Generator],
        n_windows: int,
        head: np.ndarray,
        ends: tuple[np.ndarray, np.ndarray] | None,
    ) -> np.ndarray | None:
        """A VAE's window codes (n, n_windows, d) for ``direct``: the prompt's own codes (its
        tracks ``head`` (K, 96, T)), then a walk from the last whole prompt window's code to a
        normal draw; or the walk from A's code to B's; or the unconditional walk between two
        draws."""
        if not self.latent_dim:
            return None
        n = len(rngs)
        if ends is not None:
            za, zb = self.encode(np.stack([_first_window(e) for e in ends]))
            t = np.linspace(0.0, 1.0, n_windows) if n_windows > 1 else np.zeros(1)
            return np.repeat(self.constrain(slerp(za[None], zb[None], t)), n, axis=0)
        steps = head.shape[-1]
        whole = steps // COLS  # prompt windows without the seam
        if not steps:
            return self._piece_latents(rngs, n_windows)
        k = len(head)
        padded = np.zeros((k, ROWS, -(-steps // COLS) * COLS), bool)
        padded[..., :steps] = head
        codes = self.encode(padded.reshape(k, ROWS, -1, COLS).transpose(2, 0, 1, 3))
        start = codes[max(whole - 1, 0)]
        draws = np.stack([rng.standard_normal(self.latent_dim) for rng in rngs]) if n else None
        rest = n_windows - whole
        t = np.linspace(0.0, 1.0, rest + 1)[1:] if rest else np.zeros(0)
        out = np.zeros((n, n_windows, self.latent_dim), np.float32)
        out[:, :whole] = codes[:whole]
        if rest and n:
            out[:, whole:] = self.constrain(slerp(np.repeat(start[None], n, axis=0), draws, t))
        return out

    def _carry(
        self, cond: np.ndarray, known: np.ndarray, noise: np.ndarray, temperature: float
    ) -> np.ndarray:
        """States (n, F, K, 96) of one LSTM run over all F frames of ``cond`` (n, F, C) from
        the state ``cond``'s first frame gives: the first ``known`` (n, Fk, K, 96) frames are
        read, the others sampled with ``noise`` (n, F, K · (2 + 2·96))."""
        lstm, dense = self._numpy_weights()
        n, n_frames = cond.shape[:2]
        h, c = _initial_state(cond[:, 0], lstm, dense)
        position = np.eye(self.period, dtype=np.float32)
        heads, links = self._heads_and_links(temperature)
        n_known = known.shape[1]
        out = np.zeros((n, n_frames, self.n_tracks, P), np.int8)
        out[:, :n_known] = known
        prev = np.zeros((n, self.n_tracks, P), np.int8)
        rest = np.zeros(n, int)  # frames every voice of every track has rested, up to this one
        for f in range(n_frames):
            y = _lstm_step(_frame_input(prev, position[f % self.period], cond[:, f]), h, c, lstm)
            if f >= n_known:
                # a rest in every voice ends before it fills a bar: no bar is wholly silent
                force = rest >= self.period - 1
                out[:, f] = _sample_tracks(y, heads, links, prev, noise[:, f], temperature, force)
            prev = out[:, f]
            rest = np.where((prev == frames.OFF).all(axis=(1, 2)), rest + 1, 0)
        return out


def _initial_state(
    cond0: np.ndarray, lstm: list[tuple[np.ndarray, ...]], dense: dict[str, list[np.ndarray]]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each LSTM layer's first (h, c): from the first frame's condition (n, C) through the
    ``h0_i``/``c0_i`` layers, or zeros for a model without one."""
    if cond0.shape[1]:
        h = [np.tanh(cond0 @ dense[f"h0_{i}"][0] + dense[f"h0_{i}"][1]) for i in range(len(lstm))]
        c = [cond0 @ dense[f"c0_{i}"][0] + dense[f"c0_{i}"][1] for i in range(len(lstm))]
        return h, c
    zeros = [np.zeros((len(cond0), layer[1].shape[0]), np.float32) for layer in lstm]
    return zeros, [z.copy() for z in zeros]


def _bits(states: np.ndarray) -> np.ndarray:
    """States (..., K, 96) → float32 (..., 2 · 96 · K): per track its onset bits, then its
    hold bits, track after track (``models/sequence.frame_bits``)."""
    both = np.stack([states == frames.ONSET, states == frames.HOLD], axis=-2)
    return both.reshape(*states.shape[:-2], -1).astype(np.float32)


def _frame_input(prev: np.ndarray, position: np.ndarray, cond: np.ndarray) -> np.ndarray:
    """The decoder's input for one frame (n, ·): the previous frame's onset and hold bits of
    every track (``prev`` (n, K, 96), or (n, 96) for one), the position in the bar (one-hot)
    and the frame's condition, as ``models/sequence.py`` feeds the Keras LSTM."""
    n = len(prev)
    if prev.ndim == 2:
        prev = prev[:, None]
    return np.concatenate(
        [_bits(prev), np.broadcast_to(position, (n, len(position))), cond], axis=1
    )


def _track_row(y: np.ndarray, heads: list, cur: np.ndarray, k: int) -> np.ndarray:
    """Track ``k``'s output row (n, 3·96 + 2·97): its head over the LSTM output ``y`` and, for
    k > 0, this frame's bits of tracks 0 … k − 1 (``cur`` (n, K, 96))."""
    x = y if k == 0 else np.concatenate([y, _bits(cur[:, :k])], axis=1)
    kernel, bias = heads[k]
    return x @ kernel + bias


def _sample_tracks(
    y: np.ndarray,
    heads: list,
    links: list[np.ndarray],
    prev: np.ndarray,
    u: np.ndarray,
    temperature: float,
    force_onset: np.ndarray | None = None,
) -> np.ndarray:
    """One frame's states (n, K, 96), track after track: track k's head reads the LSTM output
    ``y`` and the onset and hold bits just drawn for tracks 0 … k − 1 (``models/sequence.py``),
    then :func:`_sample_frame` draws its notes. ``heads``: per track (kernel, bias);
    ``links``: per track its count link over the temperature; ``u`` (n, K · (2 + 2·96)).
    ``force_onset`` applies to the first track (a rest of every track at its limit)."""
    n, k_tracks = prev.shape[:2]
    width = 2 + 2 * P
    cur = np.zeros((n, k_tracks, P), np.int8)
    for k in range(k_tracks):
        full = _track_row(y, heads, cur, k) / temperature
        force = force_onset if k == 0 else None
        u_k = u[:, k * width : (k + 1) * width]
        cur[:, k] = _sample_frame(full, links[k], prev[:, k], u_k, force)
    return cur


def _lstm_step(
    y: np.ndarray, h: list[np.ndarray], c: list[np.ndarray], lstm: list[tuple[np.ndarray, ...]]
) -> np.ndarray:
    """One frame through the stacked LSTM cells (Keras's gate order: input, forget, cell,
    output); updates the states ``h`` and ``c`` in place and returns the top layer's output."""
    for i, (kernel, recurrent, bias) in enumerate(lstm):
        hsz = recurrent.shape[0]
        z = y @ kernel + h[i] @ recurrent + bias
        gate_i, gate_f = _sigmoid(z[:, :hsz]), _sigmoid(z[:, hsz : 2 * hsz])
        cand, gate_o = np.tanh(z[:, 2 * hsz : 3 * hsz]), _sigmoid(z[:, 3 * hsz :])
        c[i] = gate_f * c[i] + gate_i * cand
        h[i] = gate_o * np.tanh(c[i])
        y = h[i]
    return y


def _first_window(song: np.ndarray) -> np.ndarray:
    """A song's (96, T) first window, padded with silence: what stands for it in a morph."""
    out = np.zeros((ROWS, COLS), bool)
    width = min(COLS, song.shape[1])
    out[:, :width] = song[:, :width]
    return out


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
    full: np.ndarray,
    link: np.ndarray,
    prev: np.ndarray,
    u: np.ndarray,
    force_onset: np.ndarray | None = None,
) -> np.ndarray:
    """One frame's states (n, 96) from the decoder's output row ``full`` (n, 96·3 + 2·97): the
    held count, the held set, the new count given it, the set of onsets. ``link`` (97, 97):
    the new count's offset per held count; ``u`` (n, 2 + 2·96): this frame's uniforms.
    ``force_onset`` (bool (n,)): pieces whose new count may not be 0 (a rest at its limit)."""
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
    if force_onset is not None:
        new_logits[force_onset, 0] = -np.inf
    k_on = _categorical(new_logits, u[:, 1])
    log_w_new = np.where(held, -np.inf, logits[:, :, 1] - logits[:, :, 0])
    new = _sample_set(log_w_new, k_on, u[:, 2 + P :])
    return np.where(held, frames.HOLD, np.where(new, frames.ONSET, frames.OFF)).astype(np.int8)
