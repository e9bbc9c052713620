"""musicflow/console.py: what the CLI prints (tables and summaries, pure text)."""

from __future__ import annotations

from musicflow.console import format_model, format_summary, format_table


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
    assert "onenn_base" in table[0]
    assert table[2].split()[:3] == ["d-gan", "2", "*"]
    assert "0.750" in table[1]
    assert "no registered" in format_table([])


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
    assert "    … and 2 more (see the manifest)" in lines
    assert "    drums.mid  (drums_ignored)" in lines


def test_model_lines_show_metrics_beside_baselines() -> None:
    metrics = {"onenn_accuracy": 0.9, "onenn_accuracy_baseline": 0.7, "blank_rate": 0.0}
    text = format_model("models:/d-gan/2", "abc", True, metrics, "reports/d/gan-v2/report.html")
    lines = text.splitlines()
    assert lines[0] == "models:/d-gan/2 (run abc) (new champion)"
    assert "  onenn_accuracy: 0.900 (baseline 0.700)" in lines
    assert "  pitch_hist_l1: nan (baseline nan)" in lines
    assert lines[-1] == "  report: reports/d/gan-v2/report.html"
