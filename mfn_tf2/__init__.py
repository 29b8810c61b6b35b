"""mfn_tf2: MobileFaceNet + ArcFace in TensorFlow 2 — train on face folders,
verify on pairs, quantize, export to SavedModel / TFLite, benchmark on LiteRT.

Importing the package is cheap: TensorFlow is loaded only when a name that
needs it is first used.

Example:
    >>> from mfn_tf2 import FeatureExtractor       # doctest: +SKIP
    >>> fe = FeatureExtractor("weights/")           # doctest: +SKIP
    >>> fe.infer(rgb_uint8_image).shape             # doctest: +SKIP
    (1, 256)
"""
import importlib

__version__ = "0.1.0"

# Public name -> module that defines it (imported on first use).
_LAZY = {"FeatureExtractor": "mfn_tf2.embedders"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mfn_tf2' has no attribute {name!r}")
