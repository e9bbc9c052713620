"""Prefect's cached task results, stored as data only (docs/architecture.md).

Prefect persists a cached task's return value as a "result record" in
``$PREFECT_HOME/storage/<cache key>``, by default with cloudpickle, and reads it back with the
serializer *the record itself names*. So a record someone edited (to name ``pickle``) would
run code the next time an identical task is called. Here:

- :class:`ResultSerializer` (type ``musicflow-json``) writes plain JSON and reads back only the
  result types the tasks registered with :func:`result_type` (dataclasses and named tuples of
  numbers, strings, lists, dicts, paths and small DataFrames); nothing is imported or called
  by name;
- :class:`ResultStorage` (local files under ``$PREFECT_HOME/storage``) hands Prefect only
  records written with that serializer: any other record is refused before Prefect parses it,
  so the task runs again and overwrites it (with one line on stderr). Writes are atomic.

Public: :func:`cached_task` (a Prefect task whose result is cached this way),
:func:`result_type`, :class:`ResultSerializer`, :class:`ResultStorage`, :data:`SERIALIZER`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from prefect.filesystems import LocalFileSystem
from prefect.serializers import Serializer

from musicflow.adapters import atomic

SERIALIZER = "musicflow-json"
FORMAT = 1

_TYPES: dict[str, type] = {}


class TamperedResultError(ValueError):
    """A cached result record that musicflow did not write (or that was changed)."""


def result_type(cls: type) -> type:
    """Class decorator: ``cls`` (a dataclass or NamedTuple) may be read back from a cached
    result. Only registered types are ever constructed when reading."""
    if not (dataclasses.is_dataclass(cls) or hasattr(cls, "_fields")):
        raise TypeError(f"{cls.__name__} must be a dataclass or a NamedTuple")
    _TYPES[cls.__name__] = cls
    return cls


def _encode(obj: Any) -> Any:
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if type(obj).__name__ in _TYPES and type(obj) is _TYPES[type(obj).__name__]:
        if dataclasses.is_dataclass(obj):
            fields = {f.name: _encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        else:
            fields = {k: _encode(v) for k, v in obj._asdict().items()}
        return {"__type__": type(obj).__name__, "fields": fields}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError("cached results may only hold dicts with string keys")
        return {"__dict__": {k: _encode(v) for k, v in obj.items()}}
    if isinstance(obj, list | tuple):
        return [_encode(v) for v in obj]
    if isinstance(obj, Path):
        return {"__path__": str(obj)}
    import numpy as np

    if isinstance(obj, np.generic):
        return _encode(obj.item())
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        return {
            "__dataframe__": {
                "columns": [str(c) for c in obj.columns],
                "data": {str(c): [_encode(_plain(v)) for v in obj[c].tolist()] for c in obj},
            }
        }
    raise TypeError(f"musicflow cannot cache a {type(obj).__name__} as data")


def _plain(value: Any) -> Any:
    """DataFrame cells: numpy arrays → lists, pandas' missing values → None."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _decode(obj: Any) -> Any:
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__dict__" in obj:
        return {k: _decode(v) for k, v in obj["__dict__"].items()}
    if "__float__" in obj:
        return float(obj["__float__"])
    if "__path__" in obj:
        return Path(obj["__path__"])
    if "__dataframe__" in obj:
        import pandas as pd

        frame = obj["__dataframe__"]
        data = {c: pd.Series(_decode(frame["data"][c]), dtype=object) for c in frame["columns"]}
        return pd.DataFrame(data, columns=frame["columns"])
    if "__type__" in obj:
        cls = _TYPES.get(obj["__type__"])
        if cls is None:
            raise TamperedResultError(f"unknown result type {obj['__type__']!r}")
        fields = {k: _decode(v) for k, v in obj["fields"].items()}
        if dataclasses.is_dataclass(cls):
            names = {f.name for f in dataclasses.fields(cls)}
        else:
            names = set(cls._fields)
        if set(fields) != names:
            raise TamperedResultError(f"fields of {cls.__name__} do not match")
        return cls(**fields)
    raise TamperedResultError("unexpected object in a cached result")


class ResultSerializer(Serializer):
    """Prefect serializer ``musicflow-json``: JSON in, registered result types out."""

    type: str = SERIALIZER

    def dumps(self, obj: Any) -> bytes:
        return json.dumps({"format": FORMAT, "value": _encode(obj)}, allow_nan=False).encode()

    def loads(self, blob: bytes) -> Any:
        try:
            document = json.loads(blob)
        except ValueError as exc:
            raise TamperedResultError(f"not JSON: {exc}") from exc
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise TamperedResultError("not a musicflow result")
        return _decode(document["value"])


def _declared_serializer(content: bytes) -> str | None:
    """The serializer type a result record names, without letting Prefect act on it."""
    try:
        record = json.loads(content)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    serializer = (record.get("metadata") or {}).get("serializer") or record.get("serializer")
    return serializer.get("type") if isinstance(serializer, dict) else None


class ResultStorage(LocalFileSystem):
    """Local result storage that hands Prefect only ``musicflow-json`` records."""

    _block_type_name: ClassVar[str] = "musicflow result storage"
    _block_type_slug: ClassVar[str] = "musicflow-result-storage"

    def _checked(self, path: str, content: bytes) -> bytes:
        declared = _declared_serializer(content)
        if declared != SERIALIZER:
            print(
                f"musicflow: ignoring cached result {Path(self.basepath or '.') / path}: "
                f"written with serializer {declared!r}, not {SERIALIZER!r}; recomputing",
                file=sys.stderr,
                flush=True,
            )
            raise TamperedResultError(f"result record {path} is not musicflow's")
        return content

    def read_path(self, path: str, _sync: bool | None = None) -> bytes:  # type: ignore[override]
        content = LocalFileSystem.read_path(self, path, _sync=True)
        return self._checked(path, content)

    async def aread_path(self, path: str) -> bytes:  # type: ignore[override]
        content = await LocalFileSystem.aread_path(self, path)
        return self._checked(path, content)

    def write_path(self, path: str, content: bytes, _sync: bool | None = None) -> str:  # type: ignore[override]
        target = self._resolve_path(path)
        # the user's only, as the Prefect server's database beside it
        Path(target).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic.write_bytes(target, content, mode=0o600)
        return str(target)

    async def awrite_path(self, path: str, content: bytes) -> str:  # type: ignore[override]
        return self.write_path(path, content)


def storage() -> ResultStorage:
    """The workspace's result storage: ``$PREFECT_HOME/storage`` (Prefect's own default)."""
    from musicflow.adapters import workspace

    return ResultStorage(basepath=str(workspace.prefect_home() / "storage"))


def cached_task(
    fn: Callable, *, name: str, cache_key_fn: Callable, refresh_cache: bool | None = None
) -> Any:
    """``fn`` as a Prefect task cached on ``cache_key_fn``, its result stored as data only
    (with ``refresh_cache``: computed, and stored under its key, without reading the cache).

    The storage is set after the task is built: Prefect's constructor accepts only blocks
    saved on the server, while its result store itself works with a local, unsaved block
    (as it does with its own default storage).
    """
    from prefect import task

    built = task(
        name=name,
        cache_key_fn=cache_key_fn,
        persist_result=True,
        result_serializer=ResultSerializer(),
        refresh_cache=refresh_cache,
    )(fn)
    built.result_storage = storage()
    return built
