"""The parse cache: what one read of a MIDI file gives, kept by the file's content.

An entry holds a file's metadata record (for validation) and its roll-v1 windows (for the
shards), under ``data/cache/<encoding>-v<encoder version>-p<pitch_low>/<sha256[:2]>/<sha256>.npz``.
Entries are written atomically, so a killed run never leaves a half-written one; an unreadable
entry is parsed again (``tasks/parse.py``), and so is one whose record holds other fields than
``scan.RECORD_KEYS`` (written before a field was added or renamed): the folder is keyed on the
encoding, the record on its own fields, so a new validation field never reads stale records.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from musicflow.adapters import atomic
from musicflow.core import roll, scan, tracks


def cache_root(cache_dir: Path, pitch_low: int, policy: str = tracks.MERGED) -> Path:
    """One folder per encoding: changing pitch_low, the track policy or the encoder never
    reuses stale entries (``merged`` keeps the folder name it always had)."""
    suffix = "" if tracks.check_policy(policy) == tracks.MERGED else f"-{policy}"
    return Path(cache_dir) / f"{roll.ENCODING_NAME}-v{roll.ENCODER_VERSION}-p{pitch_low}{suffix}"


def entry_path(root: Path, sha: str) -> Path:
    return root / sha[:2] / f"{sha}.npz"


def store_entry(path: Path, parsed: scan.FileScan) -> None:
    """Atomic write (temp file + rename): a killed run never leaves a half-written entry."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append .npz to a name
            np.savez(
                fh,
                record=np.array(json.dumps(parsed.record)),
                packed=parsed.packed,
                segments=parsed.segments.astype(np.int32),
            )

    atomic.atomic_write(path, write)


def record_keys(policy: str = tracks.MERGED) -> tuple[str, ...]:
    """The fields a record of ``policy`` holds: ``scan.RECORD_KEYS``, and the track fields
    for ``voices`` and ``instruments``."""
    merged = tracks.check_policy(policy) == tracks.MERGED
    return scan.RECORD_KEYS if merged else scan.RECORD_KEYS + scan.TRACK_RECORD_KEYS


def load_record(path: Path, policy: str = tracks.MERGED) -> dict | None:
    """The cached metadata record, or None when absent, unreadable or of other fields than
    :func:`record_keys` gives for ``policy`` (then it is re-parsed)."""
    try:
        with np.load(path, allow_pickle=False) as entry:
            record = json.loads(str(entry["record"]))
    except (OSError, ValueError, KeyError):
        return None
    if not isinstance(record, dict) or tuple(record) != record_keys(policy):
        return None
    return record


def load_windows(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Packed windows (n, 1152 per track) and their segment numbers from a cache entry."""
    with np.load(path, allow_pickle=False) as entry:
        return entry["packed"], entry["segments"]
