"""The validate stage: Great Expectations decides what is accepted, warned about or quarantined.

The rules live in ``expectations/midi_files.json`` (a GX suite as JSON); this module only runs
them and reads GX's verdicts back per row, so the suite file is the single statement of policy.
Each expectation's ``meta`` says what a failing row gets: ``{"outcome": "quarantine" | "warning",
"code": ...}``.

Why the suite runs in stages: quarantine rules have a precedence (the first failing one is the
reason) and a row quarantined by one rule must not be judged by later ones (a ``not_midi`` row has
no ``midi_type``; a too-large file was never parsed). So each quarantine code is one GX run over
the rows still in play, in suite order, and the warning rules run once over the rows that end
accepted. Per-row failures come from GX's ``COMPLETE`` result format with ``source_path`` as the
unexpected-index column: for a pandas batch, each ``unexpected_index_list`` entry is a dict holding
the failing value and that row's ``source_path``. The stage results are merged into one GX
validation result for the whole suite, which is what Data Docs render.

Great Expectations is imported lazily (about 4 s on two cores), so importing this module, e.g. for
``musicflow --help``, stays cheap.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd
from prefect import task

from musicflow.defaults import DEFAULT_MAX_BYTES
from musicflow.lineage import code_version
from musicflow.roll import DEFAULT_PITCH_LOW

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.core.expectation_validation_result import (
        ExpectationValidationResult,
    )
    from great_expectations.data_context import AbstractDataContext

SUITE_NAME = "midi_files"
SUITE_FILE = "midi_files.json"
DOCS_SITE = "musicflow"
QUARANTINE = "quarantine"
WARNING = "warning"
ACCEPTED = "accepted"
QUARANTINED = "quarantined"

# The column GX reports for every failing row; it must identify rows uniquely.
_KEY = "source_path"
_RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "unexpected_index_column_names": [_KEY],
}
_ID_NAMESPACE = uuid.UUID("6f0b1f8e-3c55-4a51-9a8e-2d1c5a7b9e10")


class ExpectationSummary(NamedTuple):
    """One expectation's tally: the rows it failed among those it judged."""

    expectation_type: str
    column: str
    code: str
    n_failed: int


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


@dataclass(frozen=True)
class _Rule:
    """One expectation of the suite, as stored, with the verdict a failing row gets."""

    id: str
    config: dict[str, Any]
    outcome: str
    code: str

    @property
    def type(self) -> str:
        return str(self.config["type"])

    @property
    def column(self) -> str:
        return str(self.config["kwargs"].get("column", ""))


def load_suite_config() -> dict[str, Any]:
    """The suite as stored in the package (``musicflow.expectations``), as a plain dict."""
    text = resources.files("musicflow.expectations").joinpath(SUITE_FILE).read_text("utf-8")
    return json.loads(text)


def suite_rules(suite_config: dict[str, Any] | None = None) -> list[_Rule]:
    """The suite's expectations with their outcome and code, checked so no gate goes missing.

    Raises ``ValueError`` on a meta without a valid outcome/code, or on a quarantine code whose
    expectations are not contiguous (its precedence would be ambiguous).
    """
    config = load_suite_config() if suite_config is None else suite_config
    rules: list[_Rule] = []
    for i, exp in enumerate(config["expectations"]):
        meta = exp.get("meta") or {}
        outcome, code = meta.get("outcome"), meta.get("code")
        if outcome not in (QUARANTINE, WARNING) or not isinstance(code, str) or not code:
            raise ValueError(f"expectation {i} of {SUITE_FILE} has no valid meta outcome/code")
        rule_id = str(uuid.uuid5(_ID_NAMESPACE, f"{config['name']}:{i}"))
        rules.append(_Rule(id=rule_id, config=exp, outcome=outcome, code=code))
    seen: list[str] = []
    for rule in rules:
        if rule.outcome != QUARANTINE:
            continue
        if rule.code in seen and seen[-1] != rule.code:
            raise ValueError(f"quarantine code {rule.code!r} is split in {SUITE_FILE}")
        if rule.code not in seen:
            seen.append(rule.code)
    return rules


