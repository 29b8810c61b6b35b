"""What a model path is, and opening it: the one place that reads every kind of model the kit takes.

``model_kind`` tells a path's kind by one dict lookup; the openers below load
each kind. Every failure is a ``ModelError``: one line that names the path.

=============  ===========================================  ===============================
kind           what it is                                   opened by
=============  ===========================================  ===============================
tflite         a file (any name but the Keras ones)         ``open_interpreter``
saved_model    a folder with saved_model.pb                 ``open_signature``, ``open_keras``
training       a folder with run.json (``mfn_tf2.train``)   ``open_backbone``
final_weights  a run's final.weights.h5 (backbone + head)   ``load_pretrained``          
keras          a Keras .h5 / .keras model file              ``open_keras``
=============  ===========================================  ===============================

Example:
    >>> import pathlib, tempfile
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> (run / "run.json").touch(); (run / "final.weights.h5").touch(); (run / "model.tflite").touch()
    >>> model_kind(str(run)), model_kind(str(run / "final.weights.h5")), model_kind(str(run / "model.tflite"))
    ('training', 'final_weights', 'tflite')
"""
from __future__ import annotations

import os

from mfn_tf2.config import RUN_FILE


class ModelError(ValueError):
    """A model path that does not exist, is not a model of the expected kind, or cannot be opened."""


# A folder's kind by the file it holds (checked in this order); a file's by how its
# name ends (first match), any other file is tried as a .tflite flatbuffer.
FOLDER_MARKERS = {"saved_model.pb": "saved_model", RUN_FILE: "training"}
FILE_ENDINGS = {".weights.h5": "final_weights", ".h5": "keras", ".keras": "keras"}


def model_kind(path: str) -> str | None:
    """The kind of ``path`` (see the module table), or None for a folder that holds no model.

    Raises:
        ModelError: no such file or folder.
    """
    if not os.path.exists(path):
        raise ModelError(f"{path}: no such file or folder")
    if os.path.isdir(path):
        return next((kind for marker, kind in FOLDER_MARKERS.items()
                     if os.path.exists(os.path.join(path, marker))), None)
    return next((kind for ending, kind in FILE_ENDINGS.items() if path.endswith(ending)), "tflite")


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def open_interpreter(model, num_threads: int = 2):
    """A LiteRT interpreter (default XNNPACK delegate) on a .tflite path or its bytes, tensors allocated.

    Example:
        >>> interp = open_interpreter("model.tflite", num_threads=1)   # doctest: +SKIP
    """
    from ai_edge_litert.interpreter import Interpreter
    is_bytes = isinstance(model, (bytes, bytearray))
    source = {"model_content": bytes(model)} if is_bytes else {"model_path": os.fspath(model)}
    try:
        interp = Interpreter(num_threads=num_threads, **source)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as err:
        raise ModelError(f"{'<bytes>' if is_bytes else model}: cannot load TFLite model ({_first_line(err)})") from None
    return interp


def open_signature(path: str):
    """The ``serving_default`` signature of a SavedModel folder (a concrete function).

    Example:
        >>> fn = open_signature("export/demo/saved_model")   # doctest: +SKIP
    """
    from mfn_tf2.backend import tf
    if model_kind(path) != "saved_model":
        raise ModelError(f"{path}: not a SavedModel folder (no saved_model.pb)")
    try:
        return tf.saved_model.load(path).signatures["serving_default"]
    except (KeyError, OSError, ValueError) as err:
        raise ModelError(f"{path}: cannot load SavedModel serving_default ({err})") from None


def open_keras(path: str):
    """A Keras model from a Keras SavedModel folder or a .h5 / .keras file, not compiled.

    Example:
        >>> backbone = open_keras("weights/embedding_model")   # doctest: +SKIP
    """
    from mfn_tf2.backend import keras
    try:
        return keras.models.load_model(path, compile=False)
    except (ValueError, OSError) as err:
        raise ModelError(f"{path}: not a Keras model of a backbone ({_first_line(err)})") from None


