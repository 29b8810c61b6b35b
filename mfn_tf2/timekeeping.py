"""Keras callbacks that watch the clock: ``--max_minutes``' time budget and the early run-time estimate.

Both time the optimizer steps after the first (which traces the graph) on this machine: ``TimeBudget``
lays the learning-rate schedule out over the minutes a run is given and stops it cleanly when they
are up; ``TimeEstimate`` says once, early, how long a run without a budget will take. ``training``
uses one or the other; the other callbacks of the loop are in ``callbacks``.

Example (an estimate from 3 timed steps of a tiny model):
    >>> lines = []
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> _ = model.fit(tf.zeros((8, 2)), tf.zeros((8, 1)), batch_size=1, verbose=0,
    ...               callbacks=[TimeEstimate(1, 8, lines.append, measure_steps=3)])
    >>> lines[0].split(":")[0].endswith("ms per step on this machine")
    True
"""
from __future__ import annotations

import time

from mfn_tf2.backend import keras, tf


class TimeBudget(keras.callbacks.Callback):
    """``--max_minutes``: the learning-rate schedule laid out over the time budget, then a clean stop.

    The clock starts when the callback is made. The first step of the process
    traces the graph; the next ``measure_steps`` are timed (epoch ends between
    them included), and the optimizer steps that fit in the time left become
    the schedule's last step (``schedule.total_steps``; never later than
    ``--epochs`` lays it), so the learning rate has decayed when the time is
    up. Training stops at that step, or when the time is up (verification is
    not in the measurement), whichever comes first. Each process has its own
    budget: a resumed run lays the schedule out again from the step it resumes at.

    Args:
        minutes: the budget (0: no budget, the callback does nothing).
        schedule: the optimizer's ``WarmupDecay`` (its ``total_steps`` variable is set).
        steps_per_epoch: optimizer steps in one epoch (for the log line).
        log: where the one line that says how the schedule is laid out goes.
        measure_steps: steps timed after the first.

    Example:
        >>> from mfn_tf2.recognizer import WarmupDecay
        >>> lines, schedule = [], WarmupDecay(0.01, 0, total_steps=10**6)
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
        >>> budget = TimeBudget(0.1, schedule, 10, lines.append, measure_steps=3)
        >>> _ = model.fit(tf.zeros((40, 2)), tf.zeros((40, 1)), batch_size=4, epochs=10**5, verbose=0,
        ...               callbacks=[budget])
        >>> budget.expired, int(schedule.total_steps.numpy()) < 10**6, "learning-rate schedule" in lines[0]
        (True, True, True)
    """

    def __init__(self, minutes: float, schedule, steps_per_epoch: int, log, measure_steps: int = 10):
        super().__init__()
        self.seconds, self.start = minutes * 60.0, time.monotonic()
        self.schedule, self.steps, self.log, self.measure = schedule, steps_per_epoch, log, measure_steps
        self.seen, self.timer, self.expired = 0, None, False
        self.first_step = 0  # the optimizer step this process starts from
        self.last_step = None  # where the budget ends the schedule, once it is laid out before --epochs' end

    def on_train_begin(self, logs=None):
        self.first_step = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        if not self.seconds:
            return
        now, self.seen = time.monotonic(), self.seen + 1
        step = self.first_step + self.seen
        if self.seen == 1:  # the traced step is over: time from here
            self.timer = now
        elif self.seen == 1 + self.measure:
            self._lay_out(step, (now - self.timer) / self.measure, now)
        if now - self.start > self.seconds or (self.last_step is not None and step >= self.last_step):
            self.expired = self.model.stop_training = True

    def _lay_out(self, step: int, per_step: float, now: float) -> None:
        """Sets the schedule's last step from the measured seconds per step."""
        planned = int(self.schedule.total_steps.numpy())
        fits = int(max(0.0, self.seconds - (now - self.start)) / per_step)
        total = max(step + 1, min(planned, step + fits))
        # Workers measure slightly different times: all take the mean, so their schedules stay one.
        strategy = self.model.distribute_strategy
        mine = strategy.experimental_distribute_values_from_function(lambda _: tf.constant(float(total)))
        total = int(strategy.reduce("MEAN", mine, axis=None))
        self.schedule.total_steps.assign(total)
        self.last_step = total if total < planned else None
        ends = (f"now ends at step {total} ({total / self.steps:.1f} epochs) instead of {planned}"
                if total < planned else f"keeps its {planned} steps: --epochs ends before the budget")
        self.log(f"{1e3 * per_step:.0f} ms per step on this machine: {max(0, fits)} more steps fit in "
                 f"--max_minutes {self.seconds / 60:g}; the learning-rate schedule {ends}")


class TimeEstimate(keras.callbacks.Callback):
    """Says once, early, how long the run will take on this machine.

    The first step of a run traces the graph and is not timed; the next
    ``measure_steps`` are, and their mean gives the minutes the remaining
    steps will take (verification and checkpoints not counted). The same
    recipe takes 15 minutes on one 2-core host and 85 on another, so the
    run says which one you are on instead of the README guessing.

    Args:
        epochs: the last epoch the run trains to.
        steps_per_epoch: optimizer steps in one epoch.
        log: where the one line goes.
        measure_steps: steps timed after the first.

    Example:
        >>> lines = []
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> _ = model.fit(tf.zeros((40, 2)), tf.zeros((40, 1)), batch_size=4, epochs=2, verbose=0,
        ...               callbacks=[TimeEstimate(2, 10, lines.append, measure_steps=3)])
        >>> "16 more steps (2 epoch(s) from epoch 1)" in lines[0]   # 2 x 10 steps, 4 done when it speaks
        True
    """

    def __init__(self, epochs: int, steps_per_epoch: int, log, measure_steps: int = 10):
        super().__init__()
        self.epochs, self.steps, self.log = epochs, steps_per_epoch, log
        self.measure = max(1, min(measure_steps, steps_per_epoch - 1))
        self.first_epoch, self.start, self.done = None, None, False

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch is None:
            self.first_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.done or self.first_epoch is None:
            return
        if batch == 0:  # the traced step is over: time from here
            self.start = time.monotonic()
        elif batch == self.measure and self.start is not None:
            per_step = (time.monotonic() - self.start) / batch
            left = (self.epochs - self.first_epoch) * self.steps - (batch + 1)
            self.log(f"{1e3 * per_step:.0f} ms per step on this machine: {left} more steps "
                     f"({self.epochs - self.first_epoch} epoch(s) from epoch {self.first_epoch + 1}) "
                     f"take about {left * per_step / 60:.1f} minutes, verification not counted")
            self.done = True


__all__ = ["TimeBudget", "TimeEstimate"]
