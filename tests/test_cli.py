"""The command line: fast help, exit codes, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from musicflow.cli import build_parser, dataset_name, main


def test_help_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys; from musicflow.cli import build_parser; build_parser();"
        "heavy = [m for m in ('prefect', 'mlflow', 'tensorflow', 'great_expectations', 'pandas')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "argv", [["--help"], ["audit", "--help"], ["encode", "--help"], ["run", "--help"]]
)
def test_help_exits_zero(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "usage: musicflow" in capsys.readouterr().out


def test_usage_error_exits_two() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", "x", "--model", "nope"])
    assert exc.value.code == 2


def test_missing_source_is_one_clear_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "musicflow.cli", "audit", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "musicflow: error: source folder not found" in done.stderr


def test_train_without_dataset_is_one_clear_line(workspace_home: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "musicflow.cli",
            "train",
            "--dataset",
            "never-encoded",
            "--model",
            "vae",
        ],
        capture_output=True,
        text=True,
        cwd=workspace_home,
        timeout=300,
    )
    assert done.returncode == 1
    assert "no encoded dataset" in done.stderr and "Traceback" not in done.stderr


def test_dataset_name_is_a_slug_of_the_folder() -> None:
    assert dataset_name(Path("/x/Piano MIDI.de"), None) == "piano-midi-de"
    assert dataset_name(None, None) == "bach-chorales"
    assert dataset_name(Path("/x/y"), "given") == "given"
    assert build_parser().parse_args(["compare", "--dataset", "d"]).dataset == "d"


def test_run_carries_the_pitch_window_to_the_pipeline(
    workspace_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from musicflow import cli
    from musicflow.flows import pipeline

    seen: dict = {}

    def flow(**kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop before any work")

    monkeypatch.setattr(cli, "_preload", lambda *modules: None)
    monkeypatch.setattr(pipeline, "pipeline_flow", flow)
    source = workspace_home / "src"
    source.mkdir()
    assert main(["run", str(source), "--pitch-low", "30", "--models", "vae"]) == 1
    assert seen["pitch_low"] == 30 and seen["models"] == ["vae"]
    assert main(["run", str(source), "--models", "vae"]) == 1
    assert seen["pitch_low"] == 21  # the encoding's default
