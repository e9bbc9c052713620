"""History: every committed version of a dataset, kept beside it in ``<dataset>/history/``.

``versions.json`` holds one record per committed version, oldest first: its number, digest,
the sha256 of its manifest, when it was committed, the files added, removed and changed since
the version before, its windows, its outcome, reason and warning counts, the statistics of its
windows (``musicflow/history.window_statistics``) and its Data Docs validation page; beside it,
``v<N>.manifest.parquet`` is the manifest of version N (what the next version is compared with).

:func:`record_version` is called at the commit point (``tasks/encode.write_dataset``, under the
folder's lock) and records the committed version unless the last record is already it, so a run
killed between the commit and the record is recorded by the next encode. :func:`history_rows`
adds the drift from each version's predecessor and the model versions trained on it (MLflow's
dataset inputs); :func:`write_history_page` writes ``reports/<dataset>/history.html``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from musicflow import atomic, roll, workspace
from musicflow.errors import DatasetError
from musicflow.history import drift, file_changes, window_statistics

HISTORY_DIR = "history"
VERSIONS_FILE = "versions.json"
CHANGED_SHOWN = 20  # paths listed per kind of change in a record; the counts are exact
BATCH_ROWS = 2048  # windows unpacked at a time for the statistics (~19 MB as bool)


def history_dir(folder: Path) -> Path:
    return Path(folder) / HISTORY_DIR


def read_history(folder: Path) -> list[dict]:
    """The dataset's version records, oldest first ([] before its first commit)."""
    path = history_dir(folder) / VERSIONS_FILE
    if not path.is_file():
        return []
    try:
        records = json.loads(path.read_text())
        if not isinstance(records, list):
            raise ValueError("not a list")
    except (OSError, ValueError) as err:
        raise DatasetError(f"the dataset history {path} is unreadable: {err}") from err
    return records


def _windows(shards: list[Path]) -> Iterator[np.ndarray]:
    for shard in shards:
        for batch in pq.ParquetFile(shard).iter_batches(BATCH_ROWS, columns=["roll"]):
            packed = np.frombuffer(b"".join(batch.column(0).to_pylist()), dtype=np.uint8)
            yield roll.unpack_windows(packed.reshape(-1, roll.PACKED_BYTES))


def _files(manifest: pd.DataFrame) -> dict[str, str]:
    return dict(zip(manifest.source_path, manifest.source_sha256, strict=True))


def record_version(folder: Path, info, manifest: pd.DataFrame) -> dict | None:
    """Record the committed version ``info`` (a ``tasks/encode.DatasetInfo``, its manifest
    ``manifest``) unless it is the last one recorded; returns the new record, or None."""
    from musicflow.tasks.encode import manifest_table

    folder = Path(folder)
    atomic.sweep(history_dir(folder))  # the temp files of a history write that was killed
    records = read_history(folder)
    if records and (records[-1]["digest"], records[-1].get("manifest_sha256")) == (
        info.digest,
        info.manifest_sha256,
    ):
        return None
    number = records[-1]["version"] + 1 if records else 1
    before: dict[str, str] = {}
    if records:
        previous = history_dir(folder) / f"v{records[-1]['version']}.manifest.parquet"
        if previous.is_file():
            before = _files(
                pq.read_table(previous, columns=["source_path", "source_sha256"]).to_pandas()
            )
    changes = file_changes(before, _files(manifest))
    quarantined = manifest[manifest.status == "quarantined"]
    accepted = manifest[manifest.status == "accepted"]
    try:
        committed_at = json.loads((folder / "dataset.json").read_text()).get("created_at")
    except (OSError, ValueError):
        committed_at = None
    # the newest validation: GX names each page's folder by its run time (and rewrites every
    # page on each build, so file times say nothing)
    docs = sorted(
        (folder / "data_docs" / "validations").glob("**/*.html"), key=lambda p: p.parent.name
    )
    record = {
        "version": number,
        "digest": info.digest,
        "manifest_sha256": info.manifest_sha256,
        "committed_at": committed_at,
        "n_files_in": len(manifest),
        "n_files": info.n_files,
        "n_windows": info.n_windows,
        "changes": {k: len(v) for k, v in changes.items()},
        "changed_files": {k: v[:CHANGED_SHOWN] for k, v in changes.items()},
        "status": dict(Counter(manifest.status)),
        "quarantine_reasons": dict(Counter(quarantined.reason)),
        "warnings": dict(Counter(w for ws in accepted.warnings for w in ws)),
        "statistics": window_statistics(_windows(info.shard_paths), pitch_low=info.pitch_low),
        "validation_page": docs[-1].relative_to(folder).as_posix() if docs else None,
    }
    out = history_dir(folder)
    table = manifest_table(manifest)
    atomic.atomic_write(out / f"v{number}.manifest.parquet", lambda tmp: pq.write_table(table, tmp))
    atomic.write_text(out / VERSIONS_FILE, json.dumps([*records, record], indent=1), fsync=True)
    return record


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
    from musicflow import tracking

    found: dict[str, list[str]] = {}
    for row in tracking.dataset_versions(dataset):
        digest = tracking.run_dataset_digest(row.run_id) if row.run_id else None
        if digest:
            found.setdefault(digest, []).append(f"{row.model} v{row.version}")
    return found


def history_page(dataset: str) -> Path:
    return workspace.reports_dir() / dataset / "history.html"


def write_history_page(
    dataset: str, folder: Path, rows: list[dict] | None = None, *, index: bool = False
) -> Path:
    """``reports/<dataset>/history.html`` from :func:`history_rows`; ``index``: the dataset's
    index page is being written too (link it even before it exists)."""
    from musicflow.report import render_history, write_report

    rows = history_rows(dataset, folder) if rows is None else rows
    page = history_page(dataset)
    folder = Path(folder)

    def rel(target: Path) -> str:
        return Path(os.path.relpath(target, page.parent)).as_posix()

    targets = {"audit": folder / "audit.html", "index": page.parent / "index.html"}
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
