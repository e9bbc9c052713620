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


def test_bare_musicflow_shows_help_and_succeeds(capsys) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: musicflow") and "compare" in out and "ui" in out


def test_version_exits_zero_without_heavy_imports() -> None:
    code = (
        "import sys; from musicflow.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit as e:\n    print('exit', e.code)\n"
        "print([m for m in ('prefect', 'mlflow', 'tensorflow', 'rich', 'pandas')"
        " if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    from musicflow import __version__

    assert out.stdout.splitlines() == [f"musicflow {__version__}", "exit 0", "[]"]


def test_every_command_and_option_has_help() -> None:
    import argparse

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {c.dest for c in commands._choices_actions} == set(commands.choices)
    for choice in commands._choices_actions:
        assert choice.help, choice.dest
    for name, sub in commands.choices.items():
        for action in sub._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
    budget = commands.choices["run"]._option_string_actions["--time-budget"].help
    assert "before every batch" in budget
    for name in ("audit", "compare", "run"):
        assert "--json" in commands.choices[name]._option_string_actions, name
    for name in ("generate", "run", "train"):
        assert "--soundfont" in commands.choices[name]._option_string_actions, name


def test_a_missing_soundfont_is_a_usage_error(tmp_path: Path, capsys) -> None:
    for argv in (
        ["generate", "--model-uri", "models:/d-vae/1", "--soundfont", str(tmp_path / "x.sf2")],
        ["run", "--soundfont", str(tmp_path / "x.sf2")],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert "soundfont not found" in capsys.readouterr().err
    text = tmp_path / "notes.txt"
    text.write_text("x")
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", "d", "--model", "vae", "--soundfont", str(text)])
    assert exc.value.code == 2


def test_audit_json_is_one_document_on_stdout(
    workspace_home: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import json
    from types import SimpleNamespace

    from musicflow import cli

    summary = {
        "n_files": 2,
        "status": {"accepted": 1, "quarantined": 1},
        "quarantine_reasons": {"not_midi": 1},
        "warnings": {},
        "quarantined_files": [("b.mid", "not_midi")],
        "warned_files": [],
        "n_segments": 3,
    }
    fake = SimpleNamespace(
        dataset="src",
        summary=summary,
        n_parsed=2,
        n_cached=0,
        out_dir=workspace_home / "data" / "rolls" / "src",
        audit_page=workspace_home / "data" / "rolls" / "src" / "audit.html",
        docs_index=None,
    )
    monkeypatch.setattr(cli, "_dataset_flow", lambda args, encode: fake)
    assert main(["audit", str(workspace_home), "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)  # stdout is the JSON document only; "done in" went to stderr
    assert set(doc) == {
        "schema",
        "command",
        "dataset",
        "accepted",
        "summary",
        "n_parsed",
        "n_cached",
        "manifest",
        "audit_page",
        "data_docs",
    }
    assert doc["accepted"] is True and doc["command"] == "audit" and doc["data_docs"] is None
    assert doc["summary"]["quarantined_files"] == [{"path": "b.mid", "reason": "not_midi"}]
    assert "done in" in err
    fake.summary = dict(summary, status={"quarantined": 2})
    assert main(["audit", str(workspace_home), "--json"]) == 1  # nothing accepted
    assert json.loads(capsys.readouterr().out)["accepted"] is False
