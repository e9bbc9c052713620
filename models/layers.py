"""Small custom Keras layers of this project's ``gan`` (registered for Keras serialisation
under the package name ``musicflow``)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="musicflow")
class MinibatchStd(keras.layers.Layer):
    """Append the batch's mean feature standard deviation as one extra channel.

    Why: lets the discriminator see a whole batch's variety, so a generator that collapses to
    a few windows is easy to reject (Karras et al. 2018, progressive GAN). Call D on real-only
    and fake-only batches, never on a mix.
    """

    def call(self, x: Any) -> Any:
        # in float32 under a mixed policy: 1e-8 is 0 in float16, and sqrt(0) has no gradient
        std = ops.sqrt(ops.var(ops.cast(x, "float32"), axis=0) + 1e-8)
        mean_std = ops.cast(ops.mean(std), x.dtype)
        extra = ops.ones_like(x[..., :1]) * mean_std  # any rank: (B, …, C) → (B, …, 1)
        return ops.concatenate([x, extra], axis=-1)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*input_shape[:-1], input_shape[-1] + 1)


@keras.saving.register_keras_serializable(package="musicflow")
class PixelNorm(keras.layers.Layer):
    """Scale each position's feature vector to unit root-mean-square (Karras et al. 2018).

    Why instead of BatchNorm in the generator: no batch statistics, so a window's sample does
    not depend on the other windows in its batch, training and inference compute the same
    function, and an EMA copy of the weights needs no moving averages.
    """

    def call(self, x: Any) -> Any:
        x32 = ops.cast(x, "float32")  # float16 would lose the 1e-8 (see MinibatchStd)
        scale = ops.rsqrt(ops.mean(ops.square(x32), axis=-1, keepdims=True) + 1e-8)
        return ops.cast(x32 * scale, x.dtype)
