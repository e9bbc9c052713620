"""The validation policy as the suite file states it: every rule loads into GX, says what a
failing row gets, and the quarantine codes come in their documented precedence."""

from __future__ import annotations

import re

import pytest
from conftest import QUARANTINE_ORDER, WARNING_CODES

from musicflow.core import suite

pytestmark = pytest.mark.integration  # loads the suite into the real GX


def test_suite_file_is_the_policy() -> None:
    """Every expectation loads into GX and says what a failing row gets (docs/dataset.md)."""
    import great_expectations as gx

    config = suite.load_suite_config()
    assert config["name"] == suite.SUITE_NAME
    gx_suite = gx.ExpectationSuite(**config)
    assert len(gx_suite.expectations) == len(config["expectations"])  # GX dropped none
    rules = suite.suite_rules(config)
    assert suite.quarantine_precedence(rules) == QUARANTINE_ORDER
    assert {r.code for r in rules if r.outcome == suite.WARNING} == WARNING_CODES
    outcomes = [r.outcome for r in rules]
    assert outcomes == sorted(outcomes)  # "quarantine" rules first, then "warning"
    params = re.findall(r'"\$PARAMETER": "([^"]+)"', _suite_text())
    assert set(params) == {"max_bytes", "pitch_low", "pitch_low + 95", "voices"}


def _suite_text() -> str:
    from importlib import resources

    return resources.files("musicflow.expectations").joinpath(suite.SUITE_FILE).read_text("utf-8")


def test_a_split_quarantine_code_or_a_rule_without_meta_is_refused() -> None:
    config = suite.load_suite_config()
    first, *rest = config["expectations"]
    with pytest.raises(ValueError, match="no valid meta"):
        suite.suite_rules({**config, "expectations": [{**first, "meta": {}}, *rest]})
    too_large = [e for e in config["expectations"] if e["meta"]["code"] == "too_large"]
    not_midi = [e for e in config["expectations"] if e["meta"]["code"] == "not_midi"]
    split = [too_large[0], not_midi[0], *too_large]
    with pytest.raises(ValueError, match="split"):
        suite.suite_rules({**config, "expectations": split})


def test_stages_follow_precedence_then_warnings() -> None:
    rules = suite.suite_rules()
    stages = suite.stages(rules)
    assert [code for code, _ in stages] == [*QUARANTINE_ORDER, suite.WARNING]
    assert sum(len(stage) for _, stage in stages) == len(rules)


def test_judge_gives_every_hostile_file_the_audits_verdict(hostile_dir) -> None:
    """``judge`` reads the suite without GX; MANIFEST.csv holds the audit's verdicts."""
    import csv

    from musicflow.core import scan
    from musicflow.core.suite import judge

    with open(hostile_dir / "MANIFEST.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows
    for row in rows:
        data = (hostile_dir / row["file"]).read_bytes()
        record = dict(scan.scan_file(data).record, size_bytes=len(data))
        reason, warnings = judge(record, {"pitch_low": 21, "max_bytes": 2**26})
        if row["expected"] == "quarantine":
            assert (reason, warnings) == (row["reason"], []), row["file"]
        else:
            assert reason is None, row["file"]
            expected = [row["reason"]] if row["reason"] in WARNING_CODES else []
            assert warnings == expected, row["file"]
    big = {"size_bytes": 100, "error": None}
    assert judge(big, {"pitch_low": 21, "max_bytes": 99})[0] == "too_large"
