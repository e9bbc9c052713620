"""GX Data Docs for one validation run: the stage results merged into one suite result, and the
HTML site rendered where the run's ``docs_dir`` says (the site's ``base_directory``).

The suite runs in stages (``musicflow/core/suite.py``), but an auditor wants one page per run with
every expectation in suite order, so the stage results are merged first; the merged run
succeeds unless a quarantine expectation failed (warnings flag files that stay accepted, and
the pages show them as warnings). The site then carries its own styles and scripts, so it works
offline (``musicflow/adapters/data_docs_offline.py``), and its validation results are kept in
``<site>/.results/`` (``musicflow/adapters/gx.ephemeral_context``), so its index lists every
validation of the dataset, one per version and audit.

Public: :func:`merge_results`, then :func:`build_docs`.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from musicflow.adapters.data_docs_offline import finish_site
from musicflow.adapters.gx import DOCS_SITE
from musicflow.core.suite import QUARANTINE, SUITE_NAME, Rule

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.core.expectation_validation_result import (
        ExpectationValidationResult,
    )
    from great_expectations.data_context import AbstractDataContext


def merge_results(
    rules: list[Rule],
    evrs: dict[str, ExpectationValidationResult],
    stage_results: list[ExpectationSuiteValidationResult],
    params: dict[str, int],
    dataset: str,
) -> ExpectationSuiteValidationResult:
    """One GX validation result for the whole suite, in suite order, for Data Docs."""
    from great_expectations.core import ExpectationSuiteValidationResult

    results = [evrs[r.id] for r in rules]
    # A warning-level expectation flags files that are still accepted: the run succeeded
    # unless a quarantine expectation failed (GX would say "Failed" for any failure), and only
    # those count as unsuccessful (the pages show the warnings as warnings: data_docs_offline).
    n_failed = sum(1 for r in rules if r.outcome == QUARANTINE and not evrs[r.id].success)
    n_ok = len(results) - n_failed
    quarantine_ok = n_failed == 0
    meta = dict(stage_results[0].meta) if stage_results else {}
    # The validation page takes its "Data asset" line from the batch spec.
    meta["batch_spec"] = {**meta.get("batch_spec", {}), "data_asset_name": dataset}
    meta["musicflow"] = {
        "staged": "each quarantine code judged only the rows no earlier code quarantined; "
        "warnings judged only the accepted rows",
    }
    return ExpectationSuiteValidationResult(
        success=quarantine_ok,
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


def build_docs(
    context: AbstractDataContext,
    suite_config: dict[str, Any],
    rules: list[Rule],
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
    quarantine_columns = {r.column for r in rules if r.outcome == QUARANTINE}
    finish_site(index.parent, {r.column for r in rules} - quarantine_columns)
    return index
