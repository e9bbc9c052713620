"""``musicflow watch``: retraining when MIDI lands, with a real watcher process.

The integration test runs ``python -m musicflow.cli watch`` in its own session, on an empty
folder of a fresh workspace (real watchdog, Prefect, GX, MLflow and TensorFlow; one ``vae``
epoch on small synthetic files), and drops files into the folder the way a user would.
``watch --emit`` through a Prefect trigger: ``tests/test_watch_emit.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from musicflow.adapters import procs
from musicflow.core.synth import synth_midi
from musicflow.flows.watch import describe, is_relevant, smf_declared_size

DATASET = "landing"
MODEL = "vae"  # the fastest to train: one epoch of a few files takes seconds
SETTLE_S = 1.0
RUN_TIMEOUT_S = 400  # one retraining; seconds alone, minutes on a loaded 2-core machine


def small_midi(seed: int) -> bytes:
    return synth_midi(seed, n_tracks=1, notes_per_track=(60, 90))


def _head(data: bytes):
    return lambda offset, n: data[offset : offset + n]


def test_declared_size_tells_a_whole_file_from_a_partial_one() -> None:
    data = synth_midi(3)  # a tempo track and three note tracks
    assert smf_declared_size(_head(data), len(data)) == len(data)
    for cut in (20, len(data) // 2, len(data) - 1):
        part = data[:cut]
        assert smf_declared_size(_head(part), len(part)) > len(part)
    end_of_first_track = 22 + int.from_bytes(data[18:22], "big")  # a cut between chunks
    part = data[:end_of_first_track]
    assert smf_declared_size(_head(part), len(part)) > len(part)
    for other in (b"", b"RIFF....RMID", b"not a midi file at all"):
        assert smf_declared_size(_head(other), len(other)) is None


def test_which_events_count() -> None:
    assert is_relevant("created", False, ["/s/a.mid", ""])
    assert is_relevant("closed", False, ["/s/b.MIDI", ""])
    assert is_relevant("moved", False, ["/s/a.part", "/s/a.mid"])  # a finished download
    assert is_relevant("deleted", True, ["/s/folder", ""])
    assert is_relevant("events_lost", False, ["", ""])
    assert not is_relevant("created", False, ["/s/notes.txt", ""])
    assert not is_relevant("opened", False, ["/s/a.mid", ""])  # our own hashing reads them
    assert not is_relevant("closed_no_write", False, ["/s/a.mid", ""])
    assert not is_relevant("modified", True, ["/s", ""])
    assert describe(frozenset("ab"), frozenset("bcd")) == "2 new, 1 gone"
    assert describe(frozenset("ab"), frozenset("ab")) == "no change"


def _child() -> None:
    """Ctrl-C reaches the watcher even where pytest was started with SIGINT ignored (``nohup``,
    ``&`` in a script), which its children would inherit; and it dies with the test."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    procs.die_with_parent()


class Watcher:
    """``musicflow watch`` in a subprocess (own session), its stderr and stdout in a log."""

    def __init__(self, source: Path, env: dict[str, str], log: Path, *options: str) -> None:
        cmd = [sys.executable, "-m", "musicflow.cli", "watch", str(source)]
        cmd += ["--dataset", DATASET, "--settle", str(SETTLE_S), *options]
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_child,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, what: str, probe, timeout_s: float = RUN_TIMEOUT_S):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            result = probe()
            if result:
                return result
            if self.proc.poll() is not None:
                pytest.fail(f"watch exited ({self.proc.returncode}) before {what}:\n{self.tail()}")
            time.sleep(0.5)
        pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}\n{self.tail()}")

    def wait_for_line(self, text: str, count: int = 1, timeout_s: float = RUN_TIMEOUT_S) -> None:
        self.wait_for(f"{count} × {text!r}", lambda: self.text().count(text) >= count, timeout_s)

    def tail(self) -> str:
        return self.text()[-4000:]

    def stop(self, sig: int, timeout_s: float = 60) -> int:
        os.kill(self.proc.pid, sig)
        return self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        procs.stop_group(self.proc, grace_s=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.integration
def test_watch_retrains_only_when_midi_contents_change(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    source = tmp_path / "src"
    source.mkdir()
    home = tmp_path / "ws"
    (home / "mlruns").mkdir(parents=True)
    tracking = f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"
    # the session's Prefect server (PREFECT_API_URL, set by conftest) runs the flows
    env = dict(os.environ, MUSICFLOW_HOME=str(home), MLFLOW_TRACKING_URI=tracking)
    store = MlflowClient(tracking_uri=tracking)

    def versions() -> list[int]:
        found = store.search_model_versions(f"name = '{DATASET}-{MODEL}'")
        return sorted(int(v.version) for v in found)

    watcher = Watcher(source, env, tmp_path / "watch.log", "--models", MODEL, "--epochs", "1")
    try:
        watcher.wait_for_line("no MIDI file in the folder; waiting")

        # 20 files land: one retraining, one new version
        for i in range(20):
            (source / f"piece{i:02d}.mid").write_bytes(small_midi(i))
        watcher.wait_for_line("watch: retrained in")
        assert versions() == [1]
        assert "MIDI contents changed (20 files" in watcher.text()

        # 4 more: a second version
        (source / "more").mkdir()
        for i in range(20, 24):
            (source / "more" / f"piece{i:02d}.mid").write_bytes(small_midi(i))
        watcher.wait_for_line("watch: retrained in", 2)
        assert versions() == [1, 2]
        assert "MIDI contents changed (4 new): retraining" in watcher.text()
        state = json.loads((home / "data" / "watch" / f"{DATASET}.json").read_text())
        assert len(state["contents"]) == 24 and state["settings"]["models"] == [MODEL]

        # a touched unchanged file, a non-MIDI file, and a copy that grows for a while and
        # then stalls half-way: no retraining
        seen = len(watcher.text())
        later = time.time() + 60
        os.utime(source / "piece03.mid", (later, later))
        (source / "notes.txt").write_text("not music")
        whole = small_midi(99)
        with open(source / "copying.mid", "wb") as partial:
            for start in range(0, len(whole) // 2, 40):
                partial.write(whole[start : start + 40])
                partial.flush()
                time.sleep(0.25)
        watcher.wait_for(
            "the partial file to be left out",
            lambda: "left out for now: copying.mid" in watcher.text()[seen:],
            timeout_s=60,
        )
        watcher.wait_for_line("no new MIDI content (24 files): nothing to train", 1, 60)
        time.sleep(4 * SETTLE_S)
        assert "retraining" not in watcher.text()[seen:]
        assert versions() == [1, 2]

        # SIGTERM between runs: a clean exit, nothing left in its process group
        assert watcher.stop(signal.SIGTERM) == 143, watcher.tail()
        assert not _group_alive(watcher.proc.pid)
        assert "Traceback" not in watcher.text()

        # started again on the same folder: up to date with what it last trained
        again = Watcher(source, env, tmp_path / "again.log", "--models", MODEL, "--epochs", "1")
        try:
            again.wait_for_line("up to date with the last trained state (24 files): nothing")
            assert again.stop(signal.SIGINT) == 130, again.tail()
            assert not _group_alive(again.proc.pid)
        finally:
            again.kill()
        assert versions() == [1, 2]
    finally:
        watcher.kill()
