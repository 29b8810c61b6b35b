"""The training directory: what is saved, how it is resumed, how a backbone is read back.

Layout of ``save_model_directory``::

    run.json                 model config, class count and names (written once)
    checkpoint, ckpt-N.*     TensorFlow checkpoints: recognizer, optimizer, epoch
    best/                    SavedModel of the backbone with the best verification score
    embedding_model/         SavedModel of the final backbone (image -> embedding)
    final.weights.h5         weights of the whole recognizer (backbone + head)
    logs/, history.csv       TensorBoard scalars and the per-epoch CSV log

TensorFlow writes a checkpoint's data files first and its ``checkpoint``
index last (atomically), so a run killed mid-save resumes from the previous
complete checkpoint.

Example:
    >>> backbone = load_backbone("weights/")          # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile

from mfn_tf2 import config as C
from mfn_tf2.config import RUN_FILE
from mfn_tf2.backend import keras, tf, without_warnings
from mfn_tf2.fileio import write_json
from mfn_tf2.backbones import build_backbone
from mfn_tf2.recognizer import build_recognizer


class CheckpointError(ValueError):
    """A training directory that does not fit the current run or cannot be read."""


def read_run(directory: str) -> dict | None:
    """The ``run.json`` of a training directory, or None when there is none."""
    path = os.path.join(directory, RUN_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable ({err}); delete it or choose another directory")


def claim_directory(directory: str, model_cfg: C.ModelConfig, class_names: list[str]) -> None:
    """Writes ``run.json``, or checks that an existing one describes the same model
    (a run.json without a checkpoint beside it is replaced).

    Raises:
        CheckpointError: the directory holds a run of another configuration
            (embedding size, class count, architecture): never overwritten.
    """
    wanted = {"model": C.to_dict(model_cfg), "num_classes": len(class_names)}
    found = read_run(directory)
    if found is None or latest(directory) is None:  # nothing trained here yet: nothing to lose
        write_json(os.path.join(directory, RUN_FILE), dict(wanted, class_names=list(class_names)))
        return
    diffs = [f"{k}: saved {found['model'].get(k)!r}, now {v!r}"
             for k, v in wanted["model"].items() if k not in ("loss_scale", "loss_margin")
             and found["model"].get(k) != v]
    if found.get("num_classes") != wanted["num_classes"]:
        diffs.append(f"classes: saved {found.get('num_classes')}, now {wanted['num_classes']}")
    if diffs:
        raise CheckpointError(f"{directory} holds a run of another configuration ({'; '.join(diffs)}); "
                              "use another --save_model_directory or the same settings")


def training_checkpoint(recognizer, optimizer, epoch: tf.Variable) -> tf.train.Checkpoint:
    """The checkpoint object of a run: recognizer (backbone + head), optimizer, epoch."""
    return tf.train.Checkpoint(model=recognizer, optimizer=optimizer, epoch=epoch)


def restore(checkpoint: tf.train.Checkpoint, path: str) -> None:
    """Restores a run's checkpoint to resume it; a damaged file is a CheckpointError."""
    with _reading(path):
        checkpoint.restore(path)


def latest(directory: str) -> str | None:
    """Path prefix of the newest complete checkpoint in ``directory``, or None when there is none.

    Raises:
        CheckpointError: the ``checkpoint`` index is there but damaged or names a
            missing checkpoint (TensorFlow would ignore it and start over).
    """
    index = os.path.join(directory, "checkpoint")
    try:
        path = tf.train.latest_checkpoint(directory)
    except (ValueError, tf.errors.OpError):  # undecodable bytes
        path = None
    if path is None and os.path.exists(index):
        raise CheckpointError(f"{index}: damaged checkpoint index (it names no complete checkpoint); "
                              "write model_checkpoint_path: \"ckpt-N\" into it for the newest complete ckpt-N")
    return path


