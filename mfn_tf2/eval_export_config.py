"""The configurations of the jobs that judge and ship a trained model: evaluation and export.

``EvalConfig`` is pair verification (the periodic check during training and the evaluator);
``ExportConfig`` is head stripping, quantization, the exported files' checks and the app's assets.
Both check their values when built (``rules.check``); ``config`` re-exports them with the other
configs, so ``config.EvalConfig`` and ``config.ExportConfig`` are these classes.

Example:
    >>> EvalConfig(far_target=(1e-3, 1e-2)).far_target
    (0.001, 0.01)
    >>> ExportConfig(formats=("fp32",)).formats
    ('fp32',)
    >>> ExportConfig(min_cosine=1.5)
    Traceback (most recent call last):
    ValueError: --min_cosine 1.5: must be in [-1, 1]
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from mfn_tf2.rules import (FORMATS, NON_NEGATIVE, POSITIVE, POSITIVE_INT, TEMPLATE_NAMES, check, one_of, optional,
                           within)


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
        check(self, _EVAL_RULES)
        names = ("pairs",) + tuple(set_name(p) for p in self.verification_sets)
        check(self, {"best_by": one_of(*names)})


def set_name(path: str) -> str:
    """The name a .bin verification set goes by: its file stem.

    Args:
        path: an insightface .bin file.

    Returns:
        The file name without folder and extension (what ``--best_by`` and the reports call the set).

    Example:
        >>> set_name("data/agedb_30.bin")
        'agedb_30'
    """
    return os.path.splitext(os.path.basename(path))[0]


_EVAL_RULES = {
    "sample_type": (one_of(0, 1)[0], "choose 0 (balanced pairs) or 1 (all pairs)"),
    "repeat_times": POSITIVE_INT,
    "num_person": POSITIVE_INT,
    "num_sample": POSITIVE_INT,
    "far_target": (lambda v: len(v) > 0 and all(0 < t < 1 for t in v),
                   "each false accept rate must be in (0, 1), e.g. 1e-3,1e-2"),
    "crop": optional((lambda v: len(v) == 4 and 0 <= v[0] < v[2] and 0 <= v[1] < v[3],
                       "give left,top,right,bottom with left < right and top < bottom")),
    "std": optional(POSITIVE),
    "batch_size": POSITIVE_INT,
    "seed": NON_NEGATIVE,
    "verification_sets": (lambda v: all(p.endswith(".bin") for p in v),
                          "give insightface .bin files, e.g. lfw.bin,cfp_fp.bin,agedb_30.bin"),
}


@dataclass(frozen=True)
class ExportConfig:
    """Head stripping, quantization and export.

    Args:
        out: the export folder (``export/NAME``).
        formats: which files to write (see ``FORMATS``; "int8_islands" only for a
            backbone with per-channel PReLU slopes, skipped otherwise).
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
        check(self, _EXPORT_RULES)
        if self.android_assets and not {"int8", "qat_int8", "int8_islands", "fp16"} & set(self.formats):
            raise ValueError(f"--android_assets {self.android_assets}: the app ships the int8 or fp16 "
                             "model; add int8 or fp16 to --formats")


_EXPORT_RULES = {
    "formats": (lambda v: len(v) > 0 and set(v) <= set(FORMATS), f"choose from {','.join(FORMATS)}"),
    "num_calibration": POSITIVE_INT,
    "qat_epochs": POSITIVE,
    "qat_learning_rate": POSITIVE,
    "max_accuracy_drop": NON_NEGATIVE,
    "min_cosine": within(-1, 1),
    "template": optional(one_of(*TEMPLATE_NAMES)),
}


__all__ = ["EvalConfig", "ExportConfig", "set_name"]
