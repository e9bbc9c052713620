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
  :data:`TARGET_LUFS` (the raw render sits around -35 dBFS RMS: too quiet beside any other
  audio), with a look-ahead peak limiter (:func:`limit`) keeping samples below
  :data:`PEAK_CEILING_DBFS`, so a piece with loud clusters of notes still reaches the target.
- **compression**: mono (the pieces are one piano part; the soundfont's stereo is only its
  reverb) OGG/Vorbis through ``soundfile``, whose wheels bundle libsndfile: a 16-bar piece is
  about 300 KB instead of several megabytes as WAV. Every current browser plays it in
  ``<audio controls>``.

A damaged soundfont can make midirenderer panic (a Rust panic: a ``BaseException`` and a
backtrace written straight to stderr), so before its first use in a process a soundfont is
tried on a chord of three notes in a child process (:func:`check_soundfont`): a bad one is an
:class:`AudioError` in one line, before any work, and never reaches this process's renderer.

Public: :func:`render_preview` (MIDI file → ``.ogg`` beside it), :func:`resolve_soundfont`,
:func:`check_soundfont`, :func:`default_soundfont`, :func:`render`, :func:`normalise`,
:func:`loudness`, ``Preview``.
The libraries are imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from musicflow.adapters import atomic
from musicflow.core.errors import MusicflowError

SOUNDFONT_ENV = "MUSICFLOW_SOUNDFONT"
PREVIEW_SUFFIX = ".ogg"
TARGET_LUFS = -16.0  # integrated loudness of a preview (streaming services use -14 … -16)
PEAK_CEILING_DBFS = -2.0  # no sample above this before encoding (Vorbis adds up to ~1 dB)
LIMITER_BLOCK_S = 0.01  # the limiter's gain changes at most this often …
LIMITER_SPREAD = 5  # … and starts this many blocks ahead of a peak (and releases as slowly)
NORMALISE_PASSES = 4  # gain + limit rounds: loud peaks take loudness that later rounds restore
SAMPLE_RATE = 48_000  # midirenderer's output rate; FluidSynth is asked for the same
CHECK_TIMEOUT_S = 60.0  # a soundfont's trial render (about a second)
# One track, piano: C2, C4 and C6 together for an eighth of a second (96 ticks per beat).
_TRIAL_MIDI = bytes.fromhex(
    "4d546864000000060001000100604d54726b00000018"  # header (format 1, 96 ticks), track
    "00902450003c50005450"  # note on 36, 60, 84 (running status)
    "30802400003c0000540000ff2f00"  # after 48 ticks note off 36, 60, 84; end of track
)


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


def check_soundfont(soundfont: Path) -> None:
    """AudioError (one line) unless ``soundfont`` renders a short chord, tried in a child
    process so that a renderer's crash or panic cannot reach this one; once per process and
    version of the file. Nothing to check without a renderer (:func:`render` says so)."""
    soundfont = Path(soundfont)
    st = soundfont.stat()
    _check_once(soundfont.resolve(), st.st_mtime_ns, st.st_size)


@cache
def _check_once(soundfont: Path, _mtime_ns: int, _size: int) -> None:
    if renderer_name() is None:
        return
    code = (
        "import sys; from pathlib import Path; from musicflow.adapters import audio; "
        "audio._render(bytes.fromhex(sys.argv[1]), Path(sys.argv[2]))"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, _TRIAL_MIDI.hex(), str(soundfont)],
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_S,
            env={**os.environ, "RUST_BACKTRACE": "0"},
        )
    except subprocess.TimeoutExpired:
        raise AudioError(
            f"the soundfont {soundfont} is damaged or unusable: rendering one chord took "
            f"over {CHECK_TIMEOUT_S:.0f} s"
        ) from None
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        why = _renderer_complaint(lines)
        raise AudioError(f"the soundfont {soundfont} is damaged or unusable: {why}")


def _renderer_complaint(lines: list[str]) -> str:
    """The line of a failed trial render that says why: the exception, else a panic's message."""
    for line in reversed(lines):
        if line.startswith(
            ("musicflow.adapters.audio.AudioError:", "pyo3_runtime.PanicException:")
        ):
            return line.split(":", 1)[1].strip()[:200]
    return (lines[-1] if lines else "the renderer failed")[:200]


