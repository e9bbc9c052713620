"""Generate: sample pieces from a registered model and write them as MIDI, each with an audio
preview beside it (OGG/Vorbis, ``musicflow/adapters/audio.py``).

Models are logged (``tasks/registry.py``) as MLflow pyfunc models from code
(``tasks/sampler_model.py``, no pickle) wrapping the model folder that ``RollModel.save``
writes, plus ``sampling.json`` (the calibrated threshold and the dataset's encoding, pitch
window included). So any registered version loads in a fresh process by URI
(``models:/NAME/VERSION``, ``models:/NAME@champion``, ``runs:/…``), with
``mlflow.pyfunc.load_model`` or with ``musicflow generate``, which reads only the JSON and
weight files (``tracking.fetch_model`` checks them against the digests recorded at
registration) and never runs code from the artifact store. ``rnn``, ``vae`` and ``gan`` load
as their numpy sampler (``sampler.npz``, ``models/frame_sampler.py``), so ``musicflow generate``
never imports TensorFlow, Keras, MLflow or Prefect for them; the thesis models load with Keras. A
piece is what the model's own sampler gives (``directed_probs``: the frame models' ``direct``
with what the user directs, ``musicflow/core/compose.py``), binarised with the calibrated threshold
and decoded in the encoding's pitch window; each file records how it was made (docs/cli.md,
"Directing generate"). :class:`RollSampler` stays in this module: registered models refer to it
here (``tasks/sampler_model.py`` wraps it for MLflow's loader).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from musicflow import __version__
from musicflow.adapters import atomic, audio, tracking
from musicflow.core import compose
from musicflow.core.compose import (
    STEPS_PER_BAR,
    Direction,
    check_direction,
    check_tracks,
    parse_key,
)
from musicflow.core.defaults import DEFAULT_TEMPO_BPM, PIECE_WINDOWS
from musicflow.core.errors import ModelError
from musicflow.core.roll import COLS, STEPS_PER_BEAT
from musicflow.core.sampling import read_settings
from musicflow.pages import score

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

        sampling = read_settings(model_dir)
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
        from musicflow.core.sampling import binarize

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
    info_files: list[Path] = field(default_factory=list)  # sample-NNN.json beside each MIDI


_NUMBERED = re.compile(r"sample-(\d{3,})\.")


def next_number(out_dir: Path) -> int:
    """1 + the highest piece number in ``out_dir`` (any ``sample-NNN.*`` file), 1 for none."""
    numbers = [int(m[1]) for p in Path(out_dir).glob("sample-*") if (m := _NUMBERED.match(p.name))]
    return max(numbers, default=0) + 1


#: Pieces a frame model samples at once: long pieces stay within memory (1,024 bars of 8
#: pieces: 150 MB), and a batch still shares each frame's matrix products.
CHUNK = 8


def model_tracks(model: Any) -> list[dict]:
    """The tracks a model plays (its config's ``tracks``: name, program, channel, drums, as
    the dataset it trained on named them); empty for a model of merged rolls."""
    return list(getattr(model, "config", {}).get("tracks") or [])


def directed_probs(
    sampler: RollSampler, n: int, seed: int, direction: Direction
) -> Iterator[np.ndarray]:
    """float32 (96, bars · 48) for each of the ``n`` pieces in turn: what follows the prompt
    (or the whole piece). Frame models take the whole direction (``direct``, a few pieces at a
    time); the others chain ``sample_pieces`` windows, cut to the bars asked for. A model with
    tracks gives each piece's tracks apart, (K, 96, bars · 48) (``direct_tracks``)."""
    model = sampler.model
    if model_tracks(model):
        tonic = None if direction.key is None else parse_key(direction.key)[1]
        parts = None  # the prompt's tracks (read with the model's track policy)
        if direction.prompt is not None:
            bars = direction.prompt_bars or direction.prompt.bars
            parts = direction.prompt.first_track_bars(bars)
        for first in range(0, n, CHUNK):
            yield from model.direct_tracks(
                min(CHUNK, n - first),
                direction.bars,
                seed,
                prompt=parts,
                tonic=tonic,
                temperature=direction.temperature,
                first=first,
            )
        return
    steps = direction.bars * STEPS_PER_BAR
    if not hasattr(model, "direct"):
        pieces = model.sample_pieces(n, -(-steps // COLS), seed)  # (n, windows, 96, 96)
        yield from np.concatenate(list(pieces.transpose(1, 0, 2, 3)), axis=2)[:, :, :steps]
        return
    prompt = None
    if direction.prompt is not None:
        prompt = direction.prompt.first_bars(direction.prompt_bars or direction.prompt.bars)
    ends = None
    if direction.ends is not None:
        ends = tuple(e.first_bars(e.bars) for e in direction.ends)
    tonic = None if direction.key is None else parse_key(direction.key)[1]
    for first in range(0, n, CHUNK):
        yield from model.direct(
            min(CHUNK, n - first),
            direction.bars,
            seed,
            prompt=prompt,
            ends=ends,
            tonic=tonic,
            temperature=direction.temperature,
            first=first,
        )


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
    direction: Direction | None = None,
    version: str | None = None,
    show_progress: bool = False,
) -> GenerationResult:
    """Write ``n`` new pieces into ``out_dir``, each as ``sample-NNN.mid`` with
    ``sample-NNN.json`` (how it was made), its score ``sample-NNN.musicxml``
    (``musicflow/pages/score.py``; with tracks, a staff per track) and its audio preview
    ``sample-NNN.ogg`` beside it.

    Numbers continue after the highest already in ``out_dir``: no existing file is replaced.
    Without ``direction`` a piece is ``windows_per_piece`` windows long (8 windows = 16 bars of
    4/4): a frame model's ``direct`` (one LSTM run through the piece; a VAE walks its latent
    space), another model's ``sample_pieces`` (a GAN chains independent samples). A
    ``direction`` (``musicflow/core/compose.py``) sets the length, a prompt to continue (written
    unchanged before the continuation, a marker at the seam), two pieces to interpolate, the
    temperature, key, tempo and instrument. Each file records the model, version, seed and
    settings (track name, a text event, tempo, key signature, program). The preview uses
    ``soundfont`` (else ``$MUSICFLOW_SOUNDFONT``, else the bundled General MIDI soundfont);
    when it cannot be rendered the MIDI files are still written and ``audio_note`` says why.
    ``show_progress``: a line per piece on stderr when slow.
    """
    from musicflow.core import frames, roll, tracks
    from musicflow.core.sampling import binarize
    from musicflow.terminal import progress

    ticker = progress.PieceTicker(n, enabled=show_progress)

    direction = direction or Direction(bars=windows_per_piece * COLS // STEPS_PER_BAR)
    sampler = sampler or load_sampler(model_uri)
    check_direction(sampler.model.name, direction)
    specs = model_tracks(sampler.model)
    check_tracks(sampler.model.name, len(specs), direction)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic.sweep(out_dir)  # what a killed generate left
    threshold = sampler.sampling["threshold"]
    pitch_low = int(sampler.sampling["encoding"]["pitch_low"])
    head = np.zeros((roll.ROWS, 0), bool)
    head_parts = np.zeros((len(specs), roll.ROWS, 0), bool)  # with tracks: the prompt's
    pitched = [not t.get("drums", False) for t in specs]  # a drum track's rows are not pitches
    if direction.prompt is not None:
        head = direction.prompt.first_bars(direction.prompt_bars or direction.prompt.bars)
        if specs:
            bars = direction.prompt_bars or direction.prompt.bars
            head_parts = direction.prompt.first_track_bars(bars)
            head = head_parts[pitched].any(axis=0)
    tempo = direction.tempo_bpm or (direction.prompt and direction.prompt.tempo_bpm)
    tempo = float(tempo or DEFAULT_TEMPO_BPM)
    result = GenerationResult(midi_files=[])
    number = next_number(out_dir)
    for i, piece in enumerate(directed_probs(sampler, n, seed, direction)):
        parts = None
        if specs:  # one roll per track, the prompt's first; the song is the pitched ones merged
            parts = np.concatenate([head_parts, binarize(piece, threshold)], axis=2)
            body = parts[:, :, head.shape[1] :][pitched].any(axis=0)
        else:
            body = binarize(piece, threshold)
        song = np.concatenate([head, body], axis=1)
        key = direction.key or compose.key_of_tonic(frames.window_tonics(song[None], pitch_low)[0])
        seam = head.shape[1]
        info = {
            "model_uri": model_uri,
            "model": sampler.model.name,
            "version": version,
            "seed": seed,
            "piece": i + 1,
            **direction.settings(),
            # the temperature sampled at: the one asked for, else the model's own
            "temperature": direction.temperature or sampler.model.config.get("temperature"),
            "tempo_bpm": tempo,
            "key": key,
            "key_chosen_by": "user" if direction.key else "estimated from the notes",
            "seam": None if not seam else seam_position(seam, tempo),
            "musicflow": __version__,
        }
        if specs:  # each track plays its own program (the dataset's), not --program
            info["program"] = None
            info["tracks"] = [{k: t[k] for k in ("name", "program", "channel")} for t in specs]
        notes = roll.decode_roll(song, pitch_low=pitch_low)
        track_notes = (
            [roll.decode_roll(p, pitch_low=pitch_low) for p in parts] if parts is not None else []
        )
        while True:
            path = out_dir / f"sample-{number:03d}.mid"
            info["file"] = path.name
            text = "musicflow " + json.dumps(info, sort_keys=True)
            if parts is not None:
                midi = tracks.tracks_to_midi(
                    track_notes,
                    specs,
                    tempo_bpm=tempo,
                    key=key,
                    text=text,
                    markers=((seam, "continuation"),) if seam else (),
                )
            else:
                midi = roll.notes_to_midi(
                    notes,
                    tempo_bpm=tempo,
                    program=direction.program,
                    track_name=f"musicflow {model_uri} {path.stem}",
                    text=text,
                    key=key,
                    markers=((seam, "continuation"),) if seam else (),
                )
            number += 1
            if atomic.write_new(path, midi):  # another generate took the number: the next
                break
        layout = dict(
            length_steps=song.shape[1],
            seam_step=seam or None,
            tempo_bpm=tempo,
            fifths=compose.fifths_of_key(key),
        )
        if specs:  # a staff per track, as the MIDI file has them
            score.write_tracks_musicxml(
                path.with_suffix(score.SUFFIX), track_notes, specs, **layout
            )
        else:
            score.write_musicxml(
                path.with_suffix(score.SUFFIX), notes, program=direction.program, **layout
            )
        info_path = path.with_suffix(".json")
        atomic.write_text(info_path, json.dumps(info, indent=2, sort_keys=True) + "\n")
        result.midi_files.append(path)
        result.info_files.append(info_path)
        result.songs.append(song)
        if audio_preview and result.audio_note is None:
            try:
                result.audio_files.append(audio.render_preview(path, soundfont=soundfont).path)
            except (audio.AudioError, OSError) as exc:
                result.audio_note = f"audio previews skipped: {exc}"
                print(f"  {result.audio_note}", file=sys.stderr)
        ticker.piece(path)
    return result


def seam_position(step: int, tempo_bpm: float) -> dict[str, float]:
    """Where a continuation starts: roll step, bar (0-based: the first continued bar), beat
    and seconds from the start at ``tempo_bpm``."""
    beats = step / STEPS_PER_BEAT
    return {
        "step": step,
        "bar": step // STEPS_PER_BAR,
        "beat": beats,
        "seconds": round(beats * 60.0 / tempo_bpm, 6),
    }


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
