"""What a model path is, and opening it: the one table of every kind of model the kit takes.

``model_kind`` tells a path's kind by one dict lookup; ``KINDS`` says, per kind,
how it is named, opened to run and read into a recognizer. ``open_model`` and
``load_pretrained`` look up there, and a path of a kind the caller does not take
is the one ``not a model`` line of ``accepted_kind``. Every failure is a
``ModelError``: one line that names the path.

=============  ===========================================  =======================  ==================
kind           what it is                                   opened to run by         started from by
=============  ===========================================  =======================  ==================
tflite         a file (any name but the Keras ones)         ``open_interpreter``     -
saved_model    a folder with saved_model.pb                 ``open_signature``       its variables
training       a folder with run.json (``mfn_tf2.train``)   ``open_backbone``        its checkpoint
final_weights  a run's final.weights.h5 (backbone + head)   -                        the .h5 + run.json
keras          a Keras .h5 / .keras model file              ``open_keras``           its weights
=============  ===========================================  =======================  ==================

Example:
    >>> import pathlib, tempfile
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> (run / "run.json").touch(); (run / "final.weights.h5").touch(); (run / "model.tflite").touch()
    >>> model_kind(str(run)), model_kind(str(run / "final.weights.h5")), model_kind(str(run / "model.tflite"))
    ('training', 'final_weights', 'tflite')
    >>> try:
    ...     accepted_kind(str(run / "final.weights.h5"), ("tflite", "saved_model"))
    ... except ModelError as err:
    ...     print(str(err).replace(str(run), "run"))
    run/final.weights.h5: expected a .tflite file or a SavedModel folder; this is not a model of those kinds
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

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


def accepted_kind(path: str, accepted: tuple[str, ...]) -> str:
    """The kind of ``path`` when it is one of ``accepted``, else the one "not a model" line.

    Args:
        path: a model file or folder.
        accepted: the kinds the caller takes, in the order the message lists them.

    Raises:
        ModelError: no such path, or ``{path}: expected <the accepted kinds>; this is not a model of those kinds``.
    """
    kind = model_kind(path)
    if kind not in accepted:
        names = [KINDS[k].name for k in accepted]
        listing = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        raise ModelError(f"{path}: expected {listing}; this is not a model of "
                         + ("that kind" if len(names) == 1 else "those kinds"))
    return kind


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _checkpoints():
    """mfn_tf2.checkpoints (training folders, weights into a recognizer); it does not import this module."""
    from mfn_tf2 import checkpoints  # lazy: keeps TensorFlow out of opening a .tflite file
    return checkpoints


def open_interpreter(model, num_threads: int = 2):
    """A LiteRT interpreter (default XNNPACK delegate) on a .tflite path or its bytes, tensors allocated.

    Example:
        >>> interp = open_interpreter("model.tflite", num_threads=1)   # doctest: +SKIP
    """
    from ai_edge_litert.interpreter import Interpreter  # lazy: LiteRT only when a .tflite file is opened
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
    from mfn_tf2.backend import tf  # lazy: keeps TensorFlow out of opening a .tflite file
    accepted_kind(path, ("saved_model",))
    try:
        return tf.saved_model.load(path).signatures["serving_default"]
    except (KeyError, OSError, ValueError) as err:
        raise ModelError(f"{path}: cannot load SavedModel serving_default ({err})") from None


def open_keras(path: str):
    """A Keras model from a Keras SavedModel folder or a .h5 / .keras file, not compiled.

    Example:
        >>> backbone = open_keras("weights/embedding_model")   # doctest: +SKIP
    """
    from mfn_tf2.backend import keras  # lazy: keeps TensorFlow out of opening a .tflite file
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
    kind = model_kind(path)
    if kind == "saved_model":
        return open_keras(path), None
    if kind != "training":
        raise ModelError(f"{path}: not a training directory (run.json) nor a SavedModel (saved_model.pb)")
    ck = _checkpoints()
    try:
        return ck.load_backbone(path), ck.read_run(path)
    except ck.CheckpointError as err:
        raise ModelError(str(err)) from None
    except ValueError as err:  # TensorFlow's restore of a variable of another shape
        raise ModelError(f"{path}: checkpoint does not fit the saved architecture in {RUN_FILE} "
                         f"({_first_line(err)})") from None


def _start_keras(path: str, recognizer, class_names: list[str]) -> None:
    """A Keras model file or SavedModel of a backbone: its weights (it holds no head)."""
    _checkpoints().copy_backbone(path, open_keras(path).get_weights(), recognizer.backbone)


def _start_saved_model(path: str, recognizer, class_names: list[str]) -> None:
    """A Keras SavedModel (best/, embedding_model/) or the one ``mfn_tf2.export`` writes."""
    if os.path.exists(os.path.join(path, "keras_metadata.pb")):
        return _start_keras(path, recognizer, class_names)
    return _checkpoints().from_saved_model(path, recognizer, class_names)


@dataclass(frozen=True)
class Kind:
    """One row of ``KINDS``.

    Attributes:
        name: the kind in "expected ..." messages.
        open: (path, num_threads) -> what runs it (LiteRT interpreter, serving signature, keras.Model); None: not run.
        start: (path, recognizer, class_names) -> the saved run's identities or None, after setting the
            recognizer's backbone (and its head when the identities match); None: cannot start a run.
    """
    name: str
    open: Callable | None
    start: Callable | None


# Every kind of model path: the one place that says how each is opened.
KINDS = {
    "tflite": Kind("a .tflite file", lambda path, threads: open_interpreter(path, threads), None),
    "saved_model": Kind("a SavedModel folder", lambda path, threads: open_signature(path), _start_saved_model),
    "training": Kind("a training folder", lambda path, threads: open_backbone(path)[0],
                     lambda *args: _checkpoints().from_run(*args)),
    "final_weights": Kind("its final.weights.h5", None, lambda *args: _checkpoints().from_final_weights(*args)),
    "keras": Kind("a Keras .h5/.keras backbone", lambda path, threads: open_keras(path), _start_keras),
}
# What embeds (FeatureExtractor, evaluate) and what starts a run (--pretrained_model), in message order.
RUNNABLE = ("tflite", "saved_model", "training", "keras")
STARTABLE = ("training", "final_weights", "saved_model", "keras")


def open_model(path: str, accepted: tuple[str, ...] = RUNNABLE, num_threads: int = 2) -> tuple[str, object]:
    """Opens a model path to run it: (kind, LiteRT interpreter / serving signature / keras.Model).

    Args:
        path: a model file or folder.
        accepted: the kinds taken (each with an ``open``); another is ``accepted_kind``'s error.
        num_threads: LiteRT threads of a .tflite file.

    Example:
        >>> kind, interp = open_model("android_demo_assets/model_int8.tflite")   # doctest: +SKIP
    """
    kind = accepted_kind(path, accepted)
    return kind, KINDS[kind].open(path, num_threads)


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
    ck = _checkpoints()
    try:
        saved_names = KINDS[accepted_kind(path, STARTABLE)].start(path, recognizer, class_names)
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


__all__ = ["ModelError", "RUN_FILE", "FOLDER_MARKERS", "FILE_ENDINGS", "KINDS", "RUNNABLE", "STARTABLE", "Kind",
           "model_kind", "accepted_kind", "open_model", "open_interpreter", "open_signature", "open_keras",
           "open_backbone", "load_pretrained"]
