"""Fast training versions of two Keras layers: PReLU and the 2-channels-a-group Conv2D.

Both are drop-in subclasses of the Keras layers they replace: same weights
(``alpha``; ``kernel`` of shape (kh, kw, channels per group, filters)), same
config, and the same function. Only their training path differs:

* ``PReLU``: Keras computes ``relu(x) - alpha * relu(-x)`` and differentiates
  it op by op, about 11 passes over the activation per step. Here the forward
  pass is one mask and one multiply (``y = x * m``, ``m = 1`` where x > 0,
  ``alpha`` elsewhere) and the gradient is written by hand: ``dx = g * m``,
  ``d alpha = sum over the shared axes of g * min(x, 0)``. (At x == 0 exactly,
  a set of measure zero, Keras' gradient is 0 and this one ``alpha * g``.)
* ``Conv2D`` with ``groups > 1``: TensorFlow's CPU backward of a grouped conv
  is slow (1.5 s a step for insightface mbf's Conv2d(128, 128, groups=64) at
  112 px, batch 64). With n channels a group, output o of group g sums
  ``x[g*n + (o%n + r) % n] * k[:, :, (o%n + r) % n, o]`` over r = 0..n-1:
  n depthwise convs of the input with its channels rotated by r inside each
  group. Depthwise convs have fast gradients.

Inference (``training`` false: evaluation, SavedModel, TFLite conversion) runs
the Keras layer's own graph, so exported models and the converter's PRELU and
grouped CONV_2D ops are unchanged. The classes keep the Keras names and are
not registered: a saved model stores them as Keras' own ``PReLU`` /
``Conv2D`` and reloads anywhere without custom objects (as the slower Keras
layer; the kit builds its models with ``backbones.build_backbone``).

Example:
    >>> from mfn_tf2.backend import tf
    >>> from mfn_tf2.backend import keras
    >>> act = PReLU(keras.initializers.Constant(0.25), shared_axes=[1, 2])
    >>> act(tf.constant([[[[-2.0, 3.0]]]]), training=True).numpy().tolist()
    [[[[-0.5, 3.0]]]]
"""
from __future__ import annotations

import numpy as np

from mfn_tf2.backend import keras, tf


class PReLU(keras.layers.PReLU):
    """``keras.layers.PReLU`` with a fused forward pass and hand-written gradient in training."""

    def call(self, inputs, training=None):
        if not training:
            return super().call(inputs)
        alpha = tf.cast(self.alpha, inputs.dtype)

        @tf.custom_gradient
        def prelu(x, a):
            slope = tf.where(x > 0, tf.ones_like(a), a)          # 1 or alpha, shape of x

            def grad(g):
                return g * slope, sum_to_slopes(g * tf.minimum(x, 0), a.shape)
            return x * slope, grad

        return prelu(inputs, alpha)


def sum_to_slopes(p, shape):
    """Sums ``p`` (batch, ...) over the batch and the shared axes: the shape of a PReLU's alpha.

    When the kept axes are the trailing ones (both slope layouts of the kit:
    per channel, per layer), the sum is a row of ones times ``p`` seen as a
    (positions, slopes) matrix: one multi-threaded matmul, where TensorFlow's
    CPU reduce_sum over the leading axes of a large activation was 6.6 ms of a
    112 px step's 1.2 s per PReLU on two cores.

    Args:
        p: (batch, *shape with the shared axes at full size) tensor.
        shape: alpha's shape: p.shape[1:] with 1 on every shared axis.

    Returns:
        A tensor of ``shape``.

    Example:
        >>> sum_to_slopes(tf.ones((2, 3, 4)), (1, 4)).numpy().tolist()
        [[6.0, 6.0, 6.0, 6.0]]
        >>> sum_to_slopes(tf.ones((2, 3, 4)), (3, 1)).numpy().tolist()
        [[8.0], [8.0], [8.0]]
    """
    shape, sizes = tuple(shape), tuple(p.shape[1:])
    lead = 0                                          # leading size-1 axes of alpha
    while lead < len(shape) and shape[lead] == 1:
        lead += 1
    if shape[lead:] != sizes[lead:]:                  # a shared axis after a kept one
        axes = [0] + [i + 1 for i, (n, m) in enumerate(zip(shape, sizes)) if n == 1 and m != 1]
        return tf.reduce_sum(p, axes, keepdims=True)[0]
    rows = tf.reshape(p, (-1, int(np.prod(shape))))   # (positions, slopes)
    ones = tf.ones((1, tf.shape(rows)[0]), p.dtype)
    return tf.reshape(tf.matmul(ones, rows), shape)


class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` whose grouped form trains as depthwise convs (see module doc)."""

    def call(self, inputs, training=None):
        if not training or self.groups == 1:
            return super().call(inputs)
        y = grouped_as_depthwise(inputs, self.kernel, self.strides, self.padding.upper(), self.dilation_rate)
        if self.use_bias:
            y = tf.nn.bias_add(y, self.bias)
        return y if self.activation is None else self.activation(y)


def grouped_as_depthwise(x, kernel, strides, padding: str, dilations):
    """A grouped conv computed as one depthwise conv per channel of a group.

    Args:
        x: (batch, height, width, channels) NHWC input.
        kernel: (kh, kw, n, filters) grouped kernel, n input channels a group;
            filters must equal channels (one output per input channel, as in mbf).
        strides, dilations: (h, w) pairs; padding "SAME" or "VALID".

    Returns:
        The grouped convolution of ``x``, (batch, out_h, out_w, filters).
    """
    n, channels = int(kernel.shape[2]), int(kernel.shape[3])
    if x.shape[-1] != channels:
        raise ValueError(f"grouped_as_depthwise: {x.shape[-1]} input channels, {channels} filters; "
                         "only equal counts are supported")
    out = np.arange(channels)
    # (kh, kw, filters * n): element o * n + j is kernel[:, :, j, o].
    flat = tf.reshape(tf.transpose(kernel, (0, 1, 3, 2)), (*kernel.shape[:2], channels * n))
    grouped = tf.reshape(x, (-1, *x.shape[1:3], channels // n, n))
    total = 0
    for r in range(n):
        rolled = x if r == 0 else tf.reshape(tf.roll(grouped, -r, axis=4), tf.shape(x))
        taps = tf.gather(flat, out * n + (out % n + r) % n, axis=2)[..., None]   # (kh, kw, C, 1)
        total += tf.nn.depthwise_conv2d(rolled, taps, (1, *strides, 1), padding, dilations=dilations)
    return total


__all__ = ["PReLU", "sum_to_slopes", "Conv2D", "grouped_as_depthwise"]
