"""musicflow/pages/report.py, the HTML report: complete, self-contained, honest about baselines."""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path

import pytest
from conftest import random_windows as _windows

from musicflow.core import metrics as m
from musicflow.pages import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _metrics() -> dict[str, float]:
    out = {name: 0.1 * i for i, name in enumerate(m.METRIC_NAMES)}
    out.update({f"{name}_baseline": 0.2 for name in m.METRIC_NAMES})
    out["polyphony_diff"] = float("nan")
    return out


def _render(figures: dict[str, bytes], **over: object) -> str:
    kwargs: dict[str, object] = {
        "title": "bach-vae v3",
        "model_info": {"model": "vae", "version": 3, "params": {"latent_dim": 32}},
        "metrics": _metrics(),
        "baseline_model_metrics": {name: 0.3 for name in m.METRIC_NAMES},
        "audit_summary": {"accepted": 300, "quarantined": {"not_midi": 2}, "warnings": []},
        "figures": figures,
        "links": [("sample 1 (MIDI)", "samples/sample 001.mid"), ("sample 1", "samples/001.wav")],
    }
    kwargs.update(over)
    return report.render_report(**kwargs)  # type: ignore[arg-type]


def test_report_has_every_metric_and_its_baseline(figures: dict[str, bytes]) -> None:
    page = _render(figures)
    for name in m.METRIC_NAMES:
        row = re.search(rf"<tr><td><code>{name}</code></td>(.*?)</tr>", page)
        assert row, name
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
        assert cells[1] == "0.200", name  # the baseline column
        assert cells[2] == "0.300", name  # the thesis-architecture model
        assert m.METRIC_INFO[name].description.split()[0] in page
    assert "n/a" in page  # NaN shows as undefined, not as a number
    assert "Thesis-architecture model" in page


def test_report_without_thesis_model(figures: dict[str, bytes]) -> None:
    page = _render(figures, baseline_model_metrics=None)
    assert "Thesis-architecture model" not in page
    assert "pitch_hist_l1" in page


