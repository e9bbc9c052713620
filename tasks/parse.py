"""Parse: read each new MIDI file once into a content-addressed cache.

A cache entry holds what one read of a file gives: its metadata record (for validation) and its
roll-v1 windows (for the shards). Entries are keyed by (sha256 of the bytes, encoding parameters,
encoder version), and an entry whose record lacks a field of ``scan.RECORD_KEYS`` is parsed again
(``musicflow/adapters/parse_cache.load_record``), so a warm run parses nothing and a new or
changed file is the only one parsed.
Parsing fans out in chunks over the flow's task runner (threads, or Dask processes); one Prefect
task per file would cost more in orchestration than the parse itself (~45 ms vs ~2 ms).
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from musicflow.adapters import atomic
from musicflow.adapters.parse_cache import cache_root, entry_path, load_record, store_entry
from musicflow.core import names, tracks
from musicflow.core.errors import DatasetError
from musicflow.core.scan import RECORD_KEYS, scan_file

MAX_CHUNK_FILES = 5000  # ~5 s of parsing per task here: 200 Prefect task runs for 1M files


@dataclass(frozen=True)
class ParseJob:
    path: str
    sha: str
    entry: str


def unreadable_record(detail: str) -> dict:
    """The record of a file that could not be read: validation quarantines it ``unreadable``."""
    record = dict.fromkeys(RECORD_KEYS)
    record.update(error="unreadable", error_detail=detail)
    return record


def parse_chunk_files(
    jobs: list[ParseJob], pitch_low: int, policy: str = tracks.MERGED
) -> list[dict]:
    """Parse and cache each file of one chunk; returns the records in job order. A file that
    cannot be read gets an ``unreadable`` record (not cached: it may be readable later)."""
    records = []
    for job in jobs:
        try:
            with open(job.path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            # On a Dask cluster this runs on a worker, maybe on another machine: say so.
            raise DatasetError(
                f"{names.escape(job.path)} is not readable on {socket.gethostname()}: deleted "
                "during the run, "
                "or a Dask worker without the source folder at the same path"
            ) from None
        except OSError as exc:  # permission denied, an I/O error: quarantined, the run goes on
            records.append(unreadable_record(exc.strerror or str(exc)))
            continue
        scan = scan_file(data, pitch_low=pitch_low, policy=policy)
        store_entry(Path(job.entry), scan)
        records.append(scan.record)
    return records


parse_chunk = task(name="parse-chunk", cache_policy=NONE, persist_result=False)(parse_chunk_files)


@dataclass
class ParseResult:
    records: pd.DataFrame  # one row per ingested file (duplicates and too-large files included)
    n_parsed: int
    n_cached: int


def chunked(items: list, n_chunks: int) -> list[list]:
    n_chunks = max(1, min(n_chunks, len(items)))
    return [items[i::n_chunks] for i in range(n_chunks)]


def parse_files(
    files: pd.DataFrame,
    *,
    cache_dir: Path,
    pitch_low: int,
    max_bytes: int,
    workers: int,
    policy: str = tracks.MERGED,
) -> ParseResult:
    """Metadata records for ingested files, parsing only those missing from the cache.

    Duplicates and files over ``max_bytes`` are never read: their records carry only the ingest
    columns, and validation quarantines the latter as ``too_large``; files ingest could not
    read get an ``unreadable`` record.
    """
    root = cache_root(cache_dir, pitch_low, policy)
    atomic.sweep(root, recursive=True)  # temp files of killed runs
    records: dict[str, dict] = {}
    jobs: list[ParseJob] = []
    for row in files.itertuples(index=False):
        if (
            isinstance(row.duplicate_of, str)
            or row.size_bytes > max_bytes
            or not isinstance(row.source_sha256, str)
            or row.source_sha256 in records
        ):
            continue
        entry = entry_path(root, row.source_sha256)
        record = load_record(entry, policy)
        if record is None:
            jobs.append(ParseJob(path=row.path, sha=row.source_sha256, entry=str(entry)))
            records[row.source_sha256] = {}
        else:
            records[row.source_sha256] = record
    if jobs:
        # Several chunks per worker keep all busy when file sizes are uneven; at most
        # MAX_CHUNK_FILES per chunk bounds what a lost Dask worker costs to redo and what one
        # task returns, and gives a cluster larger than ``workers`` enough tasks to share.
        chunks = chunked(jobs, max(4 * workers, math.ceil(len(jobs) / MAX_CHUNK_FILES)))
        futures = parse_chunk.map(chunks, pitch_low=pitch_low, policy=policy)
        for chunk, result in zip(chunks, futures.result(), strict=True):
            for job, record in zip(chunk, result, strict=True):
                records[job.sha] = record
        # Workers write the windows to the cache and this process reads them for the shards:
        # a worker with its own disk would otherwise surface later as a bare FileNotFoundError.
        missing = sum(
            not os.path.exists(job.entry)
            for job in jobs
            if records[job.sha].get("error") != "unreadable"  # never cached
        )
        if missing:
            raise DatasetError(
                f"{missing} parsed file(s) have no cache entry under {root}: Dask workers must "
                "write to the workspace this process reads (same path, shared filesystem)"
            )
    rows = []
    for row in files.itertuples(index=False):
        base = {
            "source_path": row.source_path,
            "source_sha256": row.source_sha256,
            "size_bytes": row.size_bytes,
            "duplicate_of": row.duplicate_of,
        }
        read_error = getattr(row, "read_error", None)
        if isinstance(read_error, str):
            base.update(unreadable_record(read_error))
        elif not isinstance(row.duplicate_of, str):
            base.update(records.get(row.source_sha256, {}))
        rows.append(base)
    return ParseResult(
        records=pd.DataFrame(rows), n_parsed=len(jobs), n_cached=len(records) - len(jobs)
    )
