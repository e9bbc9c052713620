"""models/frame_sampler.py: the frame models' numpy sampler, without TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from musicflow.core.errors import ModelError

SMALL = {
    "rnn": {"hidden": 16},
    "rnn-2-layers": {"hidden": 16, "layers": 2, "key_normalize": False, "temperature": 0.8},
    "vae": {"hidden": 16, "latent_dim": 4, "enc_filters": [8, 8, 8]},
    "gan": {"hidden": 16, "latent_dim": 4, "enc_filters": [8, 8], "actor_layers": [8, 8]},
}


def test_the_sampler_module_imports_neither_tensorflow_nor_keras() -> None:
    script = (
        "import sys\n"
        "import musicflow.models.frame_sampler\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


@pytest.mark.integration
@pytest.mark.parametrize("variant", SMALL)
def test_a_sampler_from_the_arrays_alone_samples_what_the_keras_model_samples(variant) -> None:
    from musicflow.models import build_model
    from musicflow.models.frame_sampler import FrameSampler, array_names

    name = variant.split("-")[0]
    model = build_model(name, seed=5, **SMALL[variant])
    arrays = {k: v.copy() for k, v in model.sampler_arrays().items()}
    assert sorted(arrays) == sorted(array_names(model.config))
    sampler = FrameSampler(name, dict(model.config), arrays)
    pieces = sampler.sample_pieces(2, 3, seed=9)
    assert pieces.shape == (2, 3, 96, 96) and pieces.sum() > 0
    assert np.array_equal(pieces, model.sample_pieces(2, 3, seed=9))
    assert np.array_equal(sampler.sample(3, seed=1), model.sample(3, seed=1))


@pytest.mark.integration
def test_a_sampler_missing_an_array_is_a_model_error() -> None:
    from musicflow.models import build_model
    from musicflow.models.frame_sampler import FrameSampler

    model = build_model("rnn", seed=0, hidden=8)
    arrays = model.sampler_arrays()
    del arrays["lstm0.recurrent_kernel"]
    with pytest.raises(ModelError, match=r"lstm0\.recurrent_kernel"):
        FrameSampler("rnn", model.config, arrays)


def test_saved_arrays_load_without_pickle_and_are_checked(tmp_path) -> None:
    from musicflow.models.frame_sampler import META_FILE, FrameSampler, array_names

    config = {"frame_steps": 3, "layers": 1, "key_normalize": True, "temperature": 1.0}
    rng = np.random.default_rng(0)
    shapes = {
        "out.kernel": (8, 3 * 96 + 2 * 97),
        "out.bias": (3 * 96 + 2 * 97,),
        "link.kernel": (97, 97),
        "key_prior.counts": (12,),
        "lstm0.kernel": (2 * 96 + 16 + 12, 32),
        "lstm0.recurrent_kernel": (8, 32),
        "lstm0.bias": (32,),
        "h0_0.kernel": (12, 8),
        "h0_0.bias": (8,),
        "c0_0.kernel": (12, 8),
        "c0_0.bias": (8,),
    }
    assert sorted(shapes) == sorted(array_names(config))
    arrays = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    arrays["key_prior.counts"] = np.abs(arrays["key_prior.counts"])  # tonics counted
    sampler = FrameSampler("rnn", config, arrays)
    sampler.save(tmp_path)
    loaded = FrameSampler.load(tmp_path)
    assert np.array_equal(loaded.sample_pieces(2, 2, seed=4), sampler.sample_pieces(2, 2, seed=4))

    meta = json.loads((tmp_path / META_FILE).read_text())
    meta["arrays"]["lstm0.bias"]["shape"] = [33]
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"disagree on arrays lstm0\.bias"):
        FrameSampler.load(tmp_path)
    (tmp_path / META_FILE).write_text("{")
    with pytest.raises(ModelError, match="unreadable sampler files"):
        FrameSampler.load(tmp_path)
