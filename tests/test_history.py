"""Dataset versions over time: musicflow/core/history.py (pure) and tasks/history.py with the encode
flow's commit point, ``musicflow history --json`` and the history page."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import random_windows

from musicflow.core import history, metrics
from musicflow.core.synth import synth_midi


def test_file_changes_name_added_removed_and_changed_paths() -> None:
    before = {"a.mid": "1", "b.mid": "2", "c.mid": "3"}
    after = {"a.mid": "1", "b.mid": "9", "d.mid": "4"}
    assert history.file_changes(before, after) == {
        "added": ["d.mid"],
        "removed": ["c.mid"],
        "changed": ["b.mid"],
    }


def test_window_statistics_are_the_metrics_over_every_window_in_batches() -> None:
    windows = random_windows(300, seed=3)
    windows[:10] = False  # blank windows: no polyphony, in the blank rate
    stats = history.window_statistics([windows[:128], windows[128:], windows[:0]], pitch_low=21)
    assert stats["n_windows"] == 300
    assert stats["density"] == pytest.approx(metrics.density(windows).mean())
    assert stats["polyphony"] == pytest.approx(np.nanmean(metrics.polyphony(windows)))
    assert stats["blank_rate"] == pytest.approx(10 / 300)
    hist = metrics.pitch_histogram(windows)
    assert stats["pitch_histogram"] == pytest.approx(hist / hist.sum(), abs=1e-6)


def _record(density: float, polyphony: float, quarantined: int, hist: list[float]) -> dict:
    return {
        "n_files_in": 100,
        "status": {"accepted": 100 - quarantined, "quarantined": quarantined},
        "statistics": {"density": density, "polyphony": polyphony, "pitch_histogram": hist},
    }


def test_drift_verdicts_in_plain_words() -> None:
    low = [0.0] * 95 + [1.0]  # everything on the lowest row
    high = [1.0] + [0.0] * 95
    same = history.drift(_record(2.0, 3.0, 1, low), _record(2.02, 3.0, 1, low))
    assert [d.level for d in same] == ["same"] * 4
    assert [d.verdict for d in same][1:] == ["about the same"] * 3
    moved = {
        d.name: d for d in history.drift(_record(2.0, 3.0, 1, high), _record(3.0, 2.7, 9, low))
    }
    assert (
        moved["pitch histogram"].level == "large"
        and "lower notes" in moved["pitch histogram"].verdict
    )
    assert moved["density"].verdict == "much denser (+50%)"
    assert moved["polyphony"].verdict == "somewhat thinner (-10%)"
    assert moved["quarantine rate"].verdict.startswith("up 8.0 points: look at")


def _write(folder: Path, name: str, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(synth_midi(seed, n_tracks=1, notes_per_track=(60, 90)))


@pytest.mark.integration
def test_three_versions_give_three_records_with_their_deltas(
    workspace_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from musicflow.adapters import tracking, workspace
    from musicflow.adapters.store import read_dataset
    from musicflow.cli import main
    from musicflow.models.data import load_windows

    src = tmp_path / "src"
    for i in range(6):
        _write(src, f"p{i}.mid", i)

    def encode() -> None:
        assert main(["encode", str(src), "--dataset", "h", "--workers", "1"]) == 0

    encode()  # v1: six files
    (src / "p5.mid").unlink()
    _write(src, "n1.mid", 11)
    _write(src, "n2.mid", 12)
    encode()  # v2: +2 -1
    encode()  # unchanged: no new version
    _write(src, "p0.mid", 99)  # same path, other content
    (src / "junk.mid").write_bytes(b"not a midi file at all")
    encode()  # v3: ~1, +1 quarantined
    folder = workspace.rolls_dir("h")
    v2_digest = json.loads((folder / "history" / "versions.json").read_text())[1]["digest"]

    # a model version trained on v2, as train logs it (MLflow's dataset input)
    experiment = tracking.ensure_experiment("h")
    client = tracking.client()
    run = client.create_run(experiment, tags={"musicflow.dataset": "h"})
    import mlflow

    with mlflow.start_run(run_id=run.info.run_id):
        tracking.log_dataset_input(folder, "h", v2_digest)
    client.create_registered_model("h-vae")
    client.create_model_version("h-vae", f"runs:/{run.info.run_id}/model", run.info.run_id)

    capsys.readouterr()
    assert main(["history", "--dataset", "h", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    versions = doc["versions"]
    assert [v["version"] for v in versions] == [1, 2, 3]
    assert [v["changes"] for v in versions] == [
        {"added": 6, "removed": 0, "changed": 0},
        {"added": 2, "removed": 1, "changed": 0},
        {"added": 1, "removed": 0, "changed": 1},
    ]
    assert versions[1]["changed_files"]["removed"] == ["p5.mid"]
    assert versions[2]["changed_files"] == {
        "added": ["junk.mid"],
        "removed": [],
        "changed": ["p0.mid"],
    }
    assert [v["n_files_in"] for v in versions] == [6, 7, 8]
    assert [v["status"].get("quarantined", 0) for v in versions] == [0, 0, 1]
    assert versions[2]["quarantine_reasons"] == {"not_midi": 1}
    assert len({v["digest"] for v in versions}) == 3
    assert [v["models"] for v in versions] == [[], ["h-vae v1"], []]
    assert versions[0]["drift"] == []
    rate = {d["name"]: d for d in versions[2]["drift"]}["quarantine rate"]
    assert rate["after"] == pytest.approx(1 / 8) and rate["level"] == "large"
    # the statistics are those of the committed version's windows
    info = read_dataset(folder)
    assert versions[2]["digest"] == info.digest and versions[2]["n_windows"] == info.n_windows
    windows = load_windows(info.shard_paths, None, None)
    stats = versions[2]["statistics"]
    assert stats["n_windows"] == len(windows)
    assert stats["density"] == pytest.approx(metrics.density(windows).mean())
    page = Path(doc["page"])
    assert page == workspace_home / "reports" / "h" / "history.html"
    html = page.read_text()
    assert "v2 → v3" in html and "v1 → v2" in html and "h-vae v1" in html
    assert "<script" not in html and "http" not in html.replace('xmlns="http', "")
    # each version links to its own validation in the Data Docs, all three kept
    pages = [v["validation_page"] for v in versions]
    assert len(set(pages)) == 3 and all((folder / p).is_file() for p in pages)
    assert pages == sorted(pages)

    # a dataset encoded before histories were kept starts its history with its current version
    shutil.rmtree(folder / "history")
    assert main(["history", "--dataset", "h"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("v1 ") and "page:" in out


def test_the_page_links_the_index_written_with_it(workspace_home: Path, tmp_path: Path) -> None:
    from musicflow.tasks.history import write_history_page

    # musicflow run writes the history page just before the index: link it all the same
    assert 'href="index.html"' in write_history_page("h", tmp_path, [], index=True).read_text()
    # musicflow history on a dataset that has no index yet: no link to a missing page
    assert "index.html" not in write_history_page("h", tmp_path, []).read_text()
