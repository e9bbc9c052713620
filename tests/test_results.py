"""musicflow/adapters/results.py: cached task results are data (JSON), read back only as registered
types, and a record that names another serializer (a planted pickle) is never acted upon."""

from __future__ import annotations

import base64
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from musicflow.adapters import results


@results.result_type
@dataclass(frozen=True)
class Sample:
    name: str
    values: dict[str, list[float]]
    where: Path | None = None


class _Plant:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_round_trip_of_the_types_tasks_return() -> None:
    from musicflow.tasks.validate import ExpectationSummary, ValidationReport

    s = results.ResultSerializer()
    report = ValidationReport(
        pd.DataFrame(
            {"source_path": ["a", "b"], "status": ["accepted", "quarantined"],
             "reason": [None, "no_notes"], "warnings": [[], ["drums_ignored"]]}
        ),
        Path("/x/index.html"),
        [ExpectationSummary("expect_x", "col", "no_notes", 1)],
    )  # fmt: skip
    back = s.loads(s.dumps(report))
    assert back.docs_index == report.docs_index
    assert back.expectation_summary == report.expectation_summary

    def plain(frame: pd.DataFrame) -> dict:
        return frame.astype(object).where(frame.notna(), None).to_dict("list")

    assert plain(back.outcomes) == plain(report.outcomes)
    sample = Sample("x", {"loss": [1.0, float("nan")]}, None)
    again = s.loads(s.dumps(sample))
    assert again.name == "x" and again.values["loss"][0] == 1.0


@pytest.mark.parametrize(
    "blob",
    [
        b'{"format": 1, "value": {"__type__": "Popen", "fields": {}}}',
        b'{"format": 1, "value": {"__type__": "Sample", "fields": {"name": "x"}}}',
        b"\x80\x04K\x01.",
        b'{"value": 1}',
    ],
)
def test_anything_else_is_refused(blob: bytes) -> None:
    with pytest.raises(results.TamperedResultError):
        results.ResultSerializer().loads(blob)


calls: list[int] = []


def _compute(x: int) -> Sample:
    calls.append(x)
    return Sample(f"n{x}", {"v": [float(x)]})


cached = results.cached_task(
    _compute, name="musicflow-test-cached", cache_key_fn=lambda c, p: f"mftest-{p['x']}"
)


@pytest.mark.integration
def test_a_planted_pickle_record_is_ignored_and_recomputed(tmp_path: Path, capfd) -> None:
    from prefect import flow

    @flow(name="musicflow-test-results")
    def run(x: int) -> Sample:
        return cached(x)

    x = 1000 + len(list(tmp_path.parts))
    calls.clear()
    assert run(x).name == f"n{x}" and calls == [x]
    assert run(x).name == f"n{x}" and calls == [x]  # cached: not computed again
    record_path = Path(results.storage().basepath) / f"mftest-{x}"
    record = json.loads(record_path.read_text())
    assert record["metadata"]["serializer"]["type"] == results.SERIALIZER
    assert "pickle" not in record_path.read_text()

    marker = tmp_path / "pwned"
    record["metadata"]["serializer"] = {"type": "pickle", "picklelib": "pickle"}
    record["result"] = base64.b64encode(pickle.dumps(_Plant(marker))).decode()
    record_path.write_text(json.dumps(record))
    assert run(x).name == f"n{x}"
    assert not marker.exists() and calls == [x, x]  # recomputed, the pickle never loaded
    assert "ignoring cached result" in capfd.readouterr().err
    assert json.loads(record_path.read_text())["metadata"]["serializer"]["type"] == "musicflow-json"
