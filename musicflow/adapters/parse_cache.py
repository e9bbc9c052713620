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
from musicflow.core import roll, scan


def cache_root(cache_dir: Path, pitch_low: int) -> Path:
    """One folder per encoding: changing pitch_low or the encoder never reuses stale entries."""
    return Path(cache_dir) / f"{roll.ENCODING_NAME}-v{roll.ENCODER_VERSION}-p{pitch_low}"


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


def load_record(path: Path) -> dict | None:
    """The cached metadata record, or None when absent, unreadable or of other fields than
    ``scan.RECORD_KEYS`` (then it is re-parsed)."""
    try:
        with np.load(path, allow_pickle=False) as entry:
            record = json.loads(str(entry["record"]))
    except (OSError, ValueError, KeyError):
        return None
    if not isinstance(record, dict) or tuple(record) != scan.RECORD_KEYS:
        return None
    return record


def load_windows(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Packed windows (n, 1152) and their segment numbers from a cache entry."""
    with np.load(path, allow_pickle=False) as entry:
        return entry["packed"], entry["segments"]
