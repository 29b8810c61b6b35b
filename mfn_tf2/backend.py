"""The one place that picks Keras 2 (tf-keras) before TensorFlow is imported.

tensorflow-model-optimization only works with Keras 2, and TensorFlow 2.16+
defaults to Keras 3. Every module of the package imports ``tf`` and ``keras``
from here, never ``tensorflow`` or ``keras`` directly, so the choice is made
once and can never be mixed.

Example:
    >>> from mfn_tf2.backend import tf, keras
    >>> keras.__version__.startswith("2.")
    True
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

if os.environ["TF_USE_LEGACY_KERAS"] != "1":
    raise RuntimeError(
        "mfn_tf2 needs Keras 2: unset TF_USE_LEGACY_KERAS or set it to 1 "
        "(tensorflow-model-optimization does not support Keras 3)")

__all__ = ["tf", "keras"]
