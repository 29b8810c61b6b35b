"""Frozen configuration dataclasses: every stage reads its settings from here.

The names and defaults of the original Keras implementation's command line are kept as field names and
defaults; each CLI maps its flags 1:1 onto these fields (see ``cli.py``).
Library code receives these objects and never parses argv. Every config
checks its values when it is built: a bad one raises ValueError naming the
flag ("--batch_size 0: must be a positive integer"), which the CLIs turn into
an argparse error before any work starts.

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
import os
from dataclasses import dataclass

# Pixel normalisation used by every model of the kit: (x - 127.5) / 128.
PIXEL_MEAN = 127.5
PIXEL_STD = 128.0


# PReLU slope layouts -> the axes one slope is shared over (NHWC; 1, 2 = spatial).
PRELU_SLOPES = {"channel": (1, 2), "shared": (1, 2, 3)}

# Name lists of the choices a config takes; the modules that act on a name key their
# dicts by these (backbones.ARCHS, recognizer's optimizers, schedules and precisions).
ARCH_NAMES = ("mobilefacenet", "mbf")
OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULES = ("cosine", "polynomial", "constant")
PRECISIONS = ("off", "auto", "bfloat16", "float16", "bf32")
STRATEGIES = ("auto", "mirrored", "multi_worker")


# Value rules: (predicate, what a value must be). A field's rule names the flag
# in its error, e.g. "--batch_size 0: must be a positive integer".
_POSITIVE_INT = (lambda v: v >= 1, "must be a positive integer")
_NON_NEGATIVE = (lambda v: v >= 0, "must be 0 or more")
_POSITIVE = (lambda v: v > 0, "must be positive")


def _within(low, high, *, open_low=False, open_high=False):
    """The rule for numbers between ``low`` and ``high`` (ends closed unless open)."""
    shown = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
    return (lambda v: (v > low if open_low else v >= low) and (v < high if open_high else v <= high),
            f"must be in {shown}")


def _one_of(*names):
    return lambda v: v in names, f"choose one of {', '.join(map(str, names))}"


def _optional(rule):
    """``rule``, or None (the field's "not set")."""
    return (lambda v: v is None or rule[0](v)), rule[1]


def _check(cfg, rules: dict) -> None:
    """Raises ValueError("--field value: what it must be") for the first field breaking its rule.

    Args:
        cfg: a config instance.
        rules: {field name: (predicate on the value, what the value must be)}.
    """
    for name, (ok, must) in rules.items():
        value = getattr(cfg, name)
        if not ok(value):
            shown = (",".join(map(str, value)) if isinstance(value, tuple)
                     else repr(value) if isinstance(value, str) else value)
            raise ValueError(f"--{name} {shown}: {must}")


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
            XNNPACK runs fast; see README "int8").
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
        _check(self, _MODEL_RULES)