def test_report_is_self_contained(figures: dict[str, bytes]) -> None:
    page = _render(figures)
    assert not re.search(r"https?://", page, flags=re.IGNORECASE)
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    srcs = re.findall(r'src="([^"]*)"', page)
    images = [s for s in srcs if s.startswith("data:")]
    assert len(images) == len(figures)
    for uri in images:
        assert base64.b64decode(uri.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert 'href="samples/sample%20001.mid"' in page
    assert "<audio" in page and 'src="samples/001.wav"' in page


@pytest.mark.parametrize(
    "href", ["https://example.org/a.mid", "http://x/y.wav", "//cdn/x.mid", "file:///etc/x"]
)
def test_report_refuses_non_relative_links(figures: dict[str, bytes], href: str) -> None:
    with pytest.raises(ValueError, match="relative"):
        _render(figures, links=[("x", href)])


def test_report_escapes_text(figures: dict[str, bytes]) -> None:
    page = _render(figures, title="<b>x</b>", audit_summary={"bad": "<script>alert(1)</script>"})
    assert "<script>" not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page


def test_report_of_real_evaluate_output(figures: dict[str, bytes]) -> None:
    out = m.evaluate(_windows(30, 7), _windows(30, 8), _windows(60, 9), seed=0)
    page = _render(figures, metrics=out, baseline_model_metrics=None)
    for name, value in out.items():
        assert name.removesuffix("_baseline") in page
        if not math.isnan(value):
            assert f"{value:.3f}" in page


def test_write_report_is_atomic(tmp_path: Path, figures: dict[str, bytes]) -> None:
    target = tmp_path / "reports" / "index.html"
    page = _render(figures)
    assert report.write_report(target, page) == target
    assert target.read_text(encoding="utf-8") == page
    report.write_report(target, "<!DOCTYPE html><p>v2</p>")
    assert target.read_text(encoding="utf-8") == "<!DOCTYPE html><p>v2</p>"
    assert [p.name for p in target.parent.iterdir()] == ["index.html"]


def test_report_colours_each_metric_against_its_baseline(figures: dict[str, bytes]) -> None:
    metrics = {
        "pitch_hist_l1": 0.20,  # better than its baseline: good
        "pitch_hist_l1_baseline": 0.22,
        "density_diff": 0.30,  # worse, within half the baseline's distance: near
        "density_diff_baseline": 0.22,
        "onenn_accuracy": 0.99,  # 0.49 from ideal vs 0.25 (+0.125): bad
        "onenn_accuracy_baseline": 0.75,
        "unique_rate": 1.0,
        "unique_rate_baseline": 0.99,
    }
    page = _render(figures, metrics=metrics, baseline_model_metrics=None)

    def cls(name: str) -> str:
        found = re.search(rf'<code>{name}</code></td><td class="([^"]*)"', page)
        assert found, name
        return found.group(1)

    assert cls("pitch_hist_l1") == "num good"
    assert cls("density_diff") == "num near"
    assert cls("onenn_accuracy") == "num bad"
    assert cls("unique_rate") == "num good"


def _lineage(**over: object) -> report.Lineage:
    values: dict[str, object] = {
        "dataset": "bach",
        "digest": "f" * 64,
        "code_version": "0.1.0+abc",
        "epochs_done": 2,
        "max_epochs": 300,
        "time_budget_s": 180.0,
        "run_id": "r1",
        "run_url": "http://127.0.0.1:5000/#/experiments/1/runs/r1",
        "model_uri": "models:/bach-gan/3",
        "data_docs": "../../../data/rolls/bach/data_docs/index.html",
        "audit_page": "../../../data/rolls/bach/audit.html",
        "index_page": "../index.html",
        "champion": True,
        "registered_model": "bach-gan",
    }
    values.update(over)
    return report.Lineage(**values)  # type: ignore[arg-type]


def test_lineage_says_what_a_user_decides_with(figures: dict[str, bytes]) -> None:
    page = _render(figures, lineage=_lineage())
    assert "2 of 300 epochs (stopped by the time budget of 3 min)" in page
    assert "ffffffffffffffff" in page and "0.1.0+abc" in page
    assert 'href="../../../data/rolls/bach/audit.html"' in page
    assert 'href="http://127.0.0.1:5000/#/experiments/1/runs/r1"' in page
    assert "champion of bach-gan" in page and "best of the dataset" not in page
    # only the local MLflow UI may be linked absolutely, and nothing is loaded from anywhere
    assert not re.search(r'src="https?://', page) and "<script" not in page
    with pytest.raises(ValueError, match="MLflow UI"):
        _render(figures, lineage=_lineage(run_url="http://example.org/runs/r1"))
    # the usual link: through the workspace's UI link page, its route kept as it is
    route = "/experiments/1/runs/r1?workflowType=machine_learning"
    page = _render(figures, lineage=_lineage(run_url=f"../../mlflow-ui.html#{route}"))
    assert f'href="../../mlflow-ui.html#{route}"' in page
    for bad in ("../../elsewhere", '../../x.html#a"b', "javascript:x.html#a"):
        with pytest.raises(ValueError):
            _render(figures, lineage=_lineage(run_url=bad))


def test_ui_link_page_forwards_its_route_to_the_ui() -> None:
    page = report.render_ui_link_page("http://127.0.0.1:5123")
    assert 'var ui = "http://127.0.0.1:5123/";' in page
    assert "location.replace(ui + location.hash)" in page and "musicflow ui" in page
    hostile = report.render_ui_link_page('http://h:1/</script><b x="')
    assert "</script><b" not in hostile.split("<script>")[1].split("</script>")[0]


def test_a_model_provided_metric_shows_with_its_meaning(figures: dict[str, bytes]) -> None:
    page = _render(figures, metrics=_metrics() | {"heldout_nll": 3.5}, baseline_model_metrics=None)
    row = re.search(r"<tr><td><code>heldout_nll</code></td>(.*?)</tr>", page)
    assert row and "3.500" in row.group(1) and "lower" in row.group(1)
    assert "nats per sixteenth-note frame" in row.group(1)


def test_audio_previews_play_beside_their_midi(figures: dict[str, bytes]) -> None:
    links = [("sample-001.mid", "midi/sample-001.mid"), ("sample-001.ogg", "midi/sample-001.ogg")]
    page = _render(figures, links=links)
    item = re.search(r"<li>(.*?)</li>", page).group(1)
    assert '<source src="midi/sample-001.ogg" type="audio/ogg">' in item
    assert 'href="midi/sample-001.mid"' in item  # one line per piece: player, then files


def test_each_piece_shows_its_score_below_its_player(figures: dict[str, bytes]) -> None:
    links = [
        (f"sample-00{i}{suffix}", f"midi/sample-00{i}{suffix}")
        for i in (1, 2)
        for suffix in (".mid", ".musicxml", ".ogg", ".svg")
    ]
    page = _render(figures, links=links)
    items = re.findall(r"<li>(.*?)</li>", page)
    assert len(items) == 2
    for i, item in enumerate(items, 1):
        player = item.index(f'<source src="midi/sample-00{i}.ogg" type="audio/ogg">')
        img = item.index(
            f'<img class="score" alt="score of sample-00{i}" src="midi/sample-00{i}.svg"'
        )
        assert player < img and f'href="midi/sample-00{i}.musicxml"' in item
    assert "<svg" not in page  # the scores stay in their files: the page keeps its size
    assert "<details open><summary>score of sample-001" in items[0]
    assert "<details><summary>score of sample-002" in items[1]  # one click away


def _index_row(model: str, version: int, **over: object) -> report.IndexRow:
    values: dict[str, object] = {
        "registered_model": f"bach-{model}",
        "model": model,
        "version": version,
        "metrics": {"onenn_accuracy": 0.9, "onenn_accuracy_baseline": 0.7, "blank_rate": 0.0},
        "evaluation": ["blank_rate", "onenn_accuracy"],
        "epochs_done": 2,
        "max_epochs": 300,
        "digest": "ab" * 32,
        "report": f"{model}-v{version}/report.html",
        "run_url": f"http://127.0.0.1:5000/#/experiments/1/runs/{model}{version}",
    }
    values.update(over)
    return report.IndexRow(**values)  # type: ignore[arg-type]


def test_index_compares_every_version_and_marks_the_best() -> None:
    rows = [
        _index_row("gan", 1, champion=True),
        _index_row(
            "vae",
            2,
            champion=True,
            best=True,
            metrics={"onenn_accuracy": 0.8, "heldout_nll": 3.25, "blank_rate": 0.0},
            evaluation=["blank_rate", "onenn_accuracy", "heldout_nll"],
        ),
        _index_row("vae", 1),
    ]
    page = report.render_index(
        dataset="bach",
        rows=rows,
        best_text="Best of the dataset: bach-vae v2",
        rule_text="Champion rule: …",
        links=[("audit page", "../../data/rolls/bach/audit.html")],
        ui_url="http://127.0.0.1:5000/#/experiments/1/runs?viewStateShareKey=musicflow",
    )
    head = re.search(r"<thead><tr>(.*?)</tr></thead>", page).group(1)
    columns = re.findall(r"<th>(.*?)</th>", head)
    assert columns[4:7] == ["onenn_<wbr>accuracy", "blank_<wbr>rate", "heldout_<wbr>nll"]
    best = re.search(r'<tr class="best">(.*?)</tr>', page).group(1)
    assert "★ best" in best and "v2" in best and "3.250" in best
    assert best.count(">champion<") == 1
    gan = re.search(
        r"<tr><td><a href=\"gan-v1/report.html\"><code>gan</code>(.*?)</tr>", page
    ).group(1)
    assert "0.900<small>base 0.700</small>" in gan and "2 of 300" in gan
    assert gan.count('<td class="num">—</td>') == 1  # no heldout_nll for this model
    assert 'href="vae-v2/report.html"' in page and "Best of the dataset: bach-vae v2" in page
    assert "nats per sixteenth-note frame" in page  # the metric's meaning, below the table
    assert not re.search(r'src="https?://', page) and "<script" not in page


def test_audit_page_shows_warnings_as_warnings() -> None:
    summary = {
        "n_files": 3,
        "status": {"accepted": 2, "duplicate": 1},
        "warned_files": [("drums.mid", ["drums_ignored"])],
        "quarantined_files": [],
        "n_segments": 12,
    }
    rules = [
        report.AuditRule("not_midi", "quarantine", "expect_x", "error", "No MThd header.", 0),
        report.AuditRule("drums_ignored", "warning", "expect_y", "n_drum_notes", "Drums.", 1),
    ]
    files = [
        report.AuditFile("a.mid", "accepted", "", [], 2, 40, 5, "training"),
        report.AuditFile("copy.mid", "duplicate", "a.mid", [], 2, 40, 0, ""),
        report.AuditFile("drums.mid", "accepted", "", ["drums_ignored"], 3, 9, 7, "held-out"),
    ]
    page = report.render_audit(
        dataset="bach",
        summary=summary,
        rules=rules,
        files=files,
        data_docs="data_docs/index.html",
    )
    assert "Accepted every file; 1 with warnings" in page
    assert "Failed" not in page and "failed" not in page.replace("failed expectations", "")
    assert '<td class="result near">warning: 1 file(s), accepted</td>' in page
    assert '<td class="result good">passed</td>' in page
    assert 'href="data_docs/index.html"' in page
    assert '<h2 id="every-file">Every file (3)</h2>' in page
    assert (
        '<tr class="accepted" data-o="accepted" data-r="held-out" data-w="1"><td>drums.mid</td>'
        '<td>accepted</td><td></td><td>drums_ignored</td><td class="num">3</td>'
        '<td class="num">9</td><td class="num">7</td><td>held-out</td></tr>'
    ) in page
    assert "<td>copy.mid</td><td>duplicate</td><td>a.mid</td>" in page
    # one inline script, nothing loaded
    assert page.count("<script>") == 1 and "<script src" not in page
    assert not re.search(r'(src|href)="https?://', page)


def test_index_plays_every_version_after_the_held_out_reference() -> None:
    rows = [
        _index_row("rnn", 1, champion=True, preview="rnn-v1/midi/sample-001.ogg"),
        _index_row("vae", 2, champion=True, best=True, preview="vae-v2/midi/sample-001.ogg"),
        _index_row("vae", 1, preview="vae-v1/midi/sample-001.ogg"),
        _index_row("gan", 1),  # no piece to play: not listed
    ]
    page = report.render_index(
        dataset="bach",
        rows=rows,
        best_text="Best of the dataset: bach-vae v2",
        best_reason="Tie-break: bach-vae v2 and bach-rnn v1 are within 0.01 …",
        rule_text="Champion rule: …",
        reference="Held-out real music, the reference: bars 1–16 of bwv1.mid",
        reference_links=[
            ("heldout-excerpt.mid", "reference/heldout-excerpt.mid"),
            ("heldout-excerpt.ogg", "reference/heldout-excerpt.ogg"),
        ],
    )
    listen = re.search(r'<table class="listen"><tbody>(.*?)</tbody></table>', page).group(1)
    sources = re.findall(r'<source src="([^"]+)" type="audio/ogg">', listen)
    assert sources == [
        "reference/heldout-excerpt.ogg",
        "rnn-v1/midi/sample-001.ogg",
        "vae-v2/midi/sample-001.ogg",
        "vae-v1/midi/sample-001.ogg",
    ]
    assert "bars 1–16 of bwv1.mid" in listen and 'href="reference/heldout-excerpt.mid"' in listen
    assert '<p class="reason">Tie-break: bach-vae v2 and bach-rnn v1' in page
    assert page.index("Listen side by side") < page.index('<table class="index">')
    plain = report.render_index(dataset="b", rows=[], best_text="x", rule_text="y")
    assert "Listen side by side" not in plain and 'class="reason"' not in plain


def test_history_page_shows_versions_drift_verdicts_and_models() -> None:
    from musicflow.core.history import drift

    def record(version: int, density: float, quarantined: int) -> dict:
        return {
            "version": version,
            "digest": f"{version}" * 64,
            "committed_at": f"2026-12-0{version}T10:00:00+00:00",
            "n_files_in": 100,
            "n_files": 100 - quarantined,
            "n_windows": 1000 * version,
            "changes": {"added": 5, "removed": 1, "changed": 0},
            "changed_files": {"added": ["new <b>.mid"], "removed": ["old.mid"], "changed": []},
            "status": {"accepted": 100 - quarantined, "quarantined": quarantined},
            "warnings": {"drums_ignored": 2},
            "statistics": {"density": density, "polyphony": 3.0, "pitch_histogram": [1 / 96] * 96},
        }

    v1, v2 = record(1, 4.0, 0), record(2, 6.0, 10)
    rows = [v1 | {"drift": [], "models": []}]
    rows.append(v2 | {"drift": [d.as_dict() for d in drift(v1, v2)], "models": ["d-vae v3"]})
    page = report.render_history(
        dataset="d", rows=rows, links={"audit": "../../data/rolls/d/audit.html"}, docs={2: "x.html"}
    )
    assert "<h1>History of d</h1>" in page and "2 committed version(s)" in page
    assert page.index('<td class="num">v2') < page.index('<td class="num">v1')  # newest first
    assert "<td>d-vae v3</td>" in page and 'href="x.html"' in page
    assert "v1 → v2: files +5 −1" in page
    assert '<td class="num">+50.0%</td><td class="bad">much denser (+50%)</td>' in page
    assert "+10.0 points" in page and "up 10.0 points: look at" in page
    assert "new &lt;b&gt;.mid" in page and "<script" not in page


def _track_metrics() -> dict[str, float]:
    """What track_scores gives a four-voice run (fake numbers, a few keys of each kind)."""
    out: dict[str, float] = {}
    for t in range(4):
        out[f"track.{t}.pitch_hist_l1"] = 0.1 + t
        out[f"track.{t}.pitch_hist_l1_baseline"] = 0.05
        out[f"track.{t}.median_pitch"] = 70.0 - 6 * t
        out[f"track.{t}.median_pitch_baseline"] = 71.0 - 6 * t
        out[f"track.{t}.in_range_rate"] = 0.5
        out[f"track.{t}.in_range_rate_baseline"] = 0.99
    out["tracks.0-1.tonal_distance"], out["tracks.0-1.tonal_distance_baseline"] = 1.25, 1.75
    out["tracks.0-1.crossing_rate"], out["tracks.0-1.crossing_rate_baseline"] = 0.125, 0.0014
    out["tracks.voice_crossing_rate"], out["tracks.voice_crossing_rate_baseline"] = 0.25, 0.024
    out["tracks.mean_tonal_distance"], out["tracks.mean_tonal_distance_baseline"] = 1.5, 1.57
    return out


def test_report_shows_track_metrics_only_when_the_run_has_them(
    figures: dict[str, bytes],
) -> None:
    merged = _render(figures)
    assert "<h2>Tracks</h2>" not in merged
    page = _render(
        figures,
        metrics=_metrics() | _track_metrics(),
        track_names=["Soprano", "Alto", "Tenor", "Bass"],
    )
    main = page.split("<h2>Tracks</h2>")[0]
    assert "track." not in main  # the metric table keeps to the merged metrics
    tracks = page.split("<h2>Tracks</h2>")[1]
    bass = re.search(r"<tr><td>Bass</td>(.*?)</tr>", tracks).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", bass)
    # columns: pitch_hist_l1, median_pitch, in_range_rate, each with the data's value below
    assert cells == [
        "3.100<small>base 0.050</small>",
        "52.000<small>base 53.000</small>",
        "0.500<small>base 0.990</small>",
    ]
    assert 'class="num bad"' in bass  # 0.5 in range against the data's 0.99 (higher better)
    pair = re.search(r"<tr><td>Soprano – Alto</td>(.*?)</tr>", tracks).group(1)
    assert "1.250<small>base 1.750</small>" in pair and "0.125<small>base 0.001</small>" in pair
    assert "tracks.voice_crossing_rate" in tracks and "closer to the baseline" in tracks
    assert "Harte" in tracks  # the tonal distance's meaning is given


def test_index_shows_the_track_summaries_of_the_versions_that_have_them() -> None:
    rows = [
        _index_row("gan", 1),
        _index_row(
            "vae",
            1,
            metrics={"onenn_accuracy": 0.8, "blank_rate": 0.0} | _track_metrics(),
        ),
    ]
    page = report.render_index(
        dataset="satb", rows=rows, best_text="none", rule_text="rule", links=[]
    )
    head = re.search(r"<thead><tr>(.*?)</tr></thead>", page).group(1)
    columns = re.findall(r"<th>(.*?)</th>", head)
    assert columns[-2:] == [
        "tracks.mean_<wbr>tonal_<wbr>distance",
        "tracks.voice_<wbr>crossing_<wbr>rate",
    ]
    assert "1.500<small>base 1.570</small>" in page
    gan = re.search(r"<code>gan</code>(.*?)</tr>", page).group(1)
    assert gan.count('<td class="num">—</td>') == 2
    assert "track.0." not in page  # per-track metrics stay on the report
