"""musicflow/adapters/data_docs_offline.py: GX's pages pointed at vendored files, warnings as
warnings."""

from __future__ import annotations

import re
from pathlib import Path

from musicflow.adapters import data_docs_offline as offline

_GX_HEAD = """<head>
<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"/>
<link rel="stylesheet" type="text/css" href="https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css">
<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>
<script src="https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js"
 integrity="sha384-x" crossorigin="anonymous"></script>
<link rel="icon" href="static/images/favicon.ico">
</head><body><img
 src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=1" alt="GX">
<a href="https://greatexpectations.io">GX</a></body>"""


def test_cdn_tags_point_at_the_vendored_files() -> None:
    page = offline.offline_html(_GX_HEAD, "../../static")
    assert '<link rel="stylesheet" href="../../static/vendor/bootstrap.min.css">' in page
    assert "../../static/vendor/bootstrap-table-filter-control.min.css" in page
    assert '<script src="../../static/vendor/popper.min.js"></script>' in page
    assert "vega" not in page and "integrity" not in page
    assert 'src="../../static/images/logo-long.png"' in page
    assert not re.search(r'<(script|link|img)\b[^>]*(src|href)="https?:', page)
    assert 'href="https://greatexpectations.io"' in page  # a link to follow, not a load


def test_every_cdn_file_is_vendored() -> None:
    for name in offline.CDN_FILES.values():
        assert name is None or (offline.VENDOR / name).is_file(), name
    assert (offline.VENDOR / "licenses").is_dir()


def _section(n: int, column: str, icon: str) -> str:
    return (
        f'<div id="section-{n}" class="ge-section container-fluid mb-1">'
        f'<h5 class="m-0" >\n  {column}\n</h5><td>{icon}</td></div>'
    )


def test_failed_warning_expectations_read_as_warnings() -> None:
    failed = '<i class="fas fa-times text-danger" ></i>'
    page = (
        '<span class="h6" >Status:</span> <i class="fas fa-check-circle"></i> Succeeded<br>'
        + _section(1, "error", failed)
        + _section(2, "n_orphan_note_off", failed)
    )
    marked = offline.mark_warnings(page, {"n_orphan_note_off", "pitch_min"})
    error, orphan = marked.split('<div id="section-2"')
    assert failed in error  # a quarantine column keeps its failure
    assert failed not in orphan and "fa-exclamation-triangle text-warning" in orphan
    assert "Succeeded <small>(with 1 warning(s): the files they flag are accepted" in marked
    assert offline.mark_warnings(marked, {"n_orphan_note_off"}) == marked  # once only


def test_make_offline_copies_the_vendor_folder_and_rewrites_pages(tmp_path: Path) -> None:
    page = tmp_path / "validations" / "a" / "b.html"
    page.parent.mkdir(parents=True)
    page.write_text(_GX_HEAD)
    offline.make_offline(tmp_path)
    text = page.read_text()
    assert '<link rel="stylesheet" href="../../static/vendor/bootstrap.min.css">' in text
    assert (tmp_path / "static" / "vendor" / "jquery.min.js").is_file()
    assert (tmp_path / "static" / "vendor" / "fontawesome" / "webfonts").is_dir()
