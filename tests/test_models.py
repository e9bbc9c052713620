"""Tests of musicflow.models: input pipeline, split by file, the four models' contract.

Windows are made at test time (random sparse note runs); models are built with small layer
widths so the whole file runs in about a minute on two cores.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from musicflow.core.catalog import MODEL_NAMES
from musicflow.core.errors import DatasetError, ModelError
from musicflow.models import build_model, load_model
from musicflow.models import data as mdata

SMALL = {
    "rnn": {"hidden": 16},
    "vae": {"hidden": 16, "latent_dim": 4, "enc_filters": [8, 8, 8]},
    "gan": {
        "hidden": 16,
        "latent_dim": 4,
        "enc_filters": [8, 8, 8],
        "actor_layers": [8, 8],
        "critic_layers": [8, 8],
        "prior_steps": 30,
        "prior_batch_size": 16,
    },
    "vae-thesis": {
        "enc_filters": [4, 4, 4, 4],
        "dense_units": 8,
        "dec_dense_filters": 2,
        "dec_filters": 4,
    },
    "gan-thesis": {"g_dense_filters": 8, "g_filters": [8, 4, 4], "d_filters": [4, 4]},
}
METRICS = {
    "rnn": {"loss"},
    "vae": {"loss", "recon_loss", "kl_loss"},
    "gan": {"loss", "recon_loss", "kl_loss"},  # its VAE phase; fit_prior: the GAN's
    "vae-thesis": {"loss", "recon_loss", "kl_loss"},
    "gan-thesis": {"d_loss", "g_loss", "d_acc_real", "d_acc_fake"},
}


def make_windows(n: int, seed: int) -> np.ndarray:
    """bool (n, 96, 96): a few held notes per window, like sparse piano rolls."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 96, 96), bool)
    for w in out:
        for _ in range(int(rng.integers(4, 12))):
            row, start = int(rng.integers(30, 70)), int(rng.integers(0, 90))
            w[row, start : start + int(rng.integers(2, 12))] = True
    return out


def write_shard(path: Path, files: dict[str, np.ndarray]) -> None:
    """A shard (docs/dataset.md) holding the windows of each source sha."""
    rows: dict[str, list] = {k: [] for k in ("source_sha256", "source_path", "segment")}
    rolls: list[bytes] = []
    for sha, windows in files.items():
        for k, w in enumerate(windows):
            rows["source_sha256"].append(sha)
            rows["source_path"].append(f"{sha[:6]}.mid")
            rows["segment"].append(k)
            rolls.append(np.packbits(w).tobytes())
    table = pa.table(
        {
            "source_sha256": pa.array(rows["source_sha256"], pa.string()),
            "source_path": pa.array(rows["source_path"], pa.string()),
            "segment": pa.array(rows["segment"], pa.int32()),
            "n_active": pa.array(
                [int(np.unpackbits(np.frombuffer(r, np.uint8)).sum()) for r in rolls], pa.int32()
            ),
            "roll": pa.array(rolls, pa.binary(1152)),
        }
    )
    pq.write_table(table, path, row_group_size=7)


def sha(i: int) -> str:
    return f"{i:064x}"


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    folder = tmp_path_factory.mktemp("rolls")
    files = {sha(i): make_windows(10 + i, seed=i) for i in range(4)}
    write_shard(folder / "part-00000.parquet", {k: files[k] for k in list(files)[:2]})
    write_shard(folder / "part-00001.parquet", {k: files[k] for k in list(files)[2:]})
    return folder, files


# --- split by file ---------------------------------------------------------------------------


def test_split_files_by_file_and_stable_when_files_are_added() -> None:
    shas = [sha(i) for i in range(200)]
    train, held = mdata.split_files(shas, 0.1, seed=0)
    assert train | held == set(shas) and not train & held
    assert 5 < len(held) < 40
    train2, held2 = mdata.split_files([*shas, *(sha(i) for i in range(200, 400))], 0.1, seed=0)
    assert held2 & set(shas) == held and train2 & set(shas) == train
    assert mdata.split_files(shas, 0.1, seed=1)[1] != held
    assert mdata.split_files(reversed(shas), 0.1, seed=0) == (train, held)


def test_split_files_keeps_one_file_on_each_side() -> None:
    assert mdata.split_files([sha(1)], 0.5) == ({sha(1)}, set())
    train, held = mdata.split_files([sha(1), sha(2)], 0.0)
    assert len(train) == len(held) == 1
    train, held = mdata.split_files([sha(1), sha(2), sha(3)], 1.0)
    assert len(train) == 1 and len(held) == 2
    with pytest.raises(DatasetError):
        mdata.split_files([sha(1)], 1.5)


