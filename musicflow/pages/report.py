"""Self-contained HTML pages: one evaluation report per model version, and one index per
dataset comparing every version of every model.

Public: :func:`render_report` (a version's page), :func:`render_index` (the dataset's page,
``reports/<dataset>/index.html``), :func:`render_audit` (the dataset's audit page, which works
offline, unlike GX's Data Docs), :class:`Lineage`, :class:`IndexRow` and :class:`AuditRule`
(what they show), :func:`write_report` (atomic write).

Self-contained means a page opens from a file, offline, years later: images are inlined as
base64 data URIs, CSS is inline, the one script (the audit page's table sorting and filtering)
is inline, and nothing is loaded from the network.
Links to MIDI, audio and score files (the engraved scores are SVG files beside the pieces, shown
with ``<img>``), other reports and the Data Docs must be relative paths. Links into the MLflow UI
go through one page of the workspace, ``reports/mlflow-ui.html`` (:func:`render_ui_link_page`),
which forwards them to the address ``musicflow ui`` last served on; an absolute link to the UI
on the loopback address (:data:`UI_PREFIXES`) is allowed too.

Every metric is looked up with ``metrics.metric_info``, so a metric a model provides
(``metrics.MODEL_METRIC_INFO``) shows with its meaning and direction without changes here, and
an unknown one still shows, without them.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from musicflow.adapters import atomic
from musicflow.core.metrics import (
    BASELINE_SUFFIX,
    HEADLINE_METRICS,
    METRIC_INFO,
    MODEL_METRIC_INFO,
    metric_info,
)
from musicflow.core.settings import budget_text
from musicflow.core.track_metrics import (
    PAIR_METRICS,
    PER_TRACK_METRICS,
    TRACK_SUMMARY_METRICS,
    is_track_metric,
    pair_key,
    parse_name,
    summary_key,
    track_key,
    track_metric_info,
)

#: Absolute links a page may carry: the MLflow UI of ``musicflow ui`` on this machine.
UI_PREFIXES = ("http://127.0.0.1:", "http://localhost:")

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
.badge { display: inline-block; padding: 0.1rem 0.55rem; border-radius: 0.8rem;
         font-size: 0.85rem; font-weight: 600; margin-right: 0.4rem; vertical-align: middle; }
.badge.best { background: #1b5e20; color: #fff; } .badge.champion { background: #e8f5e9;
         color: #1b5e20; border: 1px solid #1b5e20; }
.badge.plain { background: #f4f4f4; color: #555; border: 1px solid #ddd; }
table.lineage th { width: 13rem; } code.digest { font-size: 0.85rem; }
tr.best td:first-child { box-shadow: inset 4px 0 0 #1b5e20; }
td small { color: #666; display: block; font-size: 0.78rem; white-space: nowrap; }
table.index { font-size: 0.85rem; } table.index th { position: sticky; top: 0; }
.scroll { overflow-x: auto; } td.result { white-space: nowrap; }
ul.pieces { list-style: none; padding-left: 0; }
p.reason { background: #fff8e1; border-left: 4px solid #f9a825; padding: 0.4rem 0.7rem; }
table.listen td { vertical-align: middle; } tr.reference { background: #f4f8ff; }
ul.pieces details { margin: 0.3rem 0 0.8rem; } ul.pieces summary { cursor: pointer; color: #555; }
img.score { display: block; width: 100%; margin: 0.4rem 0 1.6rem; border: 1px solid #eee; }
"""

_BETTER_TEXT = {"lower": "lower", "higher": "higher", "0.5": "closer to 0.5"}
#: Track metrics may also be judged against the data's value (``track_metrics``): no colour.
_TRACK_BETTER_TEXT = {**_BETTER_TEXT, "baseline": "closer to the baseline"}
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


def _any_metric_info(name: str):
    """``metrics.metric_info``, or a track metric's (``track.<i>.<m>``, ``tracks.<m>``) by its
    short name; None for an unknown name."""
    info = metric_info(name)
    if info is None and (parsed := parse_name(name)) is not None:
        info = track_metric_info(parsed[1])
    return info


def _metric_rows(metrics: Mapping[str, float], thesis: Mapping[str, float] | None) -> list[str]:
    known = (*METRIC_INFO, *MODEL_METRIC_INFO)
    names = [n for n in known if n in metrics or f"{n}{BASELINE_SUFFIX}" in metrics]
    extra = sorted(
        k
        for k in metrics
        if not k.endswith(BASELINE_SUFFIX) and k not in known and not is_track_metric(k)
    )
    rows = []
    for name in names + extra:
        info = metric_info(name)
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


def _track_cell(metrics: Mapping[str, float], key: str, better: str) -> str:
    """A track metric and, under it, its baseline (the data's value or the real windows'
    score), coloured against it as the metric table is; a dash when the run lacks it."""
    if key not in metrics and f"{key}{BASELINE_SUFFIX}" not in metrics:
        return '<td class="num">—</td>'
    return _metric_cell(metrics.get(key), metrics.get(f"{key}{BASELINE_SUFFIX}"), better)


def _better_of(name: str) -> str:
    info = track_metric_info(name)
    return info.better if info else ""


