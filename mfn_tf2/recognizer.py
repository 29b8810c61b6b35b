"""The training model: a MobileFaceNet backbone and an ArcFace head, with its own step.

``Recognizer`` is a small subclassed ``keras.Model``. Its ``backbone`` is the
functional embedding model (image -> embedding) that is exported as-is once
the head is stripped; the head only exists for training. ``build_recognizer``
is the one way to make one from a ``ModelConfig``; ``make_optimizer`` builds
the optimizer with warm-up and decay from a ``TrainConfig``.

Example:
    >>> from mfn_tf2.config import ModelConfig, TrainConfig
    >>> cfg = ModelConfig(width=0.25, image_size=32)
    >>> rec = build_recognizer(cfg, 10, optimizer=make_optimizer(TrainConfig(), steps_per_epoch=5))
    >>> rec.head.kernel.shape
    TensorShape([256, 10])
    >>> # rec.fit(dataset_of_images_and_labels, epochs=1)
"""
from __future__ import annotations

import math
import os

from mfn_tf2.backend import keras, tf
from mfn_tf2.head import ArcFace
from mfn_tf2.backbones import build_backbone
from mfn_tf2.machine import has_bf16


class Recognizer(keras.Model):
    """Backbone + ArcFace head; ``call`` returns embeddings, ``train_step`` the ArcFace loss.

    Args:
        backbone: functional model, normalised images (B, S, S, 3) -> embeddings (B, D).
        num_classes: identities in the training set.
        loss_scale: ArcFace s.
        loss_margin: ArcFace m (radians), reached after ``margin_warmup_steps``.
        margin_warmup_steps: the head's margin grows linearly from 0 over these optimizer steps.
    """

    def __init__(self, backbone: keras.Model, num_classes: int, loss_scale: float = 64.0,
                 loss_margin: float = 0.5, margin_warmup_steps: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.head = ArcFace(num_classes, scale=loss_scale, margin=loss_margin,
                            warmup_steps=margin_warmup_steps, name="arcface")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy]

    def call(self, images, training=False):
        return self.backbone(images, training=training)

    def _loss(self, images, labels, training):
        embeddings = self.backbone(images, training=training)
        logits = self.head((embeddings, labels), step=self.optimizer.iterations)
        per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        # Averaged over the global batch: gradients are summed across replicas.
        return tf.nn.compute_average_loss(per_example), per_example, logits

    def train_step(self, data):
        images, labels = data
        with tf.GradientTape() as tape:
            loss, per_example, logits = self._loss(images, labels, training=True)
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        self.loss_tracker.update_state(per_example)
        self.accuracy.update_state(labels, logits)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        images, labels = data
        _, per_example, logits = self._loss(images, labels, training=False)
        self.loss_tracker.update_state(per_example)
        self.accuracy.update_state(labels, logits)
        return {m.name: m.result() for m in self.metrics}


def build_recognizer(model_cfg, num_classes: int, *, backbone: keras.Model | None = None,
                     optimizer: keras.optimizers.Optimizer | None = None,
                     margin_warmup_steps: int = 0) -> Recognizer:
    """The Recognizer of a ModelConfig, its head's weights created (ready for a restore).

    Args:
        model_cfg: a ModelConfig: the backbone (unless given), image_size, loss_scale, loss_margin.
        num_classes: identities of the head.
        backbone: the embedding model to train instead of ``build_backbone(model_cfg)``
            (QAT passes its fake-quantized export form).
        optimizer: compiled in when given (``make_optimizer``).
        margin_warmup_steps: optimizer steps over which the head ramps its margin up.

    Returns:
        A Recognizer (build it inside a strategy's scope to train under it).

    Example:
        >>> from mfn_tf2.config import ModelConfig
        >>> build_recognizer(ModelConfig(width=0.25, image_size=32), 5).head.num_classes
        5
    """
    backbone = backbone if backbone is not None else build_backbone(model_cfg)
    recognizer = Recognizer(backbone, num_classes, model_cfg.loss_scale, model_cfg.loss_margin,
                            margin_warmup_steps=margin_warmup_steps)
    if optimizer is not None:
        recognizer.compile(optimizer=optimizer)
    size = model_cfg.image_size
    recognizer.head((recognizer(tf.zeros((1, size, size, 3))), tf.zeros((1,), tf.int32)))
    return recognizer


class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak``, then cosine / polynomial decay or a constant.

    Args:
        peak: learning rate after warm-up.
        warmup_steps: steps of linear warm-up from ``peak / 100``.
        total_steps: steps of the whole run (decay reaches 0 there); kept in the
            int64 variable ``total_steps``, which ``--max_minutes`` sets once it
            knows how many steps fit in the time budget.
        kind: "cosine", "polynomial" (power 2) or "constant".

    Example:
        >>> schedule = WarmupDecay(0.1, warmup_steps=0, total_steps=100)
        >>> round(float(schedule(50)), 4)
        0.05
        >>> _ = schedule.total_steps.assign(50)   # laid out over 50 steps: the end is reached at 50
        >>> round(float(schedule(50)), 4)
        0.0
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, kind: str = "cosine"):
        super().__init__()
        self.peak, self.warmup_steps, self.kind = peak, warmup_steps, kind
        self.total_steps = tf.Variable(total_steps, dtype=tf.int64, trainable=False, name="total_steps")

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = float(max(self.warmup_steps, 1))
        warm_lr = self.peak * (0.01 + 0.99 * step / warm)
        span = tf.cast(tf.maximum(self.total_steps - self.warmup_steps, 1), tf.float32)
        progress = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
        decayed = self.peak * _DECAY[self.kind](progress)
        return tf.where(step < self.warmup_steps, warm_lr, decayed)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "total_steps": int(self.total_steps.numpy()), "kind": self.kind}


