"""Evaluate: generated windows vs held-out real windows, with baselines (docs/metrics.md).

Computed once per training run and logged to it: the scores as metrics, the settings as
params, and the windows that were scored as the artifact ``evaluation/windows.npz`` (generated
and held-out windows, and what the model says about the held-out ones, such as a VAE's latent
codes). The report and the quality bench read that artifact back; nothing is sampled twice.

Held-out windows come from held-out FILES (``models.data.heldout_split``), and every metric is
computed in the dataset's own pitch window (its ``encoding.pitch_low``). The threshold that
binarises the model's output is calibrated so the generated active-cell share matches the
training windows' (the thesis tuned it by hand per dataset).

A model trained on tracks (``--tracks voices|instruments``, docs/models.md "Tracks") is scored
on the merged view (its tracks laid over each other, as the dataset's merged windows are), so
its scores compare with a merged model's; the tracked windows are kept in the artifact too
(``generated_tracks``, ``heldout_tracks``), and :func:`track_scores` adds per-track metrics.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicflow.adapters import results, tracking
from musicflow.adapters.store import DatasetInfo, holding
from musicflow.core import roll, tracks
from musicflow.core.defaults import PIECE_WINDOWS
from musicflow.core.errors import DatasetError
from musicflow.core.metrics import BASELINE_SUFFIX, HEADLINE_METRICS, MODEL_METRIC_INFO
from musicflow.core.settings import budget_text
from musicflow.tasks.train import TrainedModel, load_trained, run_cache_key

EVAL_WINDOWS = 512
TRAIN_SAMPLE_LIMIT = 20_000
LATENT_LIMIT = 2000  # held-out windows whose latent codes are kept (a report figure)
WINDOWS_ARTIFACT = "evaluation/windows.npz"

#: Metrics that only some models can compute, on the held-out windows: metric name → the name
#: of the model method returning it (a float). A model without the method gets no such metric.
#: Adding a model-provided metric is one line here (its meaning and direction are in
#: ``metrics.MODEL_METRIC_INFO``); reports, the index page and ``compare`` then show it.
MODEL_METRICS: dict[str, str] = {"heldout_nll": "heldout_nll"}


@results.result_type
@dataclass(frozen=True)
class Evaluation:
    """What the evaluate step hands on (small, data only); the windows are in the run's
    ``evaluation/windows.npz`` (:func:`load_windows`)."""

    run_id: str
    scores: dict[str, float]  # every metric and its _baseline, as logged
    threshold: float  # binarisation threshold calibrated on the model's samples
    target_density: float  # training windows' share of active cells
    pitch_low: int  # the dataset's pitch window the metrics were computed in
    n_generated: int
    n_heldout: int
    n_train_sample: int


@dataclass
class EvaluationWindows:
    """The windows an evaluation scored (bool (n, 96, 96)), and the held-out windows' latent
    codes when the model has an encoder. With tracks, ``generated``/``heldout`` are the merged
    view and ``generated_tracks``/``heldout_tracks`` the tracks apart (bool (n, K, 96, 96))."""

    generated: np.ndarray
    heldout: np.ndarray
    latents: np.ndarray | None = None
    generated_tracks: np.ndarray | None = None
    heldout_tracks: np.ndarray | None = None

    def save(self, path: Path) -> None:
        arrays = {
            "generated": roll.pack_windows(self.generated),
            "heldout": roll.pack_windows(self.heldout),
        }
        if self.latents is not None:
            arrays["latents"] = self.latents
        for key in ("generated_tracks", "heldout_tracks"):
            windows = getattr(self, key)
            if windows is not None:  # packed window by window, the track axis kept
                arrays[key] = roll.pack_windows(windows.reshape(-1, roll.ROWS, roll.COLS))
                arrays[f"{key}_shape"] = np.asarray(windows.shape[:2], np.int64)
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path: Path) -> EvaluationWindows:
        with np.load(path, allow_pickle=False) as data:
            kept = {}
            for key in ("generated_tracks", "heldout_tracks"):
                if key in data.files:
                    shape = tuple(int(v) for v in data[f"{key}_shape"])
                    kept[key] = roll.unpack_windows(data[key]).reshape(*shape, roll.ROWS, roll.COLS)
            return cls(
                generated=roll.unpack_windows(data["generated"]),
                heldout=roll.unpack_windows(data["heldout"]),
                latents=data.get("latents"),
                **kept,
            )


def evaluation_probs(model, n: int, seed: int) -> np.ndarray:
    """The model outputs an evaluation scores, the one place that says which samples are "the
    generated windows" of a run: the windows of ``n // PIECE_WINDOWS`` pieces as ``musicflow
    generate`` writes them (``model.sample_pieces(…, seed + 1)``), so the scores describe the
    music a user gets, continuation across windows included. float32 (n, 96, 96)."""
    pieces = model.sample_pieces(max(n // PIECE_WINDOWS, 1), PIECE_WINDOWS, seed=seed + 1)
    return pieces.reshape(-1, *pieces.shape[2:])


def evaluation_track_probs(model, n: int, seed: int) -> np.ndarray:
    """:func:`evaluation_probs` of a model trained on tracks, each track apart: the same
    pieces (``model.sample_track_pieces``, whose tracks laid over each other are
    ``sample_pieces``), float32 (n, K, 96, 96)."""
    pieces = model.sample_track_pieces(max(n // PIECE_WINDOWS, 1), PIECE_WINDOWS, seed=seed + 1)
    return pieces.reshape(-1, *pieces.shape[2:])


def _sample_index(n: int, limit: int, seed: int) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def evaluate_model(
    model, dataset: DatasetInfo, *, seed: int, n_generated: int = EVAL_WINDOWS
) -> tuple[Evaluation, EvaluationWindows]:
    """Sample, calibrate, binarise and score ``model`` against the dataset's held-out files,
    in the dataset's pitch window. Pure computation: nothing is logged (``run_id`` is empty)."""
    from musicflow.core import metrics
    from musicflow.core.sampling import binarize, calibrate_threshold
    from musicflow.models.data import heldout_split, load_window_sources, load_windows

    shards = dataset.shard_paths
    train_shas, heldout_shas = heldout_split(shards)
    k = tracks.track_count(dataset.encoding)
    heldout_t = load_windows(shards, heldout_shas, tracks=k)  # (n, K, 96, 96) when K > 1
    train_sources = load_window_sources(shards, train_shas)
    keep = _sample_index(len(train_sources), TRAIN_SAMPLE_LIMIT, seed)
    train_t = load_windows(shards, train_shas, tracks=k, index=keep)
    # the merged view: what every metric reads, so scores compare with merged models'
    heldout = heldout_t.any(axis=1) if k > 1 else heldout_t
    train_sample = train_t.any(axis=1) if k > 1 else train_t
    # Sources let copy_rate_baseline skip a window's own file (not only the window itself).
    train_sources = train_sources[keep]
    target = float(train_sample.mean())
    generated_t = None
    if k > 1:
        probs_t = evaluation_track_probs(model, n_generated, seed)
        probs = probs_t.max(axis=1)
    else:
        probs = evaluation_probs(model, n_generated, seed)
    threshold = calibrate_threshold(probs, target)
    generated = binarize(probs, threshold)
    if k > 1:
        generated_t = binarize(probs_t.reshape(-1, *probs_t.shape[2:]), threshold)
        generated_t = generated_t.reshape(probs_t.shape)
    scores = metrics.evaluate(
        generated,
        heldout,
        train_sample,
        seed=seed,
        train_sources=train_sources,
        pitch_low=dataset.pitch_low,
    )
    if generated_t is not None:
        scores.update(track_scores(dataset, generated_t, heldout_t, train_t, train_sources, seed))
    for metric, method in MODEL_METRICS.items():
        score = getattr(model, method, None)  # None: a model without it (``gan``'s NLL)
        if score is not None:
            scores[metric] = float(score(heldout_t))  # all tracks' notes
    latents = model.encode(heldout_t[:LATENT_LIMIT]) if model.kind == "vae" else None
    evaluation = Evaluation(
        run_id="",
        scores={k: float(v) for k, v in scores.items()},
        threshold=float(threshold),
        target_density=target,
        pitch_low=dataset.pitch_low,
        n_generated=len(generated),
        n_heldout=len(heldout),
        n_train_sample=len(train_sample),
    )
    kept = {}
    if generated_t is not None:
        kept = {"generated_tracks": generated_t, "heldout_tracks": heldout_t}
    return evaluation, EvaluationWindows(generated, heldout, latents, **kept)