def _tracks_section(metrics: Mapping[str, float], track_names: Sequence[str] | None) -> str:
    """Per-track and cross-track metrics (docs/metrics.md, "Track metrics"); "" for a run
    without them (a merged dataset)."""
    parsed = [p for k in metrics if (p := parse_name(k.removesuffix(BASELINE_SUFFIX)))]
    if not parsed:
        return ""
    n_tracks = 1 + max((max(idx) for idx, _ in parsed if idx), default=-1)
    names = list(track_names or [])
    names += [f"Track {i + 1}" for i in range(len(names), n_tracks)]
    per_track = [m for m in PER_TRACK_METRICS if any(p == m for idx, p in parsed if len(idx) == 1)]
    head = "".join(f"<th>{_e(m).replace('_', '_<wbr>')}</th>" for m in per_track)
    rows = []
    for t in range(n_tracks):
        cells = "".join(_track_cell(metrics, track_key(t, m), _better_of(m)) for m in per_track)
        rows.append(f"<tr><td>{_e(names[t] or f'Track {t + 1}')}</td>{cells}</tr>")
    parts = [
        "<h2>Tracks</h2>",
        '<p class="note">Each metric of one track, under it its baseline: for the metrics '
        "above (generated vs held-out windows of that track alone) the same comparison for "
        "real training windows; for a median pitch the held-out notes' median; for the share "
        "of notes in range the held-out notes' share. Colours as in the metric table.</p>",
        '<div class="scroll"><table class="index"><thead><tr><th>Track</th>'
        + head
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>",
    ]
    pairs = sorted({idx for idx, _ in parsed if len(idx) == 2})
    pair_metrics = [m for m in PAIR_METRICS if any(p == m for idx, p in parsed if len(idx) == 2)]
    if pairs:
        prow = []
        for i, j in pairs:
            label = f"{names[i] or i + 1} – {names[j] or j + 1}"
            cells = "".join(
                _track_cell(metrics, pair_key(i, j, m), _better_of(m)) for m in pair_metrics
            )
            prow.append(f"<tr><td>{_e(label)}</td>{cells}</tr>")
        parts.append(
            "<h3>Between tracks</h3>"
            '<p class="note">Under each value: the held-out windows\' own value (the data).</p>'
            "<table><thead><tr><th>Pair</th>"
            + "".join(f"<th>{_e(m)}</th>" for m in pair_metrics)
            + "</tr></thead><tbody>"
            + "".join(prow)
            + "</tbody></table>"
        )
    summary = [m for m in TRACK_SUMMARY_METRICS if summary_key(m) in metrics]
    shown = [*summary, *(m for m in per_track if m not in METRIC_INFO), *pair_metrics]
    srows = [
        f"<tr><td><code>{_e(summary_key(m))}</code></td>"
        + _track_cell(metrics, summary_key(m), _better_of(m))
        + f"<td>{_e(_TRACK_BETTER_TEXT.get(_better_of(m), ''))}</td>"
        f'<td class="meaning">{_e(track_metric_info(m).description)}</td></tr>'
        for m in summary
    ]
    meanings = [
        f"<tr><td><code>{_e(m)}</code></td><td></td>"
        f"<td>{_e(_TRACK_BETTER_TEXT.get(_better_of(m), ''))}</td>"
        f'<td class="meaning">{_e(track_metric_info(m).description)}</td></tr>'
        for m in shown
        if m not in summary
    ]
    parts.append(
        "<h3>Summary and meanings</h3><table><thead><tr><th>Metric</th><th>This model "
        "(baseline)</th><th>Better</th><th>What it means</th></tr></thead><tbody>"
        + "".join(srows + meanings)
        + "</tbody></table>"
    )
    return "".join(parts)


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


def _check_ui(url: str) -> str:
    """A link into the MLflow UI: ``<relative path to the UI link page>#<route>`` (see
    :func:`render_ui_link_page`), or an absolute link to the local UI; any other absolute URL
    is refused."""
    if any(c in url for c in '"<> '):
        raise ValueError(f"not a link into the MLflow UI: {url!r}")
    if url.startswith(UI_PREFIXES):
        return url
    page, hash_, route = url.partition("#")
    if not hash_ or not page.endswith(".html"):
        raise ValueError(f"only links to the local MLflow UI may be absolute, got {url!r}")
    return _check_local(page) + "#" + route


def render_ui_link_page(address: str) -> str:
    """The page every "open in the MLflow UI" link goes through: it forwards its ``#route`` to
    the UI at ``address`` (``musicflow ui`` rewrites it with the port it serves on), so the
    reports need not know the port. The one page with a script that goes elsewhere."""
    target = json.dumps(address.rstrip("/") + "/").replace("<", "\\u003c")
    body = [
        "<h1>MLflow UI</h1>",
        f'<p>Opening <a id="ui" href="{_e(address)}">{_e(address)}</a> … If nothing opens, the '
        "UI is not running: start it with <code>musicflow ui</code> (it rewrites this page "
        "with the port it serves on), then reload.</p>",
        f"<script>var ui = {target}; document.getElementById('ui').href = ui + location.hash;"
        " location.replace(ui + location.hash);</script>",
    ]
    return _page("MLflow UI", body)


def _a(label: str, href: str | None, *, ui: bool = False, markup: str | None = None) -> str:
    """A link (``markup``: HTML to show instead of the escaped ``label``)."""
    text = markup if markup is not None else _e(label)
    if not href:
        return text
    url = _check_ui(href) if ui else _check_local(href)
    return f'<a href="{_e(url)}">{text}</a>'


