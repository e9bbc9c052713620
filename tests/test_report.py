"""tasks/report.py, the report stage: a page from what earlier steps logged, never recomputed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import random_windows

from musicflow.adapters import tracking
from musicflow.core import roll
from musicflow.pages import score
from musicflow.tasks import report as stage
from musicflow.tasks.evaluate import Evaluation, EvaluationWindows
from musicflow.tasks.generate import GenerationResult
from musicflow.tasks.registry import RegisteredModel
from musicflow.tasks.train import TrainedModel

PITCH_LOW = 30


def _inputs(tmp_path: Path, kind: str):
    trained = TrainedModel(
        run_id="run1",
        dataset="d",
        model=kind,
        seed=0,
        encoding={"name": "roll-v1", "pitch_low": PITCH_LOW},
        history={"loss": [1.0, 0.5]} if kind == "vae" else {"d_acc_real": [0.9, 0.8]},
        digest="0123456789abcdef" * 4,
        code_version="0.1.0+abc",
        epochs_done=3,
        max_epochs=10,
        time_budget_s=60.0,
    )
    evaluation = Evaluation(
        run_id="run1",
        scores={
            "pitch_hist_l1": 0.25,
            "pitch_hist_l1_baseline": 0.2,
            "copy_rate": float("nan"),
            "blank_rate": float("nan"),  # a headline metric not known: left out of the summary
        },
        threshold=0.375,
        target_density=0.03,
        pitch_low=PITCH_LOW,
        n_generated=6,
        n_heldout=6,
        n_train_sample=20,
    )
    registered = RegisteredModel(name=f"d-{kind}", version=3, run_id="run1")
    page = stage.report_page(trained, registered)
    midi = page.parent / "midi" / "sample-001.mid"
    midi.parent.mkdir(parents=True)
    midi.write_bytes(b"MThd")
    score.write_musicxml(midi.with_suffix(".musicxml"), np.array([(60, 0, 12), (48, 0, 48)]))
    pieces = GenerationResult(midi_files=[midi], audio_note="audio previews skipped: reason")
    return trained, evaluation, registered, pieces


@pytest.mark.parametrize("kind", ["vae", "gan"])
def test_report_reads_back_the_evaluation_and_loads_no_model(
    kind: str, workspace_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    latents = np.random.default_rng(0).normal(size=(6, 4)) if kind == "vae" else None
    scored = EvaluationWindows(random_windows(6, 1), random_windows(6, 2), latents)
    read, logged = [], []
    monkeypatch.setattr(stage, "load_windows", lambda run_id: read.append(run_id) or scored)
    monkeypatch.setattr(tracking, "log_artifacts", lambda *a, **k: logged.append((a, k)))
    monkeypatch.setattr(stage, "thesis_counterpart_metrics", lambda dataset, model: None)
    champion = tracking.VersionRow(f"d-{kind}", 3, True, {"onenn_accuracy": 0.9, "blank_rate": 0})
    monkeypatch.setattr(tracking, "dataset_versions", lambda dataset: [champion])
    monkeypatch.setattr(tracking, "experiment_id_of", lambda dataset: "7")
    described = {}
    monkeypatch.setattr(
        tracking, "set_run_description", lambda run, text: described.update({run: text})
    )

    def no_model(*args, **kwargs):
        raise AssertionError("the report stage must not load a model")

    monkeypatch.setattr(tracking, "fetch_model", no_model)
    monkeypatch.setattr("musicflow.models.load_model", no_model)

    trained, evaluation, registered, pieces = _inputs(tmp_path, kind)
    page = Path(stage.build_report(trained, evaluation, registered, pieces,
                                   dataset_dir=tmp_path / "none", audit_summary=None))  # fmt: skip
    assert page == workspace_home / "reports" / "d" / f"{kind}-v3" / "report.html"
    html = page.read_text()
    assert read == ["run1"]
    assert "0.375" in html and "models:/d-" in html and "midi/sample-001.mid" in html
    assert "pitch_hist_l1" in html and "audio previews skipped: reason" in html
    # the piece's engraved score, beside its files
    assert '<img class="score" alt="score of sample-001" src="midi/sample-001.svg"' in html
    assert 'href="midi/sample-001.musicxml"' in html
    assert (page.parent / "midi" / "sample-001.svg").read_text().startswith("<svg")
    # the lineage block: digest, code version, epochs against the plan, links, standing
    assert "Lineage" in html and "0123456789abcdef" in html and "3 of 10 epochs" in html
    # the MLflow link goes through reports/mlflow-ui.html, which forwards to where ui serves
    assert 'href="../../mlflow-ui.html#/experiments/7/runs/run1?' in html
    assert '"http://127.0.0.1:5000/"' in (workspace_home / "reports" / "mlflow-ui.html").read_text()
    assert "★ best of the dataset" in html and f"champion of d-{kind}" in html
    assert 'href="../index.html"' in html
    assert "champion, best of the dataset" in described["run1"]
    # the run summary (the version's description too): the plan, the budget, the scores
    summary = f"**{kind}** trained for 3 of 10 epochs (time budget 1 min) on **d**"
    assert described["run1"].startswith(summary)
    assert "- `pitch_hist_l1` 0.250 (baseline 0.200)" in described["run1"]
    assert "onenn_accuracy" not in described["run1"] and "blank_rate" not in described["run1"]
    figures = {p.name for p in (page.parent / "figures").glob("*.png")}
    assert {"generated-windows.png", "held-out-real-windows.png"} <= figures
    assert ("latent-space-of-held-out-windows.png" in figures) == (kind == "vae")
    assert ("discriminator-accuracy.png" in figures) == (kind == "gan")
    assert logged == [(("run1", page.parent), {"artifact_path": "report"})]


def test_excerpt_rows_take_the_first_file_with_enough_consecutive_windows() -> None:
    paths = ["a"] * 3 + ["b"] * 5 + ["c"] * 4
    segments = [0, 1, 2, 0, 1, 3, 4, 5, 7, 8, 9, 10]  # a | b, with a gap | c
    assert stage.excerpt_rows(paths, segments, 3) == [0, 1, 2]
    assert stage.excerpt_rows(paths, segments, 4) == [8, 9, 10, 11]  # b has a gap at 2
    assert stage.excerpt_rows(paths, segments, 9) == [8, 9, 10, 11]  # none: the longest run
    assert stage.excerpt_rows([], [], 8) == []


@pytest.mark.integration
def test_the_reference_excerpt_is_16_bars_of_a_held_out_file(
    workspace_home: Path, tmp_path: Path
) -> None:
    from conftest import write_midi

    from musicflow.adapters.store import read_dataset
    from musicflow.core.midi import scan_midi
    from musicflow.flows.dataset import encode_flow
    from musicflow.models.data import heldout_split

    src = tmp_path / "src"
    src.mkdir()
    for i in range(10):  # 80 beats: 10 windows each, one file held out
        write_midi(src / f"f{i}.mid", [60 + (b * (i + 1)) % 12 for b in range(80)])
    out = tmp_path / "rolls"
    encode_flow(source=src, dataset="r", out_dir=out, cache_dir=tmp_path / "cache")
    info = read_dataset(out)
    _, heldout = heldout_split(info.shard_paths)
    text, files = stage.reference_excerpt(out, tmp_path / "ref")
    assert [p.name for p in files] == [
        "heldout-excerpt.mid",
        "heldout-excerpt.musicxml",
        "heldout-excerpt.ogg",
    ]
    manifest = pd.read_parquet(out / "manifest.parquet")
    held_paths = set(manifest[manifest.source_sha256.isin(heldout)].source_path)
    name = next(Path(p).name for p in sorted(held_paths))
    assert f"bars 1–16 of {name}" in text
    excerpt = scan_midi(files[0].read_bytes())
    source = scan_midi((src / name).read_bytes())
    got, _ = roll.song_matrix(excerpt.notes, excerpt.ticks_per_beat)
    real, _ = roll.song_matrix(source.notes, source.ticks_per_beat)
    assert got.shape[1] == 16 * 48 and np.array_equal(got, real[:, : 16 * 48])
    # kept while the dataset is the same
    mtimes = [p.stat().st_mtime_ns for p in files]
    assert stage.reference_excerpt(out, tmp_path / "ref") == (text, files)
    assert [p.stat().st_mtime_ns for p in files] == mtimes


def test_ui_link_page_follows_the_address_ui_serves_on(workspace_home: Path) -> None:
    folder = workspace_home / "reports" / "d" / "vae-v1"
    link = stage.ui_link(folder, "/experiments/1/runs/r1")
    assert link == "../../mlflow-ui.html#/experiments/1/runs/r1"
    page = stage.ui_link_page()
    assert '"http://127.0.0.1:5000/"' in page.read_text()  # the default until ui runs
    stage.write_ui_link_page("http://127.0.0.1:5123")  # what `ui --port 5123` does
    stage.ui_link(folder, "/x")  # a later report keeps the address ui wrote
    text = page.read_text()
    assert '"http://127.0.0.1:5123/"' in text and "5000" not in text
    assert "location.replace(ui + location.hash)" in text


def test_a_run_with_tracks_gets_the_track_table_and_the_coloured_roll(
    workspace_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows with a track axis (n, K, 96, 96) and track metrics: the report names the
    dataset's tracks (its dataset.json) in the track table and draws the tracks' figure."""
    import dataclasses
    import json

    names = ["Soprano", "Alto", "Tenor", "Bass"]
    dataset_dir = tmp_path / "satb"
    dataset_dir.mkdir()
    encoding = {"name": "roll-v1", "pitch_low": PITCH_LOW, "policy": "voices",
                "tracks": [{"name": n, "program": 0, "channel": i, "drums": False}
                           for i, n in enumerate(names)]}  # fmt: skip
    record = {"name": "satb", "digest": "0" * 64, "encoding": encoding, "shards": []}
    (dataset_dir / "dataset.json").write_text(json.dumps(record | {"n_windows": 0, "n_files": 0}))
    assert stage.track_names(dataset_dir) == names
    assert stage.track_names(tmp_path / "none") is None

    def tracked(n: int, seed: int) -> np.ndarray:
        return np.stack([random_windows(n, seed + t) for t in range(4)], axis=1)

    gen_t, held_t = tracked(6, 1), tracked(6, 9)
    scored = EvaluationWindows(gen_t.any(axis=1), held_t.any(axis=1), None, gen_t, held_t)
    monkeypatch.setattr(stage, "load_windows", lambda run_id: scored)
    monkeypatch.setattr(tracking, "log_artifacts", lambda *a, **k: None)
    monkeypatch.setattr(stage, "thesis_counterpart_metrics", lambda dataset, model: None)
    monkeypatch.setattr(tracking, "dataset_versions", lambda dataset: [])
    monkeypatch.setattr(tracking, "experiment_id_of", lambda dataset: "7")
    monkeypatch.setattr(tracking, "set_run_description", lambda run, text: None)
    trained, evaluation, registered, pieces = _inputs(tmp_path, "gan")
    evaluation = dataclasses.replace(
        evaluation,
        scores=evaluation.scores
        | {"track.3.median_pitch": 50.0, "track.3.median_pitch_baseline": 52.0},
    )
    page = Path(stage.build_report(trained, evaluation, registered, pieces,
                                   dataset_dir=dataset_dir, audit_summary={}))  # fmt: skip
    html = page.read_text()
    assert "<h2>Tracks</h2>" in html
    assert "<tr><td>Bass</td>" in html and "50.000<small>base 52.000</small>" in html
    figures = {p.name for p in (page.parent / "figures").glob("*.png")}
    assert "tracks-a-generated-piece-and-held-out-windows.png" in figures
    assert {"generated-windows.png", "held-out-real-windows.png"} <= figures  # merged
