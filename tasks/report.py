"""Report: one self-contained HTML page per model version, written under ``reports/`` and
logged to the model's MLflow run, with the generated pieces as MIDI, audio previews and
engraved scores; and the dataset's index page, ``reports/<dataset>/index.html``, comparing every
version of every model, by their metrics and by ear (and, beside it, the dataset's history
page, ``tasks/history.write_history_page``).

Everything on the page was computed by an earlier step and is only read here: the scores and
the threshold from the evaluation, the scored windows from the run's ``evaluation/windows.npz``
artifact (generated and held-out windows, the VAE's latent codes), the losses from training, the
pieces from the generate step (only their MusicXML is engraved here). No model is loaded,
nothing is sampled. The one thing the index reads from the dataset is its reference excerpt
(:func:`reference_excerpt`): windows of a held-out file, by ``models/data.heldout_split``.

The page is keyed by the registered version (``reports/<dataset>/<model>-v<version>/``): a
cached training result finds its report already there (:func:`report_page`) and nothing is
redone. The index (:func:`write_index`) is rewritten after every model of a run, since a new
version can change which one is champion or best.
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NONE

from musicflow.adapters import lineage, tracking, workspace
from musicflow.adapters.audio import PREVIEW_SUFFIX
from musicflow.adapters.store import read_dataset_info, read_history, read_manifest
from musicflow.adapters.workspace import DatasetFolder
from musicflow.core.champion import RULE_TEXT, best_of_versions, best_reason
from musicflow.core.defaults import PIECE_WINDOWS
from musicflow.core.errors import DatasetError
from musicflow.tasks.audit import summarize
from musicflow.tasks.evaluate import Evaluation, load_windows, run_summary
from musicflow.tasks.generate import GenerationResult
from musicflow.tasks.history import write_history_page
from musicflow.tasks.registry import RegisteredModel
from musicflow.tasks.train import TrainedModel

if TYPE_CHECKING:
    from musicflow.adapters.tracking import VersionRow
    from musicflow.pages.report import Lineage

N_MIDI = 4
AUDIT_LIST_LIMIT = 20


def report_page(trained: TrainedModel, registered: RegisteredModel) -> Path:
    """Where the version's report lives: ``reports/<dataset>/<model>-v<version>/report.html``."""
    return DatasetFolder.named(trained.dataset).report_page(trained.model, registered.version)


#: The page in ``reports/`` that every link into the MLflow UI goes through.
UI_LINK_PAGE = "mlflow-ui.html"


def ui_link_page() -> Path:
    return workspace.reports_dir() / UI_LINK_PAGE


def write_ui_link_page(address: str | None = None) -> Path:
    """Point the pages' MLflow links at ``address`` (``musicflow ui`` passes its own); with
    None, write the default address (the tracking server's, or ``tracking.UI_PORT``) only when
    the page does not exist yet, so a report never undoes what ``ui`` wrote."""
    from musicflow.pages.report import render_ui_link_page, write_report

    page = ui_link_page()
    if address is None:
        if page.is_file():
            return page
        address = tracking.ui_address()
    return write_report(page, render_ui_link_page(address))


def ui_link(folder: Path, route: str) -> str:
    """A link from a page in ``folder`` to the UI's ``route``, through the UI link page."""
    page = write_ui_link_page()
    return f"{Path(os.path.relpath(page, folder)).as_posix()}#{route}"


def _rel(target: Path, start: Path) -> str | None:
    """``target`` relative to the folder ``start``, or None when it does not exist."""
    if not target.is_file():
        return None
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()


def thesis_counterpart_metrics(dataset: str, model: str) -> dict[str, float] | None:
    """Metrics of the latest ``*-thesis`` version trained on the same dataset, if any."""
    if model not in ("vae", "gan"):
        return None
    latest = tracking.latest_version(tracking.registered_name(dataset, model + "-thesis"))
    return None if latest is None else tracking.run_metrics(latest.run_id)