def _links_section(links: Sequence[tuple[str, str]], note: str | None = None) -> str:
    """One block per piece: its audio preview playable in place, then its files, then its
    engraved score (a MIDI file, its preview, its MusicXML and its score's SVG share the path
    without suffix)."""
    if not links and not note:
        return ""
    pieces: dict[str, list[tuple[str, str]]] = {}
    for label, href in links:
        pieces.setdefault(str(Path(href).with_suffix("")), []).append((label, href))
    items = []
    for stem, files in pieces.items():
        players, anchors, scores = [], [], []
        for label, href in files:
            url = _check_local(href)
            suffix = Path(href).suffix.lower()
            mime = _AUDIO_TYPES.get(suffix)
            if mime:
                players.append(
                    f'<audio controls preload="none"><source src="{_e(url)}" type="{mime}"></audio>'
                )
            if suffix == ".svg":  # the first piece's score open, the others a click away
                scores.append(
                    f"<details{' open' if not items else ''}><summary>score of "
                    f"{_e(Path(stem).name)}</summary>"
                    f'<img class="score" alt="score of {_e(Path(stem).name)}" '
                    f'src="{_e(url)}" loading="lazy"></details>'
                )
            anchors.append(f'<a href="{_e(url)}">{_e(label)}</a>')
        items.append("<li>" + " ".join(players + anchors) + "".join(scores) + "</li>")
    text = (
        "Pieces sampled from this version, next to this report: each MIDI file with its audio "
        "preview (General MIDI piano, loudness-normalised) and its score (MusicXML, for "
        "MuseScore or any notation program, engraved below by verovio: treble and bass staves "
        "split at middle C, on the 12-steps-per-beat grid the model writes in)."
    )
    if note:
        text += f" {note}"
    return (
        f'<h2>Listen and read</h2><p class="note">{_e(text)}</p>'
        '<ul class="links pieces">' + "".join(items) + "</ul>"
    )


@dataclass
class Lineage:
    """Where a version comes from and where it stands: the report's lineage block."""

    dataset: str
    digest: str  # the dataset digest trained on
    code_version: str
    git_commit: str | None = None
    epochs_done: int = 0
    max_epochs: int = 0
    kept_epoch: int = 0  # whose weights the model holds (its best on the validation files)
    stopped_by: str = ""
    time_budget_s: float | None = None
    train_seconds: float | None = None
    placement: str = ""  # replicas, devices, precision
    run_id: str = ""
    run_url: str | None = None  # the run in the MLflow UI (musicflow ui)
    model_uri: str = ""
    data_docs: str | None = None  # relative links
    audit_page: str | None = None
    index_page: str | None = None
    champion: bool = False  # holds its registered model's champion alias
    best_of_dataset: bool = False  # the best version of the dataset, across models
    registered_model: str = ""


def _badges(champion: bool, best: bool, registered: str) -> str:
    out = []
    if best:
        out.append('<span class="badge best">★ best of the dataset</span>')
    if champion:
        out.append(f'<span class="badge champion">champion of {_e(registered)}</span>')
    if not out:
        out.append('<span class="badge plain">not the champion</span>')
    return "".join(out)


def _epochs_text(lin: Lineage) -> str:
    done, planned, budget_s = lin.epochs_done, lin.max_epochs, lin.time_budget_s
    if not planned:
        return str(done) if done else "—"
    text = f"{done} of {planned} epochs"
    if lin.stopped_by == "early_stopping":
        text += " (stopped early: the validation files' score had stopped improving)"
    elif budget_s and done < planned:
        text += f" (stopped by the time budget of {budget_text(budget_s)})"
    elif budget_s:
        text += f" (within the time budget of {budget_text(budget_s)})"
    if lin.kept_epoch and lin.kept_epoch != done:
        text += f"; the weights of epoch {lin.kept_epoch}, the best on the validation files"
    return text


def _lineage_section(lin: Lineage) -> str:
    trained = _epochs_text(lin)
    if lin.train_seconds:
        trained += f", {lin.train_seconds / 60:.1f} min of training"
    if lin.placement:
        trained += f" ({_e(lin.placement)})"
    data = (
        f'{_e(lin.dataset)} <code class="digest" title="{_e(lin.digest)}">'
        f"{_e(lin.digest[:16])}</code>"
    )
    checks = [
        _a("audit page", lin.audit_page) if lin.audit_page else "",
        _a("GX Data Docs", lin.data_docs) if lin.data_docs else "",
    ]
    checks_html = " · ".join(c for c in checks if c)
    code = f"<code>{_e(lin.code_version)}</code>"
    if lin.git_commit:
        code += f" (git <code>{_e(lin.git_commit[:12])}</code>)"
    mlflow = f"run <code>{_e(lin.run_id)}</code>"
    if lin.run_url:
        mlflow += (
            " · "
            + _a("open in the MLflow UI", lin.run_url, ui=True)
            + (' <span class="note">(start it with <code>musicflow ui</code>)</span>')
        )
    status = _badges(lin.champion, lin.best_of_dataset, lin.registered_model)
    if lin.index_page:
        status += (
            ' <span class="note">when this report was written; the current standing of every '
            "version: " + _a("dataset index", lin.index_page) + "</span>"
        )
    rows = [
        ("Dataset (digest)", data + (f" · {checks_html}" if checks_html else "")),
        ("Code version", code),
        ("Training", _e(trained)),
        ("MLflow", mlflow),
        ("Model URI", f"<code>{_e(lin.model_uri)}</code>"),
        ("Status", status),
    ]
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<h2>Lineage</h2><table class="lineage"><tbody>{body}</tbody></table>'


