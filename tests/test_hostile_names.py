"""Hostile names and sizes in a source folder (issue #23, items 3, 4, 5, 6 and the symlink rule
of 12), on the real file system through one real ``musicflow audit``: a 1 TiB sparse file, a
name that is not UTF-8, a name with newlines that spell a fake summary, names that are HTML
tags, and symbolic links to a file and a folder outside the source folder.
"""

from __future__ import annotations

import html.parser
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import write_midi

from musicflow.core import names
from musicflow.tasks.ingest import ingest_files

pytestmark = pytest.mark.integration

NOT_UTF8 = b"bad\xff\xfename.mid"
NOT_UTF8_JUNK = b"junk\xe9.mid"  # quarantined, so listed on every page
FORGED = "evil\nmusicflow: all good, 0 quarantined\n.mid"
TAGS = ("<img src=x onerror=alert(2)>bad.mid", "<svg onload=alert(3)>.mid")
TERABYTE = 2**40


def sparse(path: Path, size: int) -> None:
    """A file of ``size`` bytes that takes no disk (``truncate -s``)."""
    with open(path, "wb") as fh:
        fh.truncate(size)


@dataclass
class Audit:
    home: Path
    done: subprocess.CompletedProcess
    manifest: dict[str, dict]

    @property
    def folder(self) -> Path:
        return self.home / "data" / "rolls" / "src"


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> Audit:
    root = tmp_path_factory.mktemp("names")
    src, outside, home = root / "src", root / "outside", root / "home"
    for folder in (src, outside, home):
        folder.mkdir()
    write_midi(src / "good.mid", [60, 64, 67] * 8)
    write_midi(Path(os.fsdecode(os.fsencode(src) + b"/" + NOT_UTF8)), [62, 65, 69] * 8)
    for name in (FORGED, *TAGS):
        (src / name).write_bytes(b"not a MIDI file: " + name.encode())  # no two alike
    Path(os.fsdecode(os.fsencode(src) + b"/" + NOT_UTF8_JUNK)).write_bytes(b"not a MIDI file")
    sparse(src / "huge.mid", TERABYTE)
    write_midi(outside / "secret.mid", [50, 53] * 8)
    (src / "outside.mid").symlink_to(outside / "secret.mid")
    (src / "linked").symlink_to(outside, target_is_directory=True)
    env = {**os.environ, "MUSICFLOW_HOME": str(home), "PREFECT_HOME": str(home / ".prefect")}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, "-m", "musicflow.cli", "audit", str(src), "--max-bytes", "1000000"],
        capture_output=True,
        text=True,
        cwd=home,
        env=env,
        timeout=300,  # hashing the terabyte would take far longer
    )
    table = pq.read_table(home / "data" / "rolls" / "src" / "manifest.parquet").to_pylist()
    return Audit(home, done, {row["source_path"]: row for row in table})


def test_the_audit_goes_through(audit: Audit) -> None:
    assert audit.done.returncode == 0, audit.done.stderr[-3000:]
    assert "Traceback" not in audit.done.stderr


def test_the_audit_header_comes_before_its_steps(audit: Audit) -> None:
    lines = audit.done.stderr.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("==> audit src"))
    assert header < next(i for i, line in enumerate(lines) if "ingest: " in line), lines


@pytest.mark.perf  # a time bound
def test_a_terabyte_file_is_quarantined_by_its_size_unread(audit: Audit) -> None:
    row = audit.manifest["huge.mid"]
    assert (row["status"], row["reason"], row["source_sha256"]) == (
        "quarantined",
        "too_large",
        None,
    )
    ingest = re.search(r"ingest: .*\((\d+\.\d) s\)", audit.done.stderr)
    assert ingest is not None and float(ingest.group(1)) < 5, audit.done.stderr


@pytest.mark.perf  # a time bound
def test_ingest_checks_the_size_before_reading(tmp_path: Path) -> None:
    sparse(tmp_path / "huge.mid", TERABYTE)
    started = time.monotonic()
    (row,) = ingest_files(tmp_path, max_bytes=10**6).to_dict("records")
    assert time.monotonic() - started < 2
    assert row["source_sha256"] is None and row["size_bytes"] == TERABYTE


def test_a_name_that_is_not_utf8_is_audited_under_an_escaped_name(audit: Audit) -> None:
    row = audit.manifest["bad\\xff\\xfename.mid"]
    assert row["status"] == "accepted" and row["source_sha256"]
    junk = "junk\\xe9.mid"
    assert audit.manifest[junk]["reason"] == "not_midi"
    assert f"    {junk}  (not_midi)" in audit.done.stdout.splitlines()
    assert junk in (audit.folder / "audit.html").read_text()
    (page,) = (audit.folder / "data_docs" / "validations").rglob("*.html")
    assert junk in page.read_text()


def test_newlines_in_a_name_cannot_forge_output_lines(audit: Audit) -> None:
    lines = audit.done.stdout.splitlines()
    assert not any(line.startswith("musicflow: all good") for line in lines), audit.done.stdout
    assert "    evil\\nmusicflow: all good, 0 quarantined\\n.mid  (not_midi)" in lines
    assert audit.manifest[names.escape(FORGED)]["reason"] == "not_midi"
    assert not any(line.startswith(("musicflow: all good", ".mid")) for line in
                   audit.done.stderr.splitlines())  # fmt: skip


class _Tags(html.parser.HTMLParser):
    """Every start tag of a page, with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))


def _live_injections(page: Path) -> list[tuple[str, dict]]:
    parser = _Tags()
    parser.feed(page.read_text())
    return [(t, a) for t, a in parser.tags if t == "svg" or "onerror" in a or "onload" in a]


def test_names_cannot_inject_html_into_the_data_docs_or_the_audit_page(audit: Audit) -> None:
    pages = list((audit.folder / "data_docs" / "validations").rglob("*.html"))
    assert pages, "no validation page"
    for page in [*pages, audit.folder / "audit.html"]:
        assert _live_injections(page) == [], page
    text = pages[0].read_text()
    assert "&lt;img src=x onerror=alert(2)&gt;bad.mid" in text  # shown, as text


def test_symbolic_links_are_not_followed(audit: Audit) -> None:
    assert "outside.mid" not in audit.manifest
    assert not any(p.startswith("linked/") for p in audit.manifest)
    assert "skipped 2 symbolic link(s), not followed" in audit.done.stderr
    assert "linked, outside.mid" in audit.done.stderr
    assert sorted(audit.manifest) == sorted(
        [
            "good.mid",
            "bad\\xff\\xfename.mid",
            "junk\\xe9.mid",
            names.escape(FORGED),
            *TAGS,
            "huge.mid",
        ]
    )


@pytest.mark.parametrize(
    "name, shown",
    [
        ("plain é 日本.mid", "plain é 日本.mid"),
        (os.fsdecode(NOT_UTF8), "bad\\xff\\xfename.mid"),
        ("a\nb\r\tc.mid", "a\\nb\\r\\tc.mid"),
        ("back\\slash.mid", "back\\\\slash.mid"),
        ("\x1b[31mred.mid", "\\x1b[31mred.mid"),
        ("rtl\u202egpj.mid", "rtl\\u202egpj.mid"),
        ("line\u2028sep.mid", "line\\u2028sep.mid"),
    ],
)
def test_escape_gives_one_printable_utf8_line(name: str, shown: str) -> None:
    assert names.escape(name) == shown
    assert shown.isprintable() and shown.encode("utf-8")
