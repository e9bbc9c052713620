"""How a file's name is written wherever musicflow shows or stores it (pure, no I/O).

A file name on Linux is any bytes but ``/`` and NUL: it may not be valid UTF-8 (Python gives
such bytes as lone surrogates, ``os.fsdecode``'s ``surrogateescape``) and it may hold a
newline or other control characters that would forge lines of text output. :func:`escape` turns
a name into one line of valid UTF-8, reversibly, and ingest stores that form as a file's
``source_path`` (docs/dataset.md, "File names"): the manifest, the shards, the audit page, the
Data Docs and the terminal all show the same string. HTML escaping stays the pages' own job.

The escapes, as in Python string literals: ``\\\\`` a backslash; ``\\n``, ``\\r``, ``\\t``;
``\\xNN`` a byte that is not valid UTF-8, or an ASCII control character (the same byte);
``\\uNNNN`` / ``\\UNNNNNNNN`` any other control, format or line/paragraph separator
character (Unicode categories Cc, Cf, Zl, Zp).
"""

from __future__ import annotations

import unicodedata

_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNPRINTED = ("Cc", "Cf", "Zl", "Zp", "Cs")


def _escape_char(c: str) -> str:
    if c in _NAMED:
        return _NAMED[c]
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode
        return f"\\x{code - 0xDC00:02x}"
    if unicodedata.category(c) not in _UNPRINTED:
        return c
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def escape(name: str) -> str:
    """``name`` (a path as ``os`` gives it) as one printable line of valid UTF-8."""
    if name.isprintable() and "\\" not in name:
        return name  # the common case, unchanged
    return "".join(_escape_char(c) for c in name)