def _page(title: str, body: Sequence[str], css: str = "") -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}{css}</style></head><body>"
        + "\n".join(part for part in body if part)
        + "</body></html>\n"
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
    lineage: Lineage | None = None,
    audio_note: str | None = None,
    track_names: Sequence[str] | None = None,
) -> str:
    """The report page: status badges, lineage, metric table (each metric beside its
    ``_baseline`` and, when given, the thesis-architecture model's value), the track metrics
    when the run has them (a table of tracks named ``track_names``, the pairs, the summaries),
    the pieces to listen to, figures, model settings, dataset audit.

    ``metrics`` is :func:`musicflow.core.metrics.evaluate`'s dict; unknown keys are shown too.
    Raises ``ValueError`` for a link that is not a relative path (or the local MLflow UI) or a
    figure that is not an image, so a report never loads anything from the network.
    """
    heading = f"<h1>{_e(title)}</h1>"
    if lineage is not None:
        heading += (
            "<p>"
            + _badges(lineage.champion, lineage.best_of_dataset, lineage.registered_model)
            + "</p>"
        )
    body = [
        heading,
        _lineage_section(lineage) if lineage is not None else "",
        _metrics_section(metrics, baseline_model_metrics),
        _tracks_section(metrics, track_names),
        _links_section(links, audio_note),
        _figures_section(figures),
        "<h2>Model</h2>",
        _render_value(dict(model_info)),
        "<h2>Dataset audit</h2>",
        _render_value(dict(audit_summary)),
    ]
    return _page(title, body)


def _index_rank(name: str) -> int:
    """The index page's metric columns: the headline ones, then the model-provided ones, then
    the rest in report order (metrics.METRIC_INFO)."""
    order = [
        *HEADLINE_METRICS,
        *MODEL_METRIC_INFO,
        "unique_rate",
        "copy_rate",
        *(n for n in METRIC_INFO if n not in HEADLINE_METRICS),
    ]
    if name in order:
        return order.index(name)
    if is_track_metric(name):
        return len(order)  # the track summaries, last
    return len(HEADLINE_METRICS) + len(MODEL_METRIC_INFO)  # another model-provided metric


@dataclass
class IndexRow:
    """One registered version on the dataset's index page."""

    registered_model: str  # <dataset>-<model>
    model: str  # vae, gan …
    version: int
    metrics: Mapping[str, float]  # every metric of its run
    evaluation: Sequence[str]  # its evaluation metrics, report order
    champion: bool = False
    best: bool = False
    epochs_done: int | None = None
    max_epochs: int | None = None
    digest: str = ""
    created: str = ""  # when it was registered, as text
    report: str | None = None  # relative link to its report
    run_url: str | None = None  # the run in the MLflow UI
    preview: str | None = None  # relative link to the audio preview of its first piece
    extra: dict[str, str] = field(default_factory=dict)


def _metric_cell(value: float | None, base: float | None, better: str) -> str:
    cls = "num" + _versus_baseline(value, base, better)
    text = _e(_fmt(value))
    if base is not None:
        text += f"<small>base {_e(_fmt(base))}</small>"
    return f'<td class="{cls}">{text}</td>'


