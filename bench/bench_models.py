"""Training throughput (windows/s) of the four models on this machine, at one batch size.

Usage: ``.venv/bin/python bench/bench_models.py [--batch-size 32] [--steps 8] [--warmup 2]
[--models vae,gan,vae-thesis,gan-thesis]``.

Each model is built with its defaults (only the batch size is forced to be the same), trained on
synthetic sparse windows (content does not change the cost of dense convolutions), with
``--warmup`` untimed steps (tracing, allocation) before ``--steps`` timed ones. "Images/s"
counts real windows consumed per second by ``fit_epoch``, i.e. one training step per batch; a
GAN step includes its generator's forward passes for D and its G update. Prints a table and the
ratio of each model to its thesis counterpart.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np


def synthetic_windows(n: int, seed: int = 0) -> np.ndarray:
    """Sparse note runs, ~3% active cells, like piano windows."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 96, 96), np.float32)
    for w in x:
        for _ in range(rng.integers(15, 40)):
            row, start = rng.integers(20, 80), rng.integers(0, 90)
            w[row, start : start + rng.integers(2, 24)] = 1.0
    return x


def bench(name: str, batch_size: int, steps: int, warmup: int) -> tuple[float, int]:
    """(windows per second, trainable parameters) for one model."""
    import tensorflow as tf

    from musicflow.models import build_model

    model = build_model(name, seed=0, batch_size=batch_size)
    data = synthetic_windows(batch_size * 4)[..., None]
    batches = [tf.constant(data[i * batch_size : (i + 1) * batch_size]) for i in range(4)]
    model.fit_epoch(batches[:1] * warmup)
    start = time.perf_counter()
    model.fit_epoch([batches[i % 4] for i in range(steps)])
    elapsed = time.perf_counter() - start
    params = sum(
        int(np.prod(w.shape)) for net in model.networks().values() for w in net.trainable_weights
    )
    return steps * batch_size / elapsed, params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--models", default="vae-thesis,vae,gan-thesis,gan")
    args = parser.parse_args()
    import tensorflow as tf

    names = args.models.split(",")
    results = {name: bench(name, args.batch_size, args.steps, args.warmup) for name in names}
    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    print(f"\nbatch size {args.batch_size}, {args.steps} timed steps, {threads} CPU threads")
    print(f"{'model':<12} {'images/s':>10} {'params':>12} {'vs thesis':>10}")
    for name, (rate, params) in results.items():
        base = f"{name}-thesis" if not name.endswith("-thesis") else None
        ratio = f"{rate / results[base][0]:.2f}x" if base in results else ""
        print(f"{name:<12} {rate:>10.1f} {params:>12,} {ratio:>10}")


if __name__ == "__main__":
    main()
