"""The command line: fast help, exit codes, one-line errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
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


@pytest.mark.integration  # a CLI process
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

    monkeypatch.setattr(cli, "_attach_prefect", lambda *modules: [])
    monkeypatch.setattr(cli, "_prepare_tracking", lambda: None)
    monkeypatch.setattr(pipeline, "pipeline_flow", flow)
    source = workspace_home / "src"
    source.mkdir()
    assert main(["run", str(source), "--pitch-low", "30", "--models", "vae"]) == 1
    assert seen["pitch_low"] == 30 and seen["models"] == ["vae"]
    assert main(["run", str(source), "--models", "vae"]) == 1
    assert seen["pitch_low"] == 21  # the encoding's default


# --- usage errors: exit 2 before anything runs (issue #12 items 5 and 6) ---------------------

USAGE_ERRORS = {
    "dataset outside the workspace": ["encode", ".", "--dataset", "../../../x"],
    "absolute dataset": ["encode", ".", "--dataset", "/tmp/x"],
    "empty dataset": ["encode", ".", "--dataset", ""],
    "wildcard dataset": ["compare", "--dataset", "%"],
    "upper-case dataset": ["train", "--dataset", "Chopin", "--model", "vae"],
    "long dataset": ["audit", ".", "--dataset", "a" * 65],
    "zero epochs": ["train", "--dataset", "d", "--model", "vae", "--epochs", "0"],
    "negative epochs": ["run", "--epochs", "-1"],
    "negative time budget": ["train", "--dataset", "d", "--model", "vae", "--time-budget", "-5"],
    "nan time budget": ["run", "--time-budget", "nan"],
    "pitch window off the keyboard": ["encode", ".", "--pitch-low", "99"],
    "negative pieces": ["generate", "--model-uri", "models:/d-vae/1", "-n", "-1"],
    "no pieces": ["generate", "--model-uri", "models:/d-vae/1", "-n", "0"],
    "negative byte cap": ["audit", ".", "--max-bytes", "-1"],
    "no workers": ["encode", ".", "--workers", "0"],
    "negative seed": ["train", "--dataset", "d", "--model", "vae", "--seed", "-1"],
    "zero batch": ["train", "--dataset", "d", "--model", "vae", "--batch-size", "0"],
    "port out of range": ["ui", "--port", "70000"],
    "unknown model": ["run", "--models", "vae,foo"],
    "not a model URI": ["generate", "--model-uri", "file:///etc/passwd"],
    "zero bars": ["generate", "--model-uri", "models:/d-vae/1", "--bars", "0"],
    "zero temperature": ["generate", "--model-uri", "models:/d-vae/1", "--temperature", "0"],
    "nan temperature": ["generate", "--model-uri", "models:/d-vae/1", "--temperature", "nan"],
    "unknown key": ["generate", "--model-uri", "models:/d-vae/1", "--key", "H"],
    "tempo too fast": ["generate", "--model-uri", "models:/d-vae/1", "--tempo", "1000"],
    "program past 127": ["generate", "--model-uri", "models:/d-vae/1", "--program", "128"],
    "prompt and interpolate": [
        *("generate", "--model-uri", "models:/d-vae/1", "--prompt", "a.mid"),
        *("--interpolate", "a.mid", "b.mid"),
    ],
    "zero prompt bars": ["generate", "--model-uri", "models:/d-vae/1", "--prompt-bars", "0"],
    "unknown server action": ["server", "restart"],
    "work pool name with a slash": ["deploy", ".", "--pool", "a/b"],
    "no settle time": ["watch", ".", "--settle", "0"],
    "negative budget of serve": ["serve", ".", "--time-budget", "-1"],
    "unknown model of deploy": ["deploy", ".", "--pool", "p", "--models", "foo"],
}


@pytest.mark.parametrize("argv", USAGE_ERRORS.values(), ids=USAGE_ERRORS.keys())
def test_bad_arguments_are_usage_errors(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument" in err and "Traceback" not in err


def test_the_dataset_name_rule_is_shown_once_in_the_error(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["compare", "--dataset", "../x"])
    assert "lowercase letters, digits, '-' and '_'" in capsys.readouterr().err


def test_slugs_of_folders_are_valid_dataset_names() -> None:
    from musicflow.adapters import workspace

    for folder in ("Piano MIDI.de", "../..", "日本語", "x" * 200, "-a-", "%_%"):
        workspace.check_dataset_name(dataset_name(Path("/music") / folder, None))


# --- fail fast: checked before any server starts or TensorFlow loads (issue #11 item 1) ------


def _fresh_env(home: Path) -> dict[str, str]:
    """No shared Prefect server: a command that started one would leave its state file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env.update(MUSICFLOW_HOME=str(home), PREFECT_HOME=str(home / ".prefect"))
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


