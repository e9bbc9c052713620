"""The validate stage: Great Expectations decides what is accepted, warned about or quarantined.

The policy is the suite in ``expectations/midi_files.json``, read as rules by
``musicflow/core/suite.py``; GX is driven by ``musicflow/adapters/gx.py`` and its Data Docs written
by
``musicflow/adapters/data_docs.py``. This module runs the suite's stages over the parser's records,
each
quarantine code over the rows still in play in precedence order, then the warnings over the rows
that end accepted, and turns GX's failures into one verdict per row.

The Prefect task is cached on the records, the suite, the settings and the code version: a
scheduled run with no new MIDI skips GX entirely (its import alone takes seconds).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from musicflow.adapters import results
from musicflow.adapters.data_docs import build_docs, merge_results
from musicflow.adapters.gx import ROW_KEY, GxSession, failed_rows, html_keys
from musicflow.adapters.lineage import code_version
from musicflow.adapters.store import folder_lock
from musicflow.core.defaults import DEFAULT_MAX_BYTES
from musicflow.core.roll import DEFAULT_PITCH_LOW
from musicflow.core.suite import (
    ACCEPTED,
    QUARANTINE,
    QUARANTINED,
    Rule,
    load_suite_config,
    stages,
    suite_bytes,
    suite_rules,
)

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.core.expectation_validation_result import (
        ExpectationValidationResult,
    )


@results.result_type
class ExpectationSummary(NamedTuple):
    """One expectation's tally: the rows it failed among those it judged."""

    expectation_type: str
    column: str
    code: str
    n_failed: int


@results.result_type
@dataclass
class ValidationReport:
    """Per-row verdicts, where the Data Docs are, and a per-expectation tally for the terminal.

    ``outcomes`` has columns ``source_path``, ``status`` (accepted | quarantined), ``reason``
    (quarantine code or None) and ``warnings`` (sorted list of codes; empty when quarantined),
    one row per input row, in input order.
    """

    outcomes: pd.DataFrame
    docs_index: Path | None
    expectation_summary: list[ExpectationSummary]


def validate_records(
    records: pd.DataFrame,
    *,
    pitch_low: int = DEFAULT_PITCH_LOW,
    max_bytes: int = DEFAULT_MAX_BYTES,
    dataset: str = "dataset",
    docs_dir: Path | None = None,
    voices: int = 0,
) -> ValidationReport:
    """Run the GX suite over the parser's records and turn GX's failures into per-row verdicts.

    ``pitch_low`` and ``max_bytes`` are the suite parameters (the pitch window is
    ``pitch_low … pitch_low+95``); so is ``voices``, the voice count of a ``--tracks voices``
    dataset (files with another ``n_voices`` are quarantined ``voice_count``). With
    ``docs_dir``, a GX Data Docs site for this run is written there and ``docs_index``
    points at its ``index.html``.
    """
    suite_config = load_suite_config()
    rules = suite_rules(suite_config)
    frame = _prepare(records, rules)
    n = len(frame)
    judged = html_keys(frame)  # what GX sees, and writes into its Data Docs
    position = {key: i for i, key in enumerate(judged[ROW_KEY].tolist())}
    params = {"pitch_low": int(pitch_low), "max_bytes": int(max_bytes), "voices": int(voices)}

    session = GxSession(dataset, docs_dir)

    reason: list[str | None] = [None] * n
    warnings: list[set[str]] = [set() for _ in range(n)]
    in_play = np.ones(n, dtype=bool)
    evrs: dict[str, ExpectationValidationResult] = {}
    failed: dict[str, list[int]] = {}
    stage_results: list[ExpectationSuiteValidationResult] = []

    for code, stage in stages(rules):
        result = session.run(stage, judged[in_play], params)
        stage_results.append(result)
        by_id = {evr.expectation_config.id: evr for evr in result.results}
        for rule in stage:
            evr = by_id.get(rule.id)
            if evr is None:
                raise RuntimeError(f"GX returned no result for {rule.type} on {rule.column}")
            evrs[rule.id] = evr
            failed[rule.id] = rows = failed_rows(evr, position)
            for row in rows:
                if not in_play[row]:
                    raise RuntimeError(
                        f"GX reported {frame[ROW_KEY][row]!r}, which it was not given"
                    )
                if rule.outcome == QUARANTINE:
                    reason[row] = code
                else:
                    warnings[row].add(rule.code)
        if stage[0].outcome == QUARANTINE:
            in_play &= np.array([r is None for r in reason], dtype=bool)

    outcomes = pd.DataFrame(
        {
            ROW_KEY: frame[ROW_KEY].tolist(),
            "status": [ACCEPTED if r is None else QUARANTINED for r in reason],
            "reason": pd.Series(reason, dtype=object),
            "warnings": [sorted(w) for w in warnings],
        }
    )
    summary = [ExpectationSummary(r.type, r.column, r.code, len(failed[r.id])) for r in rules]
    docs_index = None
    if docs_dir is not None:
        merged = merge_results(rules, evrs, stage_results, params, session.name)
        # GX's site build deletes every page its own (in-memory) store does not know, so two
        # audits of one dataset at once delete each other's page between render and check:
        # one at a time, under the dataset folder's lock
        with folder_lock(Path(docs_dir).parent):
            docs_index = build_docs(
                session.context, suite_config, rules, merged, session.name, docs_dir
            )
    return ValidationReport(outcomes=outcomes, docs_index=docs_index, expectation_summary=summary)