def render_index(
    *,
    dataset: str,
    rows: Sequence[IndexRow],
    best_text: str,
    rule_text: str,
    links: Sequence[tuple[str, str]] = (),
    ui_url: str | None = None,
    best_reason: str | None = None,
    reference: str | None = None,
    reference_links: Sequence[tuple[str, str]] = (),
) -> str:
    """The dataset's page: every version of every model in one table, each metric beside its
    baseline, the champion of each model and the best of the dataset marked (``best_reason``:
    what decided it, when a tie-break or the silence rule did); above it, one piece of every
    version to listen to side by side, after a held-out real excerpt (``reference``, its
    files ``reference_links``).

    The metric columns are the union of the versions' evaluation metrics in report order, so a
    metric one model provides shows as a column (empty for the others).
    """
    names: list[str] = []
    shown: list[set[str]] = []  # per row: its evaluation metrics and track summaries
    for row in rows:
        mine = {*row.evaluation}
        mine |= {summary_key(m) for m in TRACK_SUMMARY_METRICS if summary_key(m) in row.metrics}
        shown.append(mine)
        for n in (*row.evaluation, *(summary_key(m) for m in TRACK_SUMMARY_METRICS)):
            if n in mine and n not in names:
                names.append(n)
    seen = {n: i for i, n in enumerate(names)}
    names = sorted(names, key=lambda n: (_index_rank(n), seen[n]))
    head = ["Model (report)", "Version (MLflow run)", "Standing", "Epochs", *names]
    body = []
    for row, mine in zip(rows, shown, strict=True):
        standing = []
        if row.best:
            standing.append('<span class="badge best">★ best</span>')
        if row.champion:
            standing.append('<span class="badge champion">champion</span>')
        epochs = (
            f"{row.epochs_done} of {row.max_epochs}"
            if row.epochs_done is not None and row.max_epochs
            else ("—" if row.epochs_done is None else str(row.epochs_done))
        )
        model = _a("", row.report, markup=f"<code>{_e(row.model)}</code>")
        version = f"v{row.version}"
        if row.run_url:
            version = _a(version, row.run_url, ui=True)
        cells = [
            f"<td>{model}<small>{_e(row.registered_model)}</small></td>",
            f'<td class="num">{version}<small>{_e(row.created)}</small></td>',
            f"<td>{''.join(standing)}</td>",
            f'<td class="num">{_e(epochs)}<small title="{_e(row.digest)}">data '
            f"{_e(row.digest[:8])}</small></td>",
        ]
        for name in names:
            info = _any_metric_info(name)
            if name not in mine:
                cells.append('<td class="num">—</td>')
                continue
            cells.append(
                _metric_cell(
                    row.metrics.get(name),
                    row.metrics.get(f"{name}{BASELINE_SUFFIX}"),
                    info.better if info else "",
                )
            )
        cls = ' class="best"' if row.best else ""
        body.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    meaning = []
    for name in names:
        info = _any_metric_info(name)
        better = _TRACK_BETTER_TEXT.get(info.better, "") if info else ""
        text = info.description if info else "a model-provided metric"
        meaning.append(
            f"<tr><td><code>{_e(name)}</code></td><td>{_e(better)}</td>"
            f'<td class="meaning">{_e(text)}</td></tr>'
        )
    top_links = [_a(label, href) for label, href in links]
    if ui_url:
        top_links.append(_a("MLflow runs of this dataset", ui_url, ui=True))
    parts = [
        f"<h1>{_e(dataset)}: every model and version</h1>",
        f"<p><strong>{_e(best_text)}</strong></p>",
        f'<p class="reason">{_e(best_reason)}</p>' if best_reason else "",
        f'<p class="note">{_e(rule_text)}</p>',
        ("<p>" + " · ".join(top_links) + "</p>") if top_links else "",
        _listen_section(rows, reference, reference_links),
        '<div class="scroll"><table class="index"><thead><tr>'
        + "".join(f"<th>{_e(h).replace('_', '_<wbr>')}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table></div>",
        '<p class="note">Each cell: the version\'s value, and under it its baseline (the same '
        "metric for a sample of real training windows against the held-out windows). Green: at "
        "least as good as the baseline; yellow: a little worse; red: worse than two samples of "
        "real music differ.</p>",
        "<h2>The metrics</h2><table><thead><tr><th>Metric</th><th>Better</th>"
        "<th>What it means</th></tr></thead><tbody>" + "".join(meaning) + "</tbody></table>",
    ]
    return _page(f"{dataset}: models and versions", parts, "body { max-width: 1500px; }")


def _player(href: str) -> str:
    url = _check_local(href)
    mime = _AUDIO_TYPES.get(Path(href).suffix.lower(), "audio/ogg")
    return f'<audio controls preload="none"><source src="{_e(url)}" type="{mime}"></audio>'


def _listen_section(
    rows: Sequence[IndexRow], reference: str | None, reference_links: Sequence[tuple[str, str]]
) -> str:
    """The first piece of every version that has one, after the held-out reference excerpt."""
    lines = []
    if reference:
        audio = [h for _, h in reference_links if Path(h).suffix.lower() in _AUDIO_TYPES]
        files = " ".join(_a(label, href) for label, href in reference_links)
        lines.append(
            '<tr class="reference"><td><strong>real music</strong><small>held out</small></td>'
            f"<td>{_player(audio[0]) if audio else '—'}</td>"
            f'<td class="meaning">{_e(reference)} {files}</td></tr>'
        )
    for row in rows:
        if not row.preview:
            continue
        badge = ' <span class="badge best">★ best</span>' if row.best else ""
        if row.champion:
            badge += ' <span class="badge champion">champion</span>'
        lines.append(
            f"<tr><td><code>{_e(row.model)}</code> v{row.version}{badge}"
            f"<small>{_e(row.registered_model)}</small></td><td>{_player(row.preview)}</td>"
            f'<td class="meaning">the first of its pieces ('
            + _a("its report", row.report)
            + ": all of them, with their scores)</td></tr>"
        )
    if not lines:
        return ""
    return (
        "<h2>Listen side by side</h2>"
        '<p class="note">One piece of every version, each rendered the same way (General MIDI '
        "piano, loudness-normalised), and first a held-out real excerpt of the same length: "
        "decide by ear which comes closest.</p>"
        '<table class="listen"><tbody>' + "".join(lines) + "</tbody></table>"
    )


def write_report(path: str | os.PathLike[str], html_text: str) -> Path:
    """Write the page atomically (temp file in the same folder + ``os.replace``): a killed
    run never leaves half a report behind. Returns the path written."""
    return atomic.write_text(path, html_text, fsync=True)


@dataclass
class AuditFile:
    """One input file on the audit page."""

    path: str
    outcome: str  # accepted, quarantined or duplicate
    reason: str  # the quarantine code, or the first copy's path for a duplicate
    warnings: Sequence[str]
    tracks: int | None
    notes: int | None
    windows: int
    role: str  # training, validation, held-out, or "" when the file is not in the dataset
    #: a dataset encoded with tracks: each of the file's tracks, "name program" (else "")
    track_programs: str = ""


#: Rows the audit page lays out at first (and per filter) until "show all" is clicked: the
#: layout of a 10,000-row table is most of the seconds such a page takes to open.
FILES_SHOWN = 1000

# Sorting and filtering of the audit page's file table, inline (a page opens offline). Cell
# texts are read once; a sort re-appends the rows in one fragment. Before the script runs (and
# without JavaScript, see the noscript style) the CSS shows the first FILES_SHOWN rows.
_FILES_JS = """
(function () {
  var table = document.getElementById("files"), body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var text = rows.map(function (r) { return r.textContent.toLowerCase(); });
  var q = document.getElementById("f-text"), o = document.getElementById("f-outcome"),
      r = document.getElementById("f-role"), w = document.getElementById("f-warned"),
      shown = document.getElementById("f-shown"), more = document.getElementById("f-more");
  var limit = LIMIT, order = rows.map(function (_, i) { return i; });
  function filter() {
    var s = q.value.toLowerCase(), n = 0;
    order.forEach(function (i) {
      var row = rows[i], d = row.dataset;
      var ok = (!s || text[i].indexOf(s) >= 0) && (!o.value || d.o === o.value)
        && (!r.value || d.r === r.value) && (!w.checked || d.w === "1");
      if (ok) n++;
      row.hidden = !ok || n > limit;
    });
    shown.textContent = n > limit ? limit + " of " + n : n;
    more.hidden = n <= limit;
  }
  more.addEventListener("click", function () { limit = Infinity; filter(); });
  [q, o, r, w].forEach(function (el) { el.addEventListener("input", filter); });
  var col = 0, dir = 1, heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, c) {
    th.addEventListener("click", function () {
      dir = c === col ? -dir : 1; col = c;
      var num = th.className.indexOf("num") >= 0;
      var key = rows.map(function (row) {
        var t = row.cells[c].textContent;
        return num ? (t === "—" ? -1 : +t) : t.toLowerCase();
      });
      order.sort(function (a, b) {
        return (key[a] < key[b] ? -1 : key[a] > key[b] ? 1 : a - b) * dir;
      });
      table.removeChild(body);  // one style and layout pass for the whole re-order
      order.forEach(function (i) { body.appendChild(rows[i]); });
      filter();
      table.appendChild(body);
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
    });
  });
  filter();
  table.className += " live";
})();
"""

_FILES_CSS = (
    f"table.files:not(.live) tbody tr:nth-child(n+{FILES_SHOWN + 1}) {{ display: none; }}"
    + """
table.files { font-size: 0.85rem; } table.files th { cursor: pointer; position: sticky; top: 0;
  user-select: none; } table.files th[aria-sort=ascending]::after { content: " ▲"; }
table.files th[aria-sort=descending]::after { content: " ▼"; }
table.files td { padding: 0.15rem 0.45rem; } tr.quarantined td:nth-child(2) { color: #b71c1c; }
tr.duplicate td { color: #777; } .filters { display: flex; gap: 0.8rem; flex-wrap: wrap;
  align-items: center; margin: 0.6rem 0; } .filters input[type=search] { width: 18rem; }
"""
)


def _num(value: int | None) -> str:
    return "—" if value is None else str(int(value))


def _files_section(files: Sequence[AuditFile]) -> str:
    """Every file in one table (sorted by path), with the filters and the inline script."""
    if not files:
        return ""
    with_tracks = any(f.track_programs for f in files)  # a merged dataset's page is unchanged
    rows = []
    for f in files:
        programs = f"<td>{_e(f.track_programs)}</td>" if with_tracks else ""
        rows.append(
            f'<tr class="{_e(f.outcome)}" data-o="{_e(f.outcome)}" data-r="{_e(f.role)}"'
            f' data-w="{1 if f.warnings else 0}"><td>{_e(f.path)}</td><td>{_e(f.outcome)}</td>'
            f"<td>{_e(f.reason)}</td><td>{_e(', '.join(f.warnings))}</td>"
            f'<td class="num">{_num(f.tracks)}</td><td class="num">{_num(f.notes)}</td>'
            f'<td class="num">{f.windows}</td><td>{_e(f.role or "—")}</td>{programs}</tr>'
        )

    def options(values: set[str]) -> str:
        return '<option value="">all</option>' + "".join(
            f'<option value="{_e(v)}">{_e(v)}</option>' for v in sorted(values) if v
        )

    heads = [
        ("file", ""),
        ("outcome", ""),
        ("reason", ""),
        ("warnings", ""),
        ("tracks", "num"),
        ("notes", "num"),
        ("windows", "num"),
        ("role", ""),
    ] + ([("tracks: program", "")] if with_tracks else [])
    head = "".join(
        f'<th class="{c}"' + (' aria-sort="ascending"' if i == 0 else "") + f">{h}</th>"
        for i, (h, c) in enumerate(heads)
    )
    return (
        f'<h2 id="every-file">Every file ({len(files)})</h2>'
        '<p class="note">Role: the part of the dataset the file\'s windows go to. Held-out '
        "files are never trained on and score every model; validation files are training "
        "files set aside to pick the kept epoch; training files are fitted. Click a column "
        "heading to sort.</p>"
        '<div class="filters"><label>find <input type="search" id="f-text"></label>'
        f'<label>outcome <select id="f-outcome">{options({f.outcome for f in files})}'
        f'</select></label><label>role <select id="f-role">{options({f.role for f in files})}'
        '</select></label><label><input type="checkbox" id="f-warned"> with warnings</label>'
        f'<span class="note"><span id="f-shown">{len(files)}</span> shown</span></div>'
        "<noscript><style>table.files tbody tr { display: table-row !important; }</style>"
        "</noscript>"
        f'<table class="files" id="files"><thead><tr>{head}</tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table>"
        + '<p><button type="button" id="f-more" hidden>show every file</button></p>'
        + f"<script>{_FILES_JS.replace('LIMIT', str(FILES_SHOWN))}</script>"
    )


@dataclass
class AuditRule:
    """One expectation of the suite on the audit page, with what it found."""

    code: str
    outcome: str  # "quarantine" or "warning"
    expectation: str  # GX expectation type
    column: str
    notes: str
    n_failed: int


def render_audit(
    *,
    dataset: str,
    summary: Mapping[str, Any],
    rules: Sequence[AuditRule],
    files: Sequence[AuditFile] = (),
    data_docs: str | None = None,
) -> str:
    """The dataset's audit page: what the Great Expectations suite decided, offline, and every
    file with its outcome and role in a table sorted and filtered by a small inline script.

    Warning-level expectations are warnings (the file is accepted and encoded), not failures;
    only a quarantine expectation keeps a file out. The page status says which of these
    happened. Self-contained like the reports: inline CSS and script, nothing from the network;
    without JavaScript the table still shows every file, sorted by path.
    """
    status = summary.get("status", {})
    n_files = int(summary.get("n_files", 0))
    accepted = int(status.get("accepted", 0))
    quarantined = int(status.get("quarantined", 0))
    duplicate = int(status.get("duplicate", 0))
    warned = summary.get("warned_files", [])
    if accepted == 0:
        verdict, cls = "Nothing accepted: no file can be encoded", "bad"
    elif quarantined:
        verdict, cls = f"Accepted {accepted} of {n_files} files; {quarantined} quarantined", "near"
    elif warned:
        verdict, cls = f"Accepted every file; {len(warned)} with warnings", "good"
    else:
        verdict, cls = "Accepted every file, no warnings", "good"
    counts = (
        f"{n_files} MIDI files: {accepted} accepted ({len(warned)} of them with warnings), "
        f"{quarantined} quarantined, {duplicate} duplicate; "
        f"{summary.get('n_segments', 0)} windows from accepted files."
    )
    rule_rows = []
    for rule in rules:
        if rule.n_failed == 0:
            result = '<td class="result good">passed</td>'
        elif rule.outcome == "warning":
            result = f'<td class="result near">warning: {rule.n_failed} file(s), accepted</td>'
        else:
            result = f'<td class="result bad">{rule.n_failed} file(s) quarantined</td>'
        kind = "quarantine" if rule.outcome != "warning" else "warning"
        rule_rows.append(
            f"<tr><td><code>{_e(rule.code)}</code></td><td>{_e(kind)}</td>"
            f"<td><code>{_e(rule.expectation)}</code><small>column {_e(rule.column)}</small>"
            f'</td><td class="meaning">{_e(rule.notes)}</td>{result}</tr>'
        )

    docs = (
        '<p class="note">The same results as Great Expectations renders them: '
        + _a("GX Data Docs", data_docs)
        + " (every validation of this dataset, one page each; they work offline too).</p>"
        if data_docs
        else ""
    )
    parts = [
        f"<h1>Audit of {_e(dataset)}</h1>",
        f'<table class="lineage"><tbody><tr><th>Status</th><td class="{cls}"><strong>'
        f"{_e(verdict)}</strong></td></tr></tbody></table>",
        f"<p>{_e(counts)}</p>",
        '<p><a href="#every-file">every file, with its role</a> · <a href="#rules">the rules</a>'
        "</p>"
        if files
        else "",
        '<h2 id="rules">Rules</h2>',
        '<p class="note">The Great Expectations suite (expectations/midi_files.json), in '
        "order. A quarantine rule keeps a failing file out of the dataset (the first failing "
        "code is its reason); a warning rule only flags the file, which is accepted and "
        "encoded.</p>",
        "<table><thead><tr><th>Code</th><th>Outcome</th><th>Expectation</th><th>Why</th>"
        "<th>Result</th></tr></thead><tbody>" + "".join(rule_rows) + "</tbody></table>",
        _files_section(files),
        docs,
    ]
    return _page(f"Audit of {dataset}", parts, _FILES_CSS)


_LEVEL_CLASS = {"same": "good", "small": "near", "large": "bad", "": ""}


def _changes_text(row: Mapping[str, Any]) -> str:
    changes = row.get("changes", {})
    parts = [
        f"{sign}{changes.get(kind, 0)}"
        for sign, kind in (("+", "added"), ("−", "removed"), ("~", "changed"))
        if changes.get(kind)
    ]
    return " ".join(parts) if parts else "none"


def _pitch_svg(hist: Sequence[float], pitch_low: int = 21) -> str:
    """The pitch histogram as a tiny inline bar chart (lowest pitch on the left)."""
    if not hist or not max(hist):
        return ""
    top = max(hist)
    bars = "".join(
        f'<rect x="{i}" y="{20 - 20 * v / top:.2f}" width="1" height="{20 * v / top:.2f}"/>'
        for i, v in enumerate(reversed(hist))
    )
    return (
        f'<svg class="spark" viewBox="0 0 {len(hist)} 20" preserveAspectRatio="none" '
        f'role="img" aria-label="pitch histogram from MIDI {pitch_low}">{bars}</svg>'
    )


def _drift_texts(d: Mapping[str, Any]) -> tuple[str, str, str]:
    """Before, after and change of one drift (``musicflow.core.history.Drift.as_dict``) as text:
    the pitch histogram's change is an L1 distance, a rate's in points, a mean's relative."""
    before, after, change = d.get("before"), d.get("after"), d.get("change")
    if change is None:
        return "", "", ""
    if d["name"] == "pitch histogram":
        return "", "", f"L1 {change:.3f}"
    if d["name"] == "quarantine rate":
        return f"{before:.1%}", f"{after:.1%}", f"{100 * change:+.1f} points"
    return _fmt(before), _fmt(after), f"{change:+.1%}"


def render_history(
    *,
    dataset: str,
    rows: Sequence[Mapping[str, Any]],
    links: Mapping[str, str] | None = None,
    docs: Mapping[int, str] | None = None,
) -> str:
    """The dataset's history page: every committed version (``tasks/history.history_rows``),
    the drift between consecutive versions with its verdict, and the models trained on each.
    Self-contained: inline CSS and SVG, no script."""
    links, docs = links or {}, docs or {}
    head = [
        "Version",
        "Committed",
        "Digest",
        "Files (accepted)",
        "Changes",
        "Windows",
        "Quarantined",
        "Warnings",
        "Density",
        "Polyphony",
        "Pitches",
        "Models trained on it",
    ]
    body = []
    for row in reversed(rows):
        stats = row.get("statistics", {})
        status = row.get("status", {})
        n_in = int(row.get("n_files_in", 0))
        quarantined = int(status.get("quarantined", 0))
        models = row.get("models", [])
        version = f"v{row['version']}"
        if row["version"] in docs:
            version += f"<small>{_a('validation', docs[row['version']])}</small>"
        body.append(
            "<tr>"
            f'<td class="num">{version}</td>'
            f"<td>{_e((row.get('committed_at') or '').replace('T', ' ')[:16])}</td>"
            f'<td><code class="digest" title="{_e(row["digest"])}">{_e(row["digest"][:12])}'
            "</code></td>"
            f'<td class="num">{n_in} ({int(row.get("n_files", 0))})</td>'
            f"<td>{_e(_changes_text(row))}</td>"
            f'<td class="num">{int(row.get("n_windows", 0))}</td>'
            f'<td class="num">{quarantined} ({100 * quarantined / max(n_in, 1):.1f}%)</td>'
            f'<td class="num">{sum(row.get("warnings", {}).values())}</td>'
            f'<td class="num">{_e(_fmt(stats.get("density")))}</td>'
            f'<td class="num">{_e(_fmt(stats.get("polyphony")))}</td>'
            f"<td>{_pitch_svg(stats.get('pitch_histogram', []))}</td>"
            f"<td>{_e(', '.join(models)) if models else '—'}</td>"
            "</tr>"
        )
    drifts = []
    for prev, row in itertools.pairwise(rows):
        cells = []
        for d in row.get("drift", []):
            before, after, change = _drift_texts(d)
            cls = _LEVEL_CLASS.get(d.get("level", ""), "")
            cells.append(
                f'<tr><td>{_e(d["name"])}</td><td class="num">{_e(before)}</td>'
                f'<td class="num">{_e(after)}</td><td class="num">{_e(change)}</td>'
                f'<td class="{cls}">{_e(d["verdict"])}</td></tr>'
            )
        changed = row.get("changed_files", {})
        listed = "; ".join(
            f"{kind}: "
            + ", ".join(paths)
            + ("…" if row["changes"].get(kind, 0) > len(paths) else "")
            for kind, paths in changed.items()
            if paths
        )
        drifts.append(
            f"<h3>v{prev['version']} → v{row['version']}: files {_e(_changes_text(row))}</h3>"
            + (f'<p class="note">{_e(listed)}</p>' if listed else "")
            + "<table><thead><tr><th>Statistic</th><th>Before</th><th>After</th>"
            "<th>Change</th><th>Verdict</th></tr></thead><tbody>"
            + "".join(cells)
            + "</tbody></table>"
        )
    top = [
        _a(label, links[key])
        for key, label in (("audit", "audit page"), ("index", "models"))
        if key in links
    ]
    parts = [
        f"<h1>History of {_e(dataset)}</h1>",
        ("<p>" + " · ".join(top) + "</p>") if top else "",
        f"<p>{len(rows)} committed version(s), newest first. Changes: files added (+), "
        "removed (−) and changed (~, same path, new content) since the version before. "
        "Density: notes per beat; polyphony: pitches sounding at once; pitches: the share of "
        "active cells per pitch, lowest on the left, over every window of "
        "the version.</p>",
        '<div class="scroll"><table class="index"><thead><tr>'
        + "".join(f"<th>{_e(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table></div>",
        "<h2>Drift between consecutive versions</h2>" if drifts else "",
        '<p class="note">Green: about the same; yellow: a small change; red: a large one '
        "(thresholds in musicflow/core/history.py: two halves of one collection differ by about "
        "0.1 in pitch-histogram L1 and a few percent in density).</p>"
        if drifts
        else "",
        *reversed(drifts),
    ]
    css = (
        "body { max-width: 1500px; } "
        "svg.spark { width: 8rem; height: 1.4rem; fill: #1565c0; display: block; }"
    )
    return _page(f"History of {dataset}", parts, css)