FAIL_FAST = {
    "missing source": (["encode", "{home}/nonexistent"], 1, "source folder not found"),
    "file as source": (["audit", "{home}/file.mid"], 1, "is a file, not a folder"),
    "never encoded": (["train", "--dataset", "nosuch", "--model", "vae"], 1, "no encoded dataset"),
    "unknown dataset": (["compare", "--dataset", "nosuch"], 1, "no dataset 'nosuch'"),
    "unknown model": (["run", "--models", "foo"], 2, "unknown model(s) foo"),
    "run on a missing source": (["run", "{home}/nope", "--models", "vae"], 1, "not found"),
    "bad model version": (["generate", "--model-uri", "models:/nosuch-vae/1"], 1, "no model"),
    "generate into a file": (
        ["generate", "--model-uri", "models:/nosuch-vae/1", "--out", "{home}/file.mid"],
        1,
        "is a file, not a folder",
    ),
    "deploy with no Prefect server": (["deploy", "{home}", "--pool", "p"], 1, "PREFECT_API_URL"),
    "watch a missing folder": (["watch", "{home}/nope", "--models", "vae"], 1, "not found"),
    "watch --emit with no Prefect server": (["watch", "{home}", "--emit"], 1, "PREFECT_API_URL"),
}


@pytest.mark.integration  # CLI processes
@pytest.mark.perf  # and a time bound
@pytest.mark.parametrize("argv, code, message", FAIL_FAST.values(), ids=FAIL_FAST.keys())
def test_errors_come_fast_in_one_line_before_any_server(
    tmp_path: Path, argv: list[str], code: int, message: str
) -> None:
    (tmp_path / "file.mid").write_bytes(b"MThd")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "musicflow.cli", *(a.format(home=tmp_path) for a in argv)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_fresh_env(tmp_path),
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert message in lines[-1] and "done in" not in done.stderr
    if code == 1:
        assert len(lines) == 1, done.stderr  # one line (usage errors show the usage first)
    assert not (tmp_path / ".prefect" / "musicflow-server.json").exists()
    assert elapsed < 15, f"{elapsed:.1f} s"


def test_the_source_folder_messages(tmp_path: Path) -> None:
    from musicflow.cli import check_source
    from musicflow.core.errors import DatasetError

    (tmp_path / "f.mid").write_bytes(b"")
    with pytest.raises(DatasetError, match="source folder not found"):
        check_source(tmp_path / "nope")
    with pytest.raises(DatasetError, match="is a file, not a folder"):
        check_source(tmp_path / "f.mid")
    assert check_source(tmp_path) == tmp_path


# --- musicflow ui: a busy port, and stopping it stops its processes ---------------------------


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _wait_listening(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.5)
    return False


@pytest.mark.integration  # a CLI process
def test_ui_on_a_busy_port_fails_in_one_line(workspace_home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "musicflow.cli", "ui", "--port", str(port)],
            capture_output=True,
            text=True,
            cwd=workspace_home,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"musicflow: error: port {port} on 127.0.0.1 is in use; choose another with --port"
    )


@pytest.mark.integration
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])  # SIGINT: as SIGTERM
def test_stopping_ui_stops_its_server_and_workers(
    workspace_home: Path, stop: signal.Signals
) -> None:
    from musicflow.adapters.prefect_server import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "musicflow.cli", "ui", "--port", str(port)],
        cwd=workspace_home,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait_listening(port, 180), "the MLflow UI never listened"
        # the reports' MLflow links follow the port ui serves on
        link_page = (workspace_home / "reports" / "mlflow-ui.html").read_text()
        assert f'"http://127.0.0.1:{port}/"' in link_page
        children = _descendants(proc.pid)
        assert 2 <= len(children) <= 3  # guard, mlflow server, one uvicorn worker
        proc.send_signal(stop)
        code = proc.wait(timeout=60)
        deadline = time.monotonic() + 30
        while _alive(children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _alive(children) == set()
        assert not _wait_listening(port, 1)
    finally:
        if proc.poll() is None:
            proc.kill()
    if stop != signal.SIGKILL:
        assert code == 0
        err = proc.stderr.read()
        assert "stopped the MLflow UI" in err and "cached" not in err


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
    for name in ("run", "watch", "serve", "deploy"):  # run's models and training options
        for option in ("--models", "--epochs", "--time-budget", "--seed", "--mixed-precision"):
            assert option in commands.choices[name]._option_string_actions, (name, option)


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
        manifest=workspace_home / "data" / "rolls" / "src" / "manifest.parquet",
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