# Decay shape after warm-up: progress in [0, 1] -> factor of the peak rate.
_DECAY = {
    "cosine": lambda p: 0.5 * (1.0 + tf.cos(math.pi * p)),
    "polynomial": lambda p: (1.0 - p) ** 2,
    "constant": lambda p: tf.ones_like(p),
}

# Optimizer name -> constructor taking (learning_rate, TrainConfig).
_OPTIMIZERS = {
    "sgd": lambda lr, c: keras.optimizers.SGD(lr, momentum=c.momentum, weight_decay=c.weight_decay),
    "adamw": lambda lr, c: keras.optimizers.AdamW(lr, weight_decay=c.weight_decay),
}


def make_schedule(cfg, steps_per_epoch: int) -> WarmupDecay:
    """The learning-rate schedule of a ``TrainConfig``: warm-up, then decay over ``cfg.epochs``.

    Example:
        >>> from mfn_tf2.config import TrainConfig
        >>> int(make_schedule(TrainConfig(epochs=3), steps_per_epoch=10).total_steps.numpy())
        30
    """
    return WarmupDecay(cfg.learning_rate, int(cfg.warmup_epochs * steps_per_epoch),
                       max(1, cfg.epochs * steps_per_epoch), cfg.lr_schedule)


def make_optimizer(cfg, steps_per_epoch: int, schedule: WarmupDecay | None = None) -> keras.optimizers.Optimizer:
    """The optimizer of a ``TrainConfig``: warm-up + decay over ``cfg.epochs``.

    Batch-norm scales/offsets and biases are left out of weight decay. Under a
    float16 policy the optimizer is wrapped for loss scaling.

    Args:
        cfg: a TrainConfig.
        steps_per_epoch: optimizer steps in one epoch.
        schedule: the learning rate (default: ``make_schedule(cfg, steps_per_epoch)``);
            the training runner passes its own to lay it out over ``--max_minutes``.

    Returns:
        A Keras 2 optimizer.
    """
    schedule = schedule if schedule is not None else make_schedule(cfg, steps_per_epoch)
    optimizer = _OPTIMIZERS[cfg.optimizer](schedule, cfg)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    if keras.mixed_precision.global_policy().compute_dtype == "float16":
        optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def set_precision(mode: str) -> str:
    """Sets the global Keras precision policy (and oneDNN's math mode) for ``--mixed_precision``.

    Args:
        mode: "off", "auto" (float16 on GPU, bfloat16 on CPUs with native
            bfloat16, else off), "bfloat16", "float16" or "bf32": float32
            everywhere except inside TensorFlow's oneDNN convolutions, which
            multiply in bfloat16 (``TF_SET_ONEDNN_FPMATH_MODE=BF16``, read
            once a process, when its first convolution runs).

    Returns:
        The precision in force, checked rather than assumed: "float32",
        "mixed_bfloat16", "mixed_float16" or "bf32" (a mixed policy in a
        process whose convolutions are bf32: "mixed_bfloat16 + bf32"). A
        convolution probe decides between "bf32" and "float32": bf32 asked for
        on a CPU without bfloat16, or after this process ran convolutions in
        float32, is "float32"; a process started with the variable set is "bf32".
    """
    if mode == "auto":
        mode = "float16" if tf.config.list_physical_devices("GPU") else (
            "bfloat16" if has_bf16() else "off")
    keras.mixed_precision.set_global_policy(_POLICIES[mode])
    before = os.environ.get(FPMATH_VARIABLE)
    if mode == "bf32":
        os.environ[FPMATH_VARIABLE] = "BF16"
    if os.environ.get(FPMATH_VARIABLE, "").upper() == "BF16" and _convs_in_bf16():
        return "bf32" if mode in ("off", "bf32") else f"{_POLICIES[mode]} + bf32"
    if before is None:  # not in force here: processes this one starts must not inherit it either
        os.environ.pop(FPMATH_VARIABLE, None)
    return _POLICIES[mode]


# --mixed_precision (config.PRECISIONS, "auto" resolved) -> Keras policy.
_POLICIES = {"off": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16", "bf32": "float32"}
FPMATH_VARIABLE = "TF_SET_ONEDNN_FPMATH_MODE"


def _convs_in_bf16() -> bool:
    """True when this process's float32 convolutions multiply in bfloat16.

    A 1x1 convolution over 32 channels: float32 products sum to about 1e-7 of
    the float64 result, bfloat16 ones (8-bit mantissa) to about 1e-3.
    """
    x = tf.random.stateless_normal((8, 16, 16, 32), seed=(1, 2))
    k = tf.random.stateless_normal((1, 1, 32, 64), seed=(3, 4))
    got = tf.cast(tf.nn.conv2d(x, k, 1, "VALID"), tf.float64)
    want = tf.einsum("nhwc,co->nhwo", tf.cast(x, tf.float64), tf.cast(k[0, 0], tf.float64))
    return float(tf.reduce_max(tf.abs(got - want)) / tf.reduce_max(tf.abs(want))) > 1e-4
