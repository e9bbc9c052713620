"""Ingest: find the MIDI files under a source folder and fingerprint their bytes.

Nothing here parses MIDI. Each file is hashed in fixed-size blocks, so a huge file is never
read whole, and a file over the size limit is not read at all (its size is all validation needs
to quarantine it ``too_large``); byte-identical copies are marked ``duplicate`` of the first
path in sorted order. A file that cannot be read (permission denied, an I/O error) is kept with
its ``read_error``, to be quarantined ``unreadable`` (docs/dataset.md), and the audit goes on;
a subfolder that cannot be listed is reported on stderr and skipped. Symbolic links, to files
or folders, are not followed: nothing outside the source folder is read, and each skipped link
is named on stderr. A file's ``source_path`` is its name as :func:`musicflow.core.names.escape`
writes it (any bytes, one line of UTF-8); ``path`` keeps the name the OS needs to open it.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import task

from musicflow.adapters import atomic
from musicflow.adapters.workspace import check_source
from musicflow.core import names

MIDI_SUFFIXES = (".mid", ".midi")
_BLOCK = 1 << 20


@dataclass(frozen=True)
class SourceFile:
    path: Path  # absolute
    source_path: str  # relative to the source folder, '/' separators, names.escape'd
    size_bytes: int


def find_midi_files(source: Path) -> list[SourceFile]:
    """Every ``.mid``/``.midi`` file (any case) below ``source``, sorted by relative path."""
    source = check_source(source)
    found = []
    links: list[str] = []

    def skipped(exc: OSError) -> None:
        _say(f"  skipped unreadable folder {names.escape(str(exc.filename))}: {exc.strerror}")

    for folder, dirs, files in os.walk(source, onerror=skipped):
        dirs.sort()
        for name in dirs:  # os.walk does not enter them; said here so that none goes unseen
            if os.path.islink(os.path.join(folder, name)):
                links.append(names.escape(os.path.relpath(os.path.join(folder, name), source)))
        for name in files:
            path = Path(folder) / name
            if path.suffix.lower() not in MIDI_SUFFIXES:
                continue
            rel = names.escape(path.relative_to(source).as_posix())
            if path.is_symlink():
                links.append(rel)
                continue
            try:
                st = path.stat()
            except OSError:
                continue
            if not path.is_file():
                continue
            found.append(SourceFile(path=path.resolve(), source_path=rel, size_bytes=st.st_size))
    if links:
        links.sort()
        more = f", … ({len(links) - 3} more)" if len(links) > 3 else ""
        _say(
            f"  skipped {len(links)} symbolic link(s), not followed (musicflow reads only the "
            f"files inside the source folder): {', '.join(links[:3])}{more}"
        )
    found.sort(key=lambda f: f.source_path)
    return found


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def ingest_files(source: Path, max_bytes: int | None = None) -> pd.DataFrame:
    """One row per MIDI file: ``source_path``, ``path``, ``size_bytes``, ``source_sha256``,
    ``duplicate_of`` (the first path in sorted order with the same bytes, else None) and
    ``read_error`` (why the file could not be read, else None; then ``source_sha256`` is
    None). A file over ``max_bytes`` is not read: its ``source_sha256`` is None."""
    files = find_midi_files(source)
    first_by_sha: dict[str, str] = {}
    rows = []
    for f in files:
        sha, read_error = None, None
        if max_bytes is None or f.size_bytes <= max_bytes:
            try:
                sha = sha256_file(f.path)
            except OSError as exc:
                read_error = exc.strerror or str(exc)
        duplicate_of = None if sha is None else first_by_sha.setdefault(sha, f.source_path)
        rows.append(
            {
                "source_path": f.source_path,
                "path": str(f.path),
                "size_bytes": f.size_bytes,
                "source_sha256": sha,
                "duplicate_of": None if duplicate_of == f.source_path else duplicate_of,
                "read_error": read_error,
            }
        )
    columns = ["source_path", "path", "size_bytes", "source_sha256", "duplicate_of", "read_error"]
    table = pd.DataFrame({c: [r[c] for r in rows] for c in columns if c != "path"})
    # Python strings, not Arrow's: a name that is not UTF-8 (surrogates) must still open
    table.insert(1, "path", pd.Series([r["path"] for r in rows], dtype=object))
    return table


ingest = task(name="ingest", cache_policy=None, persist_result=False)(ingest_files)


def _export_score(score_path: str, target: str) -> bool:
    """Export one corpus score to MIDI atomically; False if music21 cannot export it."""
    from music21 import corpus

    try:
        atomic.atomic_write(target, lambda tmp: corpus.parse(score_path).write("midi", fp=str(tmp)))
        return True
    except Exception:  # a score music21 cannot export is skipped, not fatal
        return False


def export_default_dataset(dest: Path, progress=None, workers: int = 2) -> Path:
    """The embedded default: music21's bundled Bach works (mostly chorales) exported to MIDI.

    Exported once into ``dest`` and reused; each file is written to a temp name and renamed, so
    an interrupted export resumes where it stopped. No network access: the scores ship inside
    the music21 package.
    """
    from concurrent.futures import ProcessPoolExecutor

    from music21 import corpus

    dest = Path(dest)
    if (dest / ".complete").exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    scores = sorted(
        str(p) for p in corpus.getComposer("bach") if Path(p).suffix in (".mxl", ".xml", ".krn")
    )
    # a few works ship twice (bwv277.krn and bwv277.mxl): one export per file name, the last
    # in sorted order, so two workers never write the same file and the count is the files'
    targets = {str(dest / (Path(p).stem.replace(".", "_") + ".mid")): p for p in scores}
    todo = [(p, t) for t, p in targets.items() if not Path(t).exists()]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for i, _ in enumerate(pool.map(_export_score, *zip(*todo, strict=True)) if todo else []):
            if progress:
                progress(i + 1, len(todo))
    (dest / ".complete").touch()
    return dest
