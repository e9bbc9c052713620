"""Training under tf.distribute and mixed precision (musicflow/adapters/accelerate.py,
models/base.py).

CI has no GPU, so the replicas are two logical CPU devices (TensorFlow's way of testing
MirroredStrategy without GPUs); that needs a fresh process, as devices are fixed when
TensorFlow starts. The GPU-only parts (float16 kernels, NCCL all-reduce) are TensorFlow's; what
is ours (slicing batches, loss scaling, summed tonic counts, one weight average per step,
float32 outputs, a checkpoint that loads on a CPU) runs here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from musicflow.adapters.accelerate import Placement, precision_policy

pytestmark = pytest.mark.integration


def test_precision_policy() -> None:
    assert precision_policy(False, 0) == precision_policy(False, 2) == "float32"
    assert precision_policy(True, 1) == "mixed_float16"
    assert precision_policy(True, 0) == "mixed_bfloat16"


def test_placement_describes_itself() -> None:
    assert Placement().describe() == "1 replica on CPU, float32"
    two = Placement(2, ("GPU:0", "GPU:1"), "mixed_float16", True)
    assert two.describe() == "2 replicas on GPU:0, GPU:1, mixed_float16"
    assert two.params() == {
        "distribute": True,
        "replicas": 2,
        "devices": "GPU:0,GPU:1",
        "precision": "mixed_float16",
    }


PRELUDE = """
import json, sys, tempfile
from pathlib import Path
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from musicflow.models import build_model, load_model

def windows(n, runs=1, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 96, 96 * runs, 1), np.float32)
    for w in x:
        for _ in range(rng.integers(10, 30)):
            row, start = rng.integers(20, 80), rng.integers(0, 96 * runs - 24)
            w[row, start : start + rng.integers(2, 24), 0] = 1.0
    return x

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
"""


def _run(script: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_two_replicas_take_the_same_step_as_one() -> None:
    """One SGD step of ``rnn`` on two replicas (half the batch each) moves every weight as one
    step on the whole batch does, and counts the batch's tonics once: replicas' losses are
    divided by their number, their gradients and counts summed."""
    out = _run(
        """
        x = tf.constant(windows(8, runs=2, seed=1))
        def one_step(model):
            model.optimizer = model._optimizer_for(keras.optimizers.SGD(0.5), model._weights)
            model._train_step = model._train_function(model._train_step_impl)
            loss = model.fit_epoch([x])["loss"]
            weights = [np.asarray(w) for w in model.decoder.weights]
            return loss, weights, np.asarray(model.key_prior.counts), int(model._step.numpy())

        small = dict(hidden=32, batch_size=8)
        alone = one_step(build_model("rnn", seed=5, **small))
        with strategy.scope():
            shared = build_model("rnn", seed=5, **small)
            assert shared.replicas == 2
            both = one_step(shared)
        moved = max(float(np.abs(a - b).max()) for a, b in zip(alone[1], both[1]))
        start = build_model("rnn", seed=5, **small)
        change = max(
            float(np.abs(a - np.asarray(b)).max()) for a, b in zip(alone[1], start.decoder.weights)
        )
        print(json.dumps({
            "loss": [alone[0], both[0]], "diff": moved, "change": change,
            "counts": [alone[2].tolist(), both[2].tolist()], "steps": [alone[3], both[3]],
        }))
        """
    )
    assert out["change"] > 1e-3  # the step did move the weights
    assert out["diff"] < 1e-3 * out["change"]  # unscaled losses would move it by 100 %
    assert out["loss"][0] == pytest.approx(out["loss"][1], rel=1e-5)
    assert out["counts"][0] == out["counts"][1] and sum(out["counts"][0]) == 8  # one per run
    assert out["steps"] == [1, 1]


def test_every_model_trains_on_two_replicas_in_float16_and_loads_on_a_cpu() -> None:
    """Each model trains on two replicas under mixed_float16 (loss scaling on), keeps its
    outputs float32, saves float32 weights, and loads and samples in float32 without a
    strategy; rnn under mixed_bfloat16 too. A batch of 7 loses one window, not a step."""
    out = _run(
        """
        small = {
            "rnn": dict(hidden=32),
            "vae": dict(hidden=32, enc_filters=[16, 16, 16], latent_dim=4),
            "gan": dict(hidden=32, enc_filters=[16, 16, 16], latent_dim=4, actor_layers=[8],
                        critic_layers=[8], prior_steps=2, prior_batch_size=8),
            "vae-thesis": dict(enc_filters=[4] * 4, dense_units=8, dec_dense_filters=4,
                               dec_filters=4),
            "gan-thesis": dict(g_dense_filters=8, g_filters=[4] * 3, d_filters=[4, 4]),
        }
        result = {}
        runs = [(name, "mixed_float16") for name in small] + [("rnn", "mixed_bfloat16")]
        for name, policy in runs:
            keras.mixed_precision.set_global_policy(policy)
            with strategy.scope():
                model = build_model(name, seed=3, batch_size=8, **small[name])
                n = int(model.config.get("sequence_windows", 1))
                data = windows(15, runs=n, seed=2)
                metrics = model.fit_epoch([tf.constant(data[:8]), tf.constant(data[8:])])
                if name == "gan":  # its GAN over the codes, on both replicas too
                    metrics |= model.fit_prior([tf.constant(data[:8])])
                model.validate([tf.constant(data[:4, :, :96])])
                path = Path(tempfile.mkdtemp())
                model.save(path)
            keras.mixed_precision.set_global_policy("float32")
            nets = model.networks().values()
            loaded = load_model(path)
            sample = loaded.sample(2, seed=0)
            same = all(
                np.array_equal(np.asarray(a), np.asarray(b))
                for net, back in zip(nets, loaded.networks().values())
                for a, b in zip(net.weights, back.weights)
            )
            opt = getattr(model, "optimizer", None) or model.g_optimizer
            result[f"{name}/{policy}"] = {
                "finite": all(np.isfinite(v) for v in metrics.values()),
                "steps": int(model._step.numpy()),
                "outputs": sorted(
                    {str(o.dtype) for k, net in model.networks().items() if k != "key_prior"
                     for o in net.outputs}
                ),
                "compute": sorted({layer.compute_dtype for net in nets for layer in net.layers}),
                "weights": sorted({str(w.dtype) for net in nets for w in net.weights}),
                "scaled": type(opt).__name__,
                "same": same,
                "sample": [list(sample.shape), bool(np.isfinite(sample).all())],
                "loaded_policy": loaded.networks()["discriminator" if name == "gan-thesis"
                                                    else "decoder"].dtype_policy.name,
            }
        print(json.dumps(result))
        """
    )
    assert len(out) == 6
    for key, r in out.items():
        policy = key.split("/")[1]
        assert r["finite"] and r["steps"] == 2, key
        assert r["compute"] == sorted({"float32", policy.removeprefix("mixed_")}), key
        assert r["outputs"] == ["float32"], key  # what the losses read
        assert r["weights"] == ["float32"], key
        assert r["same"] and r["sample"] == [[2, 96, 96], True], key
        assert r["loaded_policy"] == "float32", key
        scaled = "LossScaleOptimizer" if policy == "mixed_float16" else "Adam"
        assert r["scaled"] == scaled, key
