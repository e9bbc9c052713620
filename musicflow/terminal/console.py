"""Text for the terminal, and the ``--json`` documents: what the CLI prints (pure, no I/O).

Public functions: :func:`format_summary` (an audit), :func:`format_table` (registered versions
and their metrics, ``musicflow compare``), :func:`format_best` (the best of the dataset),
:func:`format_model` (one trained model); :func:`audit_json`, :func:`compare_json`,
:func:`run_json` (the stable ``--json`` shapes of docs/cli.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from musicflow.core.champion import RULE_TEXT
from musicflow.core.metrics import (
    BASELINE_SUFFIX,
    HEADLINE_METRICS,
    METRIC_INFO,
    evaluation_names,
)
from musicflow.core.track_metrics import TRACK_SUMMARY_METRICS, summary_key

#: The metrics ``compare`` shows by default (every metric is in ``--json``); metrics a model
#: provides (``metrics.MODEL_METRIC_INFO``, a run's ``musicflow.evaluation_metrics`` tag) are
#: added after them when any version has them.
COMPARE_METRICS = (*HEADLINE_METRICS, "unique_rate", "copy_rate")
#: The track summaries (``track_metrics.TRACK_SUMMARY_METRICS``), shown last when any version
#: has them (a dataset with tracks); merged datasets have none.
TRACK_SUMMARY_KEYS = tuple(summary_key(m) for m in TRACK_SUMMARY_METRICS)
JSON_VERSION = 1  # the "schema" key of every --json document


def format_summary(summary: dict, *, worst: int = 10) -> str:
    """Readable terminal summary: counts first, then the worst files."""
    status = summary["status"]
    lines = [
        f"{summary['n_files']} MIDI files: {status.get('accepted', 0)} accepted, "
        f"{status.get('quarantined', 0)} quarantined, {status.get('duplicate', 0)} duplicate; "
        f"{summary['n_segments']} windows from accepted files",
    ]
    for title, counts in (
        ("quarantined", summary["quarantine_reasons"]),
        ("warnings", summary["warnings"]),
    ):
        if counts:
            lines.append(f"  {title}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    listings = (
        ("quarantined files", [(p, reason) for p, reason in summary["quarantined_files"]]),
        ("accepted with warnings", [(p, ", ".join(w)) for p, w in summary["warned_files"]]),
    )
    for title, files in listings:
        if files:
            lines.append(f"  {title}:")
            lines += [f"    {path}  ({why})" for path, why in files[:worst]]
            if len(files) > worst:
                lines.append(f"    … and {len(files) - worst} more (see the audit page)")
    return "\n".join(lines)


class _Row:
    """A version as the table reads it: a ``tracking.VersionRow`` or a plain dict (``model``,
    ``version``, ``champion`` and the metrics as the other keys)."""

    def __init__(self, row: Any) -> None:
        if isinstance(row, Mapping):
            self.model, self.version = str(row["model"]), int(row["version"])
            self.champion = bool(row.get("champion"))
            self.metrics = {k: v for k, v in row.items() if isinstance(v, int | float)}
            self.metrics.pop("version", None)
            self.names = evaluation_names(self.metrics)
            self.epochs = ""
        else:
            self.model, self.version, self.champion = row.model, row.version, row.champion
            self.metrics = row.metrics
            self.names = row.evaluation_names()
            done = row.metrics.get("epochs_completed")
            planned = row.params.get("max_epochs") or row.params.get("epochs")
            self.epochs = (
                "" if done is None else f"{int(done)}" + (f"/{planned}" if planned else "")
            )


def _same(row: _Row, best: Any) -> bool:
    return best is not None and (row.model, row.version) == (best.model, best.version)


def format_table(rows: Sequence[Any], best: Any = None) -> str:
    """A plain terminal table: one line per version, each metric with its baseline in
    brackets; ``champion`` marks each model's champion, ``★ best`` the best of the dataset."""
    if not rows:
        return "no registered model versions for this dataset yet (run 'musicflow run' first)"
    items = [_Row(r) for r in rows]
    names = list(COMPARE_METRICS)
    for item in items:
        names += [n for n in item.names if n not in names and n not in _COMMON]
    names += [k for k in TRACK_SUMMARY_KEYS if any(k in item.metrics for item in items)]
    show_epochs = any(item.epochs for item in items)
    header = ["model", "ver", "standing"] + (["epochs"] if show_epochs else []) + names
    lines = [header]
    for item in items:
        standing = " ".join(
            s for s, on in (("champion", item.champion), ("★ best", _same(item, best))) if on
        )
        cells = [item.model, str(item.version), standing] + ([item.epochs] if show_epochs else [])
        for name in names:
            value = item.metrics.get(name)
            base = item.metrics.get(f"{name}{BASELINE_SUFFIX}")
            cells.append(_fmt(value) + (f" ({_fmt(base)})" if base is not None else ""))
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    table = "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )
    return table + "\n(in brackets: the baseline, real training windows against held-out ones)"


