"""Where training runs: ``tf.distribute`` over the visible GPUs and mixed precision (README,
"Training on GPUs"; docs/models.md, "Accelerators").

``train --distribute`` builds and trains the model under a ``tf.distribute.MirroredStrategy``:
one replica per visible GPU, each taking an equal slice of every batch (``--batch-size`` is the
global batch), gradients summed across replicas. ``--mixed-precision`` builds the networks
with Keras's ``mixed_float16`` policy on a GPU (float16 maths, float32 weights, dynamic loss
scaling) or ``mixed_bfloat16`` on a CPU (no loss scaling needed). Output layers and every loss
stay float32. Neither changes what is saved: the checkpoint holds float32 weights and the same
config, so a model trained on GPUs loads and samples on a CPU.

Without either flag the model is built and trained exactly as before (same numbers, bit for
bit); this only reports the device TensorFlow picks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

FLOAT32 = "float32"


@dataclass(frozen=True)
class Placement:
    """How a training run was placed: recorded as MLflow params and in the report."""

    replicas: int = 1
    devices: tuple[str, ...] = ("CPU",)
    precision: str = FLOAT32
    distribute: bool = False

    def describe(self) -> str:
        """``1 replica on CPU, float32``; ``2 replicas on GPU:0, GPU:1, mixed_float16``."""
        plural = "replica" if self.replicas == 1 else "replicas"
        return f"{self.replicas} {plural} on {', '.join(self.devices)}, {self.precision}"

    def params(self) -> dict[str, object]:
        return {
            "distribute": self.distribute,
            "replicas": self.replicas,
            "devices": ",".join(self.devices),
            "precision": self.precision,
        }


def precision_policy(mixed: bool, gpus: int) -> str:
    """The Keras dtype policy: float16 maths where GPUs have tensor cores for it, bfloat16 on
    CPUs (float16 on a CPU is emulated and slow; bfloat16 keeps float32's range)."""
    if not mixed:
        return FLOAT32
    return "mixed_float16" if gpus else "mixed_bfloat16"


@contextmanager
def training_scope(*, distribute: bool, mixed_precision: bool) -> Iterator[Placement]:
    """Build, train and save a model inside this: the strategy's scope (when ``distribute``)
    and the dtype policy (when ``mixed_precision``), restored on exit. Yields where it runs;
    without either flag that is TensorFlow's own default device (the first GPU, if any)."""
    from musicflow.adapters import tflog

    tflog.import_tensorflow()  # its import-time C++ log held back unless --debug
    import keras
    import tensorflow as tf

    gpus = [d.name.split("device:")[-1] for d in tf.config.list_logical_devices("GPU")]
    if not distribute and not mixed_precision:
        yield Placement(devices=(gpus[0],) if gpus else ("CPU",))
        return
    policy = precision_policy(mixed_precision, len(gpus))
    strategy = tf.distribute.MirroredStrategy() if distribute else None
    replicas = strategy.num_replicas_in_sync if strategy else 1
    devices = tuple(gpus[: len(gpus) if strategy else 1]) or ("CPU",)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        with strategy.scope() if strategy else nullcontext():
            yield Placement(replicas, devices, policy, distribute)
    finally:
        keras.mixed_precision.set_global_policy(previous)
