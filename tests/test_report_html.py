"""musicflow/report.py, the HTML report: complete, self-contained, honest about baselines."""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path

import pytest
from conftest import random_windows as _windows

from musicflow import metrics as m
from musicflow import report

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