def _audit_summary(dataset_dir: Path) -> dict:
    try:
        summary = summarize(read_manifest(dataset_dir))
    except DatasetError:  # never audited
        return {}
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
    from musicflow.pages import plots
    from musicflow.pages.report import render_report, write_report

    page = report_page(trained, registered)
    out = page.parent
    windows = load_windows(evaluation.run_id)
    pitch_low = evaluation.pitch_low
    history = trained.history
    accuracies = plots.accuracy_series(history)
    curves = {k: v for k, v in history.items() if k not in accuracies}
    generated, heldout = windows.generated, windows.heldout  # merged view; tracks apart below
    figures = {
        "Note frequency: held-out real vs generated": plots.note_frequency_figure(
            heldout, generated, pitch_low=pitch_low
        ),
        "Generated windows": plots.sample_grid_figure(generated, pitch_low=pitch_low),
        "Held-out real windows": plots.sample_grid_figure(
            heldout, pitch_low=pitch_low, title="Held-out real windows"
        ),
    }
    if curves:
        figures["Training losses"] = plots.loss_curves_figure(curves)
    if accuracies:
        figures["Discriminator accuracy"] = plots.discriminator_accuracy_figure(accuracies)
    if windows.latents is not None:
        figures["Latent space of held-out windows"] = plots.latent_scatter_figure(windows.latents)
    names = track_names(dataset_dir)
    gen_t, held_t = windows.generated_tracks, windows.heldout_tracks
    if gen_t is not None and held_t is not None and names and len(names) == gen_t.shape[1]:
        # the first generated piece's first 8 bars, above the first held-out windows
        figures["Tracks: a generated piece and held-out windows"] = plots.track_roll_figure(
            gen_t, held_t, names, pitch_low=pitch_low
        )
    scores, score_note = engrave(pieces.midi_files)
    files = sorted(
        pieces.midi_files + pieces.audio_files + scores, key=lambda p: (p.stem, p.suffix)
    )
    links = [(p.name, p.relative_to(out).as_posix()) for p in files]
    info = {
        "registered model": registered.name,
        "version": registered.version,
        "model URI": registered.model_uri,
        "MLflow run": registered.run_id,
        "sampling threshold": evaluation.threshold,
        "generated windows scored": evaluation.n_generated,
        "held-out windows": evaluation.n_heldout,
    }
    standing = _standing(trained.dataset, registered)
    html = render_report(
        title=f"{registered.name} v{registered.version}",
        model_info=info,
        metrics={k: v for k, v in evaluation.scores.items() if not _nan(v)},
        baseline_model_metrics=thesis_counterpart_metrics(trained.dataset, trained.model),
        audit_summary=audit_summary if audit_summary is not None else _audit_summary(dataset_dir),
        figures=figures,
        links=links,
        lineage=_lineage(trained, registered, dataset_dir, out, standing),
        audio_note=" ".join(n for n in (pieces.audio_note, score_note) if n) or None,
        track_names=names,
    )
    _write_figures(out / "figures", figures)
    write_report(page, html)
    tracking.log_artifacts(registered.run_id, out, artifact_path="report")
    tracking.set_run_description(
        registered.run_id, run_description(trained, evaluation, registered, standing, page)
    )
    return str(page)


def track_names(dataset_dir: Path) -> list[str] | None:
    """The dataset's track names in track order (its encoding's ``tracks``, docs/encoding.md),
    None for a merged dataset or one that cannot be read."""
    info = read_dataset_info(dataset_dir)
    described = info.encoding.get("tracks", []) if info is not None else []
    return [str(t.get("name", "")) for t in described] or None


def engrave(midi_files: list[Path]) -> tuple[list[Path], str | None]:
    """The score files of the pieces: each MusicXML that generate wrote beside a MIDI file, and
    its engraving as SVG (``score.render_svg``) beside it; and why some are missing, if so."""
    from musicflow.adapters import atomic
    from musicflow.pages import score

    found: list[Path] = []
    note = None
    for midi in midi_files:
        xml = midi.with_suffix(score.SUFFIX)
        if not xml.is_file():
            continue
        found.append(xml)
        if note is None:
            try:
                found.append(
                    atomic.write_text(xml.with_suffix(".svg"), score.render_svg(xml.read_text()))
                )
            except (ImportError, ValueError, OSError) as exc:
                note = f"Scores not engraved: {exc}."
    return found, note


def _standing(dataset: str, registered: RegisteredModel) -> tuple[bool, bool]:
    """(champion of its registered model, best of the dataset) right now."""
    rows = tracking.dataset_versions(dataset)
    best = best_of_versions(rows)
    mine = [r for r in rows if r.model == registered.name and r.version == registered.version]
    champion = bool(mine and mine[0].champion)
    is_best = best is not None and (best.model, best.version) == (
        registered.name,
        registered.version,
    )
    return champion, is_best


def _lineage(
    trained: TrainedModel,
    registered: RegisteredModel,
    dataset_dir: Path,
    out: Path,
    standing: tuple[bool, bool],
) -> Lineage:
    from musicflow.pages.report import Lineage

    files = DatasetFolder(dataset_dir, trained.dataset)
    experiment = tracking.experiment_id_of(trained.dataset)
    return Lineage(
        dataset=trained.dataset,
        digest=trained.digest or "unknown",
        code_version=trained.code_version or lineage.code_version(),
        git_commit=lineage.git_commit(),
        epochs_done=trained.epochs_done or len(next(iter(trained.history.values()), [])),
        max_epochs=trained.max_epochs,
        kept_epoch=trained.kept_epoch,
        stopped_by=trained.stopped_by,
        time_budget_s=trained.time_budget_s,
        train_seconds=trained.train_seconds or None,
        placement=trained.placement,
        run_id=registered.run_id,
        run_url=ui_link(out, tracking.run_route(experiment, registered.run_id))
        if experiment
        else None,
        model_uri=registered.model_uri,
        data_docs=_rel(files.data_docs_index, out),
        audit_page=_rel(files.audit_page, out),
        index_page=os.path.relpath(files.index_page, out).replace(os.sep, "/"),
        champion=standing[0],
        best_of_dataset=standing[1],
        registered_model=registered.name,
    )


