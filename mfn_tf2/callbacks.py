"""Keras callbacks of the training loop: checkpoints, periodic verification, guards.

Each callback does one thing, and only the chief worker writes files. The callbacks that watch the
clock (``--max_minutes``' budget, the run-time estimate) are in ``timekeeping``.

Example (a loss that turns NaN: ``NanGuard`` stops the fit at its first step):
    >>> model, guard = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), NanGuard()
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> _ = model.fit(tf.fill((8, 2), float("nan")), tf.zeros((8, 1)), epochs=3, verbose=0, callbacks=[guard])
    >>> guard.message.split(";")[0]
    'loss became nan at step 1 of epoch 1'
"""
from __future__ import annotations

import math
import os
import re
import shutil

from mfn_tf2.backend import keras, tf
from mfn_tf2.checkpoints import save_backbone
from mfn_tf2.fileio import atomic_directory


class Checkpointer(keras.callbacks.Callback):
    """Saves recognizer + optimizer + epoch every ``every_epochs`` and ``every_steps``.

    Args:
        manager: a tf.train.CheckpointManager over the run's checkpoint.
        epoch: tf.Variable holding the number of finished epochs.
        every_epochs: save at the end of every N-th epoch (and the last one).
        every_steps: also save every N optimizer steps (0: off).
        last_epoch: the final epoch index (always saved).
        scratch: a non-chief worker's scratch folder, removed after each save
            (every worker takes part in a save under MultiWorkerMirroredStrategy).
    """

    def __init__(self, manager, epoch: tf.Variable, every_epochs: int, every_steps: int, last_epoch: int,
                 scratch: str | None = None):
        super().__init__()
        self.manager, self.epoch, self.scratch = manager, epoch, scratch
        self.every_epochs, self.every_steps, self.last_epoch = every_epochs, every_steps, last_epoch

    def _save(self):
        self.manager.save(checkpoint_number=int(self.model.optimizer.iterations.numpy()))
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def on_train_batch_end(self, batch, logs=None):
        if not self.every_steps:
            return
        step = int(self.model.optimizer.iterations.numpy())
        if step % self.every_steps == 0 and not self.model.stop_training:
            self._save()

    def on_epoch_end(self, epoch, logs=None):
        if self.model.stop_training and not _finite(logs):
            return  # never save a diverged model over the last good one
        self.epoch.assign(epoch + 1)
        if (epoch + 1) % self.every_epochs == 0 or epoch + 1 == self.last_epoch or self.model.stop_training:
            self._save()


def _finite(logs) -> bool:
    """Whether the loss and validation loss in ``logs`` are finite.

    Args:
        logs: a Keras callback's logs dict, or None.

    Returns:
        False when "loss" or "val_loss" is NaN or infinite.

    Example:
        >>> _finite({"loss": 1.5, "verify_accuracy": float("nan")}), _finite({"loss": float("inf")})
        (True, False)
    """
    return logs is None or all(math.isfinite(float(v)) for k, v in logs.items()
                               if k in ("loss", "val_loss"))


class NanGuard(keras.callbacks.Callback):
    """Stops training the moment the loss is NaN or Inf (on any replica: the loss is reduced).

    After ``fit`` returns, ``message`` says where it happened; nothing was saved since.
    """

    def __init__(self):
        super().__init__()
        self.message = None

    def on_train_batch_end(self, batch, logs=None):
        if not _finite(logs):
            self.message = (f"loss became {logs['loss']} at step {batch + 1} of epoch {self._epoch + 1}; "
                            "stopped, the last good checkpoint is kept (lower --learning_rate or "
                            "--loss_scale, or add --warmup_epochs)")
            self.model.stop_training = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch


