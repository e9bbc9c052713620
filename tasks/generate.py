"""Generate: sample pieces from a registered model and write them as MIDI, each with an audio
preview beside it (OGG/Vorbis, ``musicflow/audio.py``).

Models are logged (``tasks/registry.py``) as MLflow pyfunc models from code
(``tasks/sampler_model.py``, no pickle) wrapping the model folder that ``RollModel.save``
writes, plus ``sampling.json`` (the calibrated threshold and the dataset's encoding, pitch
window included). So any registered version loads in a fresh process by URI
(``models:/NAME/VERSION``, ``models:/NAME@champion``, ``runs:/…``), with
``mlflow.pyfunc.load_model`` or with ``musicflow generate``, which reads only the JSON and
weight files (``tracking.fetch_model`` checks them against the digests recorded at
registration) and never runs code from the artifact store. ``rnn`` and ``vae`` load as their
numpy sampler (``sampler.npz``, ``models/frame_sampler.py``), so ``musicflow generate`` never
imports TensorFlow, Keras, MLflow or Prefect for them; the other models load with Keras. A
piece is what the model's own ``sample_pieces`` gives, binarised with the calibrated threshold
and decoded in the encoding's pitch window. :class:`RollSampler` stays in this module:
registered models refer to it here (``tasks/sampler_model.py`` wraps it for MLflow's loader).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from musicflow import atomic, audio, tracking
from musicflow.defaults import PIECE_WINDOWS
from musicflow.errors import ModelError

if TYPE_CHECKING:
    import pandas as pd


class RollSampler:
    """A registered model ready to sample: ``model`` (its ``sample_pieces``) and ``sampling``
    (threshold, encoding). Also MLflow's pyfunc model (``tasks/sampler_model.py``):
    ``predict(pd.DataFrame({"n": [8], "seed": [0]}))`` → uint8 (n, 96·96) binary windows,
    thresholded and cleaned as ``musicflow generate`` does."""

    def load_context(self, context) -> None:
        self.load_dir(Path(context.artifacts["model_dir"]))

    def load_dir(self, model_dir: Path) -> RollSampler:
        """Load the model from its data files: the numpy sampler (``sampler.json``,
        ``sampler.npz``) where the folder has one, else the JSON and Keras weight files
        (``models.load_model``); the sampling settings from ``sampling.json``. ModelError
        when they are unreadable."""
        from musicflow.models import frame_sampler

        try:
            sampling = json.loads((Path(model_dir) / "sampling.json").read_text())
            float(sampling["threshold"])
            int(sampling["encoding"]["pitch_low"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"unreadable sampling.json in {model_dir}: {exc}") from exc
        files = (frame_sampler.META_FILE, frame_sampler.ARRAYS_FILE)
        try:
            if any((Path(model_dir) / name).exists() for name in files):
                self.model = frame_sampler.FrameSampler.load(Path(model_dir))
            else:
                from musicflow.models import load_model

                self.model = load_model(Path(model_dir))
        except ModelError:
            raise
        except Exception as exc:  # h5py/Keras on a damaged weights file
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ModelError(f"damaged model files in {model_dir}: {first}") from exc
        self.sampling = sampling
        return self

    def sample_probs(self, n: int, seed: int) -> np.ndarray:
        return self.model.sample(n, seed=seed)

    def sample_windows(self, n: int, seed: int) -> np.ndarray:
        from musicflow.sampling import binarize

        return binarize(self.sample_probs(n, seed), self.sampling["threshold"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        n = int(model_input["n"].iloc[0]) if "n" in model_input else 1
        seed = int(model_input["seed"].iloc[0]) if "seed" in model_input else 0
        return self.sample_windows(n, seed).reshape(n, -1).astype(np.uint8)


def load_sampler(model_uri: str, dst: Path | None = None) -> RollSampler:
    """The sampler of a registered version (or run), from its data files only."""
    import tempfile

    if dst is not None:
        return RollSampler().load_dir(tracking.fetch_model(model_uri, dst))
    with tempfile.TemporaryDirectory() as tmp:
        return RollSampler().load_dir(tracking.fetch_model(model_uri, Path(tmp)))


@dataclass
class GenerationResult:
    midi_files: list[Path]
    songs: list[np.ndarray] = field(default_factory=list)  # bool (96, T): what each file holds
    audio_files: list[Path] = field(default_factory=list)  # the previews, one beside each MIDI
    audio_note: str | None = None  # why there are no previews, when there are none


def generate_midi(
    model_uri: str,
    *,
    n: int,
    out_dir: Path,
    seed: int = 0,
    windows_per_piece: int = PIECE_WINDOWS,
    soundfont: str | None = None,
    audio_preview: bool = True,
    sampler: RollSampler | None = None,
    show_progress: bool = False,
) -> GenerationResult:
    """Write ``n`` pieces of ``windows_per_piece`` windows (8 windows = 16 bars of 4/4), each
    as ``sample-NNN.mid`` with its audio preview ``sample-NNN.ogg`` beside it.

    The pieces are the model's ``sample_pieces`` (sequence models continue each window from
    the one before; a VAE walks its latent space; a GAN chains independent samples). The
    preview uses ``soundfont`` (else ``$MUSICFLOW_SOUNDFONT``, else the bundled General MIDI
    soundfont); when it cannot be rendered the MIDI files are still written and
    ``audio_note`` says why. ``show_progress``: a line per piece on stderr when slow.
    """
    from musicflow import progress, roll
    from musicflow.sampling import binarize

    ticker = progress.PieceTicker(n, enabled=show_progress)
    sampler = sampler or load_sampler(model_uri)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic.sweep(out_dir)  # what a killed generate left
    threshold = sampler.sampling["threshold"]
    pitch_low = int(sampler.sampling["encoding"]["pitch_low"])
    result = GenerationResult(midi_files=[])
    pieces = sampler.model.sample_pieces(n, windows_per_piece, seed)
    ticker.sampled()
    for i, probs in enumerate(pieces):
        windows = binarize(probs, threshold)
        song = np.concatenate(list(windows), axis=1)
        notes = roll.decode_roll(song, pitch_low=pitch_low)
        path = out_dir / f"sample-{i + 1:03d}.mid"
        atomic.write_bytes(path, roll.notes_to_midi(notes))
        result.midi_files.append(path)
        result.songs.append(song)
        if audio_preview and result.audio_note is None:
            try:
                result.audio_files.append(audio.render_preview(path, soundfont=soundfont).path)
            except (audio.AudioError, OSError) as exc:
                result.audio_note = f"audio previews skipped: {exc}"
                print(f"  {result.audio_note}", file=sys.stderr)
        ticker.piece(path)
    return result


def __getattr__(name: str) -> Any:
    """``generate``, the Prefect task, is built on first use: ``musicflow generate`` calls
    :func:`generate_midi` directly and so never imports Prefect."""
    if name != "generate":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from prefect import task
    from prefect.cache_policies import NONE

    globals()["generate"] = task(name="generate", cache_policy=NONE, persist_result=False)(
        generate_midi
    )
    return globals()["generate"]