def run_description(
    trained: TrainedModel,
    evaluation: Evaluation,
    registered: RegisteredModel,
    standing: tuple[bool, bool],
    page: Path,
) -> str:
    """The run's description in the MLflow UI (Markdown): the run summary, where the version
    stands, where the report is."""
    registered_as = (
        f"Registered as `{registered.model_uri}`"
        + (" — champion" if standing[0] else "")
        + (", best of the dataset" if standing[1] else "")
        + "."
    )
    return "\n".join([run_summary(trained, evaluation), "", registered_as, "", f"Report: `{page}`"])


def write_index(dataset: str, dataset_dir: Path | None = None) -> Path:
    """Write ``reports/<dataset>/index.html``: every registered version of every model of the
    dataset, its metrics beside their baselines, each model's champion and the best of the
    dataset marked. Returns its path."""
    from musicflow.pages.report import IndexRow, render_index, write_report

    files = DatasetFolder(dataset_dir, dataset) if dataset_dir else DatasetFolder.named(dataset)
    page = files.index_page
    folder = files.reports
    rows = tracking.dataset_versions(dataset)
    best = best_of_versions(rows)
    experiment = next((r.experiment_id for r in rows if r.experiment_id), None)
    index_rows = []
    for r in sorted(rows, key=lambda r: (r.model_kind, -r.version)):
        report = files.report_page(r.model_kind, r.version)
        done = r.metrics.get("epochs_completed")
        planned = r.params.get("max_epochs") or r.params.get("epochs")
        index_rows.append(
            IndexRow(
                registered_model=r.model,
                model=r.model_kind,
                version=r.version,
                metrics=r.metrics,
                evaluation=r.evaluation_names(),
                champion=r.champion,
                best=best is not None and (r.model, r.version) == (best.model, best.version),
                epochs_done=None if done is None else int(done),
                max_epochs=int(planned) if planned and planned.isdigit() else None,
                digest=r.params.get("dataset_digest", ""),
                created=_when(r.created_ms),
                report=_rel(report, folder),
                run_url=ui_link(folder, tracking.run_route(r.experiment_id, r.run_id))
                if r.experiment_id
                else None,
                preview=_rel(report.parent / "midi" / f"sample-001{PREVIEW_SUFFIX}", folder),
            )
        )
    links = []
    reference = reference_excerpt(files.root, folder / "reference")
    audit, docs = files.audit_page, files.data_docs_index
    history = None
    if read_history(files.root):  # it links this index, written below
        history = write_history_page(dataset, files.root, index=True)
    for label, target in (("audit page", audit), ("GX Data Docs", docs), ("history", history)):
        href = _rel(target, folder) if target else None
        if href:
            links.append((label, href))
    html = render_index(
        dataset=dataset,
        rows=index_rows,
        best_text=best_text(best),
        best_reason=best_reason([r for r in rows if r.champion]),
        reference=None if reference is None else reference[0],
        reference_links=[] if reference is None else _links(reference[1], folder),
        rule_text=RULE_TEXT,
        links=links,
        ui_url=ui_link(folder, tracking.experiment_route(experiment)) if experiment else None,
    )
    write_report(page, html)
    return page


def _links(files: list[Path], folder: Path) -> list[tuple[str, str]]:
    return [(p.name, href) for p in files if (href := _rel(p, folder))]


def excerpt_rows(paths: Sequence[str], segments: Sequence[int], n: int) -> list[int]:
    """Which rows (windows, sorted by file then segment) make the reference excerpt: the
    first ``n`` consecutive windows of the first file (by path) that has that many, else the
    longest run of consecutive windows of any file (the first such)."""
    best: list[int] = []
    i = 0
    while i < len(paths):
        j = i
        while j + 1 < len(paths) and paths[j + 1] == paths[i]:
            j += 1
        start = i
        for k in range(i, j + 1):  # runs of consecutive segments in this file
            if k > i and segments[k] != segments[k - 1] + 1:
                start = k
            run = list(range(max(start, k - n + 1), k + 1))
            if len(run) == n:
                return run
            if len(run) > len(best):
                best = run
        i = j + 1
    return best