def render(midi_bytes: bytes, soundfont: Path) -> tuple[np.ndarray, int, str]:
    """Synthesise MIDI bytes: ``(float32 samples (n, channels), sample rate, renderer)``,
    with a soundfont that passed :func:`check_soundfont`."""
    check_soundfont(soundfont)
    return _render(midi_bytes, soundfont)


def _render(midi_bytes: bytes, soundfont: Path) -> tuple[np.ndarray, int, str]:
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
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # a Rust panic (pyo3's PanicException) is not an Exception
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise AudioError(f"midirenderer could not render: {first}") from exc
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


def limit(samples: np.ndarray, rate: int, ceiling_dbfs: float = PEAK_CEILING_DBFS) -> np.ndarray:
    """A look-ahead peak limiter: no sample above ``ceiling_dbfs``, with smooth gain changes.

    The signal is cut in blocks of :data:`LIMITER_BLOCK_S`; each block gets the gain that
    brings its peak to the ceiling (at most 1), each gain is lowered to the smallest within
    :data:`LIMITER_SPREAD` blocks either side (so it ramps down before a peak and back up
    after it), and the gains are interpolated between block centres. A sample between two
    centres gets at most the larger of their gains, which both are at most its own block's:
    the ceiling holds exactly.
    """
    from scipy.ndimage import minimum_filter1d

    x = np.asarray(samples, dtype=np.float32)
    if not x.size:
        return x
    ceiling = 10 ** (ceiling_dbfs / 20)
    block = max(1, int(LIMITER_BLOCK_S * rate))
    n_blocks = -(-len(x) // block)
    padded = np.zeros((n_blocks * block, *x.shape[1:]), np.float32)
    padded[: len(x)] = np.abs(x)
    peaks = padded.reshape(n_blocks, -1).max(axis=1)
    gains = np.minimum(1.0, ceiling / np.maximum(peaks, 1e-12))
    gains = minimum_filter1d(gains, size=2 * LIMITER_SPREAD + 1, mode="nearest")
    centres = np.arange(n_blocks) * block + (block - 1) / 2
    curve = np.interp(np.arange(len(x)), centres, gains).astype(np.float32)
    out = x * (curve[:, None] if x.ndim == 2 else curve)
    return np.clip(out, -ceiling, ceiling)  # guards the interpolation's float rounding


def normalise(
    samples: np.ndarray,
    rate: int,
    *,
    target_lufs: float = TARGET_LUFS,
    ceiling_dbfs: float = PEAK_CEILING_DBFS,
) -> tuple[np.ndarray, float]:
    """Gain to ``target_lufs``, peaks held below ``ceiling_dbfs`` by :func:`limit`; further
    passes (at most :data:`NORMALISE_PASSES`) make up the loudness the limiter took. Returns
    ``(samples, total gain in dB of the quietest passage)``; silence comes back unchanged."""
    x = np.asarray(samples, dtype=np.float32)
    level = loudness(x, rate)
    if not np.isfinite(level) or not np.any(x):
        return x, 0.0
    y, total_db = x, 0.0
    for _ in range(NORMALISE_PASSES):
        step_db = target_lufs - level
        if abs(step_db) <= 0.1:
            break
        total_db += step_db
        y = limit(y * np.float32(10 ** (step_db / 20)), rate, ceiling_dbfs)
        level = loudness(y, rate)
        if not np.isfinite(level):
            break
    return y, float(total_db)


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
    samples, gain_db = normalise(raw.mean(axis=1), rate)

    def write(tmp: Path) -> None:
        # in blocks: libsndfile's Vorbis encoder crashes the process (SIGSEGV) when handed
        # more than about a minute of audio in one write (an 80 s piece did, here)
        with soundfile.SoundFile(tmp, "w", rate, 1, format="OGG", subtype="VORBIS") as fh:
            for start in range(0, len(samples), rate):
                fh.write(samples[start : start + rate])

    atomic.atomic_write(out, write)
    return Preview(
        path=out,
        seconds=len(samples) / rate,
        lufs=loudness(samples, rate),
        gain_db=gain_db,
        renderer=name,
        soundfont=font,
    )
