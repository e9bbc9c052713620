"""One self-contained HTML evaluation report per trained model.

Public functions: :func:`render_report` (HTML as a string), :func:`write_report` (atomic write).

Self-contained means it opens from a file, offline, years later: images are inlined as base64
data URIs, CSS is inline, there is no JavaScript and no reference to anything on the network.
Links to MIDI/WAV files must be relative paths (kept next to the report).
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from musicflow import atomic
from musicflow.metrics import BASELINE_SUFFIX, METRIC_INFO

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1100px; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem;
       margin-top: 2.2rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #ddd; padding: 0.3rem 0.55rem; vertical-align: top; text-align: left; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.good { background: #e8f5e9; } td.near { background: #fff8e1; } td.bad { background: #fdecea; }
td.meaning { color: #555; font-size: 0.86rem; }
.better { font-weight: 600; }
figure { margin: 1.2rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; }
.note { color: #555; font-size: 0.9rem; }
ul.links li { margin: 0.3rem 0; } audio { vertical-align: middle; height: 2rem; }
"""

_BETTER_TEXT = {"lower": "lower", "higher": "higher", "0.5": "closer to 0.5"}
_AUDIO_TYPES = {
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".flac": "audio/flac",
}
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: float | None) -> str:
    """A metric for a table cell: 3 decimals, n/a for NaN (undefined), a dash when absent."""
    if value is None:
        return "—"
    v = float(value)
    if math.isnan(v):
        return "n/a"
    return f"{v:.3f}" if abs(v) < 1000 else f"{v:.4g}"


def _nan(value: float | None) -> bool:
    return value is None or math.isnan(float(value))


def _goodness(a: float | None, b: float | None, better: str) -> int:
    """+1 if a is better than b, -1 if worse, 0 if equal or not comparable."""
    if _nan(a) or _nan(b) or better not in _BETTER_TEXT:
        return 0
    x, y = float(a), float(b)
    if better == "0.5":
        x, y = -abs(x - 0.5), -abs(y - 0.5)
    elif better == "lower":
        x, y = -x, -y
    return (x > y) - (x < y)


def _badness(value: float, better: str) -> float:
    """Distance from the ideal on a lower-is-better scale."""
    if better == "higher":
        return -value
    if better == "0.5":
        return abs(value - 0.5)
    return value


def _versus_baseline(value: float | None, base: float | None, better: str) -> str:
    """CSS class: " good" at least as good as the baseline, " near" worse by at most half the
    baseline's own distance from the ideal (+0.01; two samples of real data differ that much),
    " bad" beyond; "" when either is undefined."""
    if _nan(value) or _nan(base) or better not in _BETTER_TEXT:
        return ""
    v, b = _badness(float(value), better), _badness(float(base), better)
    if v <= b:
        return " good"
    return " near" if v <= b + max(0.5 * abs(b), 0.01) else " bad"


