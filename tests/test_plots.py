"""musicflow/pages/plots.py: every figure is a valid, deterministic PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import random_windows as _windows

from musicflow.pages import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plots_return_png_bytes(figures: dict[str, bytes]) -> None:
    for name, data in figures.items():
        assert data.startswith(PNG_MAGIC), name
        assert len(data) > 2000, name


def test_plots_are_deterministic_and_write_paths(tmp_path: Path) -> None:
    real = _windows(5, 4)
    a = plots.note_frequency_figure(real, real, path=tmp_path / "sub" / "nf.png")
    b = plots.note_frequency_figure(real, real)
    assert a == b
    assert (tmp_path / "sub" / "nf.png").read_bytes() == a
    assert list((tmp_path / "sub").iterdir()) == [tmp_path / "sub" / "nf.png"]  # no temp left


def test_pca_2d_finds_the_main_axis() -> None:
    rng = np.random.default_rng(5)
    t = rng.normal(size=200)
    pts = np.stack([t, 2 * t, 0.01 * rng.normal(size=200)], axis=1)
    proj, ratio = plots.pca_2d(pts)
    assert proj.shape == (200, 2)
    assert ratio[0] > 0.99
    assert abs(np.corrcoef(proj[:, 0], t)[0, 1]) > 0.999


def test_pitch_shares_sum_to_one() -> None:
    assert plots.pitch_shares(_windows(3, 6)).sum() == pytest.approx(1.0)
    assert plots.pitch_shares(np.zeros((1, 96, 96))).sum() == 0.0


def test_losses_of_different_scales_get_their_own_panels() -> None:
    history = {
        "loss": [2000.0, 1900.0],
        "recon_loss": [0.16, 0.15],
        "val_loss": [2100.0, 2000.0],
        "val_recon_loss": [0.17, 0.16],
    }
    assert plots.curve_groups(history) == {
        "loss": ["loss", "val_loss"],
        "recon_loss": ["recon_loss", "val_recon_loss"],
    }
    assert plots.loss_curves_figure(history).startswith(PNG_MAGIC)
    assert plots.loss_curves_figure({"loss": [3.0]}, log_scale=True).startswith(PNG_MAGIC)


def test_discriminator_accuracy_draws_only_accuracies() -> None:
    gan = {
        "d_loss": [1.2],
        "g_loss": [0.8],
        "d_acc_real": [0.9],
        "d_acc_fake": [0.7],
        "pitch_loss": [40.0],
        "time_loss": [3.0],
        "val_d_acc_real": [0.85],
    }
    assert list(plots.accuracy_series(gan)) == ["d_acc_real", "d_acc_fake", "val_d_acc_real"]
    assert plots.discriminator_accuracy_figure(gan).startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="accuracy"):
        plots.discriminator_accuracy_figure({"d_loss": [1.0]})


def test_track_roll_colours_each_track_and_keeps_the_upper_voice_in_a_unison(
    tmp_path: Path,
) -> None:
    from matplotlib.colors import to_rgb

    piece = np.zeros((2, 96, 96), bool)  # (K, rows, steps)
    piece[0, 30, 0:48] = True  # the first track
    piece[1, 40, 0:96] = True  # the second, lower
    piece[1, 30, 40:60] = True  # … joining the first in a unison for 8 steps
    image = plots._track_image(piece, slice(20, 50))
    first, second = (to_rgb(plots.TRACK_COLOURS[t]) for t in (0, 1))
    assert tuple(image[30 - 20, 10]) == first and tuple(image[40 - 20, 10]) == second
    assert tuple(image[30 - 20, 45]) == first  # the unison shows the earlier track
    assert tuple(image[30 - 20, 55]) == second
    assert tuple(image[0, 0]) == (1.0, 1.0, 1.0)  # silence is white

    gen = np.stack([piece, piece])  # two windows of the piece
    held = gen[:1, ::-1]
    png = plots.track_roll_figure(gen, held, ["Soprano", "Alto"], path=tmp_path / "t.png")
    assert png.startswith(b"\x89PNG") and (tmp_path / "t.png").read_bytes() == png
    assert plots.track_roll_figure(gen, held, ["Soprano", "Alto"]) == png
    with pytest.raises(ValueError, match="n, 3, rows"):
        plots.track_roll_figure(gen, held, ["Soprano", "Alto", "Tenor"])
