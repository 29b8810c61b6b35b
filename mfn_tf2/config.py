"""Frozen configuration dataclasses: every stage reads its settings from here.

The names and defaults of the original Keras implementation's command line are kept as field names and
defaults; each CLI maps its flags 1:1 onto these fields (see ``cli.py``).
Library code receives these objects and never parses argv. Every config
checks its values when it is built: a bad one raises ValueError naming the
flag ("--batch_size 0: must be a positive integer"), which the CLIs turn into
an argparse error before any work starts.

This module holds the model, data and training configs, their presets and recipes; the value rules
and name lists live in ``rules``, the evaluation and export configs in ``eval_export_config``, and
all of them are importable from here (``config.EvalConfig``, ``config.FORMATS``).

Example:
    >>> from mfn_tf2.config import ModelConfig, MODEL_PRESETS
    >>> ModelConfig().embedding_dim
    256
    >>> MODEL_PRESETS["paper"].embedding_dim
    128
    >>> DataConfig(aug_freq=2.0)
    Traceback (most recent call last):
    ValueError: --aug_freq 2.0: must be in [0, 1]
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mfn_tf2.eval_export_config import EvalConfig, ExportConfig, set_name
from mfn_tf2.rules import (ARCH_NAMES, EXPORT_FILES, FAR_TARGETS, FORMATS, LR_SCHEDULES, NON_NEGATIVE, OPTIMIZERS,
                           POSITIVE, POSITIVE_INT, PRECISIONS, PRELU_SLOPES, STRATEGIES, TEMPLATE_NAMES, check,
                           one_of, optional, within)

# Pixel normalisation used by every model of the kit: (x - 127.5) / 128.
PIXEL_MEAN = 127.5
PIXEL_STD = 128.0


@dataclass(frozen=True)
class ModelConfig:
    """The backbone and the ArcFace head.

    Args:
        arch: "mobilefacenet" (Chen et al. 2018) or "mbf" (insightface's
            variant: widths doubled, grouped stem conv).
        image_size: square input side in pixels.
        expansion_ratio: one bottleneck expansion for every stage ("6"), or
            "paper" for the paper's per-stage table.
        embedding_dim: size of the embedding.
        width: channel multiplier (tests use small widths).
        prelu: PReLU slopes: "channel" (one per channel, the paper's) or
            "shared" (one per layer: its int8 form is LEAKY_RELU, which
            XNNPACK runs fast; see README "Export").
        loss_scale: ArcFace s.
        loss_margin: ArcFace m (radians).
    """
    arch: str = "mobilefacenet"
    image_size: int = 112
    expansion_ratio: str = "6"
    embedding_dim: int = 256
    width: float = 1.0
    prelu: str = "channel"
    loss_scale: float = 64.0
    loss_margin: float = 0.5

    def __post_init__(self):
        check(self, _MODEL_RULES)


_MODEL_RULES = {
    "arch": one_of(*ARCH_NAMES),
    # Five stride-2 stages; the global depthwise conv needs a whole feature map.
    "image_size": (lambda v: v >= 32 and v % 16 == 0, "MobileFaceNet needs a multiple of 16, at least 32"),
    "expansion_ratio": (lambda v: v == "paper" or (v.isdigit() and int(v) >= 1),
                        'use a positive integer such as "6", or "paper"'),
    "embedding_dim": POSITIVE_INT,
    "width": POSITIVE,
    "prelu": one_of(*PRELU_SLOPES),
    "loss_scale": POSITIVE,
    "loss_margin": NON_NEGATIVE,
}


# Named model configurations a user can start from (``--preset``). keras_original: the defaults of
# the original Keras implementation whose command line the kit keeps.
MODEL_PRESETS = {
    "keras_original": ModelConfig(),
    "paper": ModelConfig(expansion_ratio="paper", embedding_dim=128),
    "mbf": ModelConfig(arch="mbf", expansion_ratio="paper", embedding_dim=512),
}


@dataclass(frozen=True)
class DataConfig:
    """The training input pipeline.

    Args:
        train_directory: one folder per identity, or a folder of TFRecord
            shards written by ``python -m mfn_tf2.data pack``.
        valid_directory: held-out images for the validation loss; None
            splits ``valid_split_ratio`` of every identity off the training set.
        batch_size: global batch (summed over replicas and workers).
        aug_freq: probability that an image is augmented.
        image_size: square side the images are resized to.
        shuffle: reshuffle every epoch.
        valid_split_ratio: share of each identity's images kept for validation.
        min_images: identities with fewer images are left out.
        max_identities: keep at most this many identities (most images first).
        cache: keep decoded images in memory after the first epoch.
        data_generator: "module:function" returning a tf.data.Dataset of
            (image, label); it receives this config and the input context.
        seed: seed of every random choice of the pipeline.
    """
    train_directory: str = ""
    valid_directory: str | None = None
    batch_size: int = 200
    aug_freq: float = 0.5
    image_size: int = 112
    shuffle: bool = True
    valid_split_ratio: float = 0.1
    min_images: int = 1
    max_identities: int = 0
    cache: bool = False
    data_generator: str | None = None
    seed: int = 0

    def __post_init__(self):
        check(self, _DATA_RULES)


_DATA_RULES = {
    "batch_size": POSITIVE_INT,
    "aug_freq": within(0, 1),
    "image_size": POSITIVE_INT,
    # Every identity keeps at least one training image, so 1 would be all-but-one.
    "valid_split_ratio": within(0, 1, open_high=True),
    "min_images": POSITIVE_INT,
    "max_identities": (NON_NEGATIVE[0], "must be 0 (all) or more"),
    "data_generator": optional((lambda v: all(v.partition(":")[::2]), "give module:function")),
    "seed": NON_NEGATIVE,
}


@dataclass(frozen=True)
class TrainConfig:
    """The training loop.

    Args:
        pretrained_model: weights to start from: a training folder, its final.weights.h5, a
            SavedModel folder or a Keras .h5/.keras backbone (the head too when the
            identities are the same).
        save_model_directory: checkpoints, logs and the final models go here.
        checkpoint_epochs: save a checkpoint every this many epochs.
        checkpoint_steps: also save every this many steps (0: off).
        epochs: epochs to train.
        evaluate_epochs: run pair verification every this many epochs.
        optimizer: "sgd" (with momentum) or "adamw".
        learning_rate: peak learning rate, for the global batch.
        momentum: SGD momentum.
        weight_decay: decoupled weight decay (AdamW) / L2 on kernels (SGD).
        warmup_epochs: linear learning-rate warm-up.
        lr_schedule: "cosine", "polynomial" or "constant" after warm-up.
        margin_warmup_epochs: ramp the ArcFace margin from 0 over these epochs.
        mixed_precision: "off", "auto" (float16 on GPU, bfloat16 on CPUs that
            have it), "bfloat16", "float16" or "bf32" (float32 weights and
            activations; oneDNN convolutions multiply in bfloat16 on CPUs with
            AVX512-BF16 or AMX, TensorFlow's TF_SET_ONEDNN_FPMATH_MODE=BF16).
        max_minutes: stop after this many minutes of training (0: no limit);
            the schedule is then laid out over the time budget.
        log_dir: TensorBoard directory (default: save_model_directory/logs).
        gpu: CUDA device list ("0", "0,1"; "" = CPU only; None = all visible).
        strategy: "auto" (mirrored, or multi_worker when TF_CONFIG is set),
            "mirrored" or "multi_worker".
        logical_cpus: split the CPU into this many logical devices (tests of
            MirroredStrategy without GPUs; 0: off).
        seed: seed of weights and pipeline.
    """
    pretrained_model: str | None = None
    save_model_directory: str = "weights/"
    checkpoint_epochs: int = 5
    checkpoint_steps: int = 0
    epochs: int = 300
    evaluate_epochs: int = 5
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.0
    lr_schedule: str = "cosine"
    margin_warmup_epochs: float = 0.0
    mixed_precision: str = "off"
    max_minutes: float = 0.0
    log_dir: str | None = None
    gpu: str | None = None
    strategy: str = "auto"
    logical_cpus: int = 0
    seed: int = 0

    def __post_init__(self):
        check(self, _TRAIN_RULES)


_TRAIN_RULES = {
    "checkpoint_epochs": POSITIVE_INT,
    "checkpoint_steps": (NON_NEGATIVE[0], "must be 0 (off) or more"),
    "epochs": POSITIVE_INT,
    "evaluate_epochs": POSITIVE_INT,
    "optimizer": one_of(*OPTIMIZERS),
    "learning_rate": POSITIVE,
    "momentum": within(0, 1, open_high=True),
    "weight_decay": NON_NEGATIVE,
    "warmup_epochs": NON_NEGATIVE,
    "lr_schedule": one_of(*LR_SCHEDULES),
    "margin_warmup_epochs": NON_NEGATIVE,
    "mixed_precision": one_of(*PRECISIONS),
    "max_minutes": (NON_NEGATIVE[0], "must be 0 (no limit) or more"),
    # Whether the ids exist is checked when devices are set up (distribute.py).
    "gpu": optional((lambda v: all(g.strip().isdigit() for g in v.split(",") if g.strip()),
                      "give GPU ids such as 0 or 0,1, or '' for CPU only")),
    "strategy": one_of(*STRATEGIES),
    "logical_cpus": NON_NEGATIVE,
    "seed": NON_NEGATIVE,
}


# The file that marks a training directory (written by ``checkpoints.claim_directory``).
RUN_FILE = "run.json"


@dataclass(frozen=True)
class Recipe:
    """A whole training run's settings, reusable by name (``--recipe``).

    Args:
        model: the model configuration.
        data: the input pipeline (its train_directory is set by the user).
        train: the training loop.
    """
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()


RECIPES = {
    # The original Keras implementation's defaults: large data on GPUs.
    "keras_original": Recipe(),
    # Learns in minutes on two CPU cores (about 15 on the bundled faces): a small input, a gentler
    # ArcFace (s 32, margin warmed up) and a short warm-up + cosine schedule. Learning rate 0.2 and
    # weight decay 1e-3 did best in a search of 14-16 epoch runs on the bundled faces; what it
    # reaches on their held-out pairs is in docs/benchmarks.md (runs of it differ by about a point).
    "cpu_demo": Recipe(
        model=ModelConfig(image_size=64, expansion_ratio="paper", embedding_dim=128,
                          loss_scale=32.0, loss_margin=0.5),
        data=DataConfig(batch_size=128, aug_freq=0.5, min_images=2, valid_split_ratio=0.0, cache=True),
        train=TrainConfig(epochs=15, learning_rate=0.2, weight_decay=1e-3, warmup_epochs=1.0,
                          margin_warmup_epochs=2.0, checkpoint_epochs=1, evaluate_epochs=5)),
}

# Old names of presets and recipes, still taken (``cli.named`` says the new name once).
RENAMED = {"seed": "keras_original"}


def replace(cfg, **changes):
    """A copy of a frozen config with ``changes`` applied (and checked again).

    Args:
        cfg: a config instance.
        changes: field name -> new value.

    Returns:
        A new config of the same class.

    Example:
        >>> replace(ModelConfig(), width=0.25).width
        0.25
    """
    return dataclasses.replace(cfg, **changes)


def to_dict(cfg) -> dict:
    """A config's fields as a dict, ready for JSON (which writes its tuples as lists).

    Args:
        cfg: a config instance.

    Returns:
        {field name: value}.

    Example:
        >>> to_dict(EvalConfig())["far_target"]
        (0.01,)
    """
    return dataclasses.asdict(cfg)


def from_dict(cls, values: dict):
    """Builds ``cls`` from a dict, ignoring unknown keys and restoring tuples (JSON's lists).

    Args:
        cls: a config class.
        values: {field name: value}, e.g. read back from a run's JSON.

    Returns:
        The config, checked as any other.

    Example:
        >>> from_dict(ModelConfig, to_dict(ModelConfig())) == ModelConfig()
        True
        >>> from_dict(EvalConfig, {"far_target": [1e-3], "gone": 1}).far_target
        (0.001,)
    """
    names = {f.name: f for f in dataclasses.fields(cls)}
    kept = {k: (tuple(v) if isinstance(v, list) else v)
            for k, v in values.items() if k in names}
    return cls(**kept)


__all__ = ["ModelConfig", "DataConfig", "EvalConfig", "TrainConfig", "ExportConfig", "Recipe", "MODEL_PRESETS",
           "RECIPES", "RENAMED", "PRELU_SLOPES", "ARCH_NAMES", "OPTIMIZERS", "LR_SCHEDULES", "PRECISIONS",
           "STRATEGIES", "FORMATS", "EXPORT_FILES", "TEMPLATE_NAMES", "FAR_TARGETS", "RUN_FILE", "PIXEL_MEAN",
           "PIXEL_STD", "replace", "to_dict", "from_dict", "set_name"]
