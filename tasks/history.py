"""History: every committed version of a dataset, kept beside it in ``<dataset>/history/``.

``versions.json`` holds one record per committed version, oldest first: its number, digest,
the sha256 of its manifest, when it was committed, the files added, removed and changed since
the version before, its windows, its outcome, reason and warning counts, the statistics of its
windows (``musicflow/core/history.window_statistics``) and its Data Docs validation page; beside it,
``v<N>.manifest.parquet`` is the manifest of version N (what the next version is compared with).

The records are written at the commit point (``musicflow/adapters/store.record_version``, under the
folder's lock) and records the committed version unless the last record is already it, so a run
killed between the commit and the record is recorded by the next encode. :func:`history_rows`
adds the drift from each version's predecessor and the model versions trained on it (MLflow's
dataset inputs); :func:`write_history_page` writes ``reports/<dataset>/history.html``.
"""

from __future__ import annotations

import os
from pathlib import Path

from musicflow.adapters.store import read_history
from musicflow.adapters.workspace import DatasetFolder
from musicflow.core.history import drift


def history_rows(dataset: str, folder: Path) -> list[dict]:
    """Each version's record with ``drift`` (from the version before; [] for the first) and
    ``models`` (the registered versions whose training run's dataset input is this version)."""
    records = read_history(folder)
    trained = _models_by_digest(dataset)
    rows = []
    for i, record in enumerate(records):
        moved = drift(records[i - 1], record) if i else []
        rows.append(
            record
            | {
                "drift": [d.as_dict() for d in moved],
                "models": trained.get(record["digest"][:32], []),
            }
        )
    return rows


def _models_by_digest(dataset: str) -> dict[str, list[str]]:
    """``{digest[:32]: ["<registered model> v<N>", …]}`` from the runs' MLflow dataset inputs
    (``tracking.log_dataset_input`` logs the first 32 hex digits of the dataset digest)."""
    from musicflow.adapters import tracking

    found: dict[str, list[str]] = {}
    for row in tracking.dataset_versions(dataset):
        digest = tracking.run_dataset_digest(row.run_id) if row.run_id else None
        if digest:
            found.setdefault(digest, []).append(f"{row.model} v{row.version}")
    return found


def write_history_page(
    dataset: str, folder: Path, rows: list[dict] | None = None, *, index: bool = False
) -> Path:
    """``reports/<dataset>/history.html`` from :func:`history_rows`; ``index``: the dataset's
    index page is being written too (link it even before it exists)."""
    from musicflow.pages.report import render_history, write_report

    rows = history_rows(dataset, folder) if rows is None else rows
    files = DatasetFolder(folder, dataset)
    page = files.history_page
    folder = files.root

    def rel(target: Path) -> str:
        return Path(os.path.relpath(target, page.parent)).as_posix()

    targets = {"audit": files.audit_page, "index": files.index_page}
    links = {
        name: rel(target)
        for name, target in targets.items()
        if target.is_file() or (index and name == "index")
    }
    docs = {
        r["version"]: rel(folder / r["validation_page"])
        for r in rows
        if r.get("validation_page") and (folder / r["validation_page"]).is_file()
    }
    return write_report(page, render_history(dataset=dataset, rows=rows, links=links, docs=docs))
