"""Figures for the report: each function returns PNG bytes (and writes them when given a path).

Public functions: :func:`note_frequency_figure`, :func:`loss_curves_figure`,
:func:`discriminator_accuracy_figure`, :func:`latent_scatter_figure`,
:func:`sample_grid_figure`, :func:`track_roll_figure`, :func:`pca_2d`.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, never pyplot: no global
state, no GUI backend, safe in worker threads. PNGs carry no software/version metadata, so the
same inputs give the same bytes (content-addressed caching stays stable).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from musicflow.adapters import atomic
from musicflow.core import roll

REAL_COLOUR = "#4c72b0"
GEN_COLOUR = "#dd8452"
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _finish(fig: Figure, path: str | os.PathLike[str] | None) -> bytes:
    """PNG bytes of ``fig``; written atomically to ``path`` too when given."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    data = buf.getvalue()
    if path is not None:
        atomic.write_bytes(path, data)
    return data


def _windows(x: np.ndarray) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"expected windows of shape (n, rows, steps), got {a.shape}")
    return a != 0


def note_name(pitch: int) -> str:
    """MIDI pitch as a note name with octave, C4 = 60."""
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def pitch_shares(windows: np.ndarray) -> np.ndarray:
    """Share of all active cells on each row (sums to 1; zeros for blank input)."""
    counts = _windows(windows).sum(axis=(0, 2)).astype(np.float64)
    total = counts.sum()
    return counts / total if total else counts


def note_frequency_figure(
    real: np.ndarray,
    generated: np.ndarray,
    *,
    pitch_low: int = roll.DEFAULT_PITCH_LOW,
    title: str = "Note frequency",
    path: str | os.PathLike[str] | None = None,
) -> bytes:
    """The thesis's note-frequency figure: per pitch, the share of active cells in real and
    generated windows (top) and generated minus real, in percentage points (bottom).
    """
    real_share = pitch_shares(real)
    gen_share = pitch_shares(generated)
    rows = len(real_share)
    pitches = pitch_low + rows - 1 - np.arange(rows)  # row 0 is the highest pitch
    order = np.argsort(pitches)
    pitches = pitches[order]
    real_pct, gen_pct = 100 * real_share[order], 100 * gen_share[order]
    diff = gen_pct - real_pct

    fig = _new_figure(11, 6)
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.bar(pitches - 0.2, real_pct, width=0.4, color=REAL_COLOUR, label="real (held-out)")
    top.bar(pitches + 0.2, gen_pct, width=0.4, color=GEN_COLOUR, label="generated")
    top.set_ylabel("share of active cells (%)")
    top.set_title(title)
    top.legend(loc="upper right")
    bottom.bar(pitches, diff, width=0.8, color=np.where(diff >= 0, GEN_COLOUR, REAL_COLOUR))
    bottom.axhline(0, color="black", linewidth=0.8)
    bottom.set_ylabel("generated − real (pp)")
    bottom.set_title(f"Difference (sum of |diff| = {np.abs(diff).sum():.1f} pp)")
    ticks = [p for p in pitches if p % 12 == 0]
    bottom.set_xticks(ticks, [note_name(int(p)) for p in ticks])
    bottom.set_xlabel("pitch")
    for ax in (top, bottom):
        ax.grid(axis="y", alpha=0.3)
    return _finish(fig, path)


def _epochs(values: Sequence[float]) -> np.ndarray:
    return np.arange(1, len(values) + 1)


MARKER_EPOCHS = 40  # up to this many epochs each point is drawn, so one epoch is still visible


def _plot_series(ax, name: str, values: Sequence[float], colour: str, zorder: int) -> None:
    y = np.asarray(values, dtype=float)
    ax.plot(
        _epochs(y),
        y,
        "--" if name.startswith("val_") else "-",
        color=colour,
        label=name,
        marker="o" if len(y) <= MARKER_EPOCHS else None,
        markersize=4,
        zorder=zorder,
    )


