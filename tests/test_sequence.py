"""models/sequence.py: the frame models' TF twins of musicflow.core.frames, the count-then-set
likelihood and its sampler (models/frame_sampler.py)."""

from __future__ import annotations

import itertools
from types import ModuleType

import numpy as np
import pytest

from musicflow.core import frames
from musicflow.core.roll import ROWS as P  # pitches per frame (sequence.P)
from musicflow.models import frame_sampler


@pytest.fixture(scope="module")
def tf() -> ModuleType:
    """TensorFlow, imported by the tests that use it (all marked integration)."""
    import tensorflow

    return tensorflow


@pytest.fixture(scope="module")
def seq(tf: ModuleType) -> ModuleType:
    from musicflow.models import sequence

    assert sequence.P == P
    return sequence


def random_rolls(n: int, steps: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 96, steps), bool)
    for w in x:
        for _ in range(int(rng.integers(5, 20))):
            row, start = int(rng.integers(20, 80)), int(rng.integers(0, steps - 2))
            w[row, start : start + int(rng.integers(1, 20))] = True
    return x


@pytest.mark.integration
@pytest.mark.parametrize("steps", [96, 192])
def test_tf_states_and_tonics_match_numpy(tf: ModuleType, seq: ModuleType, steps: int) -> None:
    x = random_rolls(6, steps, seed=steps)
    onset, hold = seq.roll_states_tf(tf.constant(x[..., None].astype(np.float32)), 3)
    states = frames.roll_to_states(x)
    assert np.array_equal(onset.numpy() == 1, states == frames.ONSET)
    assert np.array_equal(hold.numpy() == 1, states == frames.HOLD)
    for pitch_low in (21, 30):
        tonics = seq.tonics_tf(tf.constant(x[..., None].astype(np.float32)), pitch_low)
        assert np.array_equal(tonics.numpy(), frames.window_tonics(x, pitch_low))


@pytest.mark.integration
def test_log_esp_is_the_elementary_symmetric_polynomials(tf: ModuleType, seq: ModuleType) -> None:
    log_w = np.random.default_rng(0).uniform(-4, 1, (3, P)).astype(np.float32)
    log_w[0, 50:] = seq._NEG  # pitches that can never be chosen
    got = seq.log_esp(tf.constant(log_w)).numpy()
    for i in range(3):
        poly = np.array([1.0])
        for w in np.exp(log_w[i].astype(np.float64)):
            poly = np.convolve(poly, [1.0, w])
        finite = poly > 1e-300
        assert np.allclose(got[i][finite], np.log(poly[finite]), atol=1e-3)
        assert (got[i][~finite] < -1e29).all()


def toy_heads(
    tf: ModuleType,
    onset: np.ndarray,
    hold: np.ndarray,
    logits: np.ndarray,
    held: np.ndarray,
    new: np.ndarray,
) -> dict:
    """Heads for one frame (batch of configurations), as ``_heads`` builds them."""
    b = len(onset)
    return {
        "logits": tf.constant(np.broadcast_to(logits, (b, 1, P, 3)).astype(np.float32)),
        "held_counts": tf.constant(np.broadcast_to(held, (b, 1, P + 1)).astype(np.float32)),
        "new_counts": tf.constant(np.broadcast_to(new, (b, 1, P + 1)).astype(np.float32)),
        "k_hold": tf.constant(hold.sum(axis=1, keepdims=True).astype(np.int32)),
        "k_on": tf.constant(onset.sum(axis=1, keepdims=True).astype(np.int32)),
    }


@pytest.mark.integration
def test_exact_likelihood_sums_to_one_and_the_sampler_follows_it(
    tf: ModuleType, seq: ModuleType
) -> None:
    """Three candidate pitches, two of them sounding before: every frame over them gets an
    exact probability; together they sum to 1, and the numpy sampler draws them as often."""
    rng = np.random.default_rng(1)
    cand, was_on = [40, 44, 47], [40, 47]
    logits = np.full((P, 3), [0.0, -60.0, seq._NEG])  # other pitches: (almost) never
    logits[cand] = rng.normal(0, 1, (3, 3))
    logits[[p for p in cand if p not in was_on], 2] = seq._NEG
    held = np.full(P + 1, seq._NEG)
    held[:3] = rng.normal(0, 1, 3)  # 0..2 held notes possible
    new = np.full(P + 1, seq._NEG)
    new[:2] = rng.normal(0, 1, 2)  # 0 or 1 new note: always a candidate left to take it
    link = np.zeros((P + 1, P + 1))
    configs = []
    for states in itertools.product([0, 1, 2], repeat=3):
        if any(s == 2 and p not in was_on for s, p in zip(states, cand, strict=True)):
            continue
        frame = np.zeros(P, np.int8)
        frame[cand] = states
        configs.append(frame)
    configs = np.array(configs)
    onset = (configs == frames.ONSET).astype(np.float32)[:, None]
    hold = (configs == frames.HOLD).astype(np.float32)[:, None]
    nll = seq.FrameModelBase._exact_nll(
        tf.constant(onset),
        tf.constant(hold),
        toy_heads(tf, onset[:, 0], hold[:, 0], logits, held, new),
    ).numpy()
    prob = np.exp(-nll.astype(np.float64))
    assert abs(prob.sum() - 1.0) < 1e-3

    prev = np.zeros((20000, P), np.int8)
    prev[:, was_on] = frames.HOLD
    full = np.concatenate([logits.reshape(-1), held, new])[None].repeat(len(prev), 0)
    u = np.random.default_rng(2).random((len(prev), 2 + 2 * P))
    drawn = frame_sampler._sample_frame(full, link, prev, u)
    index = {frame.tobytes(): i for i, frame in enumerate(configs)}
    counts = np.bincount([index[f.tobytes()] for f in drawn], minlength=len(configs))
    assert np.abs(counts / len(drawn) - prob).max() < 0.015


def test_sample_set_draws_exactly_k_from_the_conditional_bernoulli() -> None:
    log_w = np.full((30000, P), -np.inf)
    log_w[:, [3, 10, 20, 30]] = np.log([1.0, 2.0, 3.0, 4.0])
    k = np.full(30000, 2)
    chosen = frame_sampler._sample_set(log_w, k, np.random.default_rng(0).random((30000, P)))
    assert (chosen.sum(axis=1) == 2).all()
    pairs = list(itertools.combinations([3, 10, 20, 30], 2))
    weight = np.array([np.exp(log_w[0, a] + log_w[0, b]) for a, b in pairs])
    freq = np.array([np.mean(chosen[:, a] & chosen[:, b]) for a, b in pairs])
    assert np.abs(freq - weight / weight.sum()).max() < 0.01
