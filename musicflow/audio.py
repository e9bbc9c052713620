"""Audio previews of MIDI files that need no system package: render, normalise, compress.

Every piece comes from a PyPI wheel, so a preview plays after ``make run`` on Linux, macOS or
Windows without FluidSynth or a soundfont installed by hand:

- **renderer**: ``midirenderer`` (a SoundFont synthesiser written in Rust, wheels for Linux,
  macOS and Windows, no Python dependencies). When it cannot be imported (a platform without a
  wheel) and FluidSynth's ``fluidsynth`` command is on the PATH, FluidSynth renders instead.
- **soundfont**: ``--soundfont FILE`` or ``$MUSICFLOW_SOUNDFONT``, else ``TimGM6mb.sf2``, the
  6 MB General MIDI soundfont (GPL-2.0, by Tim Brechbill) that ships inside the ``pretty_midi``
  package (:func:`default_soundfont`).
- **loudness**: integrated loudness (ITU-R BS.1770, ``pyloudnorm``) brought to
  :data:`TARGET_LUFS`, with peaks kept below :data:`PEAK_CEILING_DBFS` (the raw render sits
  around -35 dBFS RMS: too quiet beside any other audio).
- **compression**: OGG/Vorbis through ``soundfile``, whose wheels bundle libsndfile; a 16-bar
  piece is about half a megabyte instead of several as WAV. Every current browser plays it in
  ``<audio controls>``.

Public: :func:`render_preview` (MIDI file → ``.ogg`` beside it), :func:`resolve_soundfont`,
:func:`default_soundfont`, :func:`render`, :func:`normalise`, :func:`loudness`, ``Preview``.
The libraries are imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from musicflow import atomic
from musicflow.errors import MusicflowError

SOUNDFONT_ENV = "MUSICFLOW_SOUNDFONT"
PREVIEW_SUFFIX = ".ogg"
TARGET_LUFS = -16.0  # integrated loudness of a preview (streaming services use -14 … -16)
PEAK_CEILING_DBFS = -1.0  # no sample above this after the gain
SAMPLE_RATE = 48_000  # midirenderer's output rate; FluidSynth is asked for the same


class AudioError(MusicflowError):
    """No usable renderer or soundfont, or a render that failed."""


@dataclass(frozen=True)
class Preview:
    """One rendered preview: where it is and what it measured."""

    path: Path
    seconds: float
    lufs: float  # integrated loudness after normalisation (-inf for silence)
    gain_db: float  # gain applied to the raw render
    renderer: str  # "midirenderer" or "fluidsynth"
    soundfont: Path


def default_soundfont() -> Path | None:
    """``TimGM6mb.sf2`` inside the installed ``pretty_midi`` package, or None without it."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("pretty_midi")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "TimGM6mb.sf2"
    return path if path.is_file() else None


def resolve_soundfont(given: str | os.PathLike[str] | None = None) -> Path:
    """The soundfont to render with: ``given``, else ``$MUSICFLOW_SOUNDFONT``, else
    :func:`default_soundfont`. Raises :class:`AudioError` naming what is missing."""
    chosen = given or os.environ.get(SOUNDFONT_ENV) or None
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            source = "--soundfont" if given else f"${SOUNDFONT_ENV}"
            raise AudioError(f"soundfont not found: {path} (from {source})")
        if path.suffix.lower() not in (".sf2", ".sf3"):
            raise AudioError(f"{path} is not a SoundFont (.sf2 or .sf3)")
        return path.resolve()
    default = default_soundfont()
    if default is None:
        raise AudioError(
            f"no soundfont: reinstall musicflow (pretty_midi ships one) or set ${SOUNDFONT_ENV}"
        )
    return default


@cache
def _soundfont_bytes(path: Path, mtime_ns: int) -> bytes:
    return path.read_bytes()


