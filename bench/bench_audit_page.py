"""The audit page on a large collection: its size and how fast Chromium shows, sorts and
filters it, measured in one run against the same page for a small collection.

Writes the audit page (``tasks/audit.write_audit_page``) of a synthetic manifest of N files
(default 10,000: accepted, quarantined, duplicate and warned files in realistic proportions)
and of 100 files, opens each in headless Chromium with a probe script appended that times, in
the page itself, the parse-to-load time, a sort by the "notes" column, a sort back, and a
filter by text, and prints the times and the large/small ratios. The page lays out its first
``report.FILES_SHOWN`` rows until "show every file" is clicked, so the large page's load is
mostly parsing its HTML. Usage::

    python bench/bench_audit_page.py [--files 10000] [--chromium chromium]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from musicflow.tasks.audit import write_audit_page

_PROBE = """<script>
window.addEventListener("load", function () {
  var t = {load: performance.now()}, heads = document.getElementById("files").tHead.rows[0].cells;
  var t0 = performance.now(); heads[5].click(); t.sort = performance.now() - t0;
  t0 = performance.now(); heads[5].click(); t.sort_back = performance.now() - t0;
  var q = document.getElementById("f-text"); q.value = "07";
  t0 = performance.now(); q.dispatchEvent(new Event("input")); t.filter = performance.now() - t0;
  t.shown = document.getElementById("f-shown").textContent;
  document.title = "PROBE" + JSON.stringify(t);
});
</script>"""


def synthetic_manifest(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    status = rng.choice(["accepted", "quarantined", "duplicate"], n, p=[0.9, 0.07, 0.03])
    reasons = rng.choice(["not_midi", "no_notes", "too_short", "bad_tempo"], n)
    warned = (status == "accepted") & (rng.random(n) < 0.05)
    paths = [f"composer-{i % 97:02d}/opus-{i:06d}.mid" for i in range(n)]
    return pd.DataFrame(
        {
            "source_path": paths,
            "source_sha256": [f"{i:064x}" for i in range(n)],
            "status": status,
            "reason": [
                r if s == "quarantined" else (paths[0] if s == "duplicate" else None)
                for s, r in zip(status, reasons, strict=True)
            ],
            "warnings": [["drums_ignored"] if w else [] for w in warned],
            "n_tracks": pd.array(rng.integers(1, 17, n), dtype="Int32"),
            "n_notes": pd.array(rng.integers(0, 20000, n), dtype="Int32"),
            "n_segments": pd.array(
                np.where(status == "accepted", rng.integers(1, 60, n), 0), dtype="Int32"
            ),
        }
    )


def measure(n: int, folder: Path, chromium: str) -> dict:
    page = folder / f"audit-{n}.html"
    started = time.perf_counter()
    write_audit_page(synthetic_manifest(n), [], "bench", page)
    written_s = time.perf_counter() - started
    probe = folder / f"probe-{n}.html"
    probe.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    out = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    found = re.search(r"<title>PROBE(\{.*?\})</title>", out)
    if not found:
        raise SystemExit(f"the probe did not report for {n} files")
    return {"files": n, "bytes": page.stat().st_size, "write_s": written_s} | json.loads(
        found.group(1)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--chromium", default="chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small = measure(100, Path(tmp), args.chromium)
        large = measure(args.files, Path(tmp), args.chromium)
    for r in (small, large):
        print(
            f"{r['files']:>6} files: page {r['bytes'] / 1e6:.2f} MB (written in "
            f"{r['write_s']:.2f} s); in Chromium: loaded {r['load']:.0f} ms, sort "
            f"{r['sort']:.0f} ms, sort back {r['sort_back']:.0f} ms, filter "
            f"{r['filter']:.0f} ms ({r['shown']} shown)"
        )
    print(
        f"ratios {large['files']}/{small['files']} files: "
        f"load ×{large['load'] / small['load']:.1f}, "
        f"sort ×{large['sort'] / max(small['sort'], 0.1):.1f}, "
        f"filter ×{large['filter'] / max(small['filter'], 0.1):.1f}"
    )


if __name__ == "__main__":
    main()
