"""musicflow/adapters/procs.py: owners of runs and temp files; children that end with their
parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from musicflow.adapters import procs


def test_owner_names_this_process_and_tells_a_dead_one() -> None:
    me = procs.owner()
    assert me.startswith(f"{procs.host()}:{os.getpid()}:")
    assert procs.owner_alive(me) is True
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    name = procs.owner(dead.pid)
    dead.wait()
    assert procs.owner_alive(name) is False
    assert procs.owner_alive(f"elsewhere:{os.getpid()}:1") is None  # another host: unknown
    assert procs.owner_alive("not an owner") is None
    # a reused pid (another start time) counts as gone
    assert procs.owner_alive(f"{procs.host()}:{os.getpid()}:1") is False


SLEEPER = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); time.sleep(300)"  # noqa: E501


def _pids_with(marker: str) -> list[int]:
    found = []
    for path in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in path.read_bytes():
                found.append(int(path.parent.name))
        except OSError:
            continue
    return found


def test_a_guarded_group_ends_when_its_parent_is_killed(tmp_path: Path) -> None:
    """The parent dies by SIGKILL: the guard's child and grandchild are stopped anyway."""
    marker = f"MUSICFLOW_TEST_GUARD={tmp_path.name}"
    parent = (
        "import subprocess, sys, time\n"
        "from musicflow.adapters import procs\n"
        f"subprocess.Popen(procs.guarded_command([sys.executable, '-c', {SLEEPER!r}]))\n"
        "time.sleep(300)\n"
    )
    env = dict(os.environ, MUSICFLOW_TEST_GUARD=tmp_path.name)
    proc = subprocess.Popen([sys.executable, "-c", parent], env=env)
    deadline = time.monotonic() + 60
    while len(_pids_with(marker)) < 4 and time.monotonic() < deadline:  # parent, guard, 2 kids
        time.sleep(0.2)
    assert len(_pids_with(marker)) == 4
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while _pids_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _pids_with(marker) == []
