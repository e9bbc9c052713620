"""Report: one self-contained HTML page per model version, written under ``reports/`` and
logged to the model's MLflow run, with generated MIDI (and WAV when FluidSynth is present).

The page is keyed by the registered version (``reports/<dataset>/<model>-v<version>/``): a
cached training result finds its report already there and nothing is redone.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NONE

from musicflow import workspace
from musicflow.tasks.audit import summarize
from musicflow.tasks.train import HELDOUT_FRACTION, SPLIT_SEED, dataset_shards, registered_name

N_MIDI = 4
AUDIT_LIST_LIMIT = 20


def thesis_counterpart_metrics(dataset: str, model: str) -> dict[str, float] | None:
    """Metrics of the latest ``*-thesis`` version trained on the same dataset, if any."""
    from mlflow import MlflowClient

    if model not in ("vae", "gan"):
        return None
    client = MlflowClient(tracking_uri=workspace.tracking_uri())
    versions = client.search_model_versions(
        f"name = '{registered_name(dataset, model + '-thesis')}'"
    )
    if not versions:
        return None
    latest = max(versions, key=lambda v: int(v.version))
    return dict(client.get_run(latest.run_id).data.metrics)


def _audit_summary(dataset_dir: Path) -> dict:
    manifest_path = Path(dataset_dir) / "manifest.parquet"
    if not manifest_path.exists():
        return {}
    summary = summarize(pq.read_table(manifest_path).to_pandas())
    for key in ("quarantined_files", "warned_files"):
        summary[key] = summary[key][:AUDIT_LIST_LIMIT]
    return summary


def build_report(
    trained: dict, *, dataset: str, dataset_dir: Path, audit_summary: dict | None, seed: int = 0
) -> str:
    """Generate samples, draw the figures and write the report of one trained version."""
    from mlflow import MlflowClient

    from musicflow import plots
    from musicflow.models.data import load_windows, source_shas, split_files
    from musicflow.report import render_report, write_report
    from musicflow.tasks.evaluate import EVAL_WINDOWS
    from musicflow.tasks.generate import generate_midi, load_sampler

    out = workspace.reports_dir() / dataset / f"{trained['model']}-v{trained['version']}"
    page = out / "report.html"
    if page.exists():
        return str(page)
    sampler = load_sampler(trained["model_uri"])
    generation = generate_midi(trained["model_uri"], n=N_MIDI, out_dir=out / "midi", seed=seed)
    _, shards = dataset_shards(Path(dataset_dir))
    _, heldout_shas = split_files(source_shas(shards), HELDOUT_FRACTION, seed=SPLIT_SEED)
    heldout = load_windows(shards, heldout_shas)
    generated = sampler.sample_windows(EVAL_WINDOWS, seed=seed + 1)  # the evaluated windows
    pitch_low = int(sampler.sampling["encoding"]["pitch_low"])
    history = trained.get("history") or {}
    losses = {k: v for k, v in history.items() if "loss" in k}
    figures = {
        "Note frequency: held-out real vs generated": plots.note_frequency_figure(
            heldout, generated, pitch_low=pitch_low
        ),
        "Generated windows": plots.sample_grid_figure(generated, pitch_low=pitch_low),
        "Held-out real windows": plots.sample_grid_figure(
            heldout, pitch_low=pitch_low, title="Held-out real windows"
        ),
    }
    if losses:
        figures["Training losses"] = plots.loss_curves_figure(losses)
    if any(k.startswith("d_acc") for k in history):
        figures["Discriminator accuracy"] = plots.discriminator_accuracy_figure(history)
    if sampler.model.kind == "vae":
        figures["Latent space of held-out windows"] = plots.latent_scatter_figure(
            sampler.model.encode(heldout[:2000])
        )
    links = [
        (p.name, p.relative_to(out).as_posix())
        for p in generation.midi_files + generation.wav_files
    ]
    info = {
        "registered model": trained["registered_model"],
        "version": trained["version"],
        "model URI": trained["model_uri"],
        "MLflow run": trained["run_id"],
        "sampling threshold": sampler.sampling["threshold"],
    }
    if generation.wav_note:
        info["audio"] = generation.wav_note
    html = render_report(
        title=f"{trained['registered_model']} v{trained['version']}",
        model_info=info,
        metrics={k: v for k, v in trained["metrics"].items() if not _nan(v)},
        baseline_model_metrics=thesis_counterpart_metrics(dataset, trained["model"]),
        audit_summary=audit_summary if audit_summary is not None else _audit_summary(dataset_dir),
        figures=figures,
        links=links,
    )
    _write_figures(out / "figures", figures)
    write_report(page, html)
    MlflowClient(tracking_uri=workspace.tracking_uri()).log_artifacts(
        trained["run_id"], str(out), artifact_path="report"
    )
    return str(page)


def _write_figures(folder: Path, figures: dict[str, bytes]) -> None:
    """Each figure also as its own PNG, so the MLflow UI shows it in the run's artifacts."""
    folder.mkdir(parents=True, exist_ok=True)
    for title, data in figures.items():
        slug = "-".join("".join(c if c.isalnum() else " " for c in title.lower()).split())
        (folder / f"{slug}.png").write_bytes(data)


def _nan(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value)


report = task(name="report", cache_policy=NONE, persist_result=False)(build_report)
