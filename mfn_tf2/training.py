"""The training runner: configs in, a trained recognizer and its files out.

``run(model_cfg, data_cfg, eval_cfg, train_cfg)`` opens the data, builds (or
resumes) the recognizer under the distribution strategy, fits it with the
kit's callbacks and writes checkpoints, ``history.csv``, TensorBoard logs,
``best/``, ``embedding_model/`` and ``final.weights.h5``. The shell
``python -m mfn_tf2.train`` parses flags into those configs and calls it;
``mfn_tf2.demo`` calls it directly.

Example (the demo's recipe on the bundled faces, about 11 minutes of training on 2 cores):
    >>> from mfn_tf2 import config as C
    >>> recipe = C.RECIPES["cpu_demo"]
    >>> run(recipe.model, C.replace(recipe.data, train_directory="data/lfw_demo/train"),
    ...     C.EvalConfig(pairs_filename="data/lfw_demo/pairs_heldout.txt",
    ...                  data_directory="data/lfw_demo/heldout"),
    ...     C.replace(recipe.train, save_model_directory="weights"))   # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import os
import shutil

from mfn_tf2 import config as C
from mfn_tf2.backend import keras, tf, without_warnings
from mfn_tf2.binsets import read_bin
from mfn_tf2.callbacks import Checkpointer, LearningRateLogger, NanGuard, ProgressLine, Verifier
from mfn_tf2.checkpoints import (claim_directory, latest, restore, save_backbone,
                                 training_checkpoint)
from mfn_tf2.pairs import generate_pairs_file
from mfn_tf2.pipeline import open_training_data
from mfn_tf2.distribute import is_chief, make_strategy, worker_directory
from mfn_tf2.models import load_pretrained
from mfn_tf2.fileio import OutputLock, atomic_directory
from mfn_tf2.backbones import build_backbone
from mfn_tf2.recognizer import Recognizer, build_recognizer, make_optimizer, make_schedule, set_precision
from mfn_tf2.timekeeping import TimeBudget, TimeEstimate
from mfn_tf2.verification import has_pairs, load_pairs, log_columns, verifier_for


def run(model_cfg: C.ModelConfig, data_cfg: C.DataConfig, eval_cfg: C.EvalConfig,
        train_cfg: C.TrainConfig, log=print) -> dict:
    """Trains and returns {"epochs_done", "verification", "stopped"}; raises on bad input.

    Writes checkpoints, logs, ``best/``, ``embedding_model/`` and
    ``final.weights.h5`` into ``train_cfg.save_model_directory`` (the chief
    worker only; the others write scratch copies they remove).
    """
    strategy = make_strategy(train_cfg.gpu, train_cfg.strategy, train_cfg.logical_cpus)
    chief = is_chief(strategy)
    with OutputLock(train_cfg.save_model_directory) if chief else contextlib.nullcontext():
        return _train(strategy, chief, model_cfg, data_cfg, eval_cfg, train_cfg, log if chief else _quiet)


def _quiet(*_):
    """The log of non-chief workers: the chief speaks for the cluster."""


def _train(strategy, chief: bool, model_cfg, data_cfg, eval_cfg, train_cfg, log) -> dict:
    policy = set_precision(train_cfg.mixed_precision)
    keras.utils.set_random_seed(train_cfg.seed)
    save_dir = train_cfg.save_model_directory
    data = open_training_data(data_cfg, model_cfg.image_size)
    if chief and eval_cfg.pairs_filename and not os.path.exists(eval_cfg.pairs_filename):
        log(generate_pairs_file(eval_cfg.pairs_filename, eval_cfg.data_directory, sample_type=eval_cfg.sample_type,
                                repeat_times=eval_cfg.repeat_times, num_person=eval_cfg.num_person,
                                num_sample=eval_cfg.num_sample, seed=eval_cfg.seed))
    verify = (verifier_for(load_pairs(eval_cfg) if has_pairs(eval_cfg) else None, eval_cfg,
                           [read_bin(p) for p in eval_cfg.verification_sets]) if chief else None)
    if chief:
        claim_directory(save_dir, model_cfg, data.class_names)
    log(f"{data.num_classes} identities, {data.num_train} training images"
        + (f", {data.num_valid} validation" if data.num_valid else "")
        + (f", {len(data.skipped)} files skipped" if data.skipped else "")
        + f"; {strategy.num_replicas_in_sync} replica(s), precision {policy}")

    steps = max(1, data.num_train // data_cfg.batch_size)
    write_dir = worker_directory(save_dir, strategy)
    with strategy.scope():
        schedule = make_schedule(train_cfg, steps)
        recognizer, epoch, manager, resumed = _build(model_cfg, train_cfg, data.class_names, steps, schedule,
                                                     save_dir, write_dir, log)
    train_ds = strategy.distribute_datasets_from_function(lambda ctx: data.train_dataset(ctx).repeat())
    # Whole global batches only: a replica must never get an empty one.
    valid_steps = data.num_valid // data_cfg.batch_size
    valid_ds = (strategy.distribute_datasets_from_function(lambda ctx: data.valid_dataset(ctx).repeat())
                if valid_steps else None)
    scratch = None if chief else write_dir
    nan_guard, budget = NanGuard(), TimeBudget(train_cfg.max_minutes, schedule, steps, log)
    # With a time budget, the budget's line says how long the run takes.
    estimate = [] if train_cfg.max_minutes else [TimeEstimate(train_cfg.epochs, steps, log)]
    callbacks = [nan_guard, budget, LearningRateLogger(), *estimate,
                 Checkpointer(manager, epoch, train_cfg.checkpoint_epochs, train_cfg.checkpoint_steps,
                              train_cfg.epochs, scratch)]
    # Same callbacks in the same order on every worker: their collective reads must pair up.
    # best/ is the clone (built outside the strategy): the chief alone saves it.
    verifier = Verifier(verify, build_backbone(model_cfg), train_cfg.evaluate_epochs, train_cfg.epochs,
                        os.path.join(save_dir, "best") if chief else None, log,
                        eval_cfg.best_by, log_columns(eval_cfg), resumed)
    callbacks.append(verifier)
    if chief:
        log_dir = train_cfg.log_dir or os.path.join(save_dir, "logs")
        callbacks += [keras.callbacks.CSVLogger(os.path.join(save_dir, "history.csv"), append=True),
                      keras.callbacks.TensorBoard(log_dir, update_freq="epoch", profile_batch=0), ProgressLine()]
    # Keras times the first batches' callbacks against the step: with a tiny model (the tests) the
    # callbacks that read the loss may take longer, and it says so; nothing a user can act on.
    with without_warnings("Callback method `on_train_batch_end` is slow"):
        recognizer.fit(train_ds, epochs=train_cfg.epochs, initial_epoch=int(epoch.numpy()),
                       steps_per_epoch=steps, validation_data=valid_ds, validation_steps=valid_steps or None,
                       callbacks=callbacks, verbose=1 if chief else 0)
    if nan_guard.message:
        raise FloatingPointError(nan_guard.message)
    _save_final(recognizer, write_dir)
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"epochs_done": int(epoch.numpy()), "stopped": "time budget" if budget.expired else None,
            "verification": verifier.last_report}


def _build(model_cfg, train_cfg, class_names: list[str], steps: int, schedule, save_dir: str, write_dir: str,
           log):
    """Recognizer, epoch variable, checkpoint manager and whether a checkpoint was restored
    (it is when one exists); inside the strategy scope."""
    optimizer = make_optimizer(train_cfg, steps, schedule)
    recognizer = build_recognizer(model_cfg, len(class_names), optimizer=optimizer,  # head built: restorable
                                  margin_warmup_steps=int(train_cfg.margin_warmup_epochs * steps))
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    ckpt = training_checkpoint(recognizer, optimizer, epoch)
    manager = tf.train.CheckpointManager(ckpt, write_dir, max_to_keep=3)
    resume_from = latest(save_dir)
    if resume_from:
        restore(ckpt, resume_from)
        log(f"resuming from epoch {int(epoch.numpy())} ({os.path.basename(resume_from)})")
    elif train_cfg.pretrained_model:
        log(load_pretrained(train_cfg.pretrained_model, recognizer, class_names))
    return recognizer, epoch, manager, resume_from is not None


def _save_final(recognizer: Recognizer, write_dir: str) -> None:
    """The embedding model as a SavedModel and the whole recognizer's weights."""
    target = os.path.join(write_dir, "embedding_model")
    with atomic_directory(target) as tmp:
        save_backbone(recognizer.backbone, tmp)
    weights = os.path.join(write_dir, "final.weights.h5")
    tmp = weights + ".tmp.h5"
    recognizer.save_weights(tmp)
    os.replace(tmp, weights)


__all__ = ["run"]
