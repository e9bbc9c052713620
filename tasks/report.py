"""Report: one self-contained HTML page per model version, written under ``reports/`` and
logged to the model's MLflow run, with the generated pieces as MIDI (and WAV).

Everything on the page was computed by an earlier step and is only read here: the scores and
the threshold from the evaluation, the scored windows from the run's ``evaluation/windows.npz``
artifact (generated and held-out windows, the VAE's latent codes), the losses from training, the
pieces from the generate step. No model is loaded, no split is recomputed, nothing is sampled.

The page is keyed by the registered version (``reports/<dataset>/<model>-v<version>/``): a
cached training result finds its report already there (:func:`report_page`) and nothing is
redone.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NONE

from musicflow import tracking, workspace
from musicflow.tasks.audit import summarize
from musicflow.tasks.evaluate import Evaluation, load_windows
from musicflow.tasks.generate import GenerationResult
from musicflow.tasks.registry import RegisteredModel
from musicflow.tasks.train import TrainedModel

N_MIDI = 4
AUDIT_LIST_LIMIT = 20


def report_page(trained: TrainedModel, registered: RegisteredModel) -> Path:
    """Where the version's report lives: ``reports/<dataset>/<model>-v<version>/report.html``."""
    folder = workspace.reports_dir() / trained.dataset / f"{trained.model}-v{registered.version}"
    return folder / "report.html"


def thesis_counterpart_metrics(dataset: str, model: str) -> dict[str, float] | None:
    """Metrics of the latest ``*-thesis`` version trained on the same dataset, if any."""
    if model not in ("vae", "gan"):
        return None
    latest = tracking.latest_version(tracking.registered_name(dataset, model + "-thesis"))
    return None if latest is None else tracking.run_metrics(latest.run_id)


def _audit_summary(dataset_dir: Path) -> dict:
    manifest_path = Path(dataset_dir) / "manifest.parquet"
    if not manifest_path.exists():
        return {}
    summary = summarize(pq.read_table(manifest_path).to_pandas())
    for key in ("quarantined_files", "warned_files"):
        summary[key] = summary[key][:AUDIT_LIST_LIMIT]
    return summary


def build_report(
    trained: TrainedModel,
    evaluation: Evaluation,
    registered: RegisteredModel,
    pieces: GenerationResult,
    *,
    dataset_dir: Path,
    audit_summary: dict | None,
) -> str:
    """Draw the figures and write the report of one registered version; log it to its run."""
    from musicflow import plots
    from musicflow.report import render_report, write_report

    page = report_page(trained, registered)
    out = page.parent
    windows = load_windows(evaluation.run_id)
    pitch_low = evaluation.pitch_low
    history = trained.history
    losses = {k: v for k, v in history.items() if "loss" in k}
    figures = {
        "Note frequency: held-out real vs generated": plots.note_frequency_figure(
            windows.heldout, windows.generated, pitch_low=pitch_low
        ),
        "Generated windows": plots.sample_grid_figure(windows.generated, pitch_low=pitch_low),
        "Held-out real windows": plots.sample_grid_figure(
            windows.heldout, pitch_low=pitch_low, title="Held-out real windows"
        ),
    }
    if losses:
        figures["Training losses"] = plots.loss_curves_figure(losses)
    if any(k.startswith("d_acc") for k in history):
        figures["Discriminator accuracy"] = plots.discriminator_accuracy_figure(history)
    if windows.latents is not None:
        figures["Latent space of held-out windows"] = plots.latent_scatter_figure(windows.latents)
    links = [(p.name, p.relative_to(out).as_posix()) for p in pieces.midi_files + pieces.wav_files]
    info = {
        "registered model": registered.name,
        "version": registered.version,
        "model URI": registered.model_uri,
        "MLflow run": registered.run_id,
        "sampling threshold": evaluation.threshold,
    }
    if pieces.wav_note:
        info["audio"] = pieces.wav_note
    html = render_report(
        title=f"{registered.name} v{registered.version}",
        model_info=info,
        metrics={k: v for k, v in evaluation.scores.items() if not _nan(v)},
        baseline_model_metrics=thesis_counterpart_metrics(trained.dataset, trained.model),
        audit_summary=audit_summary if audit_summary is not None else _audit_summary(dataset_dir),
        figures=figures,
        links=links,
    )
    _write_figures(out / "figures", figures)
    write_report(page, html)
    tracking.log_artifacts(registered.run_id, out, artifact_path="report")
    return str(page)


def _write_figures(folder: Path, figures: dict[str, bytes]) -> None:
    """Each figure also as its own PNG, so the MLflow UI shows it in the run's artifacts."""
    from musicflow import atomic

    for title, data in figures.items():
        slug = "-".join("".join(c if c.isalnum() else " " for c in title.lower()).split())
        atomic.write_bytes(folder / f"{slug}.png", data)


def _nan(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value)


report = task(name="report", cache_policy=NONE, persist_result=False)(build_report)
