"""``musicflow generate`` directed: continue a prompt, interpolate, controls in the file, never
overwrite, prompts judged as the audit judges files. Real tiny models (rnn, vae) trained for a
few seconds on real piano files, registered in a real MLflow store, run through the CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mido
import numpy as np
import pretty_midi
import pytest

from musicflow.cli import main
from musicflow.core import compose, frames, roll
from musicflow.core.midi import scan_midi

pytestmark = [pytest.mark.integration, pytest.mark.corpus]

TINY = {
    "rnn": {"hidden": 48, "batch_size": 16},
    "vae": {"hidden": 48, "latent_dim": 8, "enc_filters": [16, 16, 16], "batch_size": 16},
}


def _songs(piano_dir: Path) -> list[np.ndarray]:
    files = sorted(piano_dir.rglob("*.mid"), key=lambda p: (p.stat().st_size, p.name))[:12]
    out = []
    for path in files:
        scan = scan_midi(path.read_bytes())
        out.append(roll.song_matrix(scan.notes, scan.ticks_per_beat)[0])
    return out


def _runs(songs: list[np.ndarray]) -> np.ndarray:
    """Runs of two consecutive windows (B, 96, 192, 1): what the frame models train on."""
    runs = []
    for song in songs:
        for start in range(0, song.shape[1] - 2 * roll.COLS, roll.COLS):
            run = song[:, start : start + 2 * roll.COLS]
            if run.any():
                runs.append(run)
    return np.stack(runs)[..., None].astype(np.float32)


@pytest.fixture(scope="module")
def registered(piano_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A workspace with ``models:/t-rnn/1`` and ``models:/t-vae/1``, each a few epochs."""
    import mlflow

    from musicflow.adapters import tracking, workspace
    from musicflow.models import build_model

    home = tmp_path_factory.mktemp("directed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MUSICFLOW_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
        (home / "mlruns").mkdir()
        workspace.configure_environment()
        tracking.prepare_store()
        runs = _runs(_songs(piano_dir))
        rng = np.random.default_rng(0)
        for name, config in TINY.items():
            model = build_model(name, seed=0, **config)
            for _ in range(4):
                order = rng.permutation(len(runs))
                model.fit_epoch([runs[order[i : i + 16]] for i in range(0, len(runs), 16)])
            folder = home / "models" / name
            model.save(folder)
            sampling = {"threshold": 0.5, "encoding": roll.encoding_params()}
            (folder / "sampling.json").write_text(json.dumps(sampling))
            tracking.ensure_experiment("t")
            mlflow.set_experiment(tracking.experiment_name("t"))
            with mlflow.start_run():
                tracking.log_model(folder, f"t-{name}")
        yield home


def _generate(home: Path, *argv: str) -> int:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MUSICFLOW_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
        mp.chdir(home)
        return main(["generate", *argv])


def _write(path: Path, notes: list[tuple[int, int, int]], tempo_bpm: float = 80) -> Path:
    """(pitch, start, end) in sixteenths, at tpb 480."""
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    meta = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm))])
    events = sorted([(s * 120, 1, p) for p, s, _ in notes] + [(e * 120, 0, p) for p, _, e in notes])
    track, now = mido.MidiTrack(), 0
    for t, on, p in events:
        track.append(
            mido.Message("note_on" if on else "note_off", note=p, velocity=70, time=t - now)
        )
        now = t
    mid.tracks.extend([meta, track])
    mid.save(path)
    return path


def _chords(root: int, bars: int) -> list[tuple[int, int, int]]:
    """A major triad (and the scale's melody) on ``root`` in every beat of ``bars`` bars."""
    scale = [0, 2, 4, 5, 7, 9, 11, 12]
    notes = []
    for beat in range(4 * bars):
        for interval in (0, 4, 7):
            notes.append((root - 12 + interval, 4 * beat, 4 * beat + 4))
        for i in range(4):
            pitch = root + 12 + scale[(beat + i) % len(scale)]
            notes.append((pitch, 4 * beat + i, 4 * beat + i + 1))
    return notes


def _song(path: Path) -> np.ndarray:
    scan = scan_midi(path.read_bytes())
    return roll.song_matrix(scan.notes, scan.ticks_per_beat)[0]


