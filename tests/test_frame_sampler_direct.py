"""models/frame_sampler.py ``direct``: the sampler ``generate`` runs (prompt, interpolation,
key, temperature, any length), its numpy encoder, and the rest limit. Tiny untrained models."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_windows

from musicflow.core import compose

pytestmark = pytest.mark.integration  # builds Keras models

SMALL = {"hidden": 16, "latent_dim": 4, "enc_filters": [8, 8, 8]}


@pytest.fixture(scope="module")
def vae():
    from musicflow.models import build_model

    return build_model("vae", seed=3, **SMALL)


def test_the_numpy_encoder_gives_the_keras_encoders_codes(vae) -> None:
    windows = random_windows(6, 2)
    assert np.allclose(vae.sampler().encode(windows), vae.encode(windows), atol=1e-5)


def test_pieces_are_any_number_of_bars_and_each_depends_on_seed_and_index_only(vae) -> None:
    sampler = vae.sampler()
    three = sampler.direct(3, 5, seed=4)
    assert three.shape == (3, 96, 5 * compose.STEPS_PER_BAR)
    assert np.array_equal(three[1], sampler.direct(2, 5, seed=4)[1])
    assert np.array_equal(three[1:], sampler.direct(2, 5, seed=4, first=1))  # a chunk
    assert not np.array_equal(three[0], sampler.direct(1, 5, seed=5)[0])
    pieces = sampler.sample_pieces(2, 3, seed=4)  # direct's pieces, cut into windows
    song = sampler.direct(2, 6, seed=4)
    assert np.array_equal(pieces, song.reshape(2, 96, 3, 96).transpose(0, 2, 1, 3))


def test_no_bar_is_silent_even_for_a_model_that_mostly_rests(vae) -> None:
    # an untrained model starts at few onsets and small counts: it rests most of the time
    from musicflow.models import build_model

    rnn = build_model("rnn", seed=1, hidden=16)
    for model in (rnn, vae):
        for song in model.sampler().direct(4, 12, seed=0, temperature=0.5):
            assert not compose.silent_bars(song).any()


def test_prompt_key_and_interpolation_condition_the_sampler(vae) -> None:
    sampler = vae.sampler()
    prompt = np.concatenate(list(random_windows(2, 7)), axis=1)[:, :144]  # 3 bars
    cont = sampler.direct(2, 4, seed=1, prompt=prompt)
    assert cont.shape == (2, 96, 4 * compose.STEPS_PER_BAR)
    assert not np.array_equal(cont, sampler.direct(2, 4, seed=1))
    assert not np.array_equal(
        sampler.direct(1, 2, seed=1, tonic=2), sampler.direct(1, 2, seed=1, tonic=8)
    )
    assert not np.array_equal(
        sampler.direct(1, 2, seed=1, temperature=0.5), sampler.direct(1, 2, seed=1)
    )
    a, b = random_windows(2, 9)
    morph = sampler.direct(2, 6, seed=1, ends=(a, b))
    assert morph.shape == (2, 96, 6 * compose.STEPS_PER_BAR) and morph.any()
    # a VAE without its encoder's arrays cannot encode
    from musicflow.core.errors import ModelError
    from musicflow.models.frame_sampler import FrameSampler

    rnn_like = FrameSampler("rnn", {**vae.config, "latent_dim": 0}, sampler.arrays)
    with pytest.raises(ModelError, match="no encoder"):
        rnn_like.encode(a[None])
