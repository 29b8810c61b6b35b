"""The value rules every config checks itself with, and the name lists of the choices configs take.

A rule is a pair (predicate on a value, what a value must be). ``check`` runs a config's rules and
raises ValueError naming the flag, e.g. "--batch_size 0: must be a positive integer", which the CLIs
turn into an argparse error before any work starts. The name lists are the one place a choice's names
live: the modules that act on a name key their dicts by these (``backbones.ARCHS``, recognizer's
optimizers, schedules and precisions, ``alignment.TEMPLATES``). ``config`` re-exports all of them;
this module sits below it and imports nothing of the kit.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Batch:
    ...     batch_size: int = 0
    >>> check(Batch(), {"batch_size": POSITIVE_INT})
    Traceback (most recent call last):
    ValueError: --batch_size 0: must be a positive integer
"""
from __future__ import annotations

# PReLU slope layouts -> the axes one slope is shared over (NHWC; 1, 2 = spatial).
PRELU_SLOPES = {"channel": (1, 2), "shared": (1, 2, 3)}

# Name lists of the choices ModelConfig and TrainConfig take.
ARCH_NAMES = ("mobilefacenet", "mbf")
OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULES = ("cosine", "polynomial", "constant")
PRECISIONS = ("off", "auto", "bfloat16", "float16", "bf32")
STRATEGIES = ("auto", "mirrored", "multi_worker")

# Every export format, in the order files are written.
FORMATS = ("saved_model", "fp32", "fp16", "dynamic", "int8", "qat_int8", "int8_islands")
# Export format -> file name inside the export folder.
EXPORT_FILES = {"saved_model": "saved_model", "fp32": "model_fp32.tflite", "fp16": "model_fp16.tflite",
                "dynamic": "model_dynamic.tflite", "int8": "model_int8.tflite", "qat_int8": "model_qat_int8.tflite",
                "int8_islands": "model_int8_islands.tflite"}
# The 5-point layouts faces are aligned to (alignment.TEMPLATES holds their points): ArcFace's
# 112x112 and its 112x96 crop, and lfw_a, the layout of the bundled LFW faces (LFW-a crops).
TEMPLATE_NAMES = ("112x112", "112x96", "lfw_a")
# False accept rates at which thresholds are measured (calibrate, export's metadata.json).
FAR_TARGETS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


# The rules most fields share.
POSITIVE_INT = (lambda v: v >= 1, "must be a positive integer")
NON_NEGATIVE = (lambda v: v >= 0, "must be 0 or more")
POSITIVE = (lambda v: v > 0, "must be positive")


def within(low, high, *, open_low=False, open_high=False) -> tuple:
    """The rule for numbers between ``low`` and ``high``.

    Args:
        low: the smallest value allowed.
        high: the largest value allowed.
        open_low: leave ``low`` itself out.
        open_high: leave ``high`` itself out.

    Returns:
        (predicate, "must be in [low, high]") with ( or ) for an open end.

    Example:
        >>> ok, must = within(0, 1, open_high=True)
        >>> ok(0), ok(1), must
        (True, False, 'must be in [0, 1)')
    """
    shown = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
    return (lambda v: (v > low if open_low else v >= low) and (v < high if open_high else v <= high),
            f"must be in {shown}")


def one_of(*names) -> tuple:
    """The rule for a value that must be one of ``names``.

    Args:
        names: the values allowed.

    Returns:
        (predicate, "choose one of a, b, ...").

    Example:
        >>> ok, must = one_of(*OPTIMIZERS)
        >>> ok("adamw"), ok("lion"), must
        (True, False, 'choose one of sgd, adamw')
    """
    return lambda v: v in names, f"choose one of {', '.join(map(str, names))}"


def optional(rule: tuple) -> tuple:
    """``rule``, or None (a field's "not set").

    Args:
        rule: (predicate, what a value must be).

    Returns:
        The same rule that also takes None.

    Example:
        >>> ok, must = optional(POSITIVE)
        >>> ok(None), ok(0.0), must
        (True, False, 'must be positive')
    """
    return (lambda v: v is None or rule[0](v)), rule[1]


def check(cfg, rules: dict) -> None:
    """Raises ValueError("--field value: what it must be") for the first field breaking its rule.

    Tuples are shown as the flag takes them (``1,2``), strings quoted, other values as they are.

    Args:
        cfg: a config instance.
        rules: {field name: (predicate on the value, what the value must be)}.

    Returns:
        None when every field keeps its rule.

    Example:
        >>> from types import SimpleNamespace
        >>> check(SimpleNamespace(crop=(4, 0, 2, 9)), {"crop": (lambda v: v[0] < v[2], "left < right")})
        Traceback (most recent call last):
        ValueError: --crop 4,0,2,9: left < right
    """
    for name, (ok, must) in rules.items():
        value = getattr(cfg, name)
        if not ok(value):
            shown = (",".join(map(str, value)) if isinstance(value, tuple)
                     else repr(value) if isinstance(value, str) else value)
            raise ValueError(f"--{name} {shown}: {must}")


__all__ = ["PRELU_SLOPES", "ARCH_NAMES", "OPTIMIZERS", "LR_SCHEDULES", "PRECISIONS", "STRATEGIES", "FORMATS",
           "EXPORT_FILES", "TEMPLATE_NAMES", "FAR_TARGETS", "POSITIVE_INT", "NON_NEGATIVE", "POSITIVE", "within",
           "one_of", "optional", "check"]
