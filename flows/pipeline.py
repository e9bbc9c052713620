"""The whole DAG for one dataset: audit → encode → train → evaluate → register → generate →
report, and the same from train on for one model of an encoded dataset.

Flows only wire tasks. Every stage is cached on content: files by sha256 (parse), shards by
their inputs (encode), training runs by (dataset digest, model, settings, seed, code version)
(train), evaluations and versions by training run (evaluate, register), reports by version. A
run with nothing new does no expensive work and creates no MLflow run or model version, which
is what makes scheduled retraining cheap. Each step says on stderr what it did, or that nothing
changed and it was skipped (``musicflow/terminal/progress.py``); the audit summary is shown as
soon as the audit ends, before any training.
"""

# No ``from __future__ import annotations``: ``serve`` pickles the flow's function by value,
# with only the globals its code names, so the parameters' types (TrainSettings) must be the
# classes themselves for Prefect to validate a scheduled run's parameters.
import sys
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow

from musicflow.adapters import atomic, workspace
from musicflow.adapters.store import DatasetInfo, reading
from musicflow.core.defaults import DEFAULT_DATASET, DEFAULT_MAX_BYTES, DEFAULT_WORKERS
from musicflow.core.errors import UsageError
from musicflow.core.metrics import BASELINE_SUFFIX, HEADLINE_METRICS
from musicflow.core.roll import DEFAULT_PITCH_LOW
from musicflow.core.settings import DEFAULT_TRAINING, TrainSettings
from musicflow.core.tracks import MERGED, takes_tracks
from musicflow.core.tracks import refusal as tracks_refusal
from musicflow.flows.dataset import AuditResult, cached_step, encode_flow, make_task_runner
from musicflow.tasks.evaluate import Evaluation, evaluate
from musicflow.tasks.generate import generate
from musicflow.tasks.ingest import export_default_dataset
from musicflow.tasks.registry import RegisteredModel, champion_once_complete, register
from musicflow.tasks.report import N_MIDI, index, report, report_page
from musicflow.tasks.train import TrainedModel, one_at_a_time, train
from musicflow.terminal import progress


def _progress(done: int, total: int) -> None:
    if done == total or done % 50 == 0:
        print(f"  exported {done}/{total} Bach scores to MIDI", file=sys.stderr, flush=True)


def default_source() -> Path:
    """The Bach chorales from music21's corpus, exported into the workspace on first use."""
    dest = workspace.exported_source(DEFAULT_DATASET)
    if not (dest / ".complete").exists():
        print(
            f"first use: exporting music21's Bach chorales to {dest} (once, ~1 min)",
            file=sys.stderr,
            flush=True,
        )
    return export_default_dataset(dest, progress=_progress)


@dataclass(frozen=True)
class ModelResult:
    """One model's way through the DAG: its training run, evaluation, version and report."""

    trained: TrainedModel
    evaluation: Evaluation
    registered: RegisteredModel
    promoted: bool  # this version took the champion alias
    report: str  # path of the HTML report

    def __getitem__(self, key: str):
        """The dict view earlier versions returned: ``result["run_id"]``, ``["metrics"]`` …"""
        return {
            "run_id": self.trained.run_id,
            "model": self.trained.model,
            "registered_model": self.registered.name,
            "version": self.registered.version,
            "model_uri": self.registered.model_uri,
            "metrics": self.evaluation.scores,
            "history": self.trained.history,
            "promoted": self.promoted,
            "report": self.report,
        }[key]


@dataclass
class PipelineResult:
    audit: AuditResult
    models: list[ModelResult] = field(default_factory=list)
    index: str | None = None  # reports/<dataset>/index.html


def _model_steps(
    dataset_dir: Path,
    dataset: str,
    model: str,
    audit_summary: dict | None,
    training: TrainSettings,
    soundfont: str | None = None,
) -> ModelResult:
    """train → evaluate → register → promote → generate → report for one model (in a flow).

    Every step works on one dataset version, read once, its shards kept while the steps run
    whatever an encode commits meanwhile (docs/dataset.md); one such command per model and
    dataset runs at a time, so an identical second one finds the first's results."""
    with reading(dataset_dir) as version, one_at_a_time(dataset_dir, model):
        return _steps(version, dataset, model, audit_summary, training, soundfont)