def track_scores(
    dataset: DatasetInfo,
    generated: np.ndarray,
    heldout: np.ndarray,
    train_sample: np.ndarray,
    train_sources: np.ndarray,
    seed: int,
) -> dict[str, float]:
    """The track metrics (docs/metrics.md, "Track metrics") of windows ``(n, K, 96, 96)``,
    named ``track.<i>.*`` and ``tracks.*`` beside the merged metrics; the dataset's encoding
    says which tracks are voices (crossing) and which is the drum track (no tonal distance)."""
    from musicflow.core import track_metrics, tracks

    described = dataset.encoding.get("tracks", [])
    return track_metrics.track_scores(
        generated,
        heldout,
        train_sample,
        [str(t.get("name", "")) for t in described],
        pitch_low=dataset.pitch_low,
        seed=seed,
        train_sources=train_sources,
        voices=tracks.policy_of(dataset.encoding) == tracks.VOICES,
        drums=[bool(t.get("drums")) for t in described],
    )


def evaluate_run(trained: TrainedModel, version: DatasetInfo) -> Evaluation:
    """Evaluate a training run's model on the dataset version it trained on (``version``,
    not what the folder holds now) and log the result to that run."""
    import dataclasses

    if version.digest != trained.digest:
        raise DatasetError(
            f"run {trained.run_id} trained on dataset version {trained.digest[:16]}, "
            f"not {version.digest[:16]}: it is evaluated on the version it trained on only"
        )

    folder, name = WINDOWS_ARTIFACT.split("/")
    with tempfile.TemporaryDirectory() as tmp:
        model = load_trained(trained, Path(tmp) / "checkpoint")
        with holding(version) as info:
            evaluation, windows = evaluate_model(model, info, seed=trained.seed)
        evaluation = dataclasses.replace(evaluation, run_id=trained.run_id)
        (Path(tmp) / folder).mkdir()
        windows.save(Path(tmp) / folder / name)
        with tracking.resume_run(trained.run_id):
            tracking.log_metrics(evaluation.scores)
            tracking.set_tags({tracking.EVALUATION_METRICS_TAG: _evaluation_names(evaluation)})
            tracking.log_params(
                {
                    "sampling_threshold": evaluation.threshold,
                    "eval_windows": evaluation.n_generated,
                    "n_heldout_windows": evaluation.n_heldout,
                    "n_train_sample": evaluation.n_train_sample,
                }
            )
        tracking.log_artifacts(trained.run_id, Path(tmp) / folder, folder)
    return evaluation


