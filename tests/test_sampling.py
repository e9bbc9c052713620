"""Thresholds and clean-up from model outputs to binary windows."""

from __future__ import annotations

import numpy as np
import pytest

from musicflow.core import sampling as s


def test_calibrated_threshold_hits_the_target_density() -> None:
    rng = np.random.default_rng(0)
    probs = rng.beta(0.5, 3.0, size=(50, 96, 96))
    for target in (0.01, 0.03, 0.2):
        t = s.calibrate_threshold(probs, target)
        assert s.active_share(probs > t) == pytest.approx(target, rel=0.01)


def test_calibrated_threshold_is_clamped() -> None:
    collapsed = np.full((4, 96, 96), 0.01)
    collapsed[0, 0, 0] = 0.02
    t = s.calibrate_threshold(collapsed, 0.03)
    assert t == s.MIN_THRESHOLD
    assert not s.binarize(collapsed, t).any()  # a collapsed generator stays blank
    saturated = np.ones((2, 96, 96))
    assert s.calibrate_threshold(saturated, 0.03) == s.MAX_THRESHOLD
    assert s.calibrate_threshold(saturated, 0.03, max_threshold=0.5) == 0.5


@pytest.mark.parametrize("target", [0.0, 1.0, -0.1])
def test_calibrate_rejects_bad_targets(target: float) -> None:
    with pytest.raises(ValueError):
        s.calibrate_threshold(np.zeros((1, 96, 96)), target)


def test_calibrate_rejects_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        s.calibrate_threshold(np.full((1, 4, 4), np.nan), 0.1)


def test_remove_isolated_cells() -> None:
    w = np.zeros((96, 96), dtype=bool)
    w[10, 10] = True  # isolated: removed
    w[20, 20:25] = True  # a note: kept
    w[30, 30] = True  # one-step notes touching diagonally: both kept
    w[31, 31] = True
    w[40, 40] = True  # one-step note a semitone above a long note: kept
    w[41, 38:45] = True
    w[0, 0] = True  # isolated in a corner: removed
    w[95, 95] = True
    out = s.remove_isolated_cells(w)
    expected = w.copy()
    expected[10, 10] = expected[0, 0] = expected[95, 95] = False
    assert (out == expected).all()
    assert (s.remove_isolated_cells(out) == out).all()  # idempotent


def test_remove_isolated_cells_batches() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((5, 96, 96)) < 0.02
    out = s.remove_isolated_cells(x)
    assert out.shape == x.shape
    assert (out <= x).all()
    assert (s.remove_isolated_cells(out) == out).all()
    for i in range(5):
        assert (out[i] == s.remove_isolated_cells(x[i])).all()


def test_binarize_shapes_and_strictness() -> None:
    probs = np.zeros((3, 96, 96, 1))
    probs[:, 50, 10:20, 0] = 0.5
    probs[:, 60, 10:20, 0] = 0.9
    out = s.binarize(probs, 0.5)
    assert out.shape == (3, 96, 96) and out.dtype == bool
    assert out[:, 60, 10:20].all() and not out[:, 50].any()  # strict >
    single = s.binarize(probs[0, :, :, 0], 0.4)
    assert single.shape == (96, 96) and single[50, 10:20].all()


def test_binarize_clean_flag() -> None:
    probs = np.zeros((1, 96, 96))
    probs[0, 5, 5] = 1.0
    assert not s.binarize(probs, 0.5).any()
    assert s.binarize(probs, 0.5, clean=False)[0, 5, 5]


def test_sampling_settings_read_back_as_written_and_a_bad_file_is_a_model_error(
    tmp_path,
) -> None:
    from musicflow.core.errors import ModelError

    encoding = {"name": "roll-v1", "pitch_low": 30}
    s.write_settings(tmp_path, threshold=0.4, encoding=encoding, dataset="d", target_density=0.1)
    read = s.read_settings(tmp_path)
    assert read["threshold"] == 0.4 and read["encoding"] == encoding and read["dataset"] == "d"
    (tmp_path / s.SETTINGS_FILE).write_text('{"threshold": 0.5}')  # no encoding
    with pytest.raises(ModelError, match=r"unreadable sampling\.json"):
        s.read_settings(tmp_path)
