"""musicflow/terminal/progress.py: stage headers, skipped steps and training progress on stderr,
plain
lines when stderr is not a terminal."""

from __future__ import annotations

import pytest

from musicflow.terminal import progress


def test_headers_and_skips_go_to_stderr(capsys) -> None:
    progress.stage("train vae", "26 batches per epoch")
    progress.skipped("evaluate")
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "==> train vae: 26 batches per epoch",
        "    evaluate: nothing changed, skipped",
    ]


def test_plain_progress_prints_epochs_and_the_budget_left(
    capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "PLAIN_INTERVAL_S", 0.0)  # a line per batch here
    with progress.TrainingProgress("vae", epochs=3, batches=2, budget_s=600, live=False) as bar:
        bar.start_epoch(0)
        bar.advance()
        bar.advance()
        bar.end_epoch({"loss": 2067.4, "recon_loss": 0.1113})
        bar.stopped_by_budget(64)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "    vae epoch 1/3: 1/2 batches, 0:00 elapsed, budget left 10:00"
    assert lines[2] == "    vae epoch 1/3 (0:00): loss 2067, recon_loss 0.1113"
    assert lines[3] == "    vae: time budget reached in epoch 1 of 3 (64 training windows seen)"


def test_live_progress_runs_without_a_terminal(capsys) -> None:
    with progress.TrainingProgress("gan", epochs=2, batches=3, budget_s=None, live=True) as bar:
        for epoch in range(2):
            bar.start_epoch(epoch)
            for _ in range(3):
                bar.advance()
            bar.end_epoch({"d_loss": 1.0})
    err = capsys.readouterr().err
    assert "gan epoch 2/2" in err and "d_loss 1.0000" in err


def test_interactive_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    assert progress.interactive() is False  # pytest captures stderr: not a terminal
    monkeypatch.setenv(progress.DEBUG_ENV, "1")
    assert progress.debug_enabled()
    monkeypatch.setenv(progress.DEBUG_ENV, "")
    assert not progress.debug_enabled()
    assert progress.format_duration(3725) == "1:02:05" and progress.format_duration(9) == "0:09"


def test_generate_says_nothing_while_quick_and_a_line_per_piece_when_slow(capsys) -> None:
    quick = progress.PieceTicker(2)
    quick.sampled()
    quick.piece("a.mid")
    assert capsys.readouterr().err == ""
    slow = progress.PieceTicker(2)
    slow.started -= progress.PieceTicker.QUIET_S + 1
    slow.sampled()
    slow.piece("out/sample-001.mid")
    slow.piece("out/sample-002.mid")
    lines = capsys.readouterr().err.splitlines()
    assert [x.split(" (")[0] for x in lines] == [
        "    sampled 2 piece(s)",
        "    piece 1/2: out/sample-001.mid",
        "    piece 2/2: out/sample-002.mid",
    ]
    off = progress.PieceTicker(1, enabled=False)
    off.started -= progress.PieceTicker.QUIET_S + 1
    off.piece("b.mid")
    assert capsys.readouterr().err == ""