# --- pipeline --------------------------------------------------------------------------------


def test_load_windows_filters_by_file_and_round_trips_bits(shards) -> None:
    folder, files = shards
    assert mdata.source_shas(folder) == sorted(files)
    wanted = {sha(1), sha(2)}
    got = mdata.load_windows(folder, wanted)
    assert got.dtype == bool and got.shape == (11 + 12, 96, 96)
    assert np.array_equal(got, np.concatenate([files[sha(1)], files[sha(2)]]))
    assert mdata.load_windows(sorted(folder.glob("part-*.parquet")), None, limit=5).shape[0] == 5
    with pytest.raises(DatasetError):
        mdata.load_windows(folder / "missing", None)


@pytest.mark.integration  # TensorFlow
def test_window_dataset_streams_shuffled_batches_deterministically(shards) -> None:
    folder, files = shards
    wanted = {sha(0), sha(3)}
    expected = {w.tobytes() for k in wanted for w in files[k]}

    def epoch(ds) -> list[np.ndarray]:
        return [b.numpy() for b in ds]

    ds = mdata.window_dataset(folder, wanted, batch_size=8, seed=3)
    first, second = epoch(ds), epoch(ds)
    again = epoch(mdata.window_dataset(folder, wanted, batch_size=8, seed=3))
    batch = first[0]
    assert batch.dtype == np.float32 and batch.shape == (8, 96, 96, 1)
    windows = np.concatenate(first)[..., 0]
    assert {w.astype(bool).tobytes() for w in windows} == expected and len(windows) == 23
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(np.concatenate(first), np.concatenate(second))  # reshuffled


# --- the four models -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    return make_windows(64, seed=7)


def batches(x: np.ndarray, size: int = 16) -> list[np.ndarray]:
    f = x.astype(np.float32)[..., None]
    return [f[i : i + size] for i in range(0, len(f), size)]


@pytest.fixture(scope="module")
def trained(windows, tmp_path_factory) -> dict[str, tuple[object, dict, Path]]:
    """Each model built small, trained one epoch on 64 windows (batch 16; ``gan`` then its
    GAN over the codes), and saved."""
    out = {}
    root = tmp_path_factory.mktemp("saved")
    for name in MODEL_NAMES:
        model = build_model(name, seed=11, batch_size=16, **SMALL[name])
        metrics = model.fit_epoch(batches(windows))
        if name == "gan":
            model.fit_prior(batches(windows), batches(windows[:20]))
        model.save(root / name)
        out[name] = (model, metrics, root / name)
    return out


@pytest.mark.integration  # TensorFlow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fit_epoch_validate_and_sample(name: str, trained, windows) -> None:
    model, metrics, _ = trained[name]
    assert model.name == name and model.kind in ("ar", "vae", "gan")
    json.dumps(model.config)
    assert METRICS[name] <= set(metrics)
    assert all(math.isfinite(v) for v in metrics.values())
    val = model.validate(batches(windows[:20]))
    if model.kind == "vae":
        assert math.isfinite(val["val_nll" if name == "vae" else "val_loss"])
    assert all(math.isfinite(v) for v in val.values())
    assert model.validate([]) == {}
    s = model.sample(5, seed=3)
    assert s.dtype == np.float32 and s.shape == (5, 96, 96)
    assert s.min() >= 0.0 and s.max() <= 1.0
    assert np.array_equal(s, model.sample(5, seed=3))
    assert not np.array_equal(s, model.sample(5, seed=4))


@pytest.mark.integration  # TensorFlow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_encode_and_interpolate(name: str, trained, windows) -> None:
    model, _, _ = trained[name]
    if name in ("rnn", "gan-thesis"):
        with pytest.raises(NotImplementedError):
            model.encode(windows[:2])
        with pytest.raises(NotImplementedError):
            model.interpolate(windows[0], windows[1], 3)
        return
    z = model.encode(windows[:3])
    assert z.shape == (3, model.config["latent_dim"]) and z.dtype == np.float32
    path = model.interpolate(windows[0], windows[1], steps=4)
    assert path.shape == (4, 96, 96) and path.dtype == np.float32
    assert path.min() >= 0.0 and path.max() <= 1.0