def quarantine_precedence(rules: list[_Rule] | None = None) -> list[str]:
    """Quarantine codes in the order they are tried: their order in the suite file."""
    codes: list[str] = []
    for rule in suite_rules() if rules is None else rules:
        if rule.outcome == QUARANTINE and rule.code not in codes:
            codes.append(rule.code)
    return codes


def validate_records(
    records: pd.DataFrame,
    *,
    pitch_low: int = DEFAULT_PITCH_LOW,
    max_bytes: int = DEFAULT_MAX_BYTES,
    dataset: str = "dataset",
    docs_dir: Path | None = None,
) -> ValidationReport:
    """Run the GX suite over the parser's records and turn GX's failures into per-row verdicts.

    ``pitch_low`` and ``max_bytes`` are the suite parameters (the pitch window is
    ``pitch_low … pitch_low+95``). With ``docs_dir``, a GX Data Docs site for this run is
    written there and ``docs_index`` points at its ``index.html``.
    """
    suite_config = load_suite_config()
    rules = suite_rules(suite_config)
    frame = _prepare(records, rules)
    n = len(frame)
    position = {path: i for i, path in enumerate(frame[_KEY].tolist())}
    params = {"pitch_low": int(pitch_low), "max_bytes": int(max_bytes)}

    gx = _import_gx()
    context = _context(docs_dir)
    name = _gx_name(dataset)
    batch_definition = (
        context.data_sources.add_pandas("musicflow")
        .add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe("records")
    )

    reason: list[str | None] = [None] * n
    warnings: list[set[str]] = [set() for _ in range(n)]
    in_play = np.ones(n, dtype=bool)
    evrs: dict[str, ExpectationValidationResult] = {}
    failed: dict[str, list[int]] = {}
    stage_results: list[ExpectationSuiteValidationResult] = []

    for code, stage in _stages(rules):
        result = _run_stage(gx, batch_definition, stage, frame[in_play], params)
        stage_results.append(result)
        by_id = {evr.expectation_config.id: evr for evr in result.results}
        for rule in stage:
            evr = by_id.get(rule.id)
            if evr is None:
                raise RuntimeError(f"GX returned no result for {rule.type} on {rule.column}")
            evrs[rule.id] = evr
            failed[rule.id] = rows = _failed_rows(evr, position)
            for row in rows:
                if not in_play[row]:
                    raise RuntimeError(f"GX reported {frame[_KEY][row]!r}, which it was not given")
                if rule.outcome == QUARANTINE:
                    reason[row] = code
                else:
                    warnings[row].add(rule.code)
        if stage[0].outcome == QUARANTINE:
            in_play &= np.array([r is None for r in reason], dtype=bool)

    outcomes = pd.DataFrame(
        {
            _KEY: frame[_KEY].tolist(),
            "status": [ACCEPTED if r is None else QUARANTINED for r in reason],
            "reason": pd.Series(reason, dtype=object),
            "warnings": [sorted(w) for w in warnings],
        }
    )
    summary = [ExpectationSummary(r.type, r.column, r.code, len(failed[r.id])) for r in rules]
    docs_index = None
    if docs_dir is not None:
        merged = _merge(rules, evrs, stage_results, params, name)
        docs_index = _build_docs(context, suite_config, rules, merged, name, docs_dir)
    return ValidationReport(outcomes=outcomes, docs_index=docs_index, expectation_summary=summary)