def open_backbone(path: str):
    """The float backbone of a training directory or a Keras SavedModel, and the run's run.json.

    Returns:
        (keras.Model, run dict or None): run is None for a SavedModel.

    Example:
        >>> backbone, run = open_backbone("weights/")   # doctest: +SKIP
    """
    # Imported here (as in load_pretrained): opening a .tflite file or a SavedModel signature
    # needs no TensorFlow; checkpoints imports it. checkpoints does not import this module.
    from mfn_tf2.checkpoints import CheckpointError, load_backbone, read_run
    kind = model_kind(path)
    if kind == "saved_model":
        return open_keras(path), None
    if kind != "training":
        raise ModelError(f"{path}: not a training directory (run.json) nor a SavedModel (saved_model.pb)")
    try:
        return load_backbone(path), read_run(path)
    except CheckpointError as err:
        raise ModelError(str(err)) from None
    except ValueError as err:  # TensorFlow's restore of a variable of another shape
        raise ModelError(f"{path}: checkpoint does not fit the saved architecture in {RUN_FILE} "
                         f"({_first_line(err)})") from None



def load_pretrained(path: str, recognizer, class_names: list[str]) -> str:
    """Starts a built Recognizer from saved weights; returns the line that says what was loaded.

    Args:
        path: a training directory, its ``final.weights.h5``, a SavedModel
            folder (``embedding_model/``, ``best/``, an export's ``saved_model/``)
            or a Keras ``.h5`` / ``.keras`` backbone.
        recognizer: the run's Recognizer, its head built.
        class_names: the run's identities; the head is restored when the
            saved run had exactly these.

    Raises:
        CheckpointError: no such path, not a model, or another architecture.

    Example:
        >>> log(load_pretrained("weights/", recognizer, data.class_names))          # doctest: +SKIP
    """
    # Imported here: see open_backbone.
    from mfn_tf2 import checkpoints as ck

    def from_keras(path, recognizer, class_names):  # a Keras model file or SavedModel of a backbone
        ck.copy_backbone(path, open_keras(path).get_weights(), recognizer.backbone)

    def from_saved_model(path, recognizer, class_names):
        if os.path.exists(os.path.join(path, "keras_metadata.pb")):
            return from_keras(path, recognizer, class_names)
        return ck.from_saved_model(path, recognizer, class_names)

    # Model kind -> how a recognizer starts from it (returns the saved run's identities or None).
    loaders = {"training": ck.from_run, "final_weights": ck.from_final_weights,
               "saved_model": from_saved_model, "keras": from_keras}
    if not os.path.exists(path):
        raise ck.CheckpointError(f"--pretrained_model {path}: no such file or folder")
    loader = loaders.get(model_kind(path))
    if loader is None:
        raise ck.CheckpointError(f"--pretrained_model {path}: expected a training folder, its final.weights.h5, "
                                 "a SavedModel folder or a Keras .h5/.keras backbone")
    try:
        saved_names = loader(path, recognizer, class_names)
    except ck.CheckpointError:
        raise
    except ModelError as err:
        raise ck.CheckpointError(f"--pretrained_model {err}") from None
    except (OSError, ValueError) as err:
        raise ck.CheckpointError(f"--pretrained_model {path}: cannot read it ({_first_line(err)})") from None
    if saved_names == class_names:
        return f"starting from {path}: backbone and ArcFace head (the same {len(saved_names)} identities)"
    why = ("it holds no head" if saved_names is None
           else f"its {len(saved_names)} identities are not this run's {len(class_names)}")
    return f"starting from {path}: backbone only; the ArcFace head starts fresh ({why})"


__all__ = ["ModelError", "RUN_FILE", "FOLDER_MARKERS", "FILE_ENDINGS", "model_kind", "open_interpreter", "open_signature",
           "open_keras", "open_backbone", "load_pretrained"]
