"""The whole DAG for one dataset: audit → encode → train → generate → evaluate → report.

Every stage is cached on content: files by sha256 (parse), shards by their inputs (encode),
models by (dataset digest, model, settings, seed, code version) (train), reports by MLflow run.
A run with nothing new does no expensive work and creates no MLflow run or model version, which
is what makes scheduled retraining cheap.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow

from musicflow import workspace
from musicflow.defaults import DEFAULT_DATASET, DEFAULT_MAX_BYTES, DEFAULT_WORKERS
from musicflow.flows.dataset import AuditResult, encode_flow, make_task_runner
from musicflow.roll import DEFAULT_PITCH_LOW
from musicflow.tasks.ingest import export_default_dataset
from musicflow.tasks.registry import promote_if_better
from musicflow.tasks.report import report
from musicflow.tasks.train import train


def _progress(done: int, total: int) -> None:
    if done == total or done % 50 == 0:
        print(f"  exported {done}/{total} Bach scores to MIDI", file=sys.stderr, flush=True)


def default_source() -> Path:
    """The Bach chorales from music21's corpus, exported into the workspace on first use."""
    dest = workspace.home() / "data" / "sources" / DEFAULT_DATASET
    if not (dest / ".complete").exists():
        print(
            f"first use: exporting music21's Bach chorales to {dest} (once, ~1 min)",
            file=sys.stderr,
            flush=True,
        )
    return export_default_dataset(dest, progress=_progress)


@dataclass
class PipelineResult:
    audit: AuditResult
    models: list[dict] = field(default_factory=list)  # one per model: train result + report


@flow(name="musicflow-run", persist_result=False)
def pipeline_flow(
    source: Path,
    dataset: str,
    models: list[str],
    epochs: int | None = None,
    seed: int = 0,
    workers: int = DEFAULT_WORKERS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    pitch_low: int = DEFAULT_PITCH_LOW,
    time_budget_s: float | None = None,
) -> PipelineResult:
    """Encode the folder, then train, evaluate and report each model; promote champions."""
    out_dir = workspace.rolls_dir(dataset)
    audit = encode_flow.with_options(task_runner=make_task_runner("threads", workers=workers))(
        source=Path(source),
        dataset=dataset,
        out_dir=out_dir,
        cache_dir=workspace.cache_dir(),
        pitch_low=pitch_low,
        max_bytes=max_bytes,
        workers=workers,
    )
    result = PipelineResult(audit=audit)
    for model in models:
        trained = train(
            out_dir, dataset, model, epochs=epochs, seed=seed, time_budget_s=time_budget_s
        )
        promoted = promote_if_better(trained["registered_model"], trained["version"])
        page = report(
            trained, dataset=dataset, dataset_dir=out_dir, audit_summary=audit.summary, seed=seed
        )
        result.models.append(trained | {"report": page, "promoted": promoted})
    return result


@flow(name="musicflow-train", persist_result=False)
def train_flow(
    dataset: str,
    model: str,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    time_budget_s: float | None = None,
) -> dict:
    """Train one model on an encoded dataset, then promote and report it."""
    dataset_dir = workspace.rolls_dir(dataset)
    trained = train(
        dataset_dir,
        dataset,
        model,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        time_budget_s=time_budget_s,
    )
    promoted = promote_if_better(trained["registered_model"], trained["version"])
    page = report(trained, dataset=dataset, dataset_dir=dataset_dir, audit_summary=None, seed=seed)
    return trained | {"promoted": promoted, "report": page}