def _prepare(records: pd.DataFrame, rules: list[_Rule]) -> pd.DataFrame:
    """The records GX will judge: positional index, every suite column present.

    A column absent from the input means "unknown for every row" (a batch of only too-large
    files has no parse columns), so it is added as nulls; the staged not-null expectations then
    decide. Row keys must be present and unique, or GX's failures could not be mapped back.
    """
    for column in (_KEY, "size_bytes"):
        if column not in records.columns:
            raise ValueError(f"records lack the {column!r} column")
    keys = records[_KEY]
    if keys.isna().any():
        raise ValueError(f"records have a missing {_KEY}")
    if keys.duplicated().any():
        dup = keys[keys.duplicated()].iloc[0]
        raise ValueError(f"records repeat {_KEY} {dup!r}; it must identify one file")
    frame = records.reset_index(drop=True)
    for column in dict.fromkeys(r.column for r in rules if r.column):
        if column not in frame.columns:
            frame[column] = pd.Series([None] * len(frame), dtype=object)
    return frame


def _gx_name(dataset: str) -> str:
    """The dataset name as GX can key it: its Data Docs store refuses '/' and '\\' in keys."""
    return re.sub(r"[^\w.-]+", "_", dataset).strip("_") or "dataset"


def _stages(rules: list[_Rule]) -> list[tuple[str, list[_Rule]]]:
    """One stage per quarantine code in precedence order, then one stage of all warnings."""
    stages: list[tuple[str, list[_Rule]]] = []
    for code in quarantine_precedence(rules):
        stages.append((code, [r for r in rules if r.outcome == QUARANTINE and r.code == code]))
    warning_rules = [r for r in rules if r.outcome == WARNING]
    if warning_rules:
        stages.append((WARNING, warning_rules))
    return stages