def format_best(best: Any) -> str:
    """The line naming the best version of the dataset, and the rule that chose it."""
    if best is None:
        head = "best of the dataset: none yet (no champion is both scored and mostly not blank)"
    else:
        head = (
            f"best of the dataset: {best.model} v{best.version} "
            f"(load it as models:/{best.model}@champion)"
        )
    return f"{head}\n{RULE_TEXT}"


def format_model(
    model_uri: str, run_id: str, promoted: bool, metrics: Mapping[str, float], report: str
) -> str:
    """What ``train`` and ``run`` print for one model: where it is, its main metrics beside
    their baselines, and its report."""
    flag = " (new champion)" if promoted else ""
    lines = [f"{model_uri} (run {run_id}){flag}"]
    for key in HEADLINE_METRICS:
        value = metrics.get(key, float("nan"))
        base = metrics.get(f"{key}{BASELINE_SUFFIX}", float("nan"))
        lines.append(f"  {key}: {value:.3f} (baseline {base:.3f})")
    lines.append(f"  report: {report}")
    return "\n".join(lines)


def _fmt(value) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.3f}"


# The common metrics beyond the default columns stay in --json (and the index page) only.
_COMMON = set(METRIC_INFO)


def _split_metrics(metrics: Mapping[str, float], names: Sequence[str]) -> tuple[dict, dict]:
    values = {n: metrics[n] for n in names if n in metrics and _finite(metrics[n])}
    bases = {
        n: metrics[f"{n}{BASELINE_SUFFIX}"]
        for n in names
        if f"{n}{BASELINE_SUFFIX}" in metrics and _finite(metrics[f"{n}{BASELINE_SUFFIX}"])
    }
    return values, bases


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def summary_json(summary: Mapping[str, Any]) -> dict[str, Any]:
    """An audit summary (``tasks/audit.summarize``) with named fields instead of tuples."""
    return {
        "n_files": int(summary["n_files"]),
        "status": {k: int(v) for k, v in summary["status"].items()},
        "quarantine_reasons": {k: int(v) for k, v in summary["quarantine_reasons"].items()},
        "warnings": {k: int(v) for k, v in summary["warnings"].items()},
        "quarantined_files": [{"path": p, "reason": r} for p, r in summary["quarantined_files"]],
        "warned_files": [{"path": p, "warnings": list(w)} for p, w in summary["warned_files"]],
        "n_windows": int(summary["n_segments"]),
    }


def audit_json(result: Any) -> dict[str, Any]:
    """``musicflow audit --json`` (docs/cli.md)."""
    return {
        "schema": JSON_VERSION,
        "command": "audit",
        "dataset": result.dataset,
        "accepted": result.summary["status"].get("accepted", 0) > 0,
        "summary": summary_json(result.summary),
        "n_parsed": int(result.n_parsed),
        "n_cached": int(result.n_cached),
        "manifest": str(result.manifest),
        "audit_page": str(result.audit_page) if getattr(result, "audit_page", None) else None,
        "data_docs": str(result.docs_index) if result.docs_index else None,
    }


