"""Text for the terminal: the tables and summaries the CLI prints (pure, no I/O).

Public functions: :func:`format_summary` (an audit), :func:`format_table` (registered versions
and their metrics, ``musicflow compare``), :func:`format_model` (one trained model).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

COMPARE_METRICS = ("onenn_accuracy", "pitch_hist_l1", "blank_rate", "unique_rate", "copy_rate")
MODEL_SUMMARY_METRICS = ("onenn_accuracy", "pitch_hist_l1", "blank_rate")


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
                lines.append(f"    … and {len(files) - worst} more (see the manifest)")
    return "\n".join(lines)


def format_table(rows: list[dict]) -> str:
    """A plain terminal table: one line per version, each metric beside its baseline."""
    if not rows:
        return "no registered model versions for this dataset yet (run 'musicflow run' first)"
    header = ["model", "ver", "champ"] + [m for m in COMPARE_METRICS] + ["onenn_base"]
    lines = [header]
    for r in rows:
        lines.append(
            [r["model"], str(r["version"]), "*" if r["champion"] else ""]
            + [_fmt(r.get(m)) for m in COMPARE_METRICS]
            + [_fmt(r.get("onenn_accuracy_baseline"))]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines
    )


def format_model(
    model_uri: str, run_id: str, promoted: bool, metrics: Mapping[str, float], report: str
) -> str:
    """What ``train`` and ``run`` print for one model: where it is, its main metrics beside
    their baselines, and its report."""
    flag = " (new champion)" if promoted else ""
    lines = [f"{model_uri} (run {run_id}){flag}"]
    for key in MODEL_SUMMARY_METRICS:
        value = metrics.get(key, float("nan"))
        base = metrics.get(f"{key}_baseline", float("nan"))
        lines.append(f"  {key}: {value:.3f} (baseline {base:.3f})")
    lines.append(f"  report: {report}")
    return "\n".join(lines)


def _fmt(value) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.3f}"
