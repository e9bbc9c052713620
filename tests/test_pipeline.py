"""The whole DAG end to end: run → versions → MIDI → report → compare, and new MIDI arriving.

Real Prefect, GX, MLflow and TensorFlow on the windows of a few small real files, one epoch.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import mido
import numpy as np
import pretty_midi
import pytest

from musicflow.adapters import workspace
from musicflow.cli import main
from musicflow.core import roll
from musicflow.core.midi import scan_midi
from musicflow.core.settings import TrainSettings

pytestmark = pytest.mark.integration

# One model is enough for the DAG; rnn and gan run it whole in tests/test_tracking_server.py
# (and vae, the fastest to train, in the CLI tests of tests/test_faults*.py, test_watch.py)
MODELS = ["vae"]


def _versions(client, name: str) -> list[str]:
    return sorted(str(v.version) for v in client.search_model_versions(f"name = '{name}'"))


def _champion(client, name: str) -> str | None:
    version = client.get_registered_model(name).aliases.get("champion")
    return None if version is None else str(version)


def test_run_then_new_midi_arrives(piano_dir: Path, workspace_home: Path, capsys) -> None:
    from mlflow import MlflowClient

    from musicflow.flows.pipeline import pipeline_flow

    files = sorted(piano_dir.rglob("*.mid"), key=lambda p: p.stat().st_size)
    source = workspace_home / "src"
    source.mkdir()
    for f in files[:4]:
        shutil.copy(f, source / f.name)

    def run():
        return pipeline_flow(
            source=source, dataset="mini", models=MODELS, training=TrainSettings(epochs=1)
        )

    first = run()
    client = MlflowClient(tracking_uri=workspace.tracking_uri())
    for result in first.models:
        assert _versions(client, result["registered_model"]) == ["1"]
        # A first version is champion unless it is mostly blank.
        champion = _champion(client, result["registered_model"])
        assert (champion == "1") == (result["metrics"]["blank_rate"] <= 0.5)
        page = Path(result["report"]).read_text()
        for metric in ("onenn_accuracy", "pitch_hist_l1", "blank_rate", "copy_rate", "unique_rate"):
            assert metric in page
        pngs = sorted(Path(result["report"]).parent.glob("figures/*.png"))
        assert {"generated-windows.png", "note-frequency-held-out-real-vs-generated.png"} <= {
            p.name for p in pngs
        }
        assert all(p.read_bytes().startswith(b"\x89PNG") for p in pngs)
        midi_files = sorted(Path(result["report"]).parent.glob("midi/*.mid"))
        assert midi_files
        # each piece has its audio preview beside it, playable in the report
        for path in midi_files:
            assert path.with_suffix(".ogg").stat().st_size > 1000
        assert f'<source src="midi/{midi_files[0].stem}.ogg" type="audio/ogg">' in page
        assert "Lineage" in page and "epochs" in page
        for path in midi_files:
            mido.MidiFile(path)  # both libraries read the generated files
            pretty_midi.PrettyMIDI(str(path))

    # Generated MIDI re-encodes to exactly the windows it was written from.
    from musicflow.tasks.generate import generate_midi

    gen = generate_midi(first.models[0]["model_uri"], n=2, out_dir=workspace_home / "gen", seed=5)
    for path, song in zip(gen.midi_files, gen.songs, strict=True):
        scan = scan_midi(path.read_bytes())
        if len(scan.notes) == 0:
            assert not song.any()
            continue
        again, _ = roll.song_matrix(scan.notes, scan.ticks_per_beat)
        width = again.shape[1]
        assert np.array_equal(again, song[:, :width]) and not song[:, width:].any()

    # Nothing new: no new MLflow run, no new version.
    n_runs = len(
        client.search_runs([client.get_experiment_by_name("musicflow/mini").experiment_id])
    )
    second = run()
    assert [m["run_id"] for m in second.models] == [m["run_id"] for m in first.models]
    assert (
        len(client.search_runs([client.get_experiment_by_name("musicflow/mini").experiment_id]))
        == n_runs
    )
    assert second.audit.n_parsed == 0

    # New MIDI arrives: exactly one new version per model; champion moves only if better.
    shutil.copy(files[4], source / "arrived.mid")
    third = run()
    assert third.audit.n_parsed == 1
    for before, after in zip(first.models, third.models, strict=True):
        name = after["registered_model"]
        assert _versions(client, name) == ["1", "2"]
        champion = _champion(client, name)
        from musicflow.tasks.registry import is_better

        old = before["metrics"] if before["metrics"]["blank_rate"] <= 0.5 else None
        expected = "2" if is_better(after["metrics"], old) else ("1" if old else None)
        assert champion == expected

    # compare lists every version, champion marked, and names the best of the dataset.
    assert main(["compare", "--dataset", "mini"]) == 0
    table = capsys.readouterr().out
    for model in MODELS:
        assert re.search(rf"mini-{model}\s+1\b", table) and re.search(rf"mini-{model}\s+2\b", table)
    assert "best of the dataset: " in table

    # the dataset's index page has every version of every model, the best one marked
    index = (workspace_home / "reports" / "mini" / "index.html").read_text()
    assert third.index == str(workspace_home / "reports" / "mini" / "index.html")
    for model in MODELS:
        for version in (1, 2):
            assert f'href="{model}-v{version}/report.html"' in index
    # one piece of every version to listen to, after a held-out real excerpt
    listen = re.search(r'<table class="listen">(.*?)</table>', index).group(1)
    assert listen.count("<audio") == 1 + 2 * len(MODELS)
    assert listen.index("reference/heldout-excerpt.ogg") < listen.index("midi/sample-001.ogg")
    assert (workspace_home / "reports" / "mini" / "reference" / "heldout-excerpt.ogg").is_file()
    import json

    assert main(["compare", "--dataset", "mini", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["versions"]) == 2 * len(MODELS)
    if doc["best"] is not None:
        assert '<tr class="best">' in index
        assert sum(v["best"] for v in doc["versions"]) == 1