def version_json(row: Any, best: Any = None) -> dict[str, Any]:
    """One registered version (a ``tracking.VersionRow``) in ``compare --json``."""
    names = row.evaluation_names() + [k for k in TRACK_SUMMARY_KEYS if k in row.metrics]
    values, bases = _split_metrics(row.metrics, names)
    done = row.metrics.get("epochs_completed")
    planned = row.params.get("max_epochs") or row.params.get("epochs")
    return {
        "registered_model": row.model,
        "model": row.model_kind,
        "version": row.version,
        "uri": row.uri,
        "champion": row.champion,
        "best": best is not None and (row.model, row.version) == (best.model, best.version),
        "run_id": row.run_id,
        "dataset_digest": row.params.get("dataset_digest"),
        "epochs": None if done is None else int(done),
        "max_epochs": int(planned) if planned and str(planned).isdigit() else None,
        "metrics": values,
        "baselines": bases,
    }


def best_json(best: Any) -> dict[str, Any] | None:
    """The best version of a dataset (a ``tracking.VersionRow``) in ``--json`` documents."""
    if best is None:
        return None
    return {
        "registered_model": best.model,
        "version": best.version,
        "uri": best.uri,
        "champion_uri": f"models:/{best.model}@champion",
    }


def compare_json(dataset: str, rows: Sequence[Any], best: Any) -> dict[str, Any]:
    """``musicflow compare --json`` (docs/cli.md)."""
    return {
        "schema": JSON_VERSION,
        "command": "compare",
        "dataset": dataset,
        "best": best_json(best),
        "rule": RULE_TEXT,
        "versions": [version_json(r, best) for r in rows],
    }


def run_json(result: Any, standing: Mapping[str, Any]) -> dict[str, Any]:
    """``musicflow run --json`` (docs/cli.md): the audit, each model's new or cached version,
    the best of the dataset and where to look next."""
    audit = result.audit
    info = audit.dataset_info
    models = []
    for m in result.models:
        names = evaluation_names(m.evaluation.scores)
        values, bases = _split_metrics(m.evaluation.scores, names)
        models.append(
            {
                "model": m.trained.model,
                "registered_model": m.registered.name,
                "version": m.registered.version,
                "uri": m.registered.model_uri,
                "run_id": m.trained.run_id,
                "new_champion": bool(m.promoted),
                "epochs": m.trained.epochs_done or None,
                "max_epochs": m.trained.max_epochs or None,
                "report": m.report,
                "metrics": values,
                "baselines": bases,
            }
        )
    return {
        "schema": JSON_VERSION,
        "command": "run",
        "dataset": audit.dataset,
        "summary": summary_json(audit.summary),
        "dataset_digest": info.digest if info else None,
        "n_windows": info.n_windows if info else None,
        "audit_page": str(audit.audit_page) if getattr(audit, "audit_page", None) else None,
        "models": models,
        "best": standing.get("best"),
        "index": getattr(result, "index", None),
        "mlflow_ui": standing.get("mlflow_ui"),
    }


def format_history(rows: Sequence[Mapping[str, Any]]) -> str:
    """``musicflow history``: one line per committed version, then each drift that is not
    "about the same" under the version it leads to."""
    lines = [
        f"{'version':<8}{'committed':<18}{'digest':<14}{'files':>7}{'changes':>16}"
        f"{'windows':>9}{'quarantined':>13}{'density':>9}{'polyph.':>9}  models"
    ]
    for row in rows:
        changes = row.get("changes", {})
        delta = (
            f"+{changes.get('added', 0)} -{changes.get('removed', 0)} ~{changes.get('changed', 0)}"
        )
        stats = row.get("statistics", {})
        quarantined = int(row.get("status", {}).get("quarantined", 0))
        lines.append(
            f"{'v' + str(row['version']):<8}"
            f"{(row.get('committed_at') or '').replace('T', ' ')[:16]:<18}"
            f"{row['digest'][:12]:<14}{row.get('n_files_in', 0):>7}{delta:>16}"
            f"{row.get('n_windows', 0):>9}{quarantined:>13}"
            f"{_fmt(stats.get('density')):>9}{_fmt(stats.get('polyphony')):>9}  "
            + (", ".join(row.get("models", [])) or "-")
        )
        for d in row.get("drift", []):
            if d.get("level") in ("small", "large"):
                lines.append(f"{'':<8}{d['name']}: {d['verdict']}")
    return "\n".join(lines)
