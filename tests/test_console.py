"""musicflow/terminal/console.py: what the CLI prints (tables and summaries, pure text)."""

from __future__ import annotations

from musicflow.adapters.tracking import VersionRow
from musicflow.terminal.console import (
    compare_json,
    format_best,
    format_model,
    format_summary,
    format_table,
    summary_json,
)


def m(onenn: float, l1: float = 0.5, blank: float = 0.0) -> dict[str, float]:
    return {"onenn_accuracy": onenn, "pitch_hist_l1": l1, "blank_rate": blank}


def test_table_marks_champion_and_shows_baseline() -> None:
    rows = [
        {
            "model": "d-gan",
            "version": 1,
            "champion": False,
            **m(0.9),
            "onenn_accuracy_baseline": 0.75,
        },
        {
            "model": "d-gan",
            "version": 2,
            "champion": True,
            **m(0.8),
            "onenn_accuracy_baseline": 0.75,
        },
    ]
    table = format_table(rows).splitlines()
    assert table[0].split()[:4] == ["model", "ver", "standing", "onenn_accuracy"]
    assert table[2].split()[:3] == ["d-gan", "2", "champion"]
    assert "0.900 (0.750)" in table[1]  # the baseline beside the value
    assert "no registered" in format_table([])


EVALUATED = ("pitch_hist_l1", "blank_rate", "onenn_accuracy", "heldout_nll")


def _row(model: str, version: int, champion: bool, **metrics: float) -> VersionRow:
    return VersionRow(
        f"d-{model}",
        version,
        champion,
        metrics,
        run_id=f"r{version}",
        params={"model": model, "max_epochs": "100", "dataset_digest": "ab" * 32},
        tags={"musicflow.evaluation_metrics": ",".join(k for k in EVALUATED if k in metrics)},
    )


def test_best_of_the_dataset_is_marked_across_models_and_in_json() -> None:
    rows = [
        _row("gan", 1, True, **m(0.95), epochs_completed=3),
        _row("vae", 1, False, **m(0.99)),
        _row("vae", 2, True, **m(0.90), heldout_nll=3.25, epochs_completed=12),
    ]
    best = rows[2]
    table = format_table(rows, best)
    assert "heldout_nll" in table.splitlines()[0]  # a model-provided metric becomes a column
    line = next(x for x in table.splitlines() if x.startswith("d-vae") and " 2 " in x)
    assert "champion ★ best" in line and "12/100" in line and "3.250" in line
    assert format_best(best).startswith("best of the dataset: d-vae v2 (load it as")
    assert format_best(None).startswith("best of the dataset: none yet")

    doc = compare_json("d", rows, best)
    assert doc["schema"] == 1 and doc["dataset"] == "d" and "Champion rule" in doc["rule"]
    assert doc["best"] == {
        "registered_model": "d-vae",
        "version": 2,
        "uri": "models:/d-vae/2",
        "champion_uri": "models:/d-vae@champion",
    }
    keys = {"registered_model", "model", "version", "uri", "champion", "best", "run_id"}
    keys |= {"dataset_digest", "epochs", "max_epochs", "metrics", "baselines"}
    for version in doc["versions"]:
        assert set(version) == keys
    v2 = doc["versions"][2]
    assert v2["best"] and v2["champion"] and v2["model"] == "vae" and v2["epochs"] == 12
    assert v2["metrics"]["heldout_nll"] == 3.25 and v2["max_epochs"] == 100
    assert "epochs_completed" not in v2["metrics"]  # training numbers are not metrics here


def test_summary_json_names_every_field() -> None:
    summary = {
        "n_files": 3,
        "status": {"accepted": 2, "quarantined": 1},
        "quarantine_reasons": {"not_midi": 1},
        "warnings": {"drums_ignored": 1},
        "quarantined_files": [("bad.mid", "not_midi")],
        "warned_files": [("drums.mid", ["drums_ignored"])],
        "n_segments": 30,
    }
    doc = summary_json(summary)
    assert doc["quarantined_files"] == [{"path": "bad.mid", "reason": "not_midi"}]
    assert doc["warned_files"] == [{"path": "drums.mid", "warnings": ["drums_ignored"]}]
    assert doc["n_windows"] == 30 and doc["status"] == {"accepted": 2, "quarantined": 1}