def renderer_name() -> str | None:
    """The renderer :func:`render` would use, or None when there is none."""
    try:
        import midirenderer  # noqa: F401
    except ImportError:
        return "fluidsynth" if shutil.which("fluidsynth") else None
    return "midirenderer"


def render(midi_bytes: bytes, soundfont: Path) -> tuple[np.ndarray, int, str]:
    """Synthesise MIDI bytes: ``(float32 samples (n, channels), sample rate, renderer)``."""
    import io

    import soundfile

    name = renderer_name()
    if name is None:
        raise AudioError(
            "no audio renderer: the midirenderer package is missing and FluidSynth is not installed"
        )
    if name == "midirenderer":
        import midirenderer

        sf_bytes = _soundfont_bytes(soundfont, soundfont.stat().st_mtime_ns)
        try:
            wav = midirenderer.render_wave_from(sf_bytes, midi_bytes)
        except (ValueError, RuntimeError) as exc:
            raise AudioError(f"midirenderer could not render: {exc}") from exc
        data, rate = soundfile.read(io.BytesIO(wav), dtype="float32", always_2d=True)
        return data, int(rate), name
    with tempfile.TemporaryDirectory() as tmp:
        midi, wav = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        midi.write_bytes(midi_bytes)
        cmd = ["fluidsynth", "-ni", "-q", "-F", str(wav), "-r", str(SAMPLE_RATE)]
        try:
            subprocess.run(
                [*cmd, str(soundfont), str(midi)], check=True, capture_output=True, timeout=300
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise AudioError(f"FluidSynth could not render: {exc}") from exc
        data, rate = soundfile.read(wav, dtype="float32", always_2d=True)
    return data, int(rate), name


def loudness(samples: np.ndarray, rate: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4); -inf for silence or under 0.4 s."""
    import warnings

    import pyloudnorm

    x = np.asarray(samples, dtype=np.float64)
    if len(x) < int(0.4 * rate) or not np.any(x):
        return float("-inf")
    with warnings.catch_warnings():  # pyloudnorm warns when a signal clips; it never will here
        warnings.simplefilter("ignore")
        return float(pyloudnorm.Meter(rate).integrated_loudness(x))


def normalise(
    samples: np.ndarray,
    rate: int,
    *,
    target_lufs: float = TARGET_LUFS,
    ceiling_dbfs: float = PEAK_CEILING_DBFS,
) -> tuple[np.ndarray, float]:
    """Gain to ``target_lufs``, lowered when a peak would pass ``ceiling_dbfs``.

    Returns ``(samples, gain in dB)``; silence comes back unchanged (gain 0).
    """
    x = np.asarray(samples, dtype=np.float32)
    level = loudness(x, rate)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if not np.isfinite(level) or peak == 0.0:
        return x, 0.0
    gain_db = min(target_lufs - level, ceiling_dbfs - 20 * np.log10(peak))
    return (x * np.float32(10 ** (gain_db / 20))).astype(np.float32), float(gain_db)


def render_preview(
    midi_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str] | None = None,
    *,
    soundfont: str | os.PathLike[str] | None = None,
) -> Preview:
    """Render ``midi_path`` to a loudness-normalised OGG/Vorbis file, by default beside it
    (``piece.mid`` → ``piece.ogg``), written atomically."""
    import soundfile

    midi_path = Path(midi_path)
    out = Path(out_path) if out_path is not None else midi_path.with_suffix(PREVIEW_SUFFIX)
    font = resolve_soundfont(soundfont)
    raw, rate, name = render(midi_path.read_bytes(), font)
    samples, gain_db = normalise(raw, rate)
    atomic.atomic_write(
        out,
        lambda tmp: soundfile.write(tmp, samples, rate, format="OGG", subtype="VORBIS"),
    )
    return Preview(
        path=out,
        seconds=len(samples) / rate,
        lufs=loudness(samples, rate),
        gain_db=gain_db,
        renderer=name,
        soundfont=font,
    )
