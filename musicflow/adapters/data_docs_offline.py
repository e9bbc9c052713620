"""GX Data Docs that work offline and read warnings as warnings.

GX's pages load bootstrap, jQuery, bootstrap-table, Font Awesome … from CDNs and its logo from
S3: offline, the index is unstyled and its list of validation results (built by a script) is
empty. :func:`make_offline` copies the files of ``musicflow/adapters/vendor/datadocs/`` (the npm
packages the templates ask for, with their licenses: see its README) into the site's
``static/vendor/`` and points every page at them, relative to the page, so the site opens from
a file with no network; the chart libraries (vega), which musicflow's pages never use, are dropped.

GX knows only success and failure: a warning-level expectation that flags files shows a red ✗,
though those files are accepted. :func:`mark_warnings` gives those expectations a warning sign
and says on the status line that the files stay accepted.

Pure text over the written HTML (no GX import); :func:`finish_site` runs both after every
``build_data_docs`` (``musicflow/adapters/data_docs.build_docs``).
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from musicflow.adapters import atomic

VENDOR = Path(__file__).parent / "vendor" / "datadocs"

#: CDN address (up to its version; any file name after it) → the vendored file, or None to drop
#: the tag. Every URL GX 1.24.1's templates load from the network.
CDN_FILES: dict[str, str | None] = {
    "https://cdn.jsdelivr.net/npm/vega@5": None,
    "https://cdn.jsdelivr.net/npm/vega-lite@5": None,
    "https://cdn.jsdelivr.net/npm/vega-embed@6": None,
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": (
        "fontawesome/css/all.min.css"
    ),
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.min.js",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": (
        "bootstrap-table.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": (
        "bootstrap-table.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.js": "bootstrap-table-filter-control.min.js",
    # the index asks for 1.19.0's minified CSS, the other pages for its full copy: one file
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control": "bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/"
    "bootstrap-datepicker.min.js": "bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/"
    "bootstrap-datepicker.min.css": "bootstrap-datepicker.min.css",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/"
    "bootstrap-prefers-dark": "bootstrap-prefers-dark.min.css",
}
# GX's navbar logo, from S3; the same image is in the site's own static/images.
_LOGO = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"

_TAG = re.compile(
    r'<script\b[^>]*\bsrc="(?P<s>https?://[^"]+)"[^>]*>\s*</script>'
    r'|<link\b[^>]*\bhref="(?P<l>https?://[^"]+)"[^>]*/?>'
)
_IMG = re.compile(r'(<img\b[^>]*\bsrc=")' + re.escape(_LOGO) + r'([\w.-]+)(?:\?[^"]*)?"')


def _vendored(url: str) -> str | bool | None:
    """The vendored file of ``url``, None to drop its tag, False when it is not a CDN file."""
    for prefix, name in CDN_FILES.items():
        if url.startswith(prefix):
            return name
    return False


def offline_html(text: str, static: str) -> str:
    """``text`` (one page) with its CDN tags pointing at ``static`` (the site's ``static``
    folder, relative to the page); tags without integrity attributes, which a file:// page
    cannot satisfy."""

    def tag(match: re.Match[str]) -> str:
        url = match.group("s") or match.group("l")
        name = _vendored(url)
        if name is False:
            return match.group(0)  # a stylesheet or script musicflow does not know: left as is
        if name is None:
            return ""
        local = f"{static}/vendor/{name}"
        if match.group("s"):
            return f'<script src="{local}"></script>'
        return f'<link rel="stylesheet" href="{local}">'

    text = _TAG.sub(tag, text)
    return _IMG.sub(lambda m: f'{m.group(1)}{static}/images/{m.group(2)}"', text)


def make_offline(site: Path) -> None:
    """Vendor the styles and scripts into ``site/static/vendor`` and rewrite every page."""
    site = Path(site)
    target = site / "static" / "vendor"
    if (
        not (target / "README.md").is_file()
        or (target / "README.md").read_bytes() != (VENDOR / "README.md").read_bytes()
    ):
        shutil.copytree(VENDOR, target, dirs_exist_ok=True)
    for page in site.rglob("*.html"):
        if target in page.parents:
            continue
        static = Path(os.path.relpath(site / "static", page.parent)).as_posix()
        text = page.read_text(encoding="utf-8")
        new = offline_html(text, static)
        if new != text:
            atomic.write_text(page, new)


_SECTION = re.compile(r'<div id="section-\d+" class="ge-section[^"]*">')
_HEADER = re.compile(r'<h5 class="m-0" >\s*(?P<column>[^<]+?)\s*</h5>')
_FAILED = '<i class="fas fa-times text-danger" ></i>'
_WARNING = (
    '<i class="fas fa-exclamation-triangle text-warning" title="a warning: the files it flags '
    'stay accepted"></i> <small class="text-warning">warning</small>'
)
_STATUS = re.compile(r"(<span class=\"h6\" >Status:</span>.*?Succeeded)", re.S)


def mark_warnings(text: str, warning_columns: Iterable[str]) -> str:
    """One validation page with the failed expectations of ``warning_columns`` (the columns
    whose every expectation is a warning) shown as warnings, and the status line saying so."""
    columns = set(warning_columns)
    starts = [m.start() for m in _SECTION.finditer(text)] + [len(text)]
    parts = [text[: starts[0]]]
    n_warned = 0
    for start, end in itertools.pairwise(starts):
        section = text[start:end]
        header = _HEADER.search(section)
        if header and header.group("column") in columns:
            n_warned += section.count(_FAILED)
            section = section.replace(_FAILED, _WARNING)
        parts.append(section)
    text = "".join(parts)
    if n_warned:
        note = (
            f" <small>(with {n_warned} warning(s): the files they flag are accepted; only a "
            "quarantine expectation fails a run)</small>"
        )
        text = _STATUS.sub(lambda m: m.group(1) + note, text, count=1)
    return text


def finish_site(site: Path, warning_columns: Iterable[str]) -> None:
    """Everything above, for the whole site (GX rewrites every validation page on a build)."""
    site = Path(site)
    make_offline(site)
    columns = set(warning_columns)
    for page in (site / "validations").rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        new = mark_warnings(text, columns)
        if new != text:
            atomic.write_text(page, new)
