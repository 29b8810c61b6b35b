"""The training model: a MobileFaceNet backbone and an ArcFace head, with its own step.

``Recognizer`` is a small subclassed ``keras.Model``. Its ``backbone`` is the
functional embedding model (image -> embedding) that is exported as-is once
the head is stripped; the head only exists for training. ``make_optimizer``
builds the optimizer with warm-up and decay from a ``TrainConfig``.

Example:
    >>> from mfn_tf2.config import ModelConfig, TrainConfig
    >>> from mfn_tf2.backbones import build_backbone
    >>> rec = Recognizer(build_backbone(ModelConfig(width=0.25, image_size=32)), num_classes=10)
    >>> rec.compile(optimizer=make_optimizer(TrainConfig(), steps_per_epoch=5))
    >>> # rec.fit(dataset_of_images_and_labels, epochs=1)
"""
from __future__ import annotations

import math

from mfn_tf2.backend import keras, tf
from mfn_tf2.head import ArcFace


class Recognizer(keras.Model):
    """Backbone + ArcFace head; ``call`` returns embeddings, ``train_step`` the ArcFace loss.

    Args:
        backbone: functional model, normalised images (B, S, S, 3) -> embeddings (B, D).
        num_classes: identities in the training set.
        loss_scale: ArcFace s.
        loss_margin: ArcFace m (radians), reached after ``margin_warmup_steps``.
        margin_warmup_steps: the margin grows linearly from 0 over these optimizer steps.
    """

    def __init__(self, backbone: keras.Model, num_classes: int, loss_scale: float = 64.0,
                 loss_margin: float = 0.5, margin_warmup_steps: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.head = ArcFace(num_classes, scale=loss_scale, margin=loss_margin, name="arcface")
        self.loss_margin = float(loss_margin)
        self.margin_warmup_steps = int(margin_warmup_steps)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy]

    def call(self, images, training=False):
        return self.backbone(images, training=training)

    def margin_now(self):
        """This step's margin: loss_margin * min(1, step / warm-up), a tensor (no variable write,
        so it works the same in every replica and worker)."""
        if self.margin_warmup_steps <= 0:
            return tf.constant(self.loss_margin)
        progress = tf.cast(self.optimizer.iterations, tf.float32) / self.margin_warmup_steps
        return self.loss_margin * tf.minimum(1.0, progress)

    def _loss(self, images, labels, training):
        embeddings = self.backbone(images, training=training)
        logits = self.head((embeddings, labels), margin=self.margin_now())
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


class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak``, then cosine / polynomial decay or a constant.

    Args:
        peak: learning rate after warm-up.
        warmup_steps: steps of linear warm-up from ``peak / 100``.
        total_steps: steps of the whole run (decay reaches 0 there).
        kind: "cosine", "polynomial" (power 2) or "constant".
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, kind: str = "cosine"):
        super().__init__()
        if kind not in _DECAY:
            raise ValueError(f"--lr_schedule {kind!r}: choose one of {', '.join(_DECAY)}")
        self.peak, self.warmup_steps, self.total_steps, self.kind = peak, warmup_steps, total_steps, kind

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = float(max(self.warmup_steps, 1))
        warm_lr = self.peak * (0.01 + 0.99 * step / warm)
        span = float(max(self.total_steps - self.warmup_steps, 1))
        progress = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
        decayed = self.peak * _DECAY[self.kind](progress)
        return tf.where(step < self.warmup_steps, warm_lr, decayed)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "kind": self.kind}


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


def make_optimizer(cfg, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The optimizer of a ``TrainConfig``: warm-up + decay over ``cfg.epochs``.

    Batch-norm scales/offsets and biases are left out of weight decay. Under a
    float16 policy the optimizer is wrapped for loss scaling.

    Args:
        cfg: a TrainConfig.
        steps_per_epoch: optimizer steps in one epoch.

    Returns:
        A Keras 2 optimizer.
    """
    if cfg.optimizer not in _OPTIMIZERS:
        raise ValueError(f"--optimizer {cfg.optimizer!r}: choose one of {', '.join(_OPTIMIZERS)}")
    schedule = WarmupDecay(cfg.learning_rate, int(cfg.warmup_epochs * steps_per_epoch),
                           max(1, cfg.epochs * steps_per_epoch), cfg.lr_schedule)
    optimizer = _OPTIMIZERS[cfg.optimizer](schedule, cfg)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    if keras.mixed_precision.global_policy().compute_dtype == "float16":
        optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def set_precision(mode: str) -> str:
    """Sets the global Keras precision policy for ``--mixed_precision``.

    Args:
        mode: "off", "auto" (float16 on GPU, bfloat16 on CPUs with native
            bfloat16, else off), "bfloat16" or "float16".

    Returns:
        The policy name in force ("float32", "mixed_bfloat16", "mixed_float16").
    """
    if mode == "auto":
        mode = "float16" if tf.config.list_physical_devices("GPU") else (
            "bfloat16" if _cpu_has_bf16() else "off")
    policies = {"off": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
    if mode not in policies:
        raise ValueError(f"--mixed_precision {mode!r}: choose off, auto, bfloat16 or float16")
    keras.mixed_precision.set_global_policy(policies[mode])
    return policies[mode]


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