@contextlib.contextmanager
def _reading(path: str):
    """TensorFlow's error on a damaged checkpoint file, as one CheckpointError line."""
    try:
        yield
    except tf.errors.OpError as err:
        raise CheckpointError(f"{path}: damaged checkpoint ({err.message.splitlines()[0]}); point the folder's "
                              "checkpoint index at an older ckpt-N, or train again") from None


def model_config(directory: str) -> C.ModelConfig:
    """The ModelConfig saved in a training directory's run.json."""
    run = read_run(directory)
    if run is None:
        raise CheckpointError(f"{directory}: no {RUN_FILE}; not a mfn_tf2 training directory")
    return C.from_dict(C.ModelConfig, run["model"])


def _fits(path: str, prefix: str, backbone: keras.Model) -> bool:
    """Whether the checkpoint ``path`` holds, under ``prefix``, variables of the backbone's shapes."""
    saved = sorted(tuple(shape) for name, shape in tf.train.list_variables(path)
                   if name.startswith(prefix) and name.endswith("/.ATTRIBUTES/VARIABLE_VALUE")
                   and ".OPTIMIZER_SLOT" not in name)
    return saved == sorted(tuple(v.shape) for v in backbone.variables)


def save_backbone(model: keras.Model, folder: str) -> None:
    """Writes a backbone as a Keras SavedModel (``best/``, ``embedding_model/``) into ``folder``.

    Keras' per-layer traces are left out: the layers are Keras' own classes
    (``layers.py``), so Keras rebuilds the model from its config, and saving the
    demo's backbone takes ~1 s instead of ~8 s (loading ~1.4 s instead of ~4 s).
    The ``serving_default`` signature Keras would have traced is written here:
    input and output named as the model's, so TensorFlow alone serves it too.

    Example:
        >>> from mfn_tf2.backend import tf
        >>> from mfn_tf2.backbones import build_backbone
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> save_backbone(build_backbone(C.ModelConfig(image_size=32, width=0.25, embedding_dim=8)), folder)
        >>> serve = tf.saved_model.load(folder).signatures["serving_default"]
        >>> {k: v.shape.as_list() for k, v in serve(tf.zeros((1, 32, 32, 3))).items()}
        {'embedding': [1, 8]}
    """
    spec = model.inputs[0]  # (None, S, S, 3) float32
    # A function with its input signature, not a concrete function: the one form that
    # saves with the distributed variables of a multi-worker run.
    serve = tf.function(lambda image: dict(zip(model.output_names, tf.nest.flatten(model(image, training=False)))),
                        input_signature=[tf.TensorSpec(spec.shape, spec.dtype, name=model.input_names[0])])
    # Keras warns on every save that a model never compiled has no compiled metrics: a backbone never is.
    with without_warnings("Compiled the loaded model, but the compiled metrics"):
        model.save(folder, include_optimizer=False, save_traces=False, signatures={"serving_default": serve})


def load_backbone(directory: str) -> keras.Model:
    """Rebuilds the backbone of a training directory and restores its newest weights.

    Args:
        directory: a ``save_model_directory`` with run.json and a checkpoint.

    Returns:
        The functional embedding model (normalised images -> raw embeddings).
    """
    backbone = build_backbone(model_config(directory))
    path = latest(directory)
    if path is None:
        raise CheckpointError(f"{directory}: run.json but no checkpoint yet; train first")
    with _reading(path):
        if not _fits(path, "model/backbone/", backbone):
            raise CheckpointError(f"{path}: checkpoint does not fit the saved architecture in {RUN_FILE} "
                                  "(another model was trained in this directory); use its own run.json")
        # Only the backbone branch of the saved object graph is matched.
        tf.train.Checkpoint(model=tf.train.Checkpoint(backbone=backbone)).read(path).expect_partial()
    return backbone


