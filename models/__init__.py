"""Keras generators of 96×96 piano-roll windows, their training loops and input pipeline.

Public API (TensorFlow is imported only when a model is built or loaded, so importing this
package stays cheap for the CLI):
- The model names and what ``generate`` can direct in each are not here but in
  ``musicflow/core/catalog.py``, so the layers below the models can name them.
- ``build_model(name, seed=..., **overrides)`` → ``RollModel``; unknown names or
  hyperparameters raise ``ModelError``.
- ``load_model(directory)`` → ``RollModel`` from what ``RollModel.save`` wrote.
- ``RollModel``: the protocol every model follows (``fit_epoch``, ``validate``, ``sample``,
  ``sample_pieces``, ``encode``, ``interpolate``, ``save``).
- ``musicflow.models.data``: shard reading, THE held-out split by source file
  (``heldout_split``), tf.data pipelines of single windows or runs of consecutive windows.

Callers build the training pipeline from the model's own config: ``batch_size``, and
``sequence_windows`` (> 1: runs of consecutive windows, ``data.sequence_dataset``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from musicflow.core.catalog import MODEL_NAMES
from musicflow.core.errors import ModelError

if TYPE_CHECKING:
    import tensorflow as tf


@runtime_checkable
class RollModel(Protocol):
    """A trainable generator of (96, 96) windows; see the package docstring."""

    name: str
    kind: str  # "ar" | "vae" | "gan"
    config: dict[str, Any]
    epochs_done: int

    def fit_epoch(self, batches: tf.data.Dataset) -> dict[str, float]:
        """One pass. AR: loss; VAE: loss, recon_loss, kl_loss; GAN: d_loss, g_loss,
        d_acc_real, d_acc_fake."""
        ...

    def validate(self, batches: tf.data.Dataset) -> dict[str, float]:
        """AR and frame VAE: val_nll (exact NLL, or the ELBO bound, nats per frame); thesis
        VAE: val_loss (+ val_recon_loss, val_kl_loss); GAN: val_d_acc_real; ``{}`` when
        ``batches`` is empty (no validation file)."""
        ...

    def sample(self, n: int, seed: int) -> np.ndarray:
        """float32 (n, 96, 96) in [0, 1], deterministic given seed."""
        ...

    def encode(self, windows: np.ndarray) -> np.ndarray:
        """VAE and ``gan``: latent means (n, latent_dim); thesis GAN: NotImplementedError."""
        ...

    def interpolate(self, a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
        """VAE: (steps, 96, 96) decoded along the line between encodings of a and b."""
        ...

    def sample_pieces(self, n: int, n_windows: int, seed: int) -> np.ndarray:
        """float32 (n, n_windows, 96, 96) in [0, 1]: n pieces of consecutive windows in time
        order; piece i depends only on (seed, i). Sequence models continue each window from
        the one before; a VAE walks its latent space (``gan`` through its generator); the thesis
        GAN chains independent samples. What
        ``musicflow generate`` writes (one MIDI file a piece) and what evaluation scores."""
        ...

    def save(self, directory: Path) -> None:
        """Weights + config.json, loadable in a fresh process by ``load_model``."""
        ...


def _model_class(name: str) -> type:
    if name not in MODEL_NAMES:
        raise ModelError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    from musicflow.adapters import tflog

    tflog.import_tensorflow()  # its import-time C++ log held back unless --debug
    if name == "rnn":
        from musicflow.models.rnn import FrameRNN

        return FrameRNN
    if name == "vae":
        from musicflow.models.vae import FrameVAE

        return FrameVAE
    if name == "gan":
        from musicflow.models.gan import LatentGAN

        return LatentGAN
    from musicflow.models.thesis import ThesisGAN, ThesisVAE

    return ThesisVAE if name == "vae-thesis" else ThesisGAN


def model_defaults(name: str) -> dict[str, Any]:
    """The default hyperparameters of a model (its ``DEFAULTS``)."""
    return dict(_model_class(name).DEFAULTS)


def build_model(name: str, *, seed: int, **overrides: Any) -> RollModel:
    """A freshly initialised model; ``overrides`` replace entries of its default config."""
    return _model_class(name)(seed=seed, **overrides)


def load_model(directory: Path) -> RollModel:
    """Rebuild a model from ``config.json`` in ``directory`` and load its saved weights."""
    directory = Path(directory)
    path = directory / "config.json"
    if not path.is_file():
        raise ModelError(f"no saved model in {directory} (config.json missing)")
    try:
        meta = json.loads(path.read_text())
        config = dict(meta["config"])
        name = meta["name"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"unreadable {path}: {exc}") from exc
    seed = config.pop("seed")
    model = build_model(name, seed=seed, **config)
    model._restore(directory, meta)  # type: ignore[attr-defined]
    return model