def test_summary_counts_first_then_the_worst_files() -> None:
    summary = {
        "n_files": 14,
        "status": {"accepted": 2, "quarantined": 12},
        "quarantine_reasons": {"not_midi": 12},
        "warnings": {"drums_ignored": 1},
        "quarantined_files": [(f"bad{i:02d}.mid", "not_midi") for i in range(12)],
        "warned_files": [("drums.mid", ["drums_ignored"])],
        "n_segments": 30,
    }
    lines = format_summary(summary, worst=10).splitlines()
    assert lines[0].startswith("14 MIDI files: 2 accepted, 12 quarantined, 0 duplicate; 30 windows")
    assert "  quarantined: not_midi 12" in lines and "  warnings: drums_ignored 1" in lines
    assert "    bad09.mid  (not_midi)" in lines and "    bad10.mid  (not_midi)" not in lines
    assert "    … and 2 more (see the audit page)" in lines
    assert "    drums.mid  (drums_ignored)" in lines


def test_model_lines_show_metrics_beside_baselines() -> None:
    metrics = {"onenn_accuracy": 0.9, "onenn_accuracy_baseline": 0.7, "blank_rate": 0.0}
    text = format_model("models:/d-gan/2", "abc", True, metrics, "reports/d/gan-v2/report.html")
    lines = text.splitlines()
    assert lines[0] == "models:/d-gan/2 (run abc) (new champion)"
    assert "  onenn_accuracy: 0.900 (baseline 0.700)" in lines
    assert "  pitch_hist_l1: nan (baseline nan)" in lines
    assert lines[-1] == "  report: reports/d/gan-v2/report.html"


def test_run_json_shape() -> None:
    from types import SimpleNamespace as NS

    from musicflow.terminal.console import run_json

    summary = {
        "n_files": 1,
        "status": {"accepted": 1},
        "quarantine_reasons": {},
        "warnings": {},
        "quarantined_files": [],
        "warned_files": [],
        "n_segments": 5,
    }
    audit = NS(
        dataset="d",
        summary=summary,
        dataset_info=NS(digest="ab" * 32, n_windows=5),
        audit_page="data/rolls/d/audit.html",
    )
    model = NS(
        trained=NS(model="vae", run_id="r1", epochs_done=3, max_epochs=100),
        registered=NS(name="d-vae", version=2, model_uri="models:/d-vae/2"),
        evaluation=NS(scores={"onenn_accuracy": 0.9, "onenn_accuracy_baseline": 0.7}),
        promoted=True,
        report="reports/d/vae-v2/report.html",
    )
    result = NS(audit=audit, models=[model], index="reports/d/index.html")
    best = {"registered_model": "d-vae", "version": 2, "uri": "models:/d-vae/2"}
    doc = run_json(result, {"best": best, "mlflow_ui": "http://127.0.0.1:5000/#/x"})
    assert list(doc) == [
        "schema",
        "command",
        "dataset",
        "summary",
        "dataset_digest",
        "n_windows",
        "audit_page",
        "models",
        "best",
        "index",
        "mlflow_ui",
    ]
    assert doc["models"] == [
        {
            "model": "vae",
            "registered_model": "d-vae",
            "version": 2,
            "uri": "models:/d-vae/2",
            "run_id": "r1",
            "new_champion": True,
            "epochs": 3,
            "max_epochs": 100,
            "report": "reports/d/vae-v2/report.html",
            "metrics": {"onenn_accuracy": 0.9},
            "baselines": {"onenn_accuracy": 0.7},
        }
    ]
    assert doc["best"] == best and doc["summary"]["n_windows"] == 5


def test_compare_shows_the_track_summaries_only_when_a_version_has_them() -> None:
    tracks = {
        "tracks.mean_tonal_distance": 1.5,
        "tracks.mean_tonal_distance_baseline": 1.57,
        "tracks.voice_crossing_rate": 0.25,
        "tracks.voice_crossing_rate_baseline": 0.024,
        "track.0.pitch_hist_l1": 0.3,  # per-track metrics stay on the report
    }
    merged = [_row("gan", 1, True, **m(0.9))]
    assert "tracks." not in format_table(merged)
    rows = [*merged, _row("vae", 1, True, **m(0.8), **tracks)]
    header, gan, vae = format_table(rows).splitlines()[:3]
    assert header.split()[-2:] == ["tracks.mean_tonal_distance", "tracks.voice_crossing_rate"]
    assert "1.500 (1.570)" in vae and "0.250 (0.024)" in vae
    assert gan.split()[-2:] == ["-", "-"]
    assert "track.0" not in header
    doc = compare_json("d", rows, None)
    assert doc["versions"][1]["metrics"]["tracks.voice_crossing_rate"] == 0.25
    assert doc["versions"][1]["baselines"]["tracks.mean_tonal_distance"] == 1.57
    assert not any(k.startswith("track") for k in doc["versions"][0]["metrics"])
