"""Differentiable musical translations of roll batches (used by the data pipeline and DiffAugment).

Translation along time and pitch is (close to) label-preserving for music: a phrase moved by a
beat or transposed by a few semitones is still plausible music. Implemented with ``tf.gather``
so gradients flow through, as DiffAugment needs (Zhao et al. 2020).
"""

from __future__ import annotations

import tensorflow as tf


def translate(
    x: tf.Tensor, time_shift: tf.Tensor, pitch_shift: tf.Tensor, *, circular_time: bool = True
) -> tf.Tensor:
    """Shift each window of ``x`` (B, rows, cols, C) by its own amounts.

    ``time_shift`` (B,) int32: shift to the right along time (axis 2), a circular roll or, with
    ``circular_time=False``, with silence shifted in.
    ``pitch_shift`` (B,) int32: transposition in semitones, positive = up (towards row 0, since
    row 0 is the highest pitch); rows shifted out are dropped, rows shifted in are silent.
    """
    rows = tf.shape(x)[1]
    cols = tf.shape(x)[2]
    time_shift = tf.cast(time_shift, tf.int32)
    pitch_shift = tf.cast(pitch_shift, tf.int32)
    t_index = tf.range(cols)[None, :] - time_shift[:, None]
    if circular_time:
        t_index = tf.math.floormod(t_index, cols)
    else:
        t_index = tf.where((t_index >= 0) & (t_index < cols), t_index, cols)  # the silent column
        x = tf.concat([x, tf.zeros_like(x[:, :, :1])], axis=2)
    x = tf.gather(x, t_index, axis=2, batch_dims=1)
    source = tf.range(rows)[None, :] + pitch_shift[:, None]
    source = tf.where((source >= 0) & (source < rows), source, rows)  # `rows` = the silent row
    padded = tf.concat([x, tf.zeros_like(x[:, :1])], axis=1)
    return tf.gather(padded, source, axis=1, batch_dims=1)


def diff_augment(
    x: tf.Tensor,
    seed: tf.Tensor,
    *,
    max_time_shift: int,
    max_transpose: int,
    time_unit: int = 1,
    cutout: float = 0.0,
) -> tf.Tensor:
    """DiffAugment-style random translation with a stateless seed (shape (2,) int).

    Time shifts are whole multiples of ``time_unit`` steps in [-max_time_shift, max_time_shift]
    units, with silence shifted in as in DiffAugment's translation (a circular roll let the
    generator hide artefacts at the window's edges, which the roll joins into a chord-like
    seam); transpositions in [-max_transpose, max_transpose] semitones; then, when ``cutout``
    > 0, a random rectangle of ``cutout`` × the height and width is silenced (DiffAugment's
    cutout, one of its two most effective transforms on small data).

    Why: with a few hundred windows the discriminator memorises the training set and its
    gradients stop helping the generator (the thesis GAN: D ≈100% accurate, black images).
    Augmenting BOTH real and generated batches before D, differentiably, is the remedy of
    Zhao et al. 2020 (DiffAugment) and Karras et al. 2020 (ADA), without leaking the
    augmentation into the samples.
    """
    size = tf.shape(x)[0:1]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    time_shift = tf.random.stateless_uniform(
        size, seeds[0], -max_time_shift, max_time_shift + 1, dtype=tf.int32
    )
    pitch_shift = tf.random.stateless_uniform(
        size, seeds[1], -max_transpose, max_transpose + 1, dtype=tf.int32
    )
    x = translate(x, time_shift * time_unit, pitch_shift, circular_time=False)
    if cutout > 0:
        x = x * _cutout_mask(tf.shape(x), cutout, seeds[2], seeds[3])
    return x


def _cutout_mask(shape: tf.Tensor, ratio: float, seed_r: tf.Tensor, seed_c: tf.Tensor) -> tf.Tensor:
    """(B, rows, cols, 1) mask, 0 inside one random rectangle per window (centre anywhere)."""
    rows, cols = shape[1], shape[2]
    h = tf.cast(tf.cast(rows, tf.float32) * ratio / 2.0, tf.int32)
    w = tf.cast(tf.cast(cols, tf.float32) * ratio / 2.0, tf.int32)
    r0 = tf.random.stateless_uniform(shape[0:1], seed_r, 0, rows, dtype=tf.int32)[:, None]
    c0 = tf.random.stateless_uniform(shape[0:1], seed_c, 0, cols, dtype=tf.int32)[:, None]
    in_r = tf.abs(tf.range(rows)[None, :] - r0) < h  # (B, rows)
    in_c = tf.abs(tf.range(cols)[None, :] - c0) < w  # (B, cols)
    hole = tf.logical_and(in_r[:, :, None], in_c[:, None, :])
    return tf.cast(tf.logical_not(hole), tf.float32)[..., None]
