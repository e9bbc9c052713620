"""Small custom Keras layers of this project's ``vae`` and ``gan`` (registered for Keras/MLflow
serialisation under the package name ``musicflow``)."""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="musicflow")
class PitchBias(keras.layers.Layer):
    """A learned logit offset per pitch row, added to a (B, 96, 96, 1) logit map.

    Why: convolutions are translation-equivariant, but the pitch distribution is not (most
    notes sit in the middle register). A per-row bias gives the decoder/generator the pitch
    histogram for free, which the thesis models had to learn through edge effects. Initialised
    to logit(``prior``) so training starts from sparse, near-empty rolls rather than grey ones
    (the prior-probability initialisation of Lin et al. 2017, RetinaNet). The offset is
    ``multiplier`` × a raw weight (a learning-rate multiplier, as in Karras et al. 2019): Adam
    moves a weight by about the learning rate per step, too slow for logits that must travel
    from -3.5 to -10 (pitches never played) within a few hundred steps on small data.
    """

    def __init__(self, prior: float = 0.03, multiplier: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prior = float(prior)
        self.multiplier = float(multiplier)

    def build(self, input_shape: tuple[int, ...]) -> None:
        init = math.log(self.prior / (1.0 - self.prior)) / self.multiplier
        self.bias = self.add_weight(
            shape=(int(input_shape[1]), 1, 1),
            initializer=keras.initializers.Constant(init),
            name="row_bias",
        )

    def call(self, x: Any) -> Any:
        return x + self.multiplier * self.bias

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "prior": self.prior, "multiplier": self.multiplier}


@keras.saving.register_keras_serializable(package="musicflow")
class MinibatchStd(keras.layers.Layer):
    """Append the batch's mean feature standard deviation as one extra channel.

    Why: lets the discriminator see a whole batch's variety, so a generator that collapses to
    a few windows is easy to reject (Karras et al. 2018, progressive GAN). Call D on real-only
    and fake-only batches, never on a mix.
    """

    def call(self, x: Any) -> Any:
        std = ops.sqrt(ops.var(x, axis=0) + 1e-8)
        mean_std = ops.mean(std)
        shape = ops.shape(x)
        extra = ops.ones((shape[0], shape[1], shape[2], 1), dtype=x.dtype) * mean_std
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
        return x * ops.rsqrt(ops.mean(ops.square(x), axis=-1, keepdims=True) + 1e-8)