def restore_head(directory: str, head) -> bool:
    """Loads a built ArcFace head's weights from a training directory's newest checkpoint.

    Returns:
        True when restored; False when the directory has no checkpoint or its
        class count differs (the head then keeps its fresh weights).
    """
    run, path = read_run(directory), latest(directory)
    if run is None or path is None or run["num_classes"] != head.num_classes:
        return False
    with _reading(path):
        tf.train.Checkpoint(model=tf.train.Checkpoint(head=head)).read(path).expect_partial()
    return True


# The "start" of models.KINDS (the one table of model kinds) for the kinds that hold a run's
# checkpoints or variables; models opens Keras files itself.
def copy_backbone(path: str, weights: list, backbone: keras.Model) -> None:
    """Sets the backbone's weights, or says the architectures differ."""
    saved, now = [tuple(w.shape) for w in weights], [tuple(v.shape) for v in backbone.weights]
    if saved != now:
        first = next((f"{a} vs {b}" for a, b in zip(saved, now) if a != b), f"{len(saved)} vs {len(now)} weights")
        raise CheckpointError(f"--pretrained_model {path}: another architecture than this run's (saved vs now: "
                              f"{first}); give the model flags it was trained with (--preset, --width, "
                              "--embedding_dim, ...)")
    backbone.set_weights(weights)


def from_run(path: str, recognizer, class_names: list[str]) -> list[str] | None:
    """A training directory: its newest checkpoint's backbone; the head's identities."""
    copy_backbone(path, load_backbone(path).get_weights(), recognizer.backbone)
    run = read_run(path)
    if run.get("class_names") == class_names:
        restore_head(path, recognizer.head)
    return run.get("class_names")


def from_final_weights(path: str, recognizer, class_names: list[str]) -> list[str] | None:
    """A run's final.weights.h5 (backbone + head), read with the run.json beside it."""
    folder = os.path.dirname(os.path.abspath(path))
    run = read_run(folder)
    if run is None:
        raise CheckpointError(f"--pretrained_model {path}: no {RUN_FILE} beside it; pass its training folder")
    saved = build_recognizer(C.from_dict(C.ModelConfig, run["model"]), run["num_classes"])
    with tempfile.TemporaryDirectory() as tmp:
        # train writes it in the HDF5 layout of model.save_weights("x.h5"); tf-keras reads a
        # name ending in ".weights.h5" as its newer layout, so it is read under a plain ".h5" name.
        os.symlink(os.path.abspath(path), os.path.join(tmp, "weights.h5"))
        saved.load_weights(os.path.join(tmp, "weights.h5"))
    copy_backbone(path, saved.backbone.get_weights(), recognizer.backbone)
    if run.get("class_names") == class_names:
        recognizer.head.set_weights(saved.head.get_weights())
    return run.get("class_names")


def from_saved_model(path: str, recognizer, class_names: list[str]) -> None:
    """The SavedModel ``mfn_tf2.export`` writes (a Keras SavedModel is opened by ``models.open_keras``)."""
    variables = os.path.join(path, "variables", "variables")
    # export writes the backbone's variables as a list (backbone/0, ...) in the order a backbone of the same
    # architecture builds them, restored by position: every position must hold this run's shape, in order.
    # An older export wrote the Keras model (backbone/layer-1/..., by layer), matched by structure.
    saved = dict(tf.train.list_variables(variables))
    wanted = list(recognizer.backbone.variables)
    position = [saved.get(f"backbone/{i}/.ATTRIBUTES/VARIABLE_VALUE") for i in range(len(wanted) + 1)]
    as_list = position[0] is not None
    fits = ((position == [list(v.shape) for v in wanted] + [None]) if as_list
            else _fits(variables, "backbone/", recognizer.backbone))
    if not fits:
        raise CheckpointError(f"--pretrained_model {path}: not a backbone of this run's architecture; give "
                              "the model flags it was trained with (--preset, --width, --embedding_dim, ...)")
    target = wanted if as_list else recognizer.backbone
    tf.train.Checkpoint(backbone=target).read(variables).expect_partial()
    return None
