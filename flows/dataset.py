"""Dataset flows: ``audit`` (ingest → parse → validate) and ``encode`` (… → shards).

Flows only wire tasks. Parsing fans out over the task runner: threads by default, Dask when
asked (``task_runner="dask"``, optionally at an existing scheduler address).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from musicflow.defaults import DEFAULT_MAX_BYTES, DEFAULT_WORKERS
from musicflow.errors import DatasetError
from musicflow.roll import DEFAULT_PITCH_LOW
from musicflow.tasks.audit import build_manifest, summarize
from musicflow.tasks.encode import DatasetInfo, write_manifest, write_shards
from musicflow.tasks.ingest import ingest
from musicflow.tasks.parse import parse_files
from musicflow.tasks.validate import validate_step


@dataclass
class AuditResult:
    dataset: str
    out_dir: Path
    summary: dict
    docs_index: Path | None
    n_parsed: int
    n_cached: int
    dataset_info: DatasetInfo | None = None


def make_task_runner(kind: str = "threads", address: str | None = None, workers: int | None = None):
    """The task runner encoding fans out over: threads here, or a Dask cluster."""
    workers = workers or os.cpu_count() or 2
    if kind == "threads":
        return ThreadPoolTaskRunner(max_workers=workers)
    if kind == "dask":
        from prefect_dask import DaskTaskRunner

        if address:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(
            cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True}
        )
    raise DatasetError(f"unknown task runner {kind!r} (use 'threads' or 'dask')")


def _audit(
    source: Path,
    dataset: str,
    out_dir: Path,
    cache_dir: Path,
    pitch_low: int,
    max_bytes: int,
    workers: int,
) -> tuple[AuditResult, object]:
    files = ingest(source)
    if files.empty:
        raise DatasetError(f"no .mid or .midi files under {source}")
    parsed = parse_files(
        files, cache_dir=cache_dir, pitch_low=pitch_low, max_bytes=max_bytes, workers=workers
    )
    judged = parsed.records[parsed.records.duplicate_of.isna()].reset_index(drop=True)
    docs_dir = out_dir / "data_docs"
    report = validate_step(docs_dir)(
        judged,
        pitch_low=pitch_low,
        max_bytes=max_bytes,
        dataset=dataset,
        docs_dir=docs_dir,
    )
    manifest = build_manifest(parsed.records, report.outcomes)
    result = AuditResult(
        dataset=dataset,
        out_dir=out_dir,
        summary=summarize(manifest),
        docs_index=report.docs_index,
        n_parsed=parsed.n_parsed,
        n_cached=parsed.n_cached,
    )
    return result, manifest


@flow(name="musicflow-audit", persist_result=False, log_prints=False)
def audit_flow(
    source: Path,
    dataset: str,
    out_dir: Path,
    cache_dir: Path,
    pitch_low: int = DEFAULT_PITCH_LOW,
    max_bytes: int = DEFAULT_MAX_BYTES,
    workers: int = DEFAULT_WORKERS,
) -> AuditResult:
    """Ingest and validate a MIDI folder; write the manifest and Data Docs."""
    result, manifest = _audit(
        Path(source), dataset, Path(out_dir), Path(cache_dir), pitch_low, max_bytes, workers
    )
    write_manifest(manifest, Path(out_dir) / "manifest.parquet")
    return result


@flow(name="musicflow-encode", persist_result=False, log_prints=False)
def encode_flow(
    source: Path,
    dataset: str,
    out_dir: Path,
    cache_dir: Path,
    pitch_low: int = DEFAULT_PITCH_LOW,
    max_bytes: int = DEFAULT_MAX_BYTES,
    workers: int = DEFAULT_WORKERS,
) -> AuditResult:
    """Audit, then write the accepted files' windows as Parquet shards with a dataset digest."""
    result, manifest = _audit(
        Path(source), dataset, Path(out_dir), Path(cache_dir), pitch_low, max_bytes, workers
    )
    if result.summary["status"].get("accepted", 0) == 0:
        write_manifest(manifest, Path(out_dir) / "manifest.parquet")
        raise DatasetError(
            f"no accepted MIDI file under {source}; see {Path(out_dir) / 'manifest.parquet'}"
        )
    result.dataset_info = write_shards(
        manifest,
        name=dataset,
        out_dir=Path(out_dir),
        cache_dir=Path(cache_dir),
        pitch_low=pitch_low,
    )
    return result
