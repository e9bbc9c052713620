"""Training throughput (windows/s) of every model on this machine, at one batch size.

Usage: ``.venv/bin/python bench/bench_models.py [--batch-size 32] [--steps 8] [--warmup 2]
[--models rnn,vae,gan,vae-thesis,gan-thesis] [--tracks K] [--config JSON] [--onednn on|off|both]
[--precision float32|mixed|both] [--distribute] [--repeat 1] [--save DIR]`` and
``bench/bench_models.py --load DIR``.

Each model is built with its defaults (only the batch size is forced to be the same) and
trained on synthetic sparse windows (content does not change the cost of dense layers), with
``--warmup`` untimed steps (tracing, allocation) before ``--steps`` timed ones. "Windows/s"
counts real windows consumed per second by ``fit_epoch``: one training step per batch; a GAN
step includes its generator's forward passes for D and its G update; a sequence model's batch
holds ``batch_size`` runs of ``sequence_windows`` consecutive windows, as in training.
``--tracks K`` trains on K tracks of such windows (a ``--tracks voices`` dataset of K voices;
docs/models.md, "Tracks"); ``--config`` overrides model settings, e.g.
``'{"input_rank": 0, "mix_rank": 0}'``.

Each (model, setting) runs in its own process, since TensorFlow reads
``TF_ENABLE_ONEDNN_OPTS`` once at import. ``--onednn both`` prints the ratio of oneDNN on to
off for every model, measured in the same invocation; ``--precision both`` the ratio of mixed
precision (what ``train --mixed-precision`` uses: bfloat16 on a CPU, float16 on a GPU) to
float32. ``--distribute`` builds every model as ``train --distribute`` does (all visible GPUs).
``--repeat R`` measures every setting R times, the settings of a model taking turns, and prints
medians: the rate's, and the ratio's over the R back-to-back pairs (this machine is noisy).

``--save DIR`` keeps every trained model (``DIR/<model>-<precision>``, as ``train`` saves it)
with the density of 4 windows it sampled where it trained; ``--load DIR`` loads each one here
and samples it again: how a model trained on a GPU is checked on a CPU (docs/models.md,
"Accelerators").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

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


def bench(
    name: str,
    batch_size: int,
    steps: int,
    warmup: int,
    mixed: bool,
    distribute: bool,
    save: str | None = None,
    tracks: int = 1,
    config: dict | None = None,
) -> dict:
    """Windows per second and trainable parameters of one model, in this process; with
    ``save``, the trained model and the density of what it samples go to that folder."""
    from musicflow.adapters.accelerate import training_scope
    from musicflow.models import build_model

    with training_scope(distribute=distribute, mixed_precision=mixed) as placement:
        voices = [
            {"name": f"Voice {i + 1}", "program": 0, "channel": i, "drums": False}
            for i in range(tracks)
        ]
        extra = {"tracks": voices} if tracks > 1 else {}
        model = build_model(name, seed=0, batch_size=batch_size, **extra, **(config or {}))
        out = _bench(model, steps, warmup) | {"placement": placement.describe()}
        if save:
            folder = Path(save) / f"{name}-{'mixed' if mixed else 'float32'}"
            model.save(folder)
            sample = model.sample(4, seed=0)
            meta = {"placement": out["placement"], "density": float((sample > 0.5).mean())}
            (folder / "trained_on.json").write_text(json.dumps(meta))
    return out


def load_and_sample(folder: Path) -> None:
    """Load every model ``--save`` kept in ``folder`` on this machine and sample it."""
    import tensorflow as tf

    from musicflow.models import load_model

    here = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    print(
        f"{'saved model':<20} {'trained on':<36} {'density there':>13} {'here (' + here + ')':>10}"
    )
    for path in sorted(p for p in folder.iterdir() if (p / "config.json").is_file()):
        there = json.loads((path / "trained_on.json").read_text())
        sample = load_model(path).sample(4, seed=0)
        if sample.shape != (4, 96, 96) or not np.isfinite(sample).all():
            raise SystemExit(f"{path.name}: bad sample {sample.shape}")
        density = float((sample > 0.5).mean())
        print(
            f"{path.name:<20} {there['placement']:<36} {there['density']:>13.4f} {density:>10.4f}"
        )


def _bench(model, steps: int, warmup: int) -> dict:
    import tensorflow as tf

    batch_size = int(model.config["batch_size"])
    runs = int(model.config.get("sequence_windows", 1))
    k = max(1, len(model.config.get("tracks") or []))
    data = synthetic_windows(batch_size * 4 * runs * k)
    # runs of consecutive windows laid end to end in time, tracks on the last axis:
    # (B, 96, 96 · runs, K)
    data = data.reshape(batch_size * 4, runs, k, 96, 96).transpose(0, 3, 1, 4, 2)
    data = data.reshape(batch_size * 4, 96, 96 * runs, k)
    batches = [tf.constant(data[i * batch_size : (i + 1) * batch_size]) for i in range(4)]
    model.fit_epoch(batches[:1] * warmup)
    start = time.perf_counter()
    model.fit_epoch([batches[i % 4] for i in range(steps)])
    elapsed = time.perf_counter() - start
    params = sum(
        int(np.prod(w.shape)) for net in model.networks().values() for w in net.trainable_weights
    )
    return {"rate": steps * batch_size * runs / elapsed, "params": params}


def measure(name: str, setting: tuple[str, str], args: argparse.Namespace) -> dict:
    onednn, precision = setting
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1" if onednn == "on" else "0"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    cmd = [sys.executable, __file__, "--one", name, "--batch-size", str(args.batch_size)]
    cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    cmd += ["--precision", precision] + (["--distribute"] if args.distribute else [])
    cmd += ["--save", args.save] if args.save else []
    cmd += ["--tracks", str(args.tracks), "--config", args.config]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name} {setting} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--models", default="rnn,vae,gan,vae-thesis,gan-thesis")
    parser.add_argument("--onednn", choices=("on", "off", "both"), default="both")
    parser.add_argument("--precision", choices=("float32", "mixed", "both"), default="float32")
    parser.add_argument("--distribute", action="store_true")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--save", help="keep each trained model in this folder")
    parser.add_argument("--load", help="load and sample the models --save kept there")
    parser.add_argument("--tracks", type=int, default=1, help="K tracks per window (voices)")
    parser.add_argument("--config", default="{}", help="model settings (JSON) to override")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child process: one model
    args = parser.parse_args()
    if args.load:
        load_and_sample(Path(args.load))
        return
    if args.one:
        mixed = args.precision == "mixed"
        out = bench(
            args.one,
            args.batch_size,
            args.steps,
            args.warmup,
            mixed,
            args.distribute,
            args.save,
            args.tracks,
            json.loads(args.config),
        )
        print(json.dumps(out))
        return
    onednn = ("on", "off") if args.onednn == "both" else (args.onednn,)
    precision = ("mixed", "float32") if args.precision == "both" else (args.precision,)
    settings = [(o, p) for o in onednn for p in precision]
    names = args.models.split(",")
    runs: dict[tuple, list[dict]] = {}
    for n in names:
        for _ in range(args.repeat):
            for s in settings:
                runs.setdefault((n, s), []).append(measure(n, s, args))
    results = {
        key: out[0] | {"rate": float(np.median([o["rate"] for o in out]))}
        for key, out in runs.items()
    }
    print(
        f"\nbatch size {args.batch_size}, {args.steps} timed steps, {os.cpu_count()} CPUs, "
        f"median of {args.repeat}"
    )
    label = {
        s: (f"oneDNN {s[0]}" if len(onednn) > 1 else "")
        + (f" {s[1]}" if len(precision) > 1 else "")
        for s in settings
    }
    print(
        f"{'model':<12} {'params':>11}"
        + "".join(f" {label[s]:>20}" for s in settings)
        + ("  ratio" if len(settings) == 2 else "")
    )
    for n in names:
        row = f"{n:<12} {results[(n, settings[0])]['params']:>11,}"
        row += "".join(f" {results[(n, s)]['rate']:>16.1f} w/s" for s in settings)
        if len(settings) == 2:
            pairs = zip(runs[(n, settings[0])], runs[(n, settings[1])], strict=True)
            ratio = float(np.median([a["rate"] / b["rate"] for a, b in pairs]))
            row += f"  {ratio:>5.2f}x"
        print(row)
    for s in settings:
        print(f"{label[s].strip() or 'setting'}: {results[(names[0], s)]['placement']}")


if __name__ == "__main__":
    main()
