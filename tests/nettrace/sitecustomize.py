"""Outbound-connection tracer for the no-phone-home tests (tests/test_faults.py).

Put this folder on ``PYTHONPATH`` and set ``MUSICFLOW_TRACE`` to a file: every Python process
of the command (the CLI, the Prefect server it starts, MLflow's subprocesses) then records,
through an audit hook, each name lookup and connection to a host that is not this machine, and
blocks it (``PermissionError``), plus each import of TensorFlow, and each first import of a
heavy package from a thread other than the main one (the import race of issue #12 item 11).
One JSON object a line.
"""

import json
import os
import socket
import sys
import threading

_TRACE = os.environ.get("MUSICFLOW_TRACE")
_HEAVY = {"great_expectations", "sqlalchemy", "mlflow", "tensorflow"}
_LOCAL = {None, "", "localhost", "127.0.0.1", "::1", "0.0.0.0", "::", socket.gethostname()}


def _record(kind: str, detail: object) -> None:
    with open(_TRACE, "a") as fh:
        record = {"pid": os.getpid(), "argv": sys.argv[:3], "kind": kind, "detail": repr(detail)}
        fh.write(json.dumps(record) + "\n")


def _local(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    return host in _LOCAL or (isinstance(host, str) and host.startswith("127."))


def _hook(event: str, args: tuple) -> None:
    if event == "socket.getaddrinfo" and not _local(args[0]):
        _record("lookup", args[0])
        raise PermissionError("outbound lookups are blocked in this test")
    if event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple) and not _local(address[0]):
            _record("connect", address)
            raise PermissionError("outbound connections are blocked in this test")
    if event == "socket.sendto":
        address = args[1]
        if isinstance(address, tuple) and not _local(address[0]):
            _record("sendto", address)
            raise PermissionError("outbound packets are blocked in this test")
    if event == "import":
        if args[0] == "tensorflow":
            _record("import", "tensorflow")
        if (
            args[0].split(".")[0] in _HEAVY
            and args[0] not in sys.modules
            and threading.current_thread() is not threading.main_thread()
        ):
            _record("thread-import", f"{args[0]} in {threading.current_thread().name}")


if _TRACE:
    sys.addaudithook(_hook)
