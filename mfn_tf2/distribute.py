"""Devices and the tf.distribute strategy every training run (and QAT) works under.

One CPU, one GPU, all GPUs of a machine (MirroredStrategy) or several machines
(MultiWorkerMirroredStrategy, chosen when TF_CONFIG is set): the training code
is the same, only the strategy differs. Must run before TensorFlow touches a
device (device visibility cannot change afterwards).

Example (every visible device, one machine: no TF_CONFIG):
    >>> strategy = make_strategy()
    >>> type(strategy).__name__, is_chief(strategy), worker_directory("weights", strategy)
    ('MirroredStrategy', True, 'weights')
"""
from __future__ import annotations

import json
import os

from mfn_tf2.backend import tf


def select_devices(gpu: str | None, logical_cpus: int = 0) -> list[str]:
    """Makes only the GPUs in ``gpu`` visible; optionally splits the CPU.

    Args:
        gpu: CUDA device list "0" / "0,1"; "" for CPU only; None for all visible.
        logical_cpus: split the CPU into this many logical devices (to test
            MirroredStrategy without GPUs); 0 leaves it whole.

    Returns:
        The device names replicas will run on (empty: the strategy's default).
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpu is not None:
        wanted = [g.strip() for g in gpu.split(",") if g.strip()]
        unknown = [g for g in wanted if not g.isdigit() or int(g) >= len(gpus)]
        if unknown:
            raise ValueError(f"--gpu {gpu!r}: no GPU {', '.join(unknown)} on this machine "
                             f"({len(gpus)} visible); use '' for CPU only")
        gpus = [gpus[int(g)] for g in wanted]
        tf.config.set_visible_devices(gpus + tf.config.list_physical_devices("CPU"))
    if gpus:
        return [f"/gpu:{i}" for i in range(len(gpus))]
    if logical_cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus)
        return [f"/cpu:{i}" for i in range(logical_cpus)]
    return []


def is_multi_worker(strategy_name: str) -> bool:
    """True for ``--strategy multi_worker``, or ``auto`` with a TF_CONFIG naming workers."""
    if strategy_name == "auto":
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
        return len(cluster.get("worker", [])) + len(cluster.get("chief", [])) > 1
    return strategy_name == "multi_worker"


def make_strategy(gpu: str | None = None, strategy: str = "auto",
                  logical_cpus: int = 0) -> tf.distribute.Strategy:
    """The strategy of a run: MultiWorkerMirrored across machines, else Mirrored.

    Args:
        gpu: see ``select_devices``.
        strategy: "auto", "mirrored" or "multi_worker" (a TrainConfig's, checked there).
        logical_cpus: see ``select_devices``.
    """
    devices = select_devices(gpu, logical_cpus)
    if is_multi_worker(strategy):
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy multi_worker needs TF_CONFIG (see README: several machines)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.MirroredStrategy(devices or None)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the one worker that writes logs, checkpoints and evaluations."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0
                                    and "chief" not in resolver.cluster_spec().as_dict())


def worker_directory(directory: str, strategy: tf.distribute.Strategy) -> str:
    """Where this worker writes: ``directory`` on the chief, a scratch copy elsewhere.

    Under MultiWorkerMirroredStrategy every worker must take part in a save
    (the variables are synchronised by collectives); non-chief workers write to
    ``directory/.worker-N`` which the caller removes afterwards.
    """
    if is_chief(strategy):
        return directory
    return os.path.join(directory, f".worker-{strategy.cluster_resolver.task_id}")