def _steps(
    version: DatasetInfo,
    dataset: str,
    model: str,
    audit_summary: dict | None,
    training: TrainSettings,
    soundfont: str | None,
) -> ModelResult:
    dataset_dir = version.folder
    trained, cached = cached_step(train, version, dataset, model, training)
    if cached:
        progress.stage(f"train {model}", "nothing changed, skipped")
        progress.note(f"run {trained.run_id}, {trained_epochs(trained)}")
    seed = trained.seed
    atomic.pause_point("pipeline:trained")
    evaluation, cached = cached_step(evaluate, trained, version)
    if cached:
        progress.skipped("evaluate")
    else:
        progress.note("evaluate: " + _scores(evaluation.scores))
    registered, cached = cached_step(register, trained, evaluation)
    # a run that does not finish (its pieces, its report) leaves no new champion
    with champion_once_complete(registered) as promoted:
        flag = " (new champion)" if promoted else ""
        if cached:
            progress.skipped("register", f"nothing changed, skipped ({registered.model_uri})")
        else:
            progress.note(f"register: {registered.model_uri}{flag}")
        page = report_page(trained, registered)
        if not page.exists():  # a cached run finds its report already there
            pieces = generate(
                registered.model_uri,
                n=N_MIDI,
                out_dir=page.parent / "midi",
                seed=seed,
                soundfont=soundfont,
            )
            previews = " with audio previews" if pieces.audio_files else ""
            progress.note(f"generate: {len(pieces.midi_files)} pieces{previews}")
            report(
                trained,
                evaluation,
                registered,
                pieces,
                dataset_dir=dataset_dir,
                audit_summary=audit_summary,
            )
            progress.note(f"report: {page}")
        else:
            progress.skipped("generate, report", f"nothing changed, skipped ({page})")
    return ModelResult(trained, evaluation, registered, promoted, str(page))


def trained_epochs(trained: TrainedModel) -> str:
    """``12 of 100 epochs (kept epoch 7)`` (or the epochs in the history for an older cached
    result)."""
    done = trained.epochs_done or len(next(iter(trained.history.values()), []))
    text = f"{done} of {trained.max_epochs} epochs" if trained.max_epochs else f"{done} epochs"
    if trained.kept_epoch and trained.kept_epoch != done:
        text += f" (kept epoch {trained.kept_epoch})"
    return text


def _scores(scores: dict[str, float]) -> str:
    shown = []
    for key in HEADLINE_METRICS:
        if key in scores:
            base = scores.get(f"{key}{BASELINE_SUFFIX}")
            shown.append(
                f"{key} {scores[key]:.3f}" + (f" (baseline {base:.3f})" if base is not None else "")
            )
    return ", ".join(shown)


def _write_index(dataset: str, dataset_dir: Path) -> str:
    page = index(dataset, dataset_dir)
    progress.stage("index", str(page))
    return str(page)


@flow(name="musicflow-run", persist_result=False)
def pipeline_flow(
    source: Path,
    dataset: str,
    models: list[str],
    training: TrainSettings = DEFAULT_TRAINING,
    workers: int = DEFAULT_WORKERS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    pitch_low: int = DEFAULT_PITCH_LOW,
    soundfont: str | None = None,
    tracks: str = MERGED,
) -> PipelineResult:
    """Encode the folder, then train, evaluate, register and report each model; then the
    dataset's index page. ``tracks``: the track policy (a policy other than ``merged`` takes
    only the models that play tracks, ``catalog.TRACKED_MODELS``)."""
    refused = [m for m in models if not takes_tracks(m)]
    if refused and tracks != MERGED:
        raise UsageError(tracks_refusal(refused[0]))
    out_dir = workspace.rolls_dir(dataset)
    audit = encode_flow.with_options(task_runner=make_task_runner("threads", workers=workers))(
        source=Path(source),
        dataset=dataset,
        out_dir=out_dir,
        cache_dir=workspace.cache_dir(),
        pitch_low=pitch_low,
        max_bytes=max_bytes,
        workers=workers,
        tracks=tracks,
    )
    progress.audit_summary(audit.summary)
    result = PipelineResult(audit=audit)
    for model in models:
        result.models.append(
            _model_steps(
                out_dir,
                dataset,
                model,
                audit.summary,
                training,
                soundfont=soundfont,
            )
        )
    if models:
        result.index = _write_index(dataset, out_dir)
    return result


@flow(name="musicflow-train", persist_result=False)
def train_flow(
    dataset: str,
    model: str,
    training: TrainSettings = DEFAULT_TRAINING,
    soundfont: str | None = None,
) -> ModelResult:
    """Train one model on an encoded dataset, then evaluate, register and report it; then
    the dataset's index page."""
    dataset_dir = workspace.rolls_dir(dataset)
    result = _model_steps(
        dataset_dir,
        dataset,
        model,
        None,
        training,
        soundfont=soundfont,
    )
    _write_index(dataset, dataset_dir)
    return result