def _metric_rows(metrics: Mapping[str, float], thesis: Mapping[str, float] | None) -> list[str]:
    names = [n for n in METRIC_INFO if n in metrics or f"{n}{BASELINE_SUFFIX}" in metrics]
    extra = sorted(k for k in metrics if not k.endswith(BASELINE_SUFFIX) and k not in METRIC_INFO)
    rows = []
    for name in names + extra:
        info = METRIC_INFO.get(name)
        better = info.better if info else ""
        value = metrics.get(name)
        base = metrics.get(f"{name}{BASELINE_SUFFIX}")
        value_cls = "num"
        if info:
            value_cls += _versus_baseline(value, base, better)
        cells = [f"<td><code>{_e(name)}</code></td>"]
        if thesis is None:
            cells.append(f'<td class="{value_cls}">{_e(_fmt(value))}</td>')
            cells.append(f'<td class="num">{_e(_fmt(base))}</td>')
        else:
            t_value = thesis.get(name)
            if _goodness(value, t_value, better) > 0:
                value_cls += " better"
            t_cls = "num better" if _goodness(t_value, value, better) > 0 else "num"
            cells.append(f'<td class="{value_cls}">{_e(_fmt(value))}</td>')
            cells.append(f'<td class="num">{_e(_fmt(base))}</td>')
            cells.append(f'<td class="{t_cls}">{_e(_fmt(t_value))}</td>')
        cells.append(f"<td>{_e(_BETTER_TEXT.get(better, ''))}</td>")
        cells.append(f'<td class="meaning">{_e(info.description if info else "")}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return rows


def _metrics_section(metrics: Mapping[str, float], thesis: Mapping[str, float] | None) -> str:
    head = ["Metric", "This model", "Baseline (training sample)"]
    if thesis is not None:
        head.append("Thesis-architecture model")
    head += ["Better", "What it means"]
    rows = _metric_rows(metrics, thesis)
    legend = (
        "Each metric compares generated windows with held-out real windows (from files the "
        "model never saw). The baseline is the same metric for an equal-size sample of "
        "training windows against the same held-out windows: real music differs from file to "
        "file, so a generator as good as its data reaches the baseline, not 0. Green: at least "
        "as good as the baseline; yellow: worse, but by no more than half the baseline's own "
        "distance from the ideal (two samples of real music differ that much); red: worse "
        "than that."
    )
    if thesis is not None:
        legend += " Bold: the better of this model and the thesis-architecture model."
    return (
        "<h2>Evaluation metrics</h2>"
        f'<p class="note">{_e(legend)}</p>'
        "<table><thead><tr>"
        + "".join(f"<th>{_e(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _render_value(value: Any) -> str:
    """Any JSON-like value as HTML: mappings as tables, lists as lists, the rest as text."""
    if isinstance(value, Mapping):
        if not value:
            return "<em>none</em>"
        return (
            "<table><tbody>"
            + "".join(
                f"<tr><th>{_e(k)}</th><td>{_render_value(v)}</td></tr>" for k, v in value.items()
            )
            + "</tbody></table>"
        )
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        if not items:
            return "<em>none</em>"
        if all(not isinstance(v, Mapping | list | tuple) for v in items):
            return _e(", ".join(str(v) for v in items))
        return "<ul>" + "".join(f"<li>{_render_value(v)}</li>" for v in items) + "</ul>"
    if isinstance(value, float):
        return _e(_fmt(value))
    return _e(value)


def _image_mime(data: bytes) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.lstrip()[:5] in (b"<svg ", b"<?xml"):
        return "image/svg+xml"
    raise ValueError("figures must be PNG, JPEG or SVG bytes")


def _figures_section(figures: Mapping[str, bytes]) -> str:
    if not figures:
        return ""
    parts = ["<h2>Figures</h2>"]
    for name, data in figures.items():
        uri = f"data:{_image_mime(data)};base64,{base64.b64encode(data).decode('ascii')}"
        parts.append(
            f'<figure><img alt="{_e(name)}" src="{uri}"><figcaption>{_e(name)}</figcaption>'
            "</figure>"
        )
    return "".join(parts)


def _check_local(href: str) -> str:
    """A link target as a relative URL; anything with a scheme or host is refused."""
    if _SCHEME.match(href) or href.startswith(("//", "\\\\")):
        raise ValueError(f"report links must be relative paths, got {href!r}")
    return quote(href.replace(os.sep, "/"), safe="/._-~#")


def _links_section(links: Sequence[tuple[str, str]]) -> str:
    if not links:
        return ""
    items = []
    for label, href in links:
        url = _check_local(href)
        item = f'<a href="{_e(url)}">{_e(label)}</a>'
        mime = _AUDIO_TYPES.get(Path(href).suffix.lower())
        if mime:
            item += (
                f' <audio controls preload="none"><source src="{_e(url)}" type="{mime}"></audio>'
            )
        items.append(f"<li>{item}</li>")
    return (
        '<h2>Listen</h2><p class="note">Generated samples, next to this report.</p>'
        '<ul class="links">' + "".join(items) + "</ul>"
    )


def render_report(
    *,
    title: str,
    model_info: Mapping[str, Any],
    metrics: Mapping[str, float],
    baseline_model_metrics: Mapping[str, float] | None,
    audit_summary: Mapping[str, Any],
    figures: Mapping[str, bytes],
    links: Sequence[tuple[str, str]],
) -> str:
    """The report page: model, metric table (each metric beside its ``_baseline`` and, when
    given, the thesis-architecture model's value), figures, sample links, dataset audit.

    ``metrics`` is :func:`musicflow.metrics.evaluate`'s dict; unknown keys are shown too.
    Raises ``ValueError`` for a link that is not a relative path or a figure that is not an
    image, so a report can never point at the network.
    """
    body = [
        f"<h1>{_e(title)}</h1>",
        "<h2>Model</h2>",
        _render_value(dict(model_info)),
        _metrics_section(metrics, baseline_model_metrics),
        _figures_section(figures),
        _links_section(links),
        "<h2>Dataset audit</h2>",
        _render_value(dict(audit_summary)),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )


def write_report(path: str | os.PathLike[str], html_text: str) -> Path:
    """Write the page atomically (temp file in the same folder + ``os.replace``): a killed
    run never leaves half a report behind. Returns the path written."""
    return atomic.write_text(path, html_text, fsync=True)
