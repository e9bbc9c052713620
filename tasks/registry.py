"""Model registry: the champion rule and the comparison table of registered versions.

Champion rule (documented in the README): a version is eligible when its ``blank_rate`` is at
most 0.5 (a generator that mostly outputs silence is never the best known). Among eligible
versions, lower ``onenn_accuracy`` wins (0.5 means a nearest-neighbour test cannot tell generated
from held-out windows); when two are within 0.01 of each other, lower ``pitch_hist_l1`` wins.
A new version takes the alias ``champion`` only when it beats the current one by this rule.
"""

from __future__ import annotations

import math

from musicflow import workspace

CHAMPION = "champion"
MAX_BLANK_RATE = 0.5
ONENN_TIE = 0.01
COMPARE_METRICS = ("onenn_accuracy", "pitch_hist_l1", "blank_rate", "unique_rate", "copy_rate")


def _client():
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=workspace.tracking_uri())


def is_better(new: dict[str, float], old: dict[str, float] | None) -> bool:
    """The champion rule on two metric dicts (pure, so it is easy to test)."""
    if not _finite(new.get("blank_rate")) or new["blank_rate"] > MAX_BLANK_RATE:
        return False
    if not _finite(new.get("onenn_accuracy")):
        return False
    if old is None or not _finite(old.get("onenn_accuracy")):
        return True
    if abs(new["onenn_accuracy"] - old["onenn_accuracy"]) > ONENN_TIE:
        return new["onenn_accuracy"] < old["onenn_accuracy"]
    return new.get("pitch_hist_l1", math.inf) < old.get("pitch_hist_l1", math.inf)


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def version_metrics(client, name: str, version: str | int) -> dict[str, float]:
    mv = client.get_model_version(name, str(version))
    return dict(client.get_run(mv.run_id).data.metrics) if mv.run_id else {}


def promote_if_better(name: str, version: int) -> bool:
    """Give ``version`` the champion alias when it beats the current champion; True if it did."""
    from mlflow.exceptions import MlflowException

    client = _client()
    new = version_metrics(client, name, version)
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
        old = version_metrics(client, name, current.version)
    except MlflowException:
        old = None
    if is_better(new, old):
        client.set_registered_model_alias(name, CHAMPION, str(version))
        return True
    return False


def compare_versions(dataset: str) -> list[dict]:
    """Every registered version of the dataset's models with its metrics, champion marked."""
    client = _client()
    rows = []
    for model in client.search_registered_models(filter_string=f"name LIKE '{dataset}-%'"):
        champion = model.aliases.get(CHAMPION) if hasattr(model, "aliases") else None
        for mv in client.search_model_versions(f"name = '{model.name}'"):
            metrics = dict(client.get_run(mv.run_id).data.metrics) if mv.run_id else {}
            rows.append(
                {
                    "model": model.name,
                    "version": int(mv.version),
                    "champion": str(mv.version) == str(champion),
                    **metrics,
                }
            )
    return sorted(rows, key=lambda r: (r["model"], r["version"]))


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


def _fmt(value) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.3f}"