def _files(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@pytest.mark.parametrize("model", ["rnn", "vae"])
def test_a_continuation_keeps_the_prompt_and_goes_on_playing(registered: Path, model: str) -> None:
    prompt = _write(registered / f"prompt-{model}.mid", _chords(62, 5), tempo_bpm=84)
    out = registered / f"cont-{model}"
    argv = ["--model-uri", f"models:/t-{model}/1", "--prompt", str(prompt), "--prompt-bars", "3"]
    assert _generate(registered, *argv, "--bars", "6", "-n", "2", "--out", str(out)) == 0
    expected = compose.read_prompt(prompt.read_bytes(), "p", 21).first_bars(3)
    for path in sorted(out.glob("*.mid")):
        song = _song(path)
        seam = 3 * compose.STEPS_PER_BAR
        assert np.array_equal(song[:, :seam], expected)  # unchanged on the grid
        assert song.shape[1] > seam + 4 * compose.STEPS_PER_BAR  # it plays on
        assert (~compose.silent_bars(song[:, seam:])).sum() >= 3
        mid = mido.MidiFile(path)
        (marker,) = [m for m in mid.tracks[0] if m.type == "marker"]
        ticks = sum(m.time for m in mid.tracks[0][: mid.tracks[0].index(marker) + 1])
        assert ticks == 3 * 4 * mid.ticks_per_beat
        info = json.loads(path.with_suffix(".json").read_text())
        seconds = pytest.approx(12 * 60 / 84, abs=1e-5)
        assert info["seam"] == {"step": 144, "bar": 3, "beat": 12.0, "seconds": seconds}
        assert info["prompt"] == {"file": prompt.name, "bars": 3} and info["tempo_bpm"] == 84


def _pc_hist(song: np.ndarray) -> np.ndarray:
    pcs = (roll.DEFAULT_PITCH_LOW + roll.ROWS - 1 - np.arange(roll.ROWS)) % 12
    h = np.bincount(pcs, weights=song.sum(axis=1), minlength=12)
    return h / max(h.sum(), 1)


def test_interpolation_is_playable_and_its_ends_resemble_a_and_b(registered: Path) -> None:
    a = _write(registered / "a.mid", _chords(60, 2))  # C major
    b = _write(registered / "b.mid", _chords(66, 2))  # F# major: no pitch class shared but B, F
    out = registered / "morph"
    argv = ["--model-uri", "models:/t-vae/1", "--interpolate", str(a), str(b), "--bars", "8"]
    assert _generate(registered, *argv, "-n", "3", "--out", str(out)) == 0
    ha, hb = _pc_hist(_song(a)), _pc_hist(_song(b))
    for path in sorted(out.glob("*.mid")):
        assert pretty_midi.PrettyMIDI(str(path)).instruments[0].notes  # playable
        song = _song(path)
        first, last = _pc_hist(song[:, : roll.COLS]), _pc_hist(song[:, -roll.COLS :])
        l1 = lambda x, y: np.abs(x - y).sum()  # noqa: E731
        assert l1(first, ha) < l1(first, hb) and l1(last, hb) < l1(last, ha)
        assert json.loads(path.with_suffix(".json").read_text())["interpolate"] == [
            "a.mid",
            "b.mid",
        ]


def test_every_control_lands_in_the_file(registered: Path) -> None:
    out = registered / "controls"
    argv = [*("--model-uri", "models:/t-rnn/1", "--temperature", "0.7", "--key", "F#m"), "-n", "2"]
    argv += [*("--tempo", "90", "--program", "19", "--bars", "3", "--seed", "4", "--out", str(out))]
    assert _generate(registered, *argv) == 0
    for i, path in enumerate(sorted(out.glob("*.mid"))):
        mid = mido.MidiFile(path)
        msgs = [m for t in mid.tracks for m in t]
        assert [m.key for m in msgs if m.type == "key_signature"] == ["F#m"]
        assert [m.tempo for m in msgs if m.type == "set_tempo"] == [mido.bpm2tempo(90)]
        assert [m.program for m in msgs if m.type == "program_change"] == [19]
        assert [m.name for m in msgs if m.type == "track_name"] == [
            f"musicflow models:/t-rnn/1 sample-00{i + 1}"
        ]
        (text,) = [m.text for m in msgs if m.type == "text"]
        info = json.loads(text.removeprefix("musicflow "))
        assert info == json.loads(path.with_suffix(".json").read_text())
        assert info["model_uri"] == "models:/t-rnn/1" and info["version"] == "1"
        assert (info["seed"], info["piece"], info["bars"]) == (4, i + 1, 3)
        assert (info["temperature"], info["key"], info["program"]) == (0.7, "F#m", 19)
        song = _song(path)
        assert song.shape[1] <= 3 * compose.STEPS_PER_BAR
        # the key is what the model was conditioned on: F# minor's scale is A major's
        assert frames.window_tonics(song[None])[0] == compose.parse_key("F#m")[1]


def test_a_second_generate_into_the_same_folder_changes_no_file(registered: Path) -> None:
    out = registered / "twice"
    argv = ["--model-uri", "models:/t-rnn/1", "-n", "2", "--bars", "2", "--out", str(out)]
    assert _generate(registered, *argv) == 0
    before = _files(out)
    assert _generate(registered, *argv) == 0
    after = _files(out)
    assert {k: after[k] for k in before} == before
    assert len(after) == 2 * len(before)
    assert sorted(k for k in after if k.endswith(".mid"))[-1] == "sample-004.mid"


def test_a_non_midi_prompt_is_not_midi_and_writes_nothing(registered: Path, capsys) -> None:
    text = registered / "notes.txt"
    text.write_text("C D E F G\n")
    out = registered / "nothing"
    argv = ["--model-uri", "models:/t-rnn/1", "--prompt", str(text), "--out", str(out)]
    assert _generate(registered, *argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not_midi" in err and "Traceback" not in err
    assert not out.exists()


def test_a_model_that_cannot_interpolate_says_so(registered: Path, capsys) -> None:
    a = _write(registered / "a2.mid", _chords(60, 2))
    argv = ["--model-uri", "models:/t-rnn/1", "--interpolate", str(a), str(a)]
    assert _generate(registered, *argv, "--out", str(registered / "none")) == 2
    assert "rnn model cannot interpolate" in capsys.readouterr().err
