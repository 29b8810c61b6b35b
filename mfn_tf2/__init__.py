"""mfn_tf2: MobileFaceNet + ArcFace in TensorFlow 2 — train on face folders,
verify on pairs, quantize, export to SavedModel / TFLite, benchmark on LiteRT.

Importing the package is cheap: TensorFlow is loaded only when a name that
needs it is first used. The command-line tools run with tcmalloc where it is
installed (allocator.py).

Example (the shipped int8 file, on a bundled face crop):
    >>> from mfn_tf2 import FeatureExtractor
    >>> from mfn_tf2.images import read_rgb
    >>> fe = FeatureExtractor("android_demo_assets/model_int8.tflite")
    >>> fe.infer(read_rgb("data/lfw_demo/heldout/Aaron_Tippin/Aaron_Tippin_0001.jpg")).shape
    (1, 128)
"""
import importlib
import sys

from mfn_tf2.allocator import reexec_with_tcmalloc

if sys.argv[:1] == ["-m"]:
    # `python -m mfn_tf2.<tool>` (argv[0] is "-m" while the package loads): restart
    # once with tcmalloc before TensorFlow is imported (see allocator.py).
    reexec_with_tcmalloc()

__version__ = "0.1.0"

# Public name -> module that defines it (imported on first use).
_LAZY = {"FeatureExtractor": "mfn_tf2.embedders"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mfn_tf2' has no attribute {name!r}")
