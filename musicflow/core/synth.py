"""Deterministic synthetic MIDI files, for benchmarks and tests that need many valid files.

``synth_midi(seed)`` writes the SMF bytes directly (no mido: ~1.5 ms for a file of ~700
notes, so 50,000 files take about a minute): a type-1 file with a tempo/meter track and a few
instrument tracks of a few hundred notes each, pitches on a random walk inside the piano range,
onsets and lengths on a sixteenth-note grid, some notes sharing an onset (chords). The same
seed always gives the same bytes, on any machine and Python version (``random.Random`` with an
int seed).
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

TICKS_PER_BEAT = 480
_SIXTEENTH = TICKS_PER_BEAT // 4


def vlq(value: int) -> bytes:
    """A MIDI variable-length quantity (7 bits per byte, high bit = more follows)."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _track(events: list[tuple[int, bytes]]) -> bytes:
    """An MTrk chunk from (absolute tick, event bytes), stably sorted by tick."""
    body = bytearray()
    now = 0
    for tick, data in sorted(events, key=lambda e: e[0]):
        body += vlq(tick - now) + data
        now = tick
    body += b"\x00\xff\x2f\x00"  # end of track
    return b"MTrk" + struct.pack(">I", len(body)) + bytes(body)


def synth_midi(
    seed: int, *, n_tracks: int = 3, notes_per_track: tuple[int, int] = (150, 300)
) -> bytes:
    """One valid type-1 SMF with ``n_tracks`` note tracks (channels 0…, never drums)."""
    rng = random.Random(seed)
    tempo = 60_000_000 // rng.randint(70, 160)
    meta = [
        (0, b"\xff\x51\x03" + tempo.to_bytes(3, "big")),
        (0, b"\xff\x58\x04\x04\x02\x18\x08"),  # 4/4
    ]
    tracks = [_track(meta)]
    for t in range(n_tracks):
        channel = t % 9  # channels 0–8: channel 10 (index 9) holds drums, which are ignored
        pitch = rng.randint(36, 84)
        tick = 0
        events: list[tuple[int, bytes]] = [(0, bytes([0xC0 | channel, rng.randint(0, 127)]))]
        for _ in range(rng.randint(*notes_per_track)):
            pitch = min(108, max(21, pitch + rng.randint(-5, 5)))
            length = _SIXTEENTH * rng.choice((1, 2, 2, 4, 4, 8))
            velocity = rng.randint(40, 110)
            events.append((tick, bytes([0x90 | channel, pitch, velocity])))
            events.append((tick + length, bytes([0x80 | channel, pitch, 0])))
            # Mostly successive notes, sometimes a chord (same onset) or an overlap.
            tick += _SIXTEENTH * rng.choice((0, 1, 2, 2, 4, 4))
        tracks.append(_track(events))
    header = b"MThd" + struct.pack(">IHHH", 6, 1, len(tracks), TICKS_PER_BEAT)
    return header + b"".join(tracks)


def write_corpus(folder: Path, n: int, *, seed: int = 0, per_folder: int = 1000) -> list[Path]:
    """Write ``n`` synthetic files (``folder/dNNN/fNNNNNN.mid``, at most ``per_folder`` a
    folder, as large collections are laid out); file i gets seed ``seed * 1_000_003 + i``.
    Existing files are kept, so a larger corpus extends a smaller one of the same seed."""
    paths = []
    for i in range(n):
        path = Path(folder) / f"d{i // per_folder:03d}" / f"f{i:06d}.mid"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(synth_midi(seed * 1_000_003 + i))
        paths.append(path)
    return paths