def _evaluation_names(evaluation: Evaluation) -> str:
    """The run's evaluation metrics (without baselines), so readers of the run (``compare``,
    the index page) tell them from training losses whatever their names."""
    from musicflow.core.metrics import evaluation_names

    return ",".join(evaluation_names(evaluation.scores, MODEL_METRICS))


def run_summary(trained: TrainedModel, evaluation: Evaluation) -> str:
    """A run in a few lines of Markdown, as the MLflow UI shows it for the run and for its
    version: what was trained on which data, for how long, and the headline scores (then the
    model-provided ones) beside their baselines."""
    budget = f" (time budget {budget_text(trained.time_budget_s)})" if trained.time_budget_s else ""
    lines = [
        f"**{trained.model}** trained for {trained.epochs_done} of {trained.max_epochs} epochs"
        f"{budget} on **{trained.dataset}** (digest `{(trained.digest or '?')[:16]}`), "
        f"seed {trained.seed}, code {trained.code_version}.",
        "",
    ]
    for key in (*HEADLINE_METRICS, *MODEL_METRIC_INFO):
        value = evaluation.scores.get(key)
        if value is None or value != value:  # absent or NaN
            continue
        base = evaluation.scores.get(f"{key}{BASELINE_SUFFIX}")
        shown = f"- `{key}` {value:.3f}"
        if base is not None and base == base:
            shown += f" (baseline {base:.3f})"
        lines.append(shown)
    return "\n".join(lines)


def load_windows(run_id: str) -> EvaluationWindows:
    """The windows a run's evaluation scored, read back from its artifact."""
    with tempfile.TemporaryDirectory() as tmp:
        return EvaluationWindows.load(
            tracking.download_artifacts(run_id, WINDOWS_ARTIFACT, Path(tmp))
        )


evaluate = results.cached_task(
    evaluate_run, name="evaluate", cache_key_fn=run_cache_key("evaluate")
)
