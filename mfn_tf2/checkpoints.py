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

import json
import os

from mfn_tf2 import config as C
from mfn_tf2.backend import keras, tf
from mfn_tf2.fileio import write_json
from mfn_tf2.model import build_backbone

RUN_FILE = "run.json"


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
    """Writes ``run.json``, or checks that an existing one describes the same model.

    Raises:
        CheckpointError: the directory holds a run of another configuration
            (embedding size, class count, architecture): never overwritten.
    """
    wanted = {"model": C.to_dict(model_cfg), "num_classes": len(class_names)}
    found = read_run(directory)
    if found is None:
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


def latest(directory: str) -> str | None:
    """Path prefix of the newest complete checkpoint in ``directory``, or None."""
    return tf.train.latest_checkpoint(directory)


def model_config(directory: str) -> C.ModelConfig:
    """The ModelConfig saved in a training directory's run.json."""
    run = read_run(directory)
    if run is None:
        raise CheckpointError(f"{directory}: no {RUN_FILE}; not a mfn_tf2 training directory")
    return C.from_dict(C.ModelConfig, run["model"])


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
    saved = sorted(tuple(shape) for name, shape in tf.train.list_variables(path)
                   if name.startswith("model/backbone/") and name.endswith("/.ATTRIBUTES/VARIABLE_VALUE")
                   and ".OPTIMIZER_SLOT" not in name)
    if saved != sorted(tuple(v.shape) for v in backbone.variables):
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
    tf.train.Checkpoint(model=tf.train.Checkpoint(head=head)).read(path).expect_partial()
    return True
