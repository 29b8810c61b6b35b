"""Train MobileFaceNet + ArcFace on a folder of face folders (one folder per person).

    # two CPU cores, LFW's training identities, checked every epoch on the held-out pairs
    python -m mfn_tf2.train ../shared/data/lfw/train ../shared/data/lfw/heldout \\
        ../shared/data/lfw/pairs_heldout.txt --preset paper --batch_size 64 --epochs 2 \\
        --evaluate_epochs 1 --save_model_directory weights/

    # all GPUs of a machine (MirroredStrategy), bfloat16/float16 where the hardware has it
    python -m mfn_tf2.train faces/ lfw/ lfw/pairs.txt --gpu 0,1 --mixed_precision auto

    # several machines: the same command on each, with its own TF_CONFIG (see README)
    TF_CONFIG='{"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}}' \\
        python -m mfn_tf2.train shards/ lfw/ lfw/pairs.txt --strategy multi_worker

Started again with the same ``--save_model_directory`` it resumes from the
newest checkpoint. ``pairs_filename`` may be "none" to verify on pairs
generated from ``data_directory`` (``--sample_type``); both "none" to check
only insightface .bin sets:

    # MS1M-ArcFace (insightface's faces_emore folder), checked on its three .bin sets
    python -m mfn_tf2.train faces_emore/ none none --preset mbf --verification_sets \\
        faces_emore/lfw.bin,faces_emore/cfp_fp.bin,faces_emore/agedb_30.bin --best_by agedb_30
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil

from mfn_tf2 import cli
from mfn_tf2 import config as C
from mfn_tf2.backend import keras, tf
from mfn_tf2.binsets import read_bin
from mfn_tf2.callbacks import Checkpointer, LearningRateLogger, NanGuard, TimeBudget, Verifier
from mfn_tf2.checkpoints import (CheckpointError, claim_directory, latest, load_pretrained, restore,
                                 training_checkpoint)
from mfn_tf2.data import DataError, open_training_data
from mfn_tf2.distribute import is_chief, make_strategy, worker_directory
from mfn_tf2.fileio import OutputError, OutputLock, atomic_directory
from mfn_tf2.model import build_backbone
from mfn_tf2.recognizer import Recognizer, make_optimizer, set_precision
from mfn_tf2.verification import has_pairs, load_pairs, log_columns, verifier_for

CONFIGS = {"model": C.ModelConfig, "data": C.DataConfig, "eval": C.EvalConfig, "train": C.TrainConfig}


def build_parser(recipe: str = "seed", preset: str | None = None) -> argparse.ArgumentParser:
    """Every flag of ``python -m mfn_tf2.train``.

    Defaults come from the ``recipe`` (a whole run), the model's from ``preset`` when given.
    """
    p = argparse.ArgumentParser(prog="python -m mfn_tf2.train", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("train_directory", help="identity folders (or a shard folder from `mfn_tf2.data pack`, "
                   "or an insightface folder with train.rec)")
    p.add_argument("data_directory", help="root the verification pairs resolve under ('none' with "
                   "pairs 'none': only --verification_sets)")
    p.add_argument("pairs_filename", help="verification pairs (LFW pairs.txt or 'path1 path2 label'); "
                   "'none' generates pairs from data_directory")
    p.add_argument("--recipe", choices=sorted(C.RECIPES), default="seed",
                   help="settings of a whole run to start from (cpu_demo: learns in minutes on a "
                        "CPU); flags override it (default: seed)")
    p.add_argument("--preset", choices=sorted(C.MODEL_PRESETS), default=None,
                   help="model configuration to start from (seed, paper, mbf); model flags override it")
    groups = {"model": "model", "data": "data generator", "eval": "evaluation (the periodic check)",
              "train": "training"}
    chosen = C.RECIPES[recipe]
    defaults = {"model": C.MODEL_PRESETS[preset] if preset else chosen.model, "data": chosen.data,
                "eval": None, "train": chosen.train}
    for key, cls in CONFIGS.items():
        cli.add_config_flags(p.add_argument_group(groups[key]), cls,
                             skip=("train_directory", "data_directory", "pairs_filename"),
                             defaults=defaults[key])
    return p


def parse(argv=None) -> dict:
    """Parses argv into {"model", "data", "eval", "train"} configs (preset applied)."""
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--recipe", choices=sorted(C.RECIPES), default="seed")
    first.add_argument("--preset", choices=sorted(C.MODEL_PRESETS), default=None)
    known = first.parse_known_args(argv)[0]
    parser = build_parser(known.recipe, known.preset)
    ns = parser.parse_args(argv)
    pairs = None if ns.pairs_filename.lower() == "none" else ns.pairs_filename
    data_directory = "" if ns.data_directory.lower() == "none" else ns.data_directory
    if not (data_directory or ns.verification_sets):
        parser.error("data_directory none: give pairs to check, or --verification_sets")
    return cli.build_configs(parser, ns, CONFIGS, data={"train_directory": ns.train_directory},
                             eval={"data_directory": data_directory, "pairs_filename": pairs})


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
    data = open_training_data(C.replace(data_cfg, image_size=model_cfg.image_size))
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
        recognizer, epoch, manager = _build(model_cfg, train_cfg, data.class_names, steps, save_dir,
                                            write_dir, log)
    train_ds = strategy.distribute_datasets_from_function(lambda ctx: data.train_dataset(ctx).repeat())
    # Whole global batches only: a replica must never get an empty one.
    valid_steps = data.num_valid // data_cfg.batch_size
    valid_ds = (strategy.distribute_datasets_from_function(lambda ctx: data.valid_dataset(ctx).repeat())
                if valid_steps else None)
    scratch = None if chief else write_dir
    nan_guard, budget = NanGuard(), TimeBudget(train_cfg.max_minutes)
    callbacks = [nan_guard, budget, LearningRateLogger(),
                 Checkpointer(manager, epoch, train_cfg.checkpoint_epochs, train_cfg.checkpoint_steps,
                              train_cfg.epochs, scratch)]
    # Same callbacks in the same order on every worker: their collective reads must pair up.
    # best/ is the clone (built outside the strategy): the chief alone saves it.
    verifier = Verifier(verify, build_backbone(model_cfg), train_cfg.evaluate_epochs, train_cfg.epochs,
                        os.path.join(save_dir, "best") if chief else None, log,
                        eval_cfg.best_by, log_columns(eval_cfg))
    callbacks.append(verifier)
    if chief:
        log_dir = train_cfg.log_dir or os.path.join(save_dir, "logs")
        callbacks += [keras.callbacks.CSVLogger(os.path.join(save_dir, "history.csv"), append=True),
                      keras.callbacks.TensorBoard(log_dir, update_freq="epoch", profile_batch=0)]
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


def _build(model_cfg, train_cfg, class_names: list[str], steps: int, save_dir: str, write_dir: str, log):
    """Recognizer, optimizer and checkpoint (restored when one exists); inside the strategy scope."""
    recognizer = Recognizer(build_backbone(model_cfg), len(class_names), model_cfg.loss_scale,
                            model_cfg.loss_margin, margin_warmup_steps=int(train_cfg.margin_warmup_epochs * steps))
    optimizer = make_optimizer(train_cfg, steps)
    recognizer.compile(optimizer=optimizer)
    recognizer.head((recognizer(tf.zeros((1, model_cfg.image_size, model_cfg.image_size, 3))),
                     tf.zeros((1,), tf.int32)))  # creates the head's weights before a restore
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    ckpt = training_checkpoint(recognizer, optimizer, epoch)
    manager = tf.train.CheckpointManager(ckpt, write_dir, max_to_keep=3)
    resume_from = latest(save_dir)
    if resume_from:
        restore(ckpt, resume_from)
        log(f"resuming from epoch {int(epoch.numpy())} ({os.path.basename(resume_from)})")
    elif train_cfg.pretrained_model:
        log(load_pretrained(train_cfg.pretrained_model, recognizer, class_names))
    return recognizer, epoch, manager


def _save_final(recognizer: Recognizer, write_dir: str) -> None:
    """The embedding model as a SavedModel and the whole recognizer's weights."""
    target = os.path.join(write_dir, "embedding_model")
    with atomic_directory(target) as tmp:
        recognizer.backbone.save(tmp, include_optimizer=False)
    weights = os.path.join(write_dir, "final.weights.h5")
    tmp = weights + ".tmp.h5"
    recognizer.save_weights(tmp)
    os.replace(tmp, weights)


def main(argv=None) -> None:
    """Entry point of ``python -m mfn_tf2.train``."""
    cfg = parse(argv)
    try:
        result = run(cfg["model"], cfg["data"], cfg["eval"], cfg["train"])
    except (DataError, CheckpointError, OutputError, ValueError, FloatingPointError) as err:
        cli.fail(str(err))
    print(f"done: {result['epochs_done']} epochs in {cfg['train'].save_model_directory}"
          + (f" (stopped by the {result['stopped']})" if result["stopped"] else ""))


if __name__ == "__main__":
    main()
