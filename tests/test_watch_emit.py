"""``musicflow watch --emit``: the Prefect way of retraining when MIDI lands, on a real
``prefect server start`` (SQLite) and ``prefect worker`` (the watcher itself:
``tests/test_watch.py``; a file of its own so that ``make test``'s workers run the two slow
tests side by side).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import servers
from test_watch import DATASET, MODEL, Watcher, _group_alive, small_midi


@pytest.mark.integration
@pytest.mark.server
def test_watch_emit_runs_the_deployment_through_a_prefect_trigger(tmp_path: Path) -> None:
    """The Prefect way: ``deploy --on-midi-change`` registers the deployment with an
    automation; ``watch --emit`` sends the server an event when MIDI lands; the server's
    trigger creates a flow run, which a ``prefect worker`` runs."""
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client

    from musicflow.adapters.prefect_server import prefect_api
    from musicflow.flows import retrain

    pool = "landing"
    source = tmp_path / "src"
    source.mkdir()
    home = tmp_path / "ws"
    home.mkdir()
    database = f"sqlite+aiosqlite:///{tmp_path / 'server' / 'prefect.db'}"
    with servers.prefect_server(
        database, tmp_path / "server", PREFECT_SERVER_UI_ENABLED="false"
    ) as server:
        env = servers.prefect_env(server.url, tmp_path / "client")
        # deploy and watch run in the workspace, with its own Prefect home (.prefect/)
        env = {k: v for k, v in env.items() if k != "PREFECT_HOME"} | {"MUSICFLOW_HOME": str(home)}
        cmd = [sys.executable, "-m", "musicflow.cli", "deploy", str(source), "--dataset", DATASET]
        cmd += ["--pool", pool, "--models", MODEL, "--epochs", "1", "--on-midi-change"]
        done = subprocess.run(cmd, env=env, cwd=home, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "also runs:   on new MIDI" in done.stdout
        with prefect_api(server.url), get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(retrain.full_deployment_name(DATASET))
            [automation] = client.read_automations_by_name(f"retrain-{DATASET} when MIDI lands")
            assert automation.trigger.expect == {"musicflow.midi.changed"}
        store = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")

        def versions() -> list[int]:
            found = store.search_model_versions(f"name = '{DATASET}-{MODEL}'")
            return sorted(int(v.version) for v in found)

        def runs() -> list:
            """The deployment's runs that happened (the cron's future ones wait, Scheduled)."""
            with prefect_api(server.url), get_client(sync_client=True) as client:
                found = client.read_flow_runs()
            return [
                r for r in found if r.deployment_id == deployment.id and not r.state.is_scheduled()
            ]

        with servers.prefect_worker(server.url, pool, tmp_path / "worker") as worker_log:
            watcher = Watcher(source, env, tmp_path / "watch.log", "--emit")
            try:
                watcher.wait_for_line("no MIDI file in the folder; waiting")
                for i in range(20):
                    (source / f"piece{i:02d}.mid").write_bytes(small_midi(i))
                watcher.wait_for_line("watch: event sent in")
                try:
                    [ran] = watcher.wait_for(
                        "the triggered run to end",
                        lambda: [r for r in runs() if r.state.is_final()],
                    )
                except BaseException:
                    print(servers.log_tail(worker_log, 60))
                    raise
                assert ran.state.is_completed(), servers.log_tail(worker_log, 60)
                assert ran.created_by is not None and ran.created_by.type == "AUTOMATION"
                assert versions() == [1]
                # a touched file sends nothing
                later = time.time() + 60
                os.utime(source / "piece01.mid", (later, later))
                watcher.wait_for_line("no new MIDI content (20 files): nothing to train", 1, 60)
                assert watcher.text().count("watch: event sent in") == 1
                assert watcher.stop(signal.SIGTERM) == 143, watcher.tail()
                assert not _group_alive(watcher.proc.pid)
            finally:
                watcher.kill()
        assert len(runs()) == 1