_MODEL_RULES = {
    "arch": _one_of(*ARCH_NAMES),
    # Five stride-2 stages; the global depthwise conv needs a whole feature map.
    "image_size": (lambda v: v >= 32 and v % 16 == 0, "MobileFaceNet needs a multiple of 16, at least 32"),
    "expansion_ratio": (lambda v: v == "paper" or (v.isdigit() and int(v) >= 1),
                        'use a positive integer such as "6", or "paper"'),
    "embedding_dim": _POSITIVE_INT,
    "width": _POSITIVE,
    "prelu": _one_of(*PRELU_SLOPES),
    "loss_scale": _POSITIVE,
    "loss_margin": _NON_NEGATIVE,
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
        _check(self, _DATA_RULES)


_DATA_RULES = {
    "batch_size": _POSITIVE_INT,
    "aug_freq": _within(0, 1),
    "image_size": _POSITIVE_INT,
    # Every identity keeps at least one training image, so 1 would be all-but-one.
    "valid_split_ratio": _within(0, 1, open_high=True),
    "min_images": _POSITIVE_INT,
    "max_identities": (_NON_NEGATIVE[0], "must be 0 (all) or more"),
    "data_generator": _optional((lambda v: all(v.partition(":")[::2]), "give module:function")),
    "seed": _NON_NEGATIVE,
}



@dataclass(frozen=True)
class EvalConfig:
    """Face verification on pairs (the periodic check and the evaluator).

    Args:
        pairs_filename: LFW ``pairs.txt`` format or plain ``path1 path2 label``;
            None generates pairs from ``data_directory``.
        data_directory: root the pair paths / names resolve under.
        sample_type: 0 balanced generated pairs, 1 all pairs among
            ``num_person`` x ``num_sample`` images.
        repeat_times: rounds of balanced sampling (sample_type 0).
        num_person: people drawn (sample_type 1).
        num_sample: images per person (sample_type 1).
        far_target: false accept rates at which TAR is reported.
        flip: add the embedding of the mirrored image (insightface "Accuracy-Flip").
        skip_missing: skip and count pairs whose image is missing.
        crop: (left, top, right, bottom) pixel box taken before resizing.
        mean: pixel mean subtracted before a float model (default: the model's
            metadata.json, else 127.5).
        std: pixel divisor (default: metadata, else 128).
        bgr: feed channels in BGR order (default: metadata, else RGB).
        batch_size: images per model call.
        seed: seed for generated pairs.
        verification_sets: insightface .bin sets (lfw.bin,cfp_fp.bin,agedb_30.bin)
            scored too, with and without flip, on 10 contiguous folds.
        best_by: what picks the best checkpoint: "pairs" (the pairs' accuracy; with
            no pairs the first set's) or a verification set's name (agedb_30: its accuracy-flip).
    """
    pairs_filename: str | None = None
    data_directory: str = ""
    sample_type: int = 0
    repeat_times: int = 10
    num_person: int = 10
    num_sample: int = 20
    far_target: tuple[float, ...] = (1e-2,)
    flip: bool = False
    skip_missing: bool = False
    crop: tuple[int, int, int, int] | None = None
    mean: float | None = None
    std: float | None = None
    bgr: bool | None = None
    batch_size: int = 64
    seed: int = 0
    verification_sets: tuple[str, ...] = ()
    best_by: str = "pairs"

    def __post_init__(self):
        _check(self, _EVAL_RULES)
        names = ("pairs",) + tuple(set_name(p) for p in self.verification_sets)
        _check(self, {"best_by": _one_of(*names)})


def set_name(path: str) -> str:
    """The name a .bin verification set goes by: its file stem (``data/agedb_30.bin`` -> ``agedb_30``)."""
    return os.path.splitext(os.path.basename(path))[0]


_EVAL_RULES = {
    "sample_type": (_one_of(0, 1)[0], "choose 0 (balanced pairs) or 1 (all pairs)"),
    "repeat_times": _POSITIVE_INT,
    "num_person": _POSITIVE_INT,
    "num_sample": _POSITIVE_INT,
    "far_target": (lambda v: len(v) > 0 and all(0 < t < 1 for t in v),
                   "each false accept rate must be in (0, 1), e.g. 1e-3,1e-2"),
    "crop": _optional((lambda v: len(v) == 4 and 0 <= v[0] < v[2] and 0 <= v[1] < v[3],
                       "give left,top,right,bottom with left < right and top < bottom")),
    "std": _optional(_POSITIVE),
    "batch_size": _POSITIVE_INT,
    "seed": _NON_NEGATIVE,
    "verification_sets": (lambda v: all(p.endswith(".bin") for p in v),
                          "give insightface .bin files, e.g. lfw.bin,cfp_fp.bin,agedb_30.bin"),
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
        _check(self, _TRAIN_RULES)


_TRAIN_RULES = {
    "checkpoint_epochs": _POSITIVE_INT,
    "checkpoint_steps": (_NON_NEGATIVE[0], "must be 0 (off) or more"),
    "epochs": _POSITIVE_INT,
    "evaluate_epochs": _POSITIVE_INT,
    "optimizer": _one_of(*OPTIMIZERS),
    "learning_rate": _POSITIVE,
    "momentum": _within(0, 1, open_high=True),
    "weight_decay": _NON_NEGATIVE,
    "warmup_epochs": _NON_NEGATIVE,
    "lr_schedule": _one_of(*LR_SCHEDULES),
    "margin_warmup_epochs": _NON_NEGATIVE,
    "mixed_precision": _one_of(*PRECISIONS),
    "max_minutes": (_NON_NEGATIVE[0], "must be 0 (no limit) or more"),
    # Whether the ids exist is checked when devices are set up (distribute.py).
    "gpu": _optional((lambda v: all(g.strip().isdigit() for g in v.split(",") if g.strip()),
                      "give GPU ids such as 0 or 0,1, or '' for CPU only")),
    "strategy": _one_of(*STRATEGIES),
    "logical_cpus": _NON_NEGATIVE,
    "seed": _NON_NEGATIVE,
}



# Every export format, in the order files are written.
FORMATS = ("saved_model", "fp32", "fp16", "dynamic", "int8", "qat_int8")
# Export format -> file name inside the export folder.
# The file that marks a training directory (written by ``checkpoints.claim_directory``).
RUN_FILE = "run.json"

EXPORT_FILES = {"saved_model": "saved_model", "fp32": "model_fp32.tflite", "fp16": "model_fp16.tflite",
         "dynamic": "model_dynamic.tflite", "int8": "model_int8.tflite", "qat_int8": "model_qat_int8.tflite"}
# The 5-point layouts faces are aligned to (alignment.TEMPLATES holds their points): ArcFace's
# 112x112 and its 112x96 crop, and lfw_a, the layout of the bundled LFW faces (LFW-a crops).
TEMPLATE_NAMES = ("112x112", "112x96", "lfw_a")
# False accept rates at which thresholds are measured (calibrate, export's metadata.json).
FAR_TARGETS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


@dataclass(frozen=True)
class ExportConfig:
    """Head stripping, quantization and export.

    Args:
        out: the export folder (``export/NAME``).
        formats: which files to write (see ``FORMATS``).
        representative_dir: real face images that calibrate int8.
        num_calibration: images used for calibration.
        qat_epochs: quantization-aware fine-tuning epochs (of the export form:
            batch norm folded, so its statistics cannot drift); fractions
            allowed (0.5: steps over half the training images).
        qat_learning_rate: learning rate of that fine-tuning.
        per_tensor: int8 and qat_int8 with one weight scale per conv instead of
            one per output channel, for accelerators and NNAPI/DSP drivers that
            take only per-tensor scales (post-training int8 of depthwise convs
            suffers there; QAT recovers it).
        max_accuracy_drop: accuracy points an exported model may lose.
        min_cosine: mean embedding cosine to the float model it must reach.
        android_assets: also fill this folder with the app's assets.
        calibration_dir: a folder of identity sub-folders whose every pair measures
            each exported file's thresholds (default: --data_directory).
        template: the 5-point layout the training faces were aligned to (112x112, 112x96 or
            lfw_a, the bundled LFW faces'); metadata.json names it, and apps and the
            evaluator align raw photos onto it (default: ArcFace's for the input's aspect).
    """
    out: str = "export/model"
    formats: tuple[str, ...] = FORMATS
    representative_dir: str | None = None
    num_calibration: int = 200
    qat_epochs: float = 1.0
    qat_learning_rate: float = 1e-5
    per_tensor: bool = False
    max_accuracy_drop: float = 1.0
    min_cosine: float = 0.98
    android_assets: str | None = None
    calibration_dir: str | None = None
    template: str | None = None

    def __post_init__(self):
        _check(self, _EXPORT_RULES)
        if self.android_assets and not {"int8", "fp16"} & set(self.formats):
            raise ValueError(f"--android_assets {self.android_assets}: the app ships the int8 or fp16 "
                             "model; add int8 or fp16 to --formats")


_EXPORT_RULES = {
    "formats": (lambda v: len(v) > 0 and set(v) <= set(FORMATS), f"choose from {','.join(FORMATS)}"),
    "num_calibration": _POSITIVE_INT,
    "qat_epochs": _POSITIVE,
    "qat_learning_rate": _POSITIVE,
    "max_accuracy_drop": _NON_NEGATIVE,
    "min_cosine": _within(-1, 1),
    "template": (lambda v: v is None or v in TEMPLATE_NAMES, f"choose one of {', '.join(TEMPLATE_NAMES)}"),
}



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
    """Returns a copy of a frozen config with ``changes`` applied.

    Example:
        >>> replace(ModelConfig(), width=0.25).width
        0.25
    """
    return dataclasses.replace(cfg, **changes)


def to_dict(cfg) -> dict:
    """A JSON-ready dict of a config (tuples become lists)."""
    return dataclasses.asdict(cfg)


def from_dict(cls, values: dict):
    """Builds ``cls`` from a dict, ignoring unknown keys and restoring tuples.

    Example:
        >>> from_dict(ModelConfig, to_dict(ModelConfig())) == ModelConfig()
        True
    """
    names = {f.name: f for f in dataclasses.fields(cls)}
    kept = {k: (tuple(v) if isinstance(v, list) else v)
            for k, v in values.items() if k in names}
    return cls(**kept)


__all__ = ["ModelConfig", "DataConfig", "EvalConfig", "TrainConfig", "ExportConfig",
           "MODEL_PRESETS", "PRELU_SLOPES", "ARCH_NAMES", "OPTIMIZERS", "LR_SCHEDULES", "PRECISIONS", "STRATEGIES",
           "FORMATS", "EXPORT_FILES", "RUN_FILE", "Recipe", "RECIPES", "PIXEL_MEAN", "PIXEL_STD", "replace", "to_dict",
           "set_name",
           "from_dict"]