def _epoch_axis(ax, n_epochs: int) -> None:
    ax.set_xlabel("epoch")
    if n_epochs <= 10:  # whole epochs only; matplotlib would otherwise tick 0.5, 1.5 …
        ax.set_xticks(range(1, n_epochs + 1))
        ax.set_xlim(0.5, n_epochs + 0.5)


def curve_groups(history: Mapping[str, Sequence[float]]) -> dict[str, list[str]]:
    """Series grouped by what they measure: ``loss`` with ``val_loss``, ``kl_loss`` with
    ``val_kl_loss`` …, in first-seen order."""
    groups: dict[str, list[str]] = {}
    for name in history:
        groups.setdefault(name.removeprefix("val_"), []).append(name)
    return groups


def loss_curves_figure(
    history: Mapping[str, Sequence[float]],
    *,
    title: str = "Training losses",
    log_scale: bool = False,
    path: str | os.PathLike[str] | None = None,
) -> bytes:
    """Per-epoch curves of a history (e.g. ``{"loss": [...], "val_loss": [...]}``), one panel
    per quantity, each with its own y axis.

    Losses of one model differ by orders of magnitude (a VAE's total loss near 2,000 beside a
    reconstruction loss of 0.16), so they never share an axis. A validation series (``val_*``)
    is dashed in its panel beside the training series, so over-fitting shows as the two lines
    parting. Points carry markers up to :data:`MARKER_EPOCHS` epochs: a one-epoch run shows
    its single value instead of an empty axis. ``log_scale`` puts every panel on a log axis
    (for positive series).
    """
    groups = curve_groups(history)
    if not groups:
        raise ValueError("empty history")
    ncols = min(3, len(groups))
    nrows = -(-len(groups) // ncols)
    fig = _new_figure(3.6 * ncols + 0.6, 2.9 * nrows + 0.5)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    n_epochs = max(len(v) for v in history.values())
    for ax, (base, names) in zip(axes, groups.items(), strict=False):
        for i, name in enumerate(names):
            _plot_series(ax, name, history[name], "C0" if name == base else "C1", 3 + i)
        if log_scale and all(np.all(np.asarray(history[n], float) > 0) for n in names):
            ax.set_yscale("log")
        ax.set_title(base, fontsize="medium")
        _epoch_axis(ax, n_epochs)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(groups) :]:
        ax.axis("off")
    fig.suptitle(title)
    return _finish(fig, path)


def accuracy_series(history: Mapping[str, Sequence[float]]) -> dict[str, Sequence[float]]:
    """The accuracies of a history (``d_acc_real``, ``val_d_acc_real`` …): values in 0-1."""
    return {k: v for k, v in history.items() if "acc" in k.removeprefix("val_").split("_")}


def discriminator_accuracy_figure(
    history: Mapping[str, Sequence[float]],
    *,
    title: str = "Discriminator accuracy",
    path: str | os.PathLike[str] | None = None,
) -> bytes:
    """Per-epoch discriminator accuracies (on real and on generated windows), on a 0-1 axis.

    Only the accuracies of ``history`` are drawn (:func:`accuracy_series`): losses have their
    own figure and scale. A dashed line marks 0.5, where the discriminator cannot tell real
    from generated; the thesis's failed GANs sat near 1.0.
    """
    series = accuracy_series(history)
    if not series:
        raise ValueError("no accuracy series in the history")
    fig = _new_figure(8, 4)
    ax = fig.subplots()
    colours: dict[str, str] = {}
    for i, (name, values) in enumerate(series.items()):
        colour = colours.setdefault(name.removeprefix("val_"), f"C{len(colours) % 10}")
        _plot_series(ax, name, values, colour, 3 + i)
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance (0.5)")
    ax.set_ylim(-0.02, 1.02)
    _epoch_axis(ax, max(len(v) for v in series.values()))
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _finish(fig, path)


