"""Dataset flows: ``audit`` (ingest → parse → validate) and ``encode`` (… → shards).

Flows only wire tasks. Parsing fans out over the task runner: threads by default, Dask when
asked (``task_runner="dask"``, optionally at an existing scheduler address). Each step says on
stderr what it did, or that nothing changed, and how long it took
(``musicflow/terminal/progress.py``).

On Dask, each parse chunk runs as a Prefect task in a worker process. What crosses the wire: the
chunk's jobs (absolute source paths and cache-entry paths, never file contents) out, the
metadata records back, through Dask itself (the task does not persist a Prefect result, so no
Prefect result storage is involved). The windows go to the content-addressed cache, which the
flow then reads to write the shards: workers need the source folder and the workspace at the
same paths (one machine, or a shared filesystem). Workers also report their task runs to a
Prefect API: see ``prefect_api_for_workers``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from musicflow.adapters.store import DatasetInfo, write_manifest
from musicflow.adapters.workspace import DatasetFolder
from musicflow.core.defaults import DEFAULT_MAX_BYTES, DEFAULT_WORKERS
from musicflow.core.errors import DatasetError, MusicflowError
from musicflow.core.roll import DEFAULT_PITCH_LOW
from musicflow.core.tracks import MERGED, VOICES, dataset_voices
from musicflow.tasks.audit import build_manifest, summarize, write_audit_page
from musicflow.tasks.encode import write_shards
from musicflow.tasks.ingest import ingest
from musicflow.tasks.parse import parse_files
from musicflow.tasks.validate import validate_step
from musicflow.terminal import progress


@dataclass
class AuditResult:
    dataset: str
    out_dir: Path
    summary: dict
    docs_index: Path | None
    n_parsed: int
    n_cached: int
    dataset_info: DatasetInfo | None = None
    audit_page: Path | None = None  # <out>/audit.html: the audit, readable offline

    @property
    def manifest(self) -> Path:
        return DatasetFolder(self.out_dir).manifest


def cached_step(task_fn, *args, **kwargs) -> tuple[object, bool]:
    """Call a Prefect task; return its result and whether it came from the cache (so the
    step can say "nothing changed, skipped")."""
    state = task_fn(*args, return_state=True, **kwargs)
    return state.result(), state.name == "Cached"


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


def is_loopback_address(address: str) -> bool:
    """True when a Dask address (``tcp://host:port``) names this machine's loopback."""
    host = urlsplit(address if "://" in address else f"tcp://{address}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_loopback_url(url: str) -> bool:
    """True for an ``http://127.0.0.1:…`` (or localhost) API: only this machine reaches it."""
    return is_loopback_address(f"tcp://{urlsplit(url).hostname or ''}")


@contextlib.contextmanager
def prefect_api_for_workers(kind: str, address: str | None = None) -> Iterator[str | None]:
    """Give Dask workers the Prefect API this flow reports to.

    The CLI sets ``PREFECT_API_URL`` to the workspace's Prefect server (127.0.0.1, with its
    login in ``PREFECT_API_AUTH_STRING``), which workers on this machine reach; a scheduler on
    another address with a loopback API is refused in one line. Called from Python without
    ``PREFECT_API_URL``, the flow would start a temporary API server in a subprocess, but its
    address never reaches the workers: each worker would start a temporary server of its own
    (seconds per worker, its task runs invisible, several servers writing one SQLite file when
    the workspace is shared). So for Dask the temporary server is started here and its URL put
    in the settings that prefect-dask ships to the workers with every task. It listens on
    127.0.0.1, so a scheduler on another address, whose workers could not reach it, needs
    ``PREFECT_API_URL`` set to a Prefect server they can reach: refused here in one line
    rather than failing in every task.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    current = PREFECT_API_URL.value()
    remote = bool(address) and not is_loopback_address(address)
    if kind == "dask" and remote and current and _is_loopback_url(current):
        raise MusicflowError(
            f"the Dask workers of {address} cannot reach this machine's Prefect API "
            f"({current}): set PREFECT_API_URL to a Prefect server they can reach"
        )
    if kind != "dask" or current:
        yield current
        return
    if remote:
        raise MusicflowError(
            f"the Dask workers of {address} cannot reach this machine's temporary Prefect API: "
            "set PREFECT_API_URL to a Prefect server they can reach"
        )
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the same instance Prefect's own client would start
    server.start()
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        yield server.api_url


def _audit(
    source: Path,
    dataset: str,
    out_dir: Path,
    cache_dir: Path,
    pitch_low: int,
    max_bytes: int,
    workers: int,
    tracks: str = MERGED,
) -> tuple[AuditResult, object]:
    progress.stage(f"audit {dataset}", str(source))  # before its steps, ingest included
    with progress.timed("ingest") as step:
        files = ingest(source, max_bytes)
        step.detail = f"{len(files)} MIDI files found and hashed"
    if files.empty:
        raise DatasetError(f"no .mid or .midi files under {source}")
    with progress.timed("parse") as step:
        parsed = parse_files(
            files,
            cache_dir=cache_dir,
            pitch_low=pitch_low,
            max_bytes=max_bytes,
            workers=workers,
            policy=tracks,
        )
        step.skipped = not parsed.n_parsed
        step.detail = f"{parsed.n_parsed} files read, {parsed.n_cached} from the cache"
    judged = parsed.records[parsed.records.duplicate_of.isna()].reset_index(drop=True)
    folder = DatasetFolder(out_dir)
    # --tracks voices: the dataset's voice count is its files' most common one
    voices = dataset_voices(judged.n_voices.tolist()) if tracks == VOICES else 0
    with progress.timed("validate") as step:
        docs_dir = folder.data_docs
        report, step.skipped = cached_step(
            validate_step(docs_dir),
            judged,
            pitch_low=pitch_low,
            max_bytes=max_bytes,
            dataset=dataset,
            docs_dir=docs_dir,
            voices=voices,
        )
        step.detail = f"{len(judged)} files judged by the Great Expectations suite"
        if tracks == VOICES:
            step.detail += f" ({voices} voices a file)"
    with progress.timed("manifest") as step:
        manifest = build_manifest(parsed.records, report.outcomes)
        page = write_audit_page(
            manifest, report.expectation_summary, dataset, folder.audit_page, report.docs_index
        )
        step.detail = f"{len(manifest)} rows, audit page written"
    result = AuditResult(
        dataset=dataset,
        out_dir=out_dir,
        summary=summarize(manifest),
        docs_index=report.docs_index,
        n_parsed=parsed.n_parsed,
        n_cached=parsed.n_cached,
        audit_page=page,
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
    tracks: str = MERGED,
) -> AuditResult:
    """Ingest and validate a MIDI folder; write the manifest and Data Docs."""
    result, manifest = _audit(
        Path(source), dataset, Path(out_dir), Path(cache_dir), pitch_low, max_bytes, workers, tracks
    )
    write_manifest(manifest, result.manifest)
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
    tracks: str = MERGED,
) -> AuditResult:
    """Audit, then write the accepted files' windows as Parquet shards with a dataset digest;
    ``tracks`` is the track policy (docs/encoding.md, "Tracks")."""
    result, manifest = _audit(
        Path(source), dataset, Path(out_dir), Path(cache_dir), pitch_low, max_bytes, workers, tracks
    )
    if result.summary["status"].get("accepted", 0) == 0:
        write_manifest(manifest, result.manifest)
        raise DatasetError(f"no accepted MIDI file under {source}; see {result.manifest}")
    with progress.timed("shards") as step:
        result.dataset_info = info = write_shards(
            manifest,
            name=dataset,
            out_dir=Path(out_dir),
            cache_dir=Path(cache_dir),
            pitch_low=pitch_low,
            policy=tracks,
        )
        step.skipped = not info.written
        step.detail = (
            f"{info.n_windows} windows from {info.n_files} files in {len(info.shards)} shards, "
            f"digest {info.digest[:12]}"
        )
    return result
