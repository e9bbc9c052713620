"""Retraining when MIDI lands: ``musicflow watch SOURCE --dataset NAME``.

A watchdog observer (inotify on Linux) reports file events under SOURCE. Only events on
``.mid``/``.midi`` files (ingest's ``MIDI_SUFFIXES``) and on folders count; a file that is
merely opened or read (by this watcher's own hashing, or by the pipeline) does not. After an
event the watcher waits until the folder holds still: no event for ``settle_s`` seconds and
every MIDI file's size and mtime the same at both ends of that pause. Then it hashes the MIDI
files the way ingest does (``tasks/ingest.sha256_file``; a file whose size and mtime are
unchanged is not read again) and retrains, with the caller's ``retrain``, only when the SET
OF MIDI CONTENTS differs from the one last trained: a touched but unchanged file, a rename, a
byte-identical copy or a non-MIDI file trains nothing.

A file whose MIDI chunks declare more bytes than it has (a copy that stalled half-way) is left
out of the set until it is whole, with a line saying so; the next run that other files
trigger still audits it (quarantined ``truncated`` if it never completes).

The last trained state (the set of sha256 and the settings: models, epochs, budget …) is kept
in ``data/watch/<dataset>.json`` (``workspace.watch_state``), written after a run that
succeeded. At start the watcher trains when the folder or the settings differ from it, so a
run that a stop interrupted is finished (from the cache) when watch starts again; the first
start on a folder already trained by ``musicflow run`` re-runs the cached DAG once, which
trains nothing. A run that fails is not retried until the MIDI contents change again.

Ctrl-C or SIGTERM (the CLI turns it into ``KeyboardInterrupt``) stops the watcher at once;
during a run it stops the run the way it stops ``musicflow run`` (docs/cli.md).

The Prefect way (``watch --emit``): instead of running the DAG here, each change is sent to the
Prefect server at ``PREFECT_API_URL`` as an event :data:`MIDI_CHANGED` about the resource
``musicflow.dataset.<dataset>`` (:func:`emit_change`); a deployment registered with
``deploy --on-midi-change`` (or served with ``serve --on-midi-change``) carries the automation
:func:`midi_trigger`, which runs it, on the pool's workers, for each such event.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from musicflow.adapters import atomic, workspace
from musicflow.core.defaults import DEFAULT_SETTLE_S
from musicflow.tasks.ingest import MIDI_SUFFIXES, find_midi_files, sha256_file
from musicflow.terminal import progress

#: The Prefect event a change of MIDI contents is sent as, and its resource's id prefix.
MIDI_CHANGED = "musicflow.midi.changed"
DATASET_RESOURCE = "musicflow.dataset."

_IGNORED_EVENTS = frozenset({"opened", "closed_no_write"})  # reads, not writes


def _say(text: str) -> None:
    print(f"watch: {text}", file=sys.stderr, flush=True)


def is_relevant(event_type: str, is_directory: bool, paths: Iterable[str]) -> bool:
    """Whether a file event may change the set of MIDI contents: a write, move or deletion
    of a MIDI file or a folder (not a folder's own "modified", which any file causes)."""
    if event_type in _IGNORED_EVENTS:
        return False
    if event_type == "events_lost":  # the kernel's queue overflowed: look again
        return True
    if is_directory:
        return event_type != "modified"
    return any(Path(p).suffix.lower() in MIDI_SUFFIXES for p in paths if p)


def smf_declared_size(head: Callable[[int, int], bytes], size: int) -> int | None:
    """The size a Standard MIDI File's chunks declare (header + every chunk, as many track
    chunks as the header says), read through ``head(offset, n)``; None when the file does not
    start like an SMF (then nothing can be said, and it counts as whole)."""
    header = head(0, 14)
    if len(header) < 14 or header[:4] != b"MThd":
        return None
    length = int.from_bytes(header[4:8], "big")
    n_tracks = int.from_bytes(header[10:12], "big")
    offset = 8 + length
    for _ in range(n_tracks):
        if offset + 8 > size:
            return offset + 8  # at least a chunk header more
        chunk = head(offset, 8)
        offset += 8 + int.from_bytes(chunk[4:8], "big")
    return offset


def _missing_bytes(path: Path, size: int) -> int:
    """How many bytes ``path`` lacks of what its MIDI chunks declare (0 when whole)."""

    with open(path, "rb") as fh:

        def head(offset: int, n: int) -> bytes:
            fh.seek(offset)
            return fh.read(n)

        declared = smf_declared_size(head, size)
    return 0 if declared is None or declared <= size else declared - size


def stat_snapshot(source: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime in ns) of every MIDI file below ``source``, by relative path."""
    snapshot = {}
    for f in find_midi_files(source):
        try:
            st = f.path.stat()
        except OSError:  # removed meanwhile
            continue
        snapshot[f.source_path] = (st.st_size, st.st_mtime_ns)
    return snapshot


@dataclass
class Contents:
    """The MIDI contents of the folder: the sha256 set, and what was left out and why."""

    hashes: frozenset[str]
    partial: dict[str, str] = field(default_factory=dict)  # relative path → why


class Hasher:
    """sha256 of files by (path, size, mtime): a file that did not change is not re-read."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int, int], str] = {}

    def contents(self, source: Path, snapshot: Mapping[str, tuple[int, int]]) -> Contents:
        hashes, partial, known = set(), {}, {}
        for rel, (size, mtime) in snapshot.items():
            path = source / rel
            key = (rel, size, mtime)
            try:
                sha = self._known.get(key)
                if sha is None:
                    missing = _missing_bytes(path, size)
                    if missing:
                        partial[rel] = f"{size:,} bytes, its MIDI chunks declare {missing:,} more"
                        continue
                    sha = sha256_file(path)
            except OSError as exc:
                partial[rel] = f"unreadable ({exc.strerror or exc})"
                continue
            known[key] = sha
            hashes.add(sha)
        self._known = known
        return Contents(frozenset(hashes), partial)


def describe(before: frozenset[str], after: frozenset[str]) -> str:
    """``3 new, 1 gone`` between two sets of contents."""
    added, removed = len(after - before), len(before - after)
    parts = [f"{added} new" if added else "", f"{removed} gone" if removed else ""]
    return ", ".join(p for p in parts if p) or "no change"


def load_state(dataset: str) -> dict | None:
    """The last trained state of ``dataset``'s watcher, or None (never trained, unreadable)."""
    try:
        state = json.loads(workspace.watch_state(dataset).read_text())
        return state if isinstance(state, dict) else None
    except (OSError, ValueError):
        return None


def save_state(dataset: str, source: Path, hashes: frozenset[str], settings: Mapping) -> None:
    state = {
        "source": str(source),
        "settings": dict(settings),
        "contents": sorted(hashes),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    atomic.write_text(workspace.watch_state(dataset), json.dumps(state, indent=1) + "\n")


class _Events:
    """What the observer thread tells the main thread: a relevant event happened."""

    def __init__(self) -> None:
        self.flag = threading.Event()

    def dispatch(self, event) -> None:  # watchdog's handler interface
        paths = (event.src_path, getattr(event, "dest_path", ""))
        paths = tuple(os.fsdecode(p) for p in paths)
        if is_relevant(event.event_type, event.is_directory, paths):
            self.flag.set()


def emit_change(dataset: str, source: Path, n_files: int, change: str) -> None:
    """Send :data:`MIDI_CHANGED` for ``dataset`` to the Prefect server at PREFECT_API_URL,
    waiting until it is sent (Prefect's own ``emit_event`` queues it in a background thread,
    which a stopping watcher could lose)."""
    import asyncio

    from prefect.events import Event
    from prefect.events.clients import get_events_client

    event = Event(
        event=MIDI_CHANGED,
        resource={
            "prefect.resource.id": DATASET_RESOURCE + dataset,
            "prefect.resource.name": dataset,
            "musicflow.source": str(source),
        },
        payload={"files": n_files, "change": change},
    )

    async def send() -> None:
        async with get_events_client() as client:
            await client.emit(event)

    asyncio.run(send())


def midi_trigger(dataset: str):
    """The automation that runs a deployment on each :data:`MIDI_CHANGED` of ``dataset``
    (with the deployment's own parameters)."""
    from prefect.events import DeploymentEventTrigger

    return DeploymentEventTrigger(
        name=f"retrain-{dataset} when MIDI lands",
        description=f"musicflow watch --emit reported new MIDI contents for {dataset}",
        expect={MIDI_CHANGED},
        match={"prefect.resource.id": DATASET_RESOURCE + dataset},
        posture="Reactive",
        threshold=1,
    )


def _settle(source: Path, events: _Events, settle_s: float) -> dict[str, tuple[int, int]]:
    """Wait until no relevant event came for ``settle_s`` and no MIDI file's size or mtime
    changed over that pause (a copy without events, e.g. on a network file system); the
    stable snapshot."""
    announced: set[str] = set()
    busy = False
    while True:
        events.flag.clear()
        before = stat_snapshot(source)
        if events.flag.wait(settle_s):
            if not busy:
                _say(
                    f"MIDI files are changing; reading the folder once they settle ({settle_s:g} s)"
                )
                busy = True
            continue
        after = stat_snapshot(source)
        if after == before:
            return after
        growing = sorted(rel for rel in after if after[rel] != before.get(rel))
        new = [rel for rel in growing if rel not in announced]
        if new:
            _say(f"waiting for {', '.join(new[:3])}{' …' if len(new) > 3 else ''} to stop growing")
            announced.update(new)


def watch_folder(
    source: Path,
    dataset: str,
    *,
    settings: Mapping[str, object],
    retrain: Callable[[int, str], None],
    settle_s: float = DEFAULT_SETTLE_S,
    verbs: tuple[str, str] = ("retraining", "retrained"),
) -> int:
    """Watch ``source`` and call ``retrain(n_files, change)`` whenever its MIDI contents (or
    ``settings``) differ from the last trained state. Runs until KeyboardInterrupt (Ctrl-C,
    SIGTERM). ``verbs``: what the status lines call a call of ``retrain`` and its end."""
    from watchdog.observers import Observer

    source = Path(source).resolve()
    settings = json.loads(json.dumps(dict(settings), default=str))  # as saved in the state
    state = load_state(dataset)
    trained: frozenset[str] | None = None
    if state and state.get("settings") == settings:
        trained = frozenset(state.get("contents", []))
    failed: frozenset[str] | None = None  # contents whose run failed: not retried as they are
    events = _Events()
    hasher = Hasher()
    observer = Observer()
    observer.schedule(events, str(source), recursive=True)
    observer.start()
    models = ""
    if "models" in settings:  # not with --emit: the deployment says what it trains
        models = ", models " + (", ".join(settings["models"]) or "none (audit + encode only)")
    _say(f"watching {source} for MIDI files (dataset '{dataset}'{models}); Ctrl-C stops")
    try:
        first = True
        while True:
            while not first and not events.flag.wait(1.0):
                pass  # a bounded wait: signals are handled within a second
            snapshot = _settle(source, events, settle_s)
            contents = hasher.contents(source, snapshot)
            for rel, why in sorted(contents.partial.items()):
                _say(f"left out for now: {rel} ({why}; still being written?)")
            current = contents.hashes
            if not current:
                _say("no MIDI file in the folder; waiting")
            elif current == trained:
                what = "up to date with the last trained state" if first else "no new MIDI content"
                _say(f"{what} ({len(current)} files): nothing to train")
            elif current == failed:
                _say("the MIDI contents are those of the run that failed: waiting for a change")
            else:
                change = (
                    describe(trained, current)
                    if trained is not None
                    else f"{len(current)} files, no trained state with these settings"
                )
                _say(f"MIDI contents changed ({change}): {verbs[0]}")
                started = time.monotonic()
                try:
                    retrain(len(current), change)
                except Exception as exc:  # one line; the watcher goes on
                    if progress.debug_enabled():
                        raise
                    failed = current
                    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    _say(f"{verbs[0]} failed: {first_line[:300]}; waiting for the next change")
                else:
                    save_state(dataset, source, current, settings)
                    trained, failed = current, None
                    _say(f"{verbs[1]} in {time.monotonic() - started:.0f} s; watching")
            first = False
    finally:
        observer.stop()
        observer.join(timeout=5)