@pytest.mark.integration  # TensorFlow
def test_saved_models_sample_identically_in_a_fresh_process(trained, tmp_path) -> None:
    dirs = {name: str(d) for name, (_, _, d) in trained.items()}
    script = (
        "import json, sys, numpy as np\n"
        "from musicflow.models import load_model\n"
        "dirs = json.loads(sys.argv[1])\n"
        "np.savez(sys.argv[2], **{n: load_model(d).sample(4, seed=5) for n, d in dirs.items()})\n"
    )
    out = tmp_path / "samples.npz"
    subprocess.run(
        [sys.executable, "-c", script, json.dumps(dirs), str(out)], check=True, timeout=180
    )
    fresh = np.load(out)
    for name, (model, _, directory) in trained.items():
        assert np.array_equal(fresh[name], model.sample(4, seed=5)), name
        meta = json.loads((directory / "config.json").read_text())
        assert meta["name"] == name and meta["state"]["epochs_done"] == 1


@pytest.mark.integration  # TensorFlow
def test_load_model_in_process_restores_state(trained) -> None:
    model, _, directory = trained["vae"]
    loaded = load_model(directory)
    assert loaded.config == model.config and loaded.epochs_done == 1
    assert np.array_equal(loaded.sample(3, seed=0), model.sample(3, seed=0))


@pytest.mark.integration  # TensorFlow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_same_seed_same_first_epoch(name: str, trained, windows) -> None:
    """A second build with the same seed, config and windows repeats the first epoch exactly."""
    _, metrics, _ = trained[name]
    again = build_model(name, seed=11, batch_size=16, **SMALL[name]).fit_epoch(batches(windows))
    assert again == metrics


@pytest.mark.integration  # TensorFlow
def test_unknown_model_or_hyperparameter_is_a_model_error(tmp_path) -> None:
    with pytest.raises(ModelError):
        build_model("transformer", seed=0)
    with pytest.raises(ModelError):
        build_model("vae", seed=0, latent_dims=3)
    with pytest.raises(ModelError):
        build_model("gan", seed=0, actor_layers=[8, 0])
    with pytest.raises(ModelError):
        load_model(tmp_path)


@pytest.mark.integration  # TensorFlow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_sample_pieces_are_windows_in_time_order(name: str, trained) -> None:
    model, _, _ = trained[name]
    pieces = model.sample_pieces(3, 4, seed=7)
    assert pieces.dtype == np.float32 and pieces.shape == (3, 4, 96, 96)
    assert pieces.min() >= 0.0 and pieces.max() <= 1.0
    assert np.array_equal(pieces, model.sample_pieces(3, 4, seed=7))
    # piece i depends on (seed, i) only, not on how many pieces were asked for
    assert np.array_equal(pieces[1], model.sample_pieces(2, 4, seed=7)[1])
    assert not np.array_equal(pieces[0], model.sample_pieces(1, 4, seed=8)[0])
    piece = pieces[0]
    if name == "gan-thesis":  # independent samples, chained
        assert np.array_equal(piece, model.sample(4, seed=7 * 100_003))
    elif name == "vae-thesis":  # a latent walk: its ends reconstruct two samples
        ends = model.sample(2, seed=7 * 100_003)
        assert np.array_equal(piece, model.interpolate(ends[0], ends[1], 4))
    else:  # sequence models: binary frames; the first window is what sample() gives (but for
        # its last step, where a note re-struck at the next window's start leaves a gap)
        assert set(np.unique(pieces)) <= {0.0, 1.0}
        assert np.array_equal(model.sample(3, seed=7)[..., :-1], pieces[:, 0, :, :-1])


@pytest.mark.integration
def test_the_gan_learns_where_codes_lie_and_samples_through_its_generator(windows) -> None:
    """``gan``'s second phase: critic and generator train on the VAE's codes (deterministic
    given the seed, stopped by its step count or its seconds); the numpy sampler's generator is
    the Keras one, and it moves prior draws."""
    model = build_model("gan", seed=3, batch_size=16, **{**SMALL["gan"], "prior_steps": 40})
    model.fit_epoch(batches(windows))
    metrics = model.fit_prior(batches(windows), batches(windows[:20]))
    assert {"d_loss", "g_loss", "d_acc_real", "d_acc_fake", "val_d_acc_real"} <= set(metrics)
    assert metrics["prior_steps_done"] == 40
    assert all(math.isfinite(v) for v in metrics.values())
    again = build_model("gan", seed=3, batch_size=16, **{**SMALL["gan"], "prior_steps": 40})
    again.fit_epoch(batches(windows))
    assert again.fit_prior(batches(windows), batches(windows[:20])) == metrics
    assert model.fit_prior(batches(windows), seconds=0.0)["prior_steps_done"] == 5  # a round
    z = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    sampler = model.sampler()
    assert np.allclose(sampler.constrain(z), np.asarray(model.actor(z)), atol=1e-5)
    assert not np.allclose(sampler.constrain(z), z, atol=1e-3)
    assert model.heldout_nll is None  # an implicit prior: no likelihood to report
