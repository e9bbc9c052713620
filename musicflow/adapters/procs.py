"""Processes: who owns a run or a temp file, whether it still lives, and children that end
with their parent (docs/architecture.md).

- :func:`owner` names this process as ``<host>:<pid>:<start time>``; runs (MLflow tags,
  Prefect tags) and temp files carry it, so a later command can tell a run whose process was
  killed (:func:`owner_alive` is False) from one still going.
- :func:`die_with_parent` (Linux ``PR_SET_PDEATHSIG``) and :func:`run_guarded` (a supervisor
  that owns a process group) make children end with the command that started them, even when
  that command is killed with SIGKILL.

Only the standard library: the CLI uses this before any heavy import.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from functools import cache


@cache
def host() -> str:
    """This machine's name as musicflow writes it (letters, digits, ``_``, ``-``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:32] or "host"


def pid_alive(pid: int) -> bool:
    """True when a process with this id exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), None when unknown."""
    try:
        stat = open(f"/proc/{pid}/stat", "rb").read()  # noqa: SIM115 - tiny read
    except OSError:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after it
        return int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


def owner(pid: int | None = None) -> str:
    """``<host>:<pid>:<start time>`` of this process (or ``pid``)."""
    pid = os.getpid() if pid is None else pid
    return f"{host()}:{pid}:{start_time(pid) or 0}"


def owner_alive(name: str) -> bool | None:
    """Whether the process an :func:`owner` string names still runs: None when it cannot be
    told (another host, or not an owner string), else True or False. A reused pid with
    another start time counts as gone."""
    parts = name.split(":")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    where, pid, started = parts[0], int(parts[1]), parts[2]
    if where != host():
        return None
    if not pid_alive(pid):
        return False
    now = start_time(pid)
    return not (now is not None and started.isdigit() and int(started) and now != int(started))


def die_with_parent() -> None:
    """Child side of fork (Linux): get SIGTERM when the parent dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux, or no prctl: the parent's finally blocks still clean up
        pass


def stop_group(proc: subprocess.Popen | None, *, grace_s: float = 10.0) -> None:
    """Stop a process started in its own session and everything in its group: SIGTERM to the
    group, then SIGKILL after ``grace_s``."""
    if proc is None:
        return
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    # the leader may be gone while others in its group still run
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def guarded_command(cmd: list[str]) -> list[str]:
    """``cmd`` run under :func:`run_guarded` in a fresh interpreter."""
    return [sys.executable, "-m", "musicflow.adapters.procs", *cmd]


def run_guarded(cmd: list[str]) -> int:
    """Supervise ``cmd``, started as the leader of its own process group: the whole group ends
    when this process gets SIGTERM or SIGINT, or when this process's parent dies
    (``PR_SET_PDEATHSIG``), so grandchildren (an ``mlflow server``'s uvicorn) never outlive
    the command that started them. Returns the child's exit code."""
    parent = os.getppid()
    die_with_parent()
    if os.getppid() != parent:  # the parent died before prctl took effect
        return 143
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    child = subprocess.Popen(cmd, start_new_session=True)
    while child.poll() is None and not stopping:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=0.5)
    stop_group(child)  # also what the child's own children left behind
    return 0 if stopping else int(child.returncode)


if __name__ == "__main__":
    sys.exit(run_guarded(sys.argv[1:]))