def reference_excerpt(dataset_dir: Path, out_dir: Path) -> tuple[str, list[Path]] | None:
    """A held-out real excerpt as long as a generated piece (``PIECE_WINDOWS`` windows: 16
    bars), written the way the pieces are (MIDI decoded from the dataset's windows, MusicXML,
    audio preview) into ``out_dir``: what the index page plays as the reference. Kept while
    the dataset's digest stays the same. Returns (what it is, its files), or None when the
    dataset has no held-out windows to take it from."""
    import json

    import numpy as np

    from musicflow.adapters import atomic, audio
    from musicflow.adapters.store import reading
    from musicflow.core import roll, tracks
    from musicflow.core.errors import DatasetError
    from musicflow.models.data import heldout_split
    from musicflow.pages import score

    midi = out_dir / "heldout-excerpt.mid"
    meta = out_dir / "excerpt.json"
    try:
        with reading(dataset_dir) as info:
            try:
                known = json.loads(meta.read_text())
            except (OSError, ValueError):
                known = {}
            files = [out_dir / name for name in known.get("files", [])]
            if known.get("digest") == info.digest and all(p.is_file() for p in files):
                return known["text"], files
            _, heldout = heldout_split(info.shard_paths)
            if not heldout:
                return None
            tables = [
                pq.read_table(
                    p,
                    columns=["source_path", "segment", "roll"],
                    filters=[("source_sha256", "in", sorted(heldout))],
                )
                for p in info.shard_paths
            ]
            frame = pd.concat([t.to_pandas() for t in tables]).sort_values(
                ["source_path", "segment"], kind="stable"
            )
            pitch_low, digest = info.pitch_low, info.digest
            specs = list(info.encoding.get("tracks") or [])
    except (DatasetError, OSError, ValueError):
        return None
    rows = excerpt_rows(list(frame.source_path), list(frame.segment), PIECE_WINDOWS)
    if not rows:
        return None
    chosen = frame.iloc[rows]
    packed = np.stack([np.frombuffer(b, np.uint8) for b in chosen.roll])
    segments = chosen.segment.to_numpy().astype(np.int64)
    xml = midi.with_suffix(score.SUFFIX)
    if specs:  # the MIDI file and the score keep the tracks apart, as generate writes them
        parts = tracks.decode_tracks(packed, segments - segments[0], len(specs), pitch_low)
        atomic.write_bytes(midi, tracks.tracks_to_midi(parts, specs))
        files = [midi, score.write_tracks_musicxml(xml, parts, specs)]
    else:
        windows = roll.unpack_windows(packed.reshape(-1, roll.PACKED_BYTES))
        notes = roll.decode_roll(windows, pitch_low=pitch_low, segments=segments - segments[0])
        atomic.write_bytes(midi, roll.notes_to_midi(notes))
        files = [midi, score.write_musicxml(xml, notes)]
    first_bar = 2 * int(segments[0]) + 1
    text = (
        f"Held-out real music, the reference: bars {first_bar}–{first_bar + 2 * len(rows) - 1} "
        f"of {Path(chosen.source_path.iloc[0]).name} (a held-out file: no model trained on "
        "it), taken from the dataset's windows and rendered as the pieces are."
    )
    try:
        files.append(audio.render_preview(midi).path)
    except (audio.AudioError, OSError) as exc:
        text += f" No audio preview: {exc}."
    atomic.write_text(
        meta, json.dumps({"digest": digest, "text": text, "files": [p.name for p in files]})
    )
    return text, files


def best_text(best: VersionRow | None) -> str:
    """One line naming the best version of the dataset (a ``tracking.VersionRow``)."""
    if best is None:
        return (
            "No version is eligible as the best of the dataset yet "
            "(none is both scored and not mostly blank)."
        )
    m = best.metrics
    return (
        f"Best of the dataset: {best.model} v{best.version} "
        f"(models:/{best.model}@champion): onenn_accuracy {m['onenn_accuracy']:.3f}, "
        f"pitch_hist_l1 {m.get('pitch_hist_l1', float('nan')):.3f}."
    )


def _when(ms: int) -> str:
    if not ms:
        return ""
    return datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M")


def _write_figures(folder: Path, figures: dict[str, bytes]) -> None:
    """Each figure also as its own PNG, so the MLflow UI shows it in the run's artifacts."""
    from musicflow.adapters import atomic

    for title, data in figures.items():
        slug = "-".join("".join(c if c.isalnum() else " " for c in title.lower()).split())
        atomic.write_bytes(folder / f"{slug}.png", data)


def _nan(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value)


report = task(name="report", cache_policy=NONE, persist_result=False)(build_report)
index = task(name="index", cache_policy=NONE, persist_result=False)(write_index)
