"""The audit and encode flows end to end, with the real Prefect (local API) and GX.

What is checked: every hostile file gets exactly the outcome of MANIFEST.csv; no corrupted file
crashes a run; shards follow docs/dataset.md; a warm run parses nothing and a new file is the only
one parsed; deleted files leave the shards; the Dask task runner writes identical windows.
"""

from __future__ import annotations

import csv
import functools
import html
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from musicflow.core import roll
from musicflow.core.midi import scan_midi
from musicflow.flows.dataset import audit_flow, encode_flow, make_task_runner

pytestmark = pytest.mark.integration


def _audit(source: Path, home: Path, **kw):
    out = home / "out"
    return audit_flow(source=source, dataset="t", out_dir=out, cache_dir=home / "cache", **kw), out


def _encode(source: Path, home: Path, runner: str = "threads", **kw):
    out = home / "out"
    flow = encode_flow.with_options(task_runner=make_task_runner(runner, workers=2))
    return flow(source=source, dataset="t", out_dir=out, cache_dir=home / "cache", **kw), out


def _piano_subset(piano_dir: Path, dest: Path, n: int) -> list[Path]:
    files = sorted(piano_dir.rglob("*.mid"))[:n]
    copied = []
    for f in files:
        target = dest / f.relative_to(piano_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, target)
        copied.append(target)
    return copied


def test_hostile_files_get_exactly_their_manifest_outcome(
    hostile_dir: Path, tmp_path: Path
) -> None:
    result, out = _audit(hostile_dir, tmp_path)
    manifest = pq.read_table(out / "manifest.parquet").to_pandas().set_index("source_path")
    with open(hostile_dir / "MANIFEST.csv", newline="") as fh:
        expected = list(csv.DictReader(fh))
    assert len(manifest) == len(expected)
    status_of = {"accept": "accepted", "quarantine": "quarantined", "duplicate": "duplicate"}
    for row in expected:
        got = manifest.loc[row["file"]]
        assert got.status == status_of[row["expected"]], row["file"]
        if row["expected"] == "quarantine":
            assert got.reason == row["reason"], row["file"]
            assert list(got.warnings) == [], row["file"]
        elif row["expected"] == "accept":
            assert list(got.warnings) == ([row["reason"]] if row["reason"] else []), row["file"]
            assert pd.isna(got.reason), row["file"]
        else:
            assert got.reason == "ok_type0_basic.mid"
    assert result.docs_index is not None and result.docs_index.is_file()
    # the audit page works offline: nothing loaded from the network, every file listed with
    # its outcome (quarantined ones with their reason), warnings shown as warnings
    page = result.audit_page.read_text()
    assert result.audit_page == out / "audit.html"
    assert "<script src" not in page and "<link" not in page and 'src="http' not in page
    assert f'<h2 id="every-file">Every file ({len(expected)})</h2>' in page
    for row in expected:
        outcome = status_of[row["expected"]]
        cells = f"<td>{html.escape(row['file'])}</td><td>{outcome}</td>"
        if outcome == "quarantined":
            cells += f"<td>{row['reason']}</td>"
        assert cells in page, row["file"]
    assert "file(s), accepted</td>" in page and "Failed" not in page


