"""A damaged soundfont (issue #23, item 8): a real copy of the bundled ``TimGM6mb.sf2`` with
2,000 bytes changed, on which midirenderer panics (a Rust panic, not an ``Exception``, and a
backtrace on stderr). ``generate`` refuses it in one line before any model loads; ``train``
registers and reports the version without audio, saying why in one line."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_midi

from musicflow.adapters import audio

pytestmark = pytest.mark.integration

FLIP_SEED = 4  # one of the seeds whose damage makes midirenderer panic (others: 3, 6, 20)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    font = audio.default_soundfont()
    assert font is not None
    data = bytearray(font.read_bytes())
    rng = random.Random(FLIP_SEED)
    for _ in range(2000):
        i = rng.randrange(len(data))
        data[i] ^= rng.randrange(1, 256)
    path = tmp_path_factory.mktemp("sf") / "flip.sf2"
    path.write_bytes(bytes(data))
    return path


def test_the_damage_makes_the_renderer_panic(damaged: Path, tmp_path: Path) -> None:
    """Control: what musicflow must not let through (in a child: a panic writes to stderr)."""
    write_midi(tmp_path / "a.mid", [60, 64, 67])
    code = (
        "import sys, midirenderer\n"
        "midirenderer.render_wave_from(open(sys.argv[1], 'rb').read(), "
        "open(sys.argv[2], 'rb').read())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(damaged), str(tmp_path / "a.mid")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "PanicException" in done.stderr


def test_a_damaged_soundfont_is_one_audio_error(damaged: Path, tmp_path: Path, capfd) -> None:
    write_midi(tmp_path / "a.mid", [60, 64, 67])
    with pytest.raises(audio.AudioError, match="is damaged or unusable") as info:
        audio.render_preview(tmp_path / "a.mid", soundfont=damaged)
    assert "\n" not in str(info.value)
    assert "panicked" not in capfd.readouterr().err  # the child's backtrace stays there
    assert not (tmp_path / "a.ogg").exists()
    audio.check_soundfont(audio.default_soundfont())  # the intact one passes


@pytest.mark.perf  # a time bound
def test_generate_refuses_a_damaged_soundfont_before_any_model(
    damaged: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "MUSICFLOW_HOME": str(tmp_path)}
    env.pop("MLFLOW_TRACKING_URI", None)
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable, "-m", "musicflow.cli", "generate", "--model-uri", "models:/x-vae/1",
            "--soundfont", str(damaged),
        ],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"the soundfont {damaged} is damaged or unusable" in lines[0]
    assert time.monotonic() - started < 30
    assert not (tmp_path / "generated").exists()  # checked before the (missing) model


def test_train_with_a_damaged_soundfont_registers_and_reports_without_audio(
    damaged: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        write_midi(src / f"p{i}.mid", [48 + (i * 5 + j * 7) % 36 for j in range(64)])
    env = {**os.environ, "MUSICFLOW_HOME": str(tmp_path / "ws")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'ws' / 'mlruns' / 'mlflow.db'}"

    def musicflow(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "musicflow.cli", *argv],
            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600,
        )  # fmt: skip

    assert musicflow("encode", str(src), "--dataset", "sf").returncode == 0
    done = musicflow(
        "train", "--dataset", "sf", "--model", "rnn", "--epochs", "1", "--soundfont", str(damaged)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "panicked" not in done.stderr
    said = [line for line in done.stderr.splitlines() if "audio previews skipped" in line]
    assert len(said) == 1 and "is damaged or unusable" in said[0], done.stderr
    assert "models:/sf-rnn/1" in done.stdout
    (page,) = (tmp_path / "ws" / "reports" / "sf").glob("rnn-v1/report.html")
    assert "is damaged or unusable" in page.read_text()
    midi = sorted(p.suffix for p in (page.parent / "midi").iterdir())
    assert ".mid" in midi and ".ogg" not in midi
