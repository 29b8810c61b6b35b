"""The ArcFace head (Deng et al. 2019, arXiv 1801.07698): additive angular margin.

For an L2-normalised embedding x and L2-normalised class weights W_j, the
logit of class j is ``s * cos(theta_j)`` with ``cos(theta_j) = x . W_j``,
except the labelled class y, which gets ``s * cos(theta_y + m)``. Where
``theta_y + m`` would pass pi the margined cosine stops decreasing, so (as in
insightface) the logit falls back to ``s * (cos(theta_y) - m * sin(m))``.

The head always computes in float32, also under a mixed-precision policy:
the cosines are compared to cos(pi - m) and scaled by 64, which bfloat16 (8
bits of mantissa) cannot resolve. The margin in force lives in one place, the
head's non-trainable ``margin`` variable: a training call (``step`` given)
assigns it ``margin_at(step)``, which ramps from 0 to m over ``warmup_steps``
optimizer steps; every replica computes the same value from the same step.

Example:
    >>> from mfn_tf2.backend import tf
    >>> head = ArcFace(10)
    >>> logits = head((tf.random.normal([4, 128]), tf.constant([0, 1, 2, 3])))
    >>> logits.shape, logits.dtype.name
    (TensorShape([4, 10]), 'float32')
"""
from __future__ import annotations

import math

from mfn_tf2.backend import keras, tf

# Lower bound of 1 - cos^2 under the square root: d sqrt(u)/du is infinite at
# u = 0 (cos = +-1), and tf.where would turn that into NaN gradients.
_SIN2_EPS = 1e-7


class ArcFace(keras.layers.Layer):
    """Class logits with an additive angular margin on the labelled class.

    Args:
        num_classes: number of identities.
        scale: s, the logit scale (64 in the paper).
        margin: m in radians (0.5 in the paper), the margin after the warm-up
            and the ``margin`` variable's initial value.
        warmup_steps: the margin grows linearly from 0 to m over these
            optimizer steps (0: m from the start).
        **kwargs: keras.layers.Layer arguments (name, ...); ``dtype`` is
            always float32.

    Call args:
        inputs: ``(embeddings, labels)``: (batch, embedding_dim) float of any
            precision and (batch,) int32/int64 class indices.
        step: the optimizer step (scalar) of a training call: the ``margin``
            variable is set to ``margin_at(step)`` and used; None uses the
            variable as it is.

    Returns:
        (batch, num_classes) float32 logits.

    Example:
        >>> head = ArcFace(num_classes=1000, scale=64.0, margin=0.5, warmup_steps=100)
        >>> round(float(head.margin_at(25)), 3)
        0.125
    """

    def __init__(self, num_classes: int, scale: float = 64.0, margin: float = 0.5, warmup_steps: int = 0,
                 **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.scale = float(scale)
        self.target_margin = float(margin)
        self.warmup_steps = int(warmup_steps)
        # Written in replica context by every replica with the same value (as the optimizer's
        # step counter): the first replica's write is kept.
        self.margin = self.add_weight(
            name="margin", shape=(), dtype="float32", trainable=False,
            initializer=keras.initializers.Constant(self.target_margin),
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    def build(self, input_shape):
        embedding_shape, _ = input_shape
        # (embedding_dim, num_classes); the scale is irrelevant after normalisation.
        self.kernel = self.add_weight(
            name="kernel", shape=(int(embedding_shape[-1]), self.num_classes), dtype="float32",
            initializer=keras.initializers.RandomNormal(stddev=0.01), trainable=True)
        super().build(input_shape)

    def cosine(self, embeddings):
        """cos(theta) of every class, no margin and no scale (for accuracy).

        Args:
            embeddings: (batch, embedding_dim) float.

        Returns:
            (batch, num_classes) float32 in [-1, 1].
        """
        embeddings = tf.cast(embeddings, tf.float32)
        if not self.built:
            self.build((embeddings.shape, tf.TensorShape([None])))
        x = tf.math.l2_normalize(embeddings, axis=1)
        w = tf.math.l2_normalize(self.kernel, axis=0)
        return tf.clip_by_value(tf.matmul(x, w), -1.0, 1.0)

    def margin_at(self, step):
        """The margin at optimizer ``step``: m * min(1, step / warmup_steps), m without a warm-up.

        Returns:
            A float32 scalar tensor.
        """
        if self.warmup_steps <= 0:
            return tf.constant(self.target_margin)
        progress = tf.cast(step, tf.float32) / self.warmup_steps
        return self.target_margin * tf.minimum(1.0, progress)

    def call(self, inputs, step=None):
        embeddings, labels = inputs
        cos = self.cosine(embeddings)
        labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
        # Only the labelled column gets the margin: (batch,) instead of (batch, classes).
        target = tf.gather(cos, labels, axis=1, batch_dims=1)
        sin = tf.sqrt(tf.maximum(1.0 - tf.square(target), _SIN2_EPS))
        if step is None:
            m = tf.convert_to_tensor(self.margin)
        else:
            m = self.margin_at(step)
            self.margin.assign(m)
        margined = tf.where(target > tf.cos(math.pi - m),
                            target * tf.cos(m) - sin * tf.sin(m),   # cos(theta + m)
                            target - m * tf.sin(m))                 # theta + m > pi
        onehot = tf.one_hot(labels, self.num_classes, dtype=tf.float32)
        return self.scale * (cos + onehot * (margined - target)[:, None])

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, scale=self.scale, margin=self.target_margin,
                      warmup_steps=self.warmup_steps)
        return config
