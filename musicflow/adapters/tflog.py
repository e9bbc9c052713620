"""TensorFlow's own log: off the terminal unless ``--debug``, in every command.

TensorFlow 2.21 writes C++ log lines while it is imported (``WARNING: All log messages before
absl::InitializeLog() is called are written to STDERR``, ``… port.cc:153] oneDNN custom
operations are on …``) straight to file descriptor 2, whatever ``TF_CPP_MIN_LOG_LEVEL`` says
(tensorflow/tensorflow#100442); the variable still silences what it logs later. So
:func:`configure` sets TensorFlow's environment (the CLI calls it before anything is
imported), and :func:`import_tensorflow`, which every path into TensorFlow calls first
(``models._model_class``, ``accelerate.training_scope``, the CLI's preload), imports it with
descriptor 2 captured and passes on whatever is not such a log line. With ``--debug``
(``$MUSICFLOW_DEBUG``) nothing is captured or filtered.

Only the standard library: the CLI uses it before any heavy import.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator

from musicflow.terminal.progress import debug_enabled

#: TensorFlow's C++ log lines: absl's preamble, absl-style (``I0000 00:00:…``) and TF-style
#: (``2026-01-01 12:00:00.000000: I …``) lines, and the CPU-instructions note's second line.
_LOG_LINE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] "
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] "
    r"|To enable the following instructions: .* rebuild TensorFlow"
)
_LOCK = threading.Lock()


def configure(debug: bool) -> None:
    """TensorFlow's log level for this process and its children: everything with ``debug``,
    else errors only (with oneDNN, grappler prints harmless "remapper failed" errors: those
    too). A level the user set wins."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if debug else "3")


def is_log_line(line: str) -> bool:
    """True for a line of TensorFlow's C++ log (what :func:`import_tensorflow` holds back)."""
    return _LOG_LINE.match(line) is not None


@contextlib.contextmanager
def _filtered_stderr() -> Iterator[None]:
    """Capture descriptor 2 (C++ and Python writers alike) and write back what is not a log
    line; everything, when the block raises."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 (a daemon): nothing to hold back
        yield
        return
    failed = True
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(x for x in lines if failed or not is_log_line(x))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def import_tensorflow() -> None:
    """Import TensorFlow (and Keras) once, its import-time log held back unless ``--debug``.
    One thread at a time: two captures of descriptor 2 must not interleave."""
    with _LOCK:
        if "tensorflow" in sys.modules and "keras" in sys.modules:
            return
        configure(debug_enabled())
        with contextlib.nullcontext() if debug_enabled() else _filtered_stderr():
            import keras  # noqa: F401  (imports tensorflow, its backend)
            import tensorflow  # noqa: F401