class ProgressLine(keras.callbacks.ProgbarLogger):
    """Keras' progress line without the NaN columns of epochs without a check.

    ``Verifier`` logs its columns as NaN on such epochs (history.csv keeps its
    columns); the line a user reads shows only what was measured. Put it last
    in ``fit``'s callbacks: Keras then uses it instead of its own.

    Example:
        >>> import contextlib, io
        >>> class Unchecked(keras.callbacks.Callback):   # an epoch without a check, as Verifier logs it
        ...     def on_epoch_end(self, epoch, logs=None):
        ...         logs["verify_accuracy"] = float("nan")
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> out = io.StringIO()
        >>> with contextlib.redirect_stdout(out):
        ...     _ = model.fit(tf.zeros((8, 2)), tf.zeros((8, 1)), verbose=1, callbacks=[Unchecked(), ProgressLine()])
        >>> "loss:" in out.getvalue(), "verify_accuracy" in out.getvalue()
        (True, False)
    """

    def __init__(self):
        super().__init__(count_mode="steps")

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, {k: v for k, v in (logs or {}).items()
                                     if not (isinstance(v, float) and math.isnan(v))})


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the current learning rate to the epoch logs (CSV and TensorBoard)."""

    def on_epoch_end(self, epoch, logs=None):
        # The optimizer keeps the schedule's current value in a variable.
        logs["learning_rate"] = float(keras.backend.get_value(self.model.optimizer.learning_rate))


class Verifier(keras.callbacks.Callback):
    """Face verification on pairs every ``every_epochs``; keeps the best backbone.

    Every worker runs this callback: reading the trained weights (batch-norm
    statistics are synchronised on read) is a collective step under
    MultiWorkerMirroredStrategy. The weights go into ``clone``, a plain copy of
    the backbone made outside the strategy, and only the chief (``verify`` set)
    embeds the pairs with it.

    Args:
        verify: callable(backbone) -> metrics dict with "accuracy" and
            "tar_at_far"; None on non-chief workers.
        clone: a backbone of the same architecture, built outside the strategy.
        every_epochs: run after every N-th epoch and after the last one.
        last_epoch: the final epoch index.
        best_dir: where the best backbone is saved as a SavedModel (None: not saved).
        log: callable(str) for the one-line result.
        best_by: "pairs", or the name of a .bin set of the report whose
            accuracy-flip picks the best backbone (also the first set's when
            there are no pairs).
        columns: epoch-log keys the check fills; epochs without a check log
            them as NaN so history.csv keeps its columns from the first epoch.
        resumed: the run goes on from a checkpoint: the score ``best/`` already
            holds (its ``verification.txt``) is the one to beat, so a resumed run
            never replaces a better backbone with a worse one.
    """

    def __init__(self, verify, clone, every_epochs: int, last_epoch: int, best_dir: str | None, log=print,
                 best_by: str = "pairs", columns=(), resumed: bool = False):
        super().__init__()
        self.verify, self.clone, self.every, self.last_epoch = verify, clone, every_epochs, last_epoch
        self.best_dir, self.log, self.best_by, self.columns = best_dir, log, best_by, list(columns)
        self.best, self.best_line = -1.0, None  # the score to beat and the line that describes it
        self.last_report = None
        held = read_best(best_dir) if resumed and best_dir else None
        if held and held[1] == best_by:
            self.best, self.best_line = held[2], held[0]
            log(f"best/ holds {held[0]}; a check must beat it to replace it")
        elif held:
            log(f"best/ holds {held[0]}, picked by {held[1]}; this run picks by {best_by}: "
                "its first check replaces it")

    def on_epoch_end(self, epoch, logs=None):
        if not ((epoch + 1) % self.every == 0 or epoch + 1 == self.last_epoch or self.model.stop_training):
            logs.update({key: float("nan") for key in self.columns if key not in logs})
            return
        if not _finite(logs):
            return
        self.clone.set_weights(self.model.backbone.get_weights())
        if self.verify is None:
            return
        report = self.verify(self.clone)
        self.last_report = report
        if "accuracy" in report:
            far, tar = next(iter(report["tar_at_far"].items()))
            logs["verify_accuracy"], logs["verify_tar"] = report["accuracy"], tar
            self.log(f"epoch {epoch + 1}: verification accuracy {100 * report['accuracy']:.2f} % "
                     f"+- {100 * report['accuracy_std']:.2f}, TAR {100 * tar:.2f} % at FAR {far} "
                     f"({report['n_pairs']} pairs)")
        for name, r in report.get("sets", {}).items():
            logs[f"{name}_accuracy"], logs[f"{name}_accuracy_flip"] = r["accuracy"], r["accuracy_flip"]
            self.log(f"epoch {epoch + 1}: {name} accuracy {100 * r['accuracy']:.2f} %, accuracy-flip "
                     f"{100 * r['accuracy_flip']:.2f} % ({r['n_pairs']} pairs)")
        # Without pairs, "pairs" falls back to the first set.
        by = self.best_by if self.best_by != "pairs" or "accuracy" in report else next(iter(report["sets"]))
        # Rounded as verification.txt writes it: a resumed run compares what best/ says.
        score = round(report["accuracy"] if by == "pairs" else report["sets"][by]["accuracy_flip"], 4)
        line = f"epoch {epoch + 1}: {by} accuracy{'' if by == 'pairs' else '-flip'} {score:.4f}"
        if score <= self.best or not self.best_dir:
            self.best = max(self.best, score)
            return
        if self.best_line:
            self.log(f"best/ now holds {line} (was {self.best_line})")
        self.best, self.best_line = score, line
        with atomic_directory(self.best_dir) as tmp:
            save_backbone(self.clone, tmp)
            with open(os.path.join(tmp, BEST_FILE), "w") as f:
                f.write(line + "\n")


# The file in best/ that says which check it holds: "epoch 12: pairs accuracy 0.9317" or
# "epoch 12: agedb_30 accuracy-flip 0.9012".
BEST_FILE = "verification.txt"
_BEST_LINE = re.compile(r"epoch \d+: (\S+) accuracy(?:-flip)? (\d+(?:\.\d+)?)$")


def read_best(best_dir: str) -> tuple[str, str, float] | None:
    """What a ``best/`` folder holds: (its line, what picked it, its score), or None.

    None when there is no ``best/`` or its ``verification.txt`` is missing or
    unreadable (a ``best/`` written before the file existed): then any check
    replaces it.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> with open(os.path.join(folder, BEST_FILE), "w") as f:
        ...     _ = f.write("epoch 3: agedb_30 accuracy-flip 0.9012\\n")
        >>> read_best(folder)
        ('epoch 3: agedb_30 accuracy-flip 0.9012', 'agedb_30', 0.9012)
    """
    try:
        with open(os.path.join(best_dir, BEST_FILE)) as f:
            line = f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
    found = _BEST_LINE.match(line)
    return (line, found.group(1), float(found.group(2))) if found else None