def _prepare(records: pd.DataFrame, rules: list[Rule]) -> pd.DataFrame:
    """The records GX will judge: positional index, every suite column present.

    A column absent from the input means "unknown for every row" (a batch of only too-large
    files has no parse columns), so it is added as nulls; the staged not-null expectations then
    decide. Row keys must be present and unique, or GX's failures could not be mapped back.
    """
    for column in (ROW_KEY, "size_bytes"):
        if column not in records.columns:
            raise ValueError(f"records lack the {column!r} column")
    keys = records[ROW_KEY]
    if keys.isna().any():
        raise ValueError(f"records have a missing {ROW_KEY}")
    if keys.duplicated().any():
        dup = keys[keys.duplicated()].iloc[0]
        raise ValueError(f"records repeat {ROW_KEY} {dup!r}; it must identify one file")
    frame = records.reset_index(drop=True)
    for column in dict.fromkeys(r.column for r in rules if r.column):
        if column not in frame.columns:
            frame[column] = pd.Series([None] * len(frame), dtype=object)
    return frame


def validation_cache_key(_context: Any, parameters: dict[str, Any]) -> str | None:
    """Same records, suite, settings and docs folder → same outcomes: a scheduled run with no
    new MIDI skips GX entirely (its import alone takes seconds)."""
    records: pd.DataFrame = parameters["records"]
    digest = hashlib.sha256()
    digest.update(records.to_json(orient="split", date_format="iso").encode())
    digest.update(suite_bytes())
    for name in ("pitch_low", "max_bytes", "dataset", "docs_dir", "voices"):
        digest.update(f"|{name}={parameters.get(name)}".encode())
    digest.update(f"|code={code_version()}".encode())
    return f"validate-{digest.hexdigest()}"


validate = results.cached_task(validate_records, name="validate", cache_key_fn=validation_cache_key)
_validate_afresh = results.cached_task(
    validate_records, name="validate", cache_key_fn=validation_cache_key, refresh_cache=True
)


def validate_step(docs_dir: Path | None):
    """The validate task for a run writing Data Docs to ``docs_dir``: cached, unless those
    Data Docs are missing (a first run, or deleted), when it runs GX and stores its result
    under the same key, so the next identical run skips GX."""
    if docs_dir is not None and not (Path(docs_dir) / "index.html").is_file():
        return _validate_afresh
    return validate
