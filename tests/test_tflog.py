"""musicflow/adapters/tflog.py: TensorFlow's C++ log stays off the terminal unless --debug."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from musicflow.adapters import tflog

ABSL = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
ONEDNN = (
    "I0000 00:00:1796653600.940994   15579 port.cc:153] oneDNN custom operations are on. You "
    "may see slightly different numerical results"
)


def test_log_lines_are_told_from_other_text() -> None:
    for line in (
        ABSL,
        ONEDNN,
        "E0000 00:00:1796653617.739313   15579 util.cc:131] oneDNN supports DT_BOOL only",
        "2026-12-07 14:40:05.061907: I tensorflow/core/platform/cpu_feature_guard.cc:182] This",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild "
        "TensorFlow with the appropriate compiler flags.",
    ):
        assert tflog.is_log_line(line), line
    for line in ("musicflow: error: no model", "Traceback (most recent call last):", "I0000"):
        assert not tflog.is_log_line(line), line


def test_the_filter_keeps_other_text_and_everything_when_the_import_fails(capfd) -> None:
    with tflog._filtered_stderr():
        os.write(2, f"{ABSL}\n{ONEDNN}\n".encode())
        print("a warning worth seeing", file=sys.stderr)
    assert capfd.readouterr().err == "a warning worth seeing\n"
    with pytest.raises(ImportError), tflog._filtered_stderr():
        os.write(2, f"{ONEDNN}\n".encode())
        raise ImportError("broken install")
    assert capfd.readouterr().err == f"{ONEDNN}\n"


@pytest.mark.integration
@pytest.mark.parametrize("debug", [False, True])
def test_building_a_model_prints_tensorflows_log_only_with_debug(debug: bool) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "MUSICFLOW_DEBUG"))}
    if debug:
        env["MUSICFLOW_DEBUG"] = "1"
    code = "from musicflow.models import build_model\nbuild_model('rnn', seed=0, hidden=4)\n"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    logged = [x for x in done.stderr.splitlines() if tflog.is_log_line(x)]
    assert bool(logged) == debug, done.stderr[-2000:]
