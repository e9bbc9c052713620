"""Great Expectations, driven from one place: an in-memory context over a DataFrame of records.

What GX needs and what it gets wrong are handled here: analytics off before import (it phones
home otherwise), an ephemeral context (no ``gx/`` project folder), per-row failures from the
``COMPLETE`` result format with ``source_path`` as the unexpected-index column (for a pandas
batch each ``unexpected_index_list`` entry is a dict holding the failing value and that row's
``source_path``), and loud errors where GX would stay quiet (an expectation it drops, one it
cannot evaluate, a failure it does not name rows for), so a row is never accepted just because
GX said nothing about it. GX's Data Docs write the row keys of failing rows into their HTML
unescaped, so a file named ``<img src=x onerror=…>.mid`` would run script in the validation
page: GX is given the keys HTML-escaped (:func:`html_keys`).

Public: :class:`GxSession` (a context, its batch definition and :meth:`GxSession.run`),
:func:`failed_rows`, :func:`asset_name`, :func:`html_keys`, ``ROW_KEY``. GX is imported
lazily (about 4 s on two cores), so importing this module stays cheap.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from musicflow.core.suite import SUITE_FILE, SUITE_NAME, Rule

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.core.expectation_validation_result import (
        ExpectationValidationResult,
    )
    from great_expectations.data_context import AbstractDataContext

DOCS_SITE = "musicflow"
RESULTS_DIR = ".results"  # in the Data Docs folder: the validation results its index lists
# The column GX reports for every failing row; it must identify rows uniquely.
ROW_KEY = "source_path"
RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "unexpected_index_column_names": [ROW_KEY],
}


class GxSession:
    """One ephemeral GX context judging DataFrames of records for one dataset."""

    def __init__(self, dataset: str, docs_dir: Path | None = None) -> None:
        self.gx = import_gx()
        self.context: AbstractDataContext = ephemeral_context(docs_dir)
        self.name = asset_name(dataset)
        self.batch_definition = (
            self.context.data_sources.add_pandas("musicflow")
            .add_dataframe_asset(self.name)
            .add_batch_definition_whole_dataframe("records")
        )

    def run(
        self, rules: list[Rule], rows: pd.DataFrame, params: dict[str, int]
    ) -> ExpectationSuiteValidationResult:
        """Validate ``rows`` against ``rules`` (their ids kept, for lookup in the result)."""
        suite = self.gx.ExpectationSuite(
            name=SUITE_NAME, expectations=[{**rule.config, "id": rule.id} for rule in rules]
        )
        if len(suite.expectations) != len(rules):
            # GX logs and drops an invalid expectation instead of raising: never lose a gate.
            raise ValueError(f"GX rejected an expectation of {SUITE_FILE}; see the log above")
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": rows})
        return batch.validate(suite, result_format=RESULT_FORMAT, expectation_parameters=params)


def asset_name(dataset: str) -> str:
    """The dataset name as GX can key it: its Data Docs store refuses '/' and '\\' in keys."""
    return re.sub(r"[^\w.-]+", "_", dataset).strip("_") or "dataset"


def html_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its row keys HTML-escaped, as GX's pages must show them (the escape is
    one-to-one, so the keys stay unique)."""
    return frame.assign(**{ROW_KEY: frame[ROW_KEY].map(html.escape)})


def import_gx() -> Any:
    """Import GX with its analytics off: it phones home otherwise."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx

    return gx


def ephemeral_context(docs_dir: Path | None) -> AbstractDataContext:
    """A file-less GX context: in-memory stores, no progress bars, and a docs site if asked
    (with its validation results kept beside it, under ``RESULTS_DIR``)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    sites: dict[str, Any] = {}
    stores = InMemoryStoreBackendDefaults()
    if docs_dir is not None:
        # the validation results stay with the site, so its index lists every earlier run
        stores.stores[stores.validation_results_store_name] = {
            "class_name": "ValidationResultsStore",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(Path(docs_dir).resolve() / RESULTS_DIR),
            },
        }
        sites[DOCS_SITE] = {
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(Path(docs_dir).resolve()),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    config = DataContextConfig(
        store_backend_defaults=stores,
        data_docs_sites=sites,
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def failed_rows(evr: ExpectationValidationResult, position: dict[str, int]) -> list[int]:
    """Input row positions GX reported as unexpected for one expectation.

    Fails loudly when GX could not evaluate the expectation or its list is incomplete, so a row
    is never accepted just because GX did not say anything about it.
    """
    raise_on_exception(evr)
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
    return sorted(position[entry[ROW_KEY]] for entry in index_list)


def raise_on_exception(evr: ExpectationValidationResult) -> None:
    info = evr.exception_info or {}
    entries = [info] if "raised_exception" in info else list(info.values())
    for entry in entries:
        if isinstance(entry, dict) and entry.get("raised_exception"):
            raise RuntimeError(
                f"GX could not evaluate {evr.expectation_config.type} on "
                f"{evr.expectation_config.kwargs.get('column')}: {entry.get('exception_message')}"
            )