def test_no_corrupted_file_crashes_the_audit(piano_dir: Path, tmp_path: Path) -> None:
    """300 byte-flipped, truncated or spliced copies of real files: each ends with an outcome."""
    rng = random.Random(7)
    sources = sorted(piano_dir.rglob("*.mid"))[:30]
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for i in range(300):
        data = bytearray(rng.choice(sources).read_bytes())
        kind = i % 3
        if kind == 0:
            for _ in range(rng.randint(1, 20)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1:
            data = data[: rng.randrange(len(data))]
        else:
            at = rng.randrange(len(data))
            data[at:at] = rng.randbytes(rng.randint(1, 64))
        (corrupt / f"c{i:03d}.mid").write_bytes(bytes(data))
    _, out = _audit(corrupt, tmp_path)
    manifest = pq.read_table(out / "manifest.parquet").to_pandas()
    assert len(manifest) == 300
    assert set(manifest.status) <= {"accepted", "quarantined", "duplicate"}
    assert manifest[manifest.status == "quarantined"].reason.notna().all()
    assert (manifest.status == "quarantined").any() and (manifest.status == "accepted").any()


def test_encode_writes_contract_shards_and_caches_by_content(
    piano_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    files = _piano_subset(piano_dir, source, 6)
    result, out = _encode(source, tmp_path / "home")
    assert result.n_parsed == 6 and result.n_cached == 0
    info = json.loads((out / "dataset.json").read_text())
    shards = sorted(out.glob("part-*.parquet"))
    assert [s.name for s in shards] == info["shards"]
    table = pq.read_table(shards[0])
    assert table.schema.field("roll").type.byte_width == 1152
    assert str(table.schema.field("segment").type) == "int32"
    encoding = json.loads(table.schema.metadata[b"musicflow.encoding"])
    assert encoding == {
        "name": "roll-v1",
        "steps_per_beat": 12,
        "pitch_low": 21,
        "rows": 96,
        "cols": 96,
    }

    # The shards hold exactly what the pure encoder gives for each file.
    rows = pq.read_table(shards).to_pandas()
    first = files[0]
    mine = rows[rows.source_path == first.relative_to(source).as_posix()]
    scan = scan_midi(first.read_bytes())
    song, _ = roll.song_matrix(scan.notes, scan.ticks_per_beat)
    segments, windows = roll.song_windows(song)
    assert list(mine.segment) == list(segments)
    assert [bytes(r) for r in mine.roll] == [bytes(w) for w in roll.pack_windows(windows)]
    assert (mine.n_active == windows.reshape(len(windows), -1).sum(1)).all()

    # Warm: nothing parsed, nothing written, same digest.
    warm, _ = _encode(source, tmp_path / "home")
    assert warm.n_parsed == 0 and warm.n_cached == 6
    assert not warm.dataset_info.written
    assert warm.dataset_info.digest == info["digest"]

    # A new file is the only one parsed; the digest changes.
    extra = sorted(piano_dir.rglob("*.mid"))[-1]
    shutil.copy(extra, source / "new.mid")
    grown, _ = _encode(source, tmp_path / "home")
    assert grown.n_parsed == 1 and grown.n_cached == 6
    assert grown.dataset_info.digest != info["digest"]

    # A deleted file's windows leave the shards.
    files[1].unlink()
    shrunk, _ = _encode(source, tmp_path / "home")
    assert shrunk.n_parsed == 0
    paths = set(pq.read_table(sorted(out.glob("part-*.parquet"))).column("source_path").to_pylist())
    assert files[1].relative_to(source).as_posix() not in paths
    assert "new.mid" in paths


def test_dask_runner_writes_identical_windows(piano_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"
    _piano_subset(piano_dir, source, 8)
    threads, _ = _encode(source, tmp_path / "a")
    dask, _ = _encode(source, tmp_path / "b", runner="dask")
    assert dask.n_parsed == 8
    assert dask.dataset_info.digest == threads.dataset_info.digest
    a = pq.read_table(sorted((tmp_path / "a" / "out").glob("part-*.parquet")))
    b = pq.read_table(sorted((tmp_path / "b" / "out").glob("part-*.parquet")))
    assert a.equals(b)


def test_killed_encode_resumes_to_the_same_output(piano_dir: Path, tmp_path: Path) -> None:
    """Kill ``musicflow encode`` midway, run it again: same shards as an uninterrupted run."""
    source = tmp_path / "src"
    _piano_subset(piano_dir, source, 40)
    reference, _ = _encode(source, tmp_path / "ref")
    home = tmp_path / "killed"
    home.mkdir()
    cmd = [sys.executable, "-m", "musicflow.cli", "encode", str(source), "--dataset", "t"]
    env = {**__import__("os").environ, "MUSICFLOW_HOME": str(home)}
    env.pop("PREFECT_HOME")
    proc = subprocess.Popen(
        cmd, cwd=home, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    cache = home / "data" / "cache"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if cache.exists() and any(cache.rglob("*.npz")):
            break
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    done = subprocess.run(cmd, cwd=home, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = home / "data" / "rolls" / "t"
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    info = json.loads((out / "dataset.json").read_text())
    assert info["digest"] == reference.dataset_info.digest
    a = pq.read_table(sorted(out.glob("part-*.parquet")))
    b = pq.read_table(sorted((tmp_path / "ref" / "out").glob("part-*.parquet")))
    assert np.array_equal(
        a.column("roll").to_numpy(zero_copy_only=False),
        b.column("roll").to_numpy(zero_copy_only=False),
    )


def test_the_second_encode_skips_validation_and_missing_data_docs_come_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first run stores the validation result under the key the next run computes (it
    used to store none, so the second run ran GX again); deleted Data Docs are rebuilt."""
    from conftest import write_midi

    from musicflow.tasks import validate as stage

    (tmp_path / "src").mkdir()
    for i in range(3):
        write_midi(tmp_path / "src" / f"{i}.mid", [60 + i, 64, 67] * 8)
    calls: list[str] = []

    @functools.wraps(stage.validate_records)  # the same parameters for the cache key
    def counted(*args, **kwargs):
        calls.append("gx")
        return stage.validate_records(*args, **kwargs)

    for task in (stage.validate, stage._validate_afresh):
        monkeypatch.setattr(task, "fn", counted)
    args = dict(
        source=tmp_path / "src", dataset="v", out_dir=tmp_path / "out", cache_dir=tmp_path / "c"
    )
    encode_flow(**args)
    encode_flow(**args)
    assert calls == ["gx"]  # the second run found the first run's result
    shutil.rmtree(tmp_path / "out" / "data_docs")
    encode_flow(**args)
    assert calls == ["gx", "gx"] and (tmp_path / "out" / "data_docs" / "index.html").is_file()
