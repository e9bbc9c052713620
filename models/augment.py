"""Differentiable translations of roll batches in time and pitch (``translate``): the
sequence models and the GAN move windows to C with it (key normalisation). Implemented with
``tf.gather`` so gradients flow through."""

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
