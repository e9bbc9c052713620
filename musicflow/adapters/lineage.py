"""Code and data lineage recorded with every run: what code, what data, what settings."""

from __future__ import annotations

import hashlib
import subprocess
from functools import cache
from pathlib import Path

from musicflow import __version__

_PACKAGE_ROOTS = ("musicflow", "models", "tasks", "flows")


@cache
def code_version() -> str:
    """``<package version>+<hash of the installed sources>``.

    A content hash rather than the git commit: caches stay valid across commits that do not
    touch code, and a locally edited tree never passes for a released one.
    """
    repo = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for root in _PACKAGE_ROOTS:
        for path in sorted((repo / root).rglob("*")):
            if path.suffix in (".py", ".c", ".json") and "__pycache__" not in path.parts:
                digest.update(path.relative_to(repo).as_posix().encode())
                digest.update(path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:12]}"


@cache
def git_commit() -> str | None:
    """The checkout's commit, when musicflow runs from a git checkout (else None)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
