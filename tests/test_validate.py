"""The GX gate: every rule, its precedence, warnings on accepted rows only, the suite parameters
and the Data Docs, against the real Great Expectations (it is the thing under test).

GX costs ~4 s to import and ~0.4 s per call, so the rule cases share one call: one DataFrame
holding a good row and one violating row per rule (plus precedence and boundary rows).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import QUARANTINE_ORDER, WARNING_CODES

from musicflow.core import suite
from musicflow.tasks import validate as v

pytestmark = pytest.mark.integration

MAX_BYTES = 10_000


def good(path: str, **changes: Any) -> dict[str, Any]:
    """A record the parser would give a clean type-1 piano file, with ``changes`` applied."""
    row: dict[str, Any] = {
        "source_path": path,
        "source_sha256": "0" * 64,
        "size_bytes": 2_000,
        "error": None,
        "error_detail": None,
        "midi_type": 1,
        "ticks_per_beat": 480,
        "smpte": False,
        "n_tracks": 3,
        "n_notes": 120,
        "n_notes_total": 120,
        "pitch_min": 40,
        "pitch_max": 90,
        "n_out_of_range": 0,
        "n_unterminated": 0,
        "n_orphan_note_off": 0,
        "n_drum_notes": 0,
        "n_segments": 4,
    }
    row.update(changes)
    return row


def unparsed(path: str, size: int, **changes: Any) -> dict[str, Any]:
    """A record with only the ingest columns, as for a file too large to parse."""
    row = dict.fromkeys(good(path), None)
    row.update(source_path=path, source_sha256="f" * 64, size_bytes=size)
    row.update(changes)
    return row


def failed_parse(path: str, error: str, **changes: Any) -> dict[str, Any]:
    row = unparsed(path, 300, error=error, error_detail="synthetic")
    row.update(changes)
    return row


# name → (record, expected status, expected reason, expected warnings)
CASES: dict[str, tuple[dict[str, Any], str, str | None, list[str]]] = {
    "good": (good("good.mid"), "accepted", None, []),
    "too_large": (unparsed("big.mid", MAX_BYTES + 1), "quarantined", "too_large", []),
    "unreadable": (
        unparsed("locked.mid", MAX_BYTES + 1, error="unreadable", source_sha256=None),
        "quarantined",
        "unreadable",
        [],
    ),
    "note_bomb": (failed_parse("bomb.mid", "too_large"), "quarantined", "too_large", []),
    "not_midi": (failed_parse("text.mid", "not_midi"), "quarantined", "not_midi", []),
    "truncated": (
        failed_parse("cut.mid", "truncated", midi_type=1, ticks_per_beat=96, smpte=False),
        "quarantined",
        "truncated",
        [],
    ),
    "async_type2": (good("type2.mid", midi_type=2), "quarantined", "async_type2", []),
    "smpte_division": (
        good("smpte.mid", smpte=True, ticks_per_beat=None),
        "quarantined",
        "smpte_division",
        [],
    ),
    "bad_ticks_per_beat_zero": (
        good("tpb0.mid", ticks_per_beat=0),
        "quarantined",
        "bad_ticks_per_beat",
        [],
    ),
    "bad_ticks_per_beat_high": (
        good("tpb_high.mid", ticks_per_beat=32768),
        "quarantined",
        "bad_ticks_per_beat",
        [],
    ),
    "no_notes": (
        good("meta_only.mid", n_notes=0, n_notes_total=0, pitch_min=None, pitch_max=None),
        "quarantined",
        "no_notes",
        [],
    ),
    "notes_out_of_range_low": (
        good("low.mid", pitch_min=12, n_out_of_range=3),
        "accepted",
        None,
        ["notes_out_of_range"],
    ),
    "notes_out_of_range_high": (
        good("high.mid", pitch_max=117, n_out_of_range=1),
        "accepted",
        None,
        ["notes_out_of_range"],
    ),
    "unterminated_notes": (
        good("hang.mid", n_unterminated=2),
        "accepted",
        None,
        ["unterminated_notes"],
    ),
    "orphan_note_off": (
        good("orphan.mid", n_orphan_note_off=1),
        "accepted",
        None,
        ["orphan_note_off"],
    ),
    "drums_ignored": (good("drums.mid", n_drum_notes=16), "accepted", None, ["drums_ignored"]),
    # --tracks voices: the dataset's count is the suite parameter (0 here: any count fails)
    "voice_count": (good("five.mid", n_voices=5), "quarantined", "voice_count", []),
    # Boundaries that must pass.
    "window_edges": (good("edges.mid", pitch_min=21, pitch_max=116), "accepted", None, []),
    "pitch_25_default_window": (good("p25.mid", pitch_min=25), "accepted", None, []),
    "ticks_per_beat_1": (good("tpb1.mid", ticks_per_beat=1), "accepted", None, []),
    "ticks_per_beat_max": (good("tpbmax.mid", ticks_per_beat=32767), "accepted", None, []),
    "size_at_limit": (good("at_limit.mid", size_bytes=MAX_BYTES), "accepted", None, []),
    "type_0": (good("type0.mid", midi_type=0, n_tracks=1), "accepted", None, []),
    # Several warnings: all of them, sorted.
    "many_warnings": (
        good("many.mid", n_drum_notes=3, n_unterminated=1, n_orphan_note_off=2, pitch_max=120),
        "accepted",
        None,
        ["drums_ignored", "notes_out_of_range", "orphan_note_off", "unterminated_notes"],
    ),
    # Precedence: the first failing rule wins.
    "type2_smpte_no_notes": (
        good("p1.mid", midi_type=2, smpte=True, ticks_per_beat=None, n_notes=0),
        "quarantined",
        "async_type2",
        [],
    ),
    "smpte_and_no_notes": (
        good("p2.mid", smpte=True, ticks_per_beat=None, n_notes=0),
        "quarantined",
        "smpte_division",
        [],
    ),
    "tpb_and_no_notes": (
        good("p3.mid", ticks_per_beat=0, n_notes=0),
        "quarantined",
        "bad_ticks_per_beat",
        [],
    ),
    "truncated_type2_no_notes": (
        failed_parse("p4.mid", "truncated", midi_type=2, smpte=False, n_notes=0),
        "quarantined",
        "truncated",
        [],
    ),
    "too_large_with_fields": (
        good("p5.mid", size_bytes=MAX_BYTES + 1, midi_type=2, n_notes=0),
        "quarantined",
        "too_large",
        [],
    ),
    # Quarantined rows carry no warnings, even when the warning rules would fail them.
    "drums_only": (
        good("drums_only.mid", n_notes=0, pitch_min=None, pitch_max=None, n_drum_notes=40),
        "quarantined",
        "no_notes",
        [],
    ),
    "type2_with_warnings": (
        good("p6.mid", midi_type=2, n_drum_notes=5, n_unterminated=1, pitch_min=3),
        "quarantined",
        "async_type2",
        [],
    ),
    # A parsed file with an unknown field does not pass its rule by being null.
    "null_midi_type": (good("nt.mid", midi_type=None), "quarantined", "async_type2", []),
    "null_smpte": (good("ns.mid", smpte=None), "quarantined", "smpte_division", []),
    "null_ticks": (good("nk.mid", ticks_per_beat=None), "quarantined", "bad_ticks_per_beat", []),
    "null_n_notes": (good("nn.mid", n_notes=None), "quarantined", "no_notes", []),
}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, v.ValidationReport]:
    """One validation of every case, with Data Docs; the index is shuffled to test row mapping."""
    records = pd.DataFrame([case[0] for case in CASES.values()])
    records.index = range(1000, 1000 - 7 * len(records), -7)
    docs = tmp_path_factory.mktemp("docs")
    report = v.validate_records(records, max_bytes=MAX_BYTES, dataset="unit/one", docs_dir=docs)
    return records, report


@pytest.fixture(scope="module")
def outcomes(shared: tuple[pd.DataFrame, v.ValidationReport]) -> pd.DataFrame:
    return shared[1].outcomes.set_index("source_path")


@pytest.mark.parametrize("name", [n for n in CASES if n != "good"])
def test_rule(name: str, outcomes: pd.DataFrame) -> None:
    record, status, reason, warnings = CASES[name]
    got = outcomes.loc[record["source_path"]]
    assert (got.status, got.reason, got.warnings) == (status, reason, warnings)
    good_row = outcomes.loc["good.mid"]
    assert (good_row.status, good_row.reason, good_row.warnings) == ("accepted", None, [])


def test_outcomes_shape_and_order(shared: tuple[pd.DataFrame, v.ValidationReport]) -> None:
    records, report = shared
    out = report.outcomes
    assert list(out.columns) == ["source_path", "status", "reason", "warnings"]
    assert out["source_path"].tolist() == records["source_path"].tolist()
    assert isinstance(out.index, pd.RangeIndex)
    assert set(out["status"]) <= {"accepted", "quarantined"}
    assert out.loc[out.status == "accepted", "reason"].isna().all()
    assert (out.loc[out.status == "quarantined", "warnings"].map(len) == 0).all()


def test_summary_counts_rows_judged_by_each_rule(
    shared: tuple[pd.DataFrame, v.ValidationReport],
) -> None:
    """Counts come from GX; a row quarantined earlier is not counted again by a later rule."""
    _, report = shared
    summary = report.expectation_summary
    assert len(summary) == len(suite.suite_rules())
    by_code: dict[str, int] = {}
    for expectation_type, column, code, n_failed in summary:
        assert expectation_type.startswith("expect_") and column
        by_code[code] = by_code.get(code, 0) + n_failed
    out = report.outcomes
    quarantined = out[out.status == "quarantined"].reason.value_counts().to_dict()
    assert {c: by_code[c] for c in quarantined} == quarantined
    assert sum(by_code[c] for c in QUARANTINE_ORDER) == len(out[out.status == "quarantined"])
    warned = pd.Series([w for ws in out.warnings for w in ws]).value_counts().to_dict()
    pitch_rows = [s.n_failed for s in summary if s.code == "notes_out_of_range"]
    assert sum(pitch_rows) == warned["notes_out_of_range"] == 3  # no case fails both ends
    for code in WARNING_CODES - {"notes_out_of_range"}:
        assert by_code[code] == warned[code]


def test_data_docs(shared: tuple[pd.DataFrame, v.ValidationReport]) -> None:
    _, report = shared
    index = report.docs_index
    assert index is not None and index.name == "index.html" and index.is_file()
    assert suite.SUITE_NAME in index.read_text("utf-8")
    pages = list((index.parent / "validations").rglob("*.html"))
    assert len(pages) == 1
    page = pages[0].read_text("utf-8")
    assert "type2.mid" in page  # failing rows are named by source_path
    assert (index.parent / "expectations" / f"{suite.SUITE_NAME}.html").is_file()


_REMOTE = re.compile(r'<(?:script|link|img)\b[^>]*\b(?:src|href)="(https?:|//)')


def test_data_docs_work_offline_and_read_warnings_as_warnings(
    shared: tuple[pd.DataFrame, v.ValidationReport],
) -> None:
    _, report = shared
    site = report.docs_index.parent
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 3  # index, suite, validation
    for page in pages:
        text = page.read_text("utf-8")
        assert not _REMOTE.search(text), page  # nothing loaded from the network
        for ref in re.findall(r'(?:src|href)="([^"#?]*static/vendor/[^"]+)"', text):
            assert (page.parent / ref).is_file(), ref  # every vendored file is there
    assert "integrity=" not in site.joinpath("index.html").read_text("utf-8")
    assert (site / "static" / "vendor" / "licenses" / "jquery.txt").is_file()
    page = next((site / "validations").rglob("*.html")).read_text("utf-8")
    # quarantines fail; the warning expectations (which flagged files here) show as warnings
    assert "fa-exclamation-triangle text-warning" in page
    n_warned = page.count("fa-exclamation-triangle text-warning")
    n_warning_rules = sum(
        1 for s in report.expectation_summary if s.n_failed and _outcome(s.code) != suite.QUARANTINE
    )
    assert n_warned == n_warning_rules
    assert "Failed" in page  # quarantine expectations failed in this run of every case


def _outcome(code: str) -> str:
    return next(r.outcome for r in suite.suite_rules() if r.code == code)


def test_data_docs_list_every_validation_of_the_dataset(tmp_path: Path) -> None:
    records = pd.DataFrame([good("a.mid"), good("b.mid")])
    for _ in range(2):
        report = v.validate_records(records, dataset="d", docs_dir=tmp_path)
    pages = list((tmp_path / "validations").rglob("*.html"))
    assert len(pages) == 2  # one per validation run, both kept
    index = report.docs_index.read_text("utf-8")
    assert all(p.relative_to(tmp_path).as_posix() in index for p in pages)
    page = pages[0].read_text("utf-8")
    assert "Succeeded" in page and "text-warning" not in page


def test_configured_pitch_window_and_size_limit() -> None:
    records = pd.DataFrame(
        [
            good("p25.mid", pitch_min=25),
            good("p30.mid", pitch_min=30, pitch_max=125),
            good("p126.mid", pitch_min=30, pitch_max=126),
            good("size_ok.mid", size_bytes=5_000),
            unparsed("size_over.mid", 5_001),
        ]
    )
    out = v.validate_records(records, pitch_low=30, max_bytes=5_000).outcomes
    got = {r.source_path: (r.status, r.reason, r.warnings) for r in out.itertuples()}
    assert got == {
        "p25.mid": ("accepted", None, ["notes_out_of_range"]),
        "p30.mid": ("accepted", None, []),
        "p126.mid": ("accepted", None, ["notes_out_of_range"]),
        "size_ok.mid": ("accepted", None, []),
        "size_over.mid": ("quarantined", "too_large", []),
    }


def test_records_without_parse_columns() -> None:
    """Only too-large files: the parse columns are absent, and nothing is accepted by default."""
    records = pd.DataFrame(
        [
            {"source_path": "a.mid", "source_sha256": "a" * 64, "size_bytes": 900},
            {"source_path": "b.mid", "source_sha256": "b" * 64, "size_bytes": 10},
        ]
    )
    report = v.validate_records(records, max_bytes=100)
    got = report.outcomes[["status", "reason"]].values.tolist()
    assert got == [["quarantined", "too_large"], ["quarantined", "async_type2"]]
    assert report.docs_index is None


def test_duplicate_source_path_is_refused() -> None:
    records = pd.DataFrame([good("same.mid"), good("same.mid")])
    with pytest.raises(ValueError, match="repeat source_path"):
        v.validate_records(records)


def test_prefect_task_wrapper() -> None:
    assert v.validate.name == "validate"
    assert v.validate.fn is v.validate_records


def test_no_gx_project_folder_written(shared: tuple[pd.DataFrame, v.ValidationReport]) -> None:
    assert not (Path.cwd() / "gx").exists()


def test_empty_records() -> None:
    out = v.validate_records(pd.DataFrame(columns=["source_path", "size_bytes"])).outcomes
    assert out.empty and list(out.columns) == ["source_path", "status", "reason", "warnings"]


def test_warnings_alone_do_not_fail_the_run_in_data_docs() -> None:
    from great_expectations.core.expectation_validation_result import (
        ExpectationValidationResult,
    )

    from musicflow.adapters.data_docs import merge_results

    rules = suite.suite_rules()

    def merged(failing: str) -> bool:
        evrs = {
            r.id: ExpectationValidationResult(success=r.outcome != failing, result={})
            for r in rules
        }
        return merge_results(rules, evrs, [], {"pitch_low": 21}, "d").success

    assert merged(failing="warning") is True  # files flagged, all accepted
    assert merged(failing="quarantine") is False


def test_voice_count_is_judged_against_the_datasets_count() -> None:
    """``--tracks voices``: a file with the dataset's voice count passes, another count is
    quarantined, and a record without ``n_voices`` (merged, instruments) is not judged."""
    records = pd.DataFrame(
        [good("satb.mid", n_voices=4), good("ssatb.mid", n_voices=5), good("none.mid")]
    )
    out = v.validate_records(records, voices=4).outcomes
    got = {r.source_path: (r.status, r.reason) for r in out.itertuples()}
    assert got == {
        "satb.mid": ("accepted", None),
        "ssatb.mid": ("quarantined", "voice_count"),
        "none.mid": ("accepted", None),
    }