def _import_gx() -> Any:
    """Import GX with its analytics off: it phones home otherwise (DESIGN.md pitfalls)."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx

    return gx


def _context(docs_dir: Path | None) -> AbstractDataContext:
    """A file-less GX context: in-memory stores, no progress bars, and a docs site if asked."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    sites: dict[str, Any] = {}
    if docs_dir is not None:
        sites[DOCS_SITE] = {
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(Path(docs_dir).resolve()),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        data_docs_sites=sites,
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _run_stage(
    gx: Any,
    batch_definition: BatchDefinition,
    stage: list[_Rule],
    rows: pd.DataFrame,
    params: dict[str, int],
) -> ExpectationSuiteValidationResult:
    """Validate the rows still in play against one stage's expectations (ids kept for lookup)."""
    suite = gx.ExpectationSuite(
        name=SUITE_NAME, expectations=[{**rule.config, "id": rule.id} for rule in stage]
    )
    if len(suite.expectations) != len(stage):
        # GX logs and drops an invalid expectation instead of raising: never lose a gate quietly.
        raise ValueError(f"GX rejected an expectation of {SUITE_FILE}; see the log above")
    batch = batch_definition.get_batch(batch_parameters={"dataframe": rows})
    return batch.validate(suite, result_format=_RESULT_FORMAT, expectation_parameters=params)


def _failed_rows(evr: ExpectationValidationResult, position: dict[str, int]) -> list[int]:
    """Input row positions GX reported as unexpected for one expectation.

    Fails loudly when GX could not evaluate the expectation or its list is incomplete, so a row
    is never accepted just because GX did not say anything about it.
    """
    _raise_on_exception(evr)
    result = evr.result or {}
    index_list = result.get("unexpected_index_list")
    count = result.get("unexpected_count")
    if index_list is None or count is None or len(index_list) != count:
        raise RuntimeError(
            f"GX gave no complete unexpected_index_list for "
            f"{evr.expectation_config.type} on {evr.expectation_config.kwargs.get('column')}"
        )
    if not evr.success and count == 0:
        raise RuntimeError(f"GX failed {evr.expectation_config.type} without naming any row")
    return sorted(position[entry[_KEY]] for entry in index_list)


def _raise_on_exception(evr: ExpectationValidationResult) -> None:
    info = evr.exception_info or {}
    entries = [info] if "raised_exception" in info else list(info.values())
    for entry in entries:
        if isinstance(entry, dict) and entry.get("raised_exception"):
            raise RuntimeError(
                f"GX could not evaluate {evr.expectation_config.type} on "
                f"{evr.expectation_config.kwargs.get('column')}: {entry.get('exception_message')}"
            )


def _merge(
    rules: list[_Rule],
    evrs: dict[str, ExpectationValidationResult],
    stage_results: list[ExpectationSuiteValidationResult],
    params: dict[str, int],
    dataset: str,
) -> ExpectationSuiteValidationResult:
    """One GX validation result for the whole suite, in suite order, for Data Docs."""
    from great_expectations.core import ExpectationSuiteValidationResult

    results = [evrs[r.id] for r in rules]
    n_ok = sum(1 for evr in results if evr.success)
    meta = dict(stage_results[0].meta) if stage_results else {}
    # The validation page takes its "Data asset" line from the batch spec.
    meta["batch_spec"] = {**meta.get("batch_spec", {}), "data_asset_name": dataset}
    meta["musicflow"] = {
        "staged": "each quarantine code judged only the rows no earlier code quarantined; "
        "warnings judged only the accepted rows",
    }
    return ExpectationSuiteValidationResult(
        success=n_ok == len(results),
        results=results,
        suite_name=SUITE_NAME,
        suite_parameters=dict(params),
        statistics={
            "evaluated_expectations": len(results),
            "successful_expectations": n_ok,
            "unsuccessful_expectations": len(results) - n_ok,
            "success_percent": 100.0 * n_ok / len(results) if results else None,
        },
        meta=meta,
        batch_id=stage_results[0].batch_id if stage_results else None,
    )


def _build_docs(
    context: AbstractDataContext,
    suite_config: dict[str, Any],
    rules: list[_Rule],
    merged: ExpectationSuiteValidationResult,
    dataset: str,
    docs_dir: Path,
) -> Path:
    """Store the merged result and the suite in the context and render the Data Docs site."""
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    context.suites.add(
        gx.ExpectationSuite(
            name=SUITE_NAME,
            expectations=[{**r.config, "id": r.id} for r in rules],
            meta=suite_config.get("meta"),
            notes=suite_config.get("notes"),
        )
    )
    run_time = datetime.datetime.now(datetime.UTC)
    merged.meta["run_id"] = run_id = RunIdentifier(run_name=dataset, run_time=run_time)
    merged.meta["validation_time"] = run_time
    key = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=SUITE_NAME),
        run_id=run_id,
        batch_identifier=merged.batch_id or dataset,
    )
    context.validation_results_store.set(key, merged)
    context.build_data_docs(site_names=[DOCS_SITE])
    # GX logs a page it fails to render and carries on: check this run's page is really there.
    page = context.get_docs_sites_urls(resource_identifier=key, site_name=DOCS_SITE)
    index = Path(docs_dir).resolve() / "index.html"
    if not page or not page[0].get("site_url") or not index.is_file():
        raise RuntimeError(f"GX did not render the Data Docs for this run under {docs_dir}")
    return index


def validation_cache_key(_context: Any, parameters: dict[str, Any]) -> str | None:
    """Same records, suite, settings and docs folder → same outcomes: a scheduled run with no
    new MIDI skips GX entirely (its import alone takes seconds). No key (so no caching) when
    the Data Docs it would have written are gone."""
    docs_dir = parameters.get("docs_dir")
    if docs_dir is not None and not (Path(docs_dir) / "index.html").is_file():
        return None
    records: pd.DataFrame = parameters["records"]
    digest = hashlib.sha256()
    digest.update(records.to_json(orient="split", date_format="iso").encode())
    digest.update(resources.files("musicflow.expectations").joinpath(SUITE_FILE).read_bytes())
    for name in ("pitch_low", "max_bytes", "dataset", "docs_dir"):
        digest.update(f"|{name}={parameters.get(name)}".encode())
    digest.update(f"|code={code_version()}".encode())
    return f"validate-{digest.hexdigest()}"


validate = task(
    name="validate",
    cache_key_fn=validation_cache_key,
    persist_result=True,
)(validate_records)
