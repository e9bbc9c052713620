"""Fuzz: a few hundred mutated MIDI files from a fixed seed, in bounded time (issue #12).

Every mutant must be read without a crash, within a per-file time and memory bound, and the
whole folder must go through the real audit (Prefect + Great Expectations) with an outcome for
every file: accepted, or quarantined with a known code. The time bounds are ``perf`` tests.
"""

from __future__ import annotations

import random
import resource
import time
from pathlib import Path

import mido
import pyarrow.parquet as pq
import pytest
from conftest import QUARANTINE_ORDER, write_midi

from musicflow.core.scan import scan_file

N_MUTANTS = 300
SEED = 12


def _bases(folder: Path) -> list[bytes]:
    """A plain file, and one with several tracks, running status, meta, sysex and drums."""
    folder.mkdir()
    write_midi(folder / "plain.mid", [60, 62, 64, 65, 67] * 8)
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    for channel in (0, 1, 9):
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("set_tempo", tempo=500000))
        track.append(mido.Message("sysex", data=[1, 2, 3]))
        for i in range(30):
            track.append(mido.Message("note_on", channel=channel, note=40 + i, velocity=64, time=0))
            track.append(
                mido.Message("note_on", channel=channel, note=40 + i, velocity=0, time=120)
            )
        mid.tracks.append(track)
    mid.save(folder / "rich.mid")
    return [(folder / n).read_bytes() for n in ("plain.mid", "rich.mid")]


def _mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(6)
        pos = rng.randrange(len(b)) if b else 0
        if op == 0 and b:  # flip bytes
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1:  # truncate
            del b[pos:]
        elif op == 2:  # insert garbage
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        elif op == 3 and len(b) > 8:  # a huge or zero length field
            at = rng.choice([4, 18, max(4, pos - 4)])
            b[at : at + 4] = rng.choice([b"\xff\xff\xff\xff", b"\0\0\0\0", b"\x7f\xff\xff\xff"])
        elif op == 4:  # repeat a slice
            end = min(len(b), pos + rng.randint(1, 200))
            b[pos:pos] = b[pos:end] * rng.randint(2, 50)
        else:  # a long run of one event at tick 0
            b[pos:pos] = b"\x00\x90\x3c\x40" * rng.randint(1, 2000)
    return bytes(b)


def _mutants(folder: Path) -> list[bytes]:
    """The ``N_MUTANTS`` mutants of the fixed seed, also written into ``folder``/src."""
    rng = random.Random(SEED)
    bases = _bases(folder / "bases")
    source = folder / "src"
    source.mkdir()
    mutants = [_mutate(rng.choice(bases), rng) for _ in range(N_MUTANTS)]
    for i, data in enumerate(mutants):
        (source / f"m{i:03d}.mid").write_bytes(data)
    return mutants


def test_mutated_files_are_read_without_a_crash_in_bounded_memory(tmp_path: Path) -> None:
    mutants = _mutants(tmp_path)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for data in mutants:
        record = scan_file(data).record  # never raises for bad input
        assert record["error"] in (None, "not_midi", "truncated", "too_large")
    rss_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert rss_growth_mb < 300


@pytest.mark.perf
def test_each_mutated_file_is_read_in_bounded_time(tmp_path: Path) -> None:
    for i, data in enumerate(_mutants(tmp_path)):
        t0 = time.monotonic()
        scan_file(data)
        assert time.monotonic() - t0 < 2.0, f"m{i:03d}.mid took too long"


@pytest.mark.integration
@pytest.mark.perf  # the whole audit within a bound
def test_mutated_files_all_get_an_outcome_in_bounded_time(tmp_path: Path) -> None:
    from musicflow.flows.dataset import audit_flow

    _mutants(tmp_path)
    started = time.monotonic()
    result = audit_flow(
        source=tmp_path / "src",
        dataset="fuzz",
        out_dir=tmp_path / "out",
        cache_dir=tmp_path / "cache",
    )
    manifest = pq.read_table(tmp_path / "out" / "manifest.parquet").to_pandas()
    assert len(manifest) == N_MUTANTS and result.summary["n_files"] == N_MUTANTS
    assert set(manifest.status) <= {"accepted", "quarantined", "duplicate"}
    quarantined = manifest[manifest.status == "quarantined"]
    assert set(quarantined.reason) <= set(QUARANTINE_ORDER)
    assert quarantined.reason.notna().all()
    assert (manifest.status == "accepted").any() and (manifest.status == "quarantined").any()
    assert time.monotonic() - started < 240