def pca_2d(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project points on their first two principal components (numpy SVD).

    Returns ``(projected (n, 2), explained variance ratio (2,))``. Fewer than 2 dimensions
    are padded with zeros.
    """
    z = np.asarray(points, dtype=np.float64)
    if z.ndim != 2 or not len(z):
        raise ValueError(f"expected points of shape (n, d), got {z.shape}")
    centred = z - z.mean(axis=0)
    _, sing, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(2, vt.shape[0])
    proj = np.zeros((len(z), 2))
    proj[:, :k] = centred @ vt[:k].T
    var = sing**2
    ratio = np.zeros(2)
    if var.sum() > 0:
        ratio[:k] = var[:k] / var.sum()
    return proj, ratio


def latent_scatter_figure(
    latents: np.ndarray,
    *,
    labels: Sequence[str] | np.ndarray | None = None,
    title: str = "Latent space",
    path: str | os.PathLike[str] | None = None,
) -> bytes:
    """Scatter of latent codes: 2-d latents as they are, others on their first two principal
    components (as the thesis plotted its 2-d VAE latent space). ``labels`` colour the points
    (e.g. composer or held-out vs train).
    """
    z = np.asarray(latents, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2 or not len(z):
        raise ValueError(f"expected latents of shape (n, d), got {np.shape(latents)}")
    if z.shape[1] == 2:
        xy, xlabel, ylabel = z, "z[0]", "z[1]"
    else:
        xy, ratio = pca_2d(z)
        xlabel, ylabel = (f"PC{i + 1} ({100 * r:.0f}% var.)" for i, r in enumerate(ratio))
    fig = _new_figure(6.5, 6)
    ax = fig.subplots()
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.6, color=REAL_COLOUR, linewidths=0)
    else:
        lab = np.asarray(labels).astype(str)
        if len(lab) != len(xy):
            raise ValueError("one label per latent point")
        for i, name in enumerate(np.unique(lab)):
            sel = lab == name
            ax.scatter(
                xy[sel, 0], xy[sel, 1], s=6, alpha=0.6, color=f"C{i % 10}", label=name, linewidths=0
            )
        ax.legend(markerscale=3, fontsize="small")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title} (d = {z.shape[1]}, n = {len(z)})")
    ax.grid(alpha=0.3)
    return _finish(fig, path)


def sample_grid_figure(
    windows: np.ndarray,
    *,
    ncols: int = 4,
    max_windows: int = 16,
    titles: Sequence[str] | None = None,
    pitch_low: int = roll.DEFAULT_PITCH_LOW,
    title: str = "Samples",
    path: str | os.PathLike[str] | None = None,
) -> bytes:
    """Piano-roll images of the first ``max_windows`` windows, pitch up, time to the right;
    beat lines every 12 steps and bar lines every 48.
    """
    x = _windows(windows)[:max_windows]
    if not len(x):
        raise ValueError("no windows to draw")
    rows, steps = x.shape[1:]
    ncols = max(1, min(ncols, len(x)))
    nrows = -(-len(x) // ncols)
    fig = _new_figure(2.6 * ncols, 2.6 * nrows + 0.4)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    top_pitch = pitch_low + rows - 1
    for i, ax in enumerate(axes):
        if i >= len(x):
            ax.axis("off")
            continue
        # row 0 is the highest pitch, so origin="upper" puts pitch up
        ax.imshow(
            x[i],
            cmap="gray_r",
            origin="upper",
            aspect="auto",
            interpolation="nearest",
            extent=(0, steps, top_pitch - rows + 0.5, top_pitch + 0.5),
            vmin=0,
            vmax=1,
        )
        for step in range(12, steps, 12):
            ax.axvline(step, color="#c44e52" if step % 48 == 0 else "#dddddd", linewidth=0.5)
        ax.set_xticks(range(0, steps + 1, 48))
        c_ticks = [p for p in range(top_pitch - rows + 1, top_pitch + 1) if p % 24 == 0]
        ax.set_yticks(c_ticks, [note_name(p) for p in c_ticks], fontsize="x-small")
        ax.tick_params(labelsize="x-small")
        if titles is not None and i < len(titles):
            ax.set_title(str(titles[i]), fontsize="small")
    fig.suptitle(title)
    return _finish(fig, path)


#: One colour per track, in track order (Soprano, Alto, Tenor, Bass … or the instrument
#: families); matplotlib's ten-colour cycle, repeated past ten tracks.
TRACK_COLOURS = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip


def _track_image(piece: np.ndarray, rows: slice) -> np.ndarray:
    """RGB image ``(rows, steps, 3)`` of a piece ``(K, 96, steps)``: each track's cells in its
    colour on white; where tracks overlap the earlier track is drawn (the top voice stays
    visible in a unison)."""
    from matplotlib.colors import to_rgb

    k, _, steps = piece.shape
    image = np.ones((rows.stop - rows.start, steps, 3))
    for t in reversed(range(k)):
        image[piece[t, rows]] = to_rgb(TRACK_COLOURS[t % len(TRACK_COLOURS)])
    return image


def track_roll_figure(
    generated: np.ndarray,
    heldout: np.ndarray,
    names: Sequence[str],
    *,
    pitch_low: int = roll.DEFAULT_PITCH_LOW,
    max_windows: int = 4,
    labels: Sequence[str] = ("generated", "held-out real"),
    title: str = "Tracks",
    path: str | os.PathLike[str] | None = None,
) -> bytes:
    """Piano rolls of a generated piece above a held-out one, each track in its colour, with a
    legend of the track names. Each side is ``(n, K, 96, steps)`` windows of one piece in
    order; its first ``max_windows`` are drawn end to end (4 windows: 8 bars). The pitch axis
    shows the rows either side uses (two semitones of margin), so four voices in two octaves
    are not lost in 96 rows; bar lines every 48 steps.
    """
    sides = []
    for x in (generated, heldout):
        a = np.asarray(x) != 0
        if a.ndim != 4 or a.shape[1] != len(names):
            raise ValueError(
                f"expected windows of shape (n, {len(names)}, rows, steps), got {a.shape}"
            )
        a = a[:max_windows]
        sides.append(np.concatenate(list(a), axis=2) if len(a) else None)
    if all(s is None for s in sides):
        raise ValueError("no windows to draw")
    n_rows = next(s for s in sides if s is not None).shape[1]
    used = np.zeros(n_rows, bool)
    for s in sides:
        if s is not None:
            used |= s.any(axis=(0, 2))
    found = np.flatnonzero(used)
    first, last = (found[0], found[-1]) if len(found) else (0, n_rows - 1)
    rows = slice(max(0, first - 2), min(n_rows, last + 3))
    top_pitch = pitch_low + n_rows - 1 - rows.start  # row 0 is the highest pitch
    bottom_pitch = pitch_low + n_rows - rows.stop

    fig = _new_figure(12, 7.5)
    axes = fig.subplots(2, 1, sharey=True)
    for ax, side, label in zip(axes, sides, labels, strict=False):
        ax.set_title(str(label), fontsize="medium")
        if side is None:
            ax.text(0.5, 0.5, "no windows", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            continue
        steps = side.shape[2]
        ax.imshow(
            _track_image(side, rows),
            origin="upper",
            aspect="auto",
            interpolation="nearest",
            extent=(0, steps, bottom_pitch - 0.5, top_pitch + 0.5),
        )
        for step in range(48, steps, 48):
            ax.axvline(step, color="#bbbbbb", linewidth=0.6)
        ax.set_xticks(range(0, steps + 1, 48), [str(b + 1) for b in range(steps // 48 + 1)])
        ax.set_xlabel("bar")
        c_ticks = [p for p in range(bottom_pitch, top_pitch + 1) if p % 12 == 0]
        ax.set_yticks(c_ticks, [note_name(p) for p in c_ticks])
        ax.grid(axis="y", alpha=0.25)
    from matplotlib.patches import Patch

    handles = [
        Patch(color=TRACK_COLOURS[t % len(TRACK_COLOURS)], label=str(name) or f"Track {t + 1}")
        for t, name in enumerate(names)
    ]
    fig.legend(handles=handles, loc="outside right upper", title="tracks")
    fig.suptitle(title)
    return _finish(fig, path)
