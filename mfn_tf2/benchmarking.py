"""The benchmark runner: LiteRT latency and throughput, delegation, training and pipeline speed.

``run(cfg, configs)`` measures what a ``BenchConfig`` (the flags of the shell
``python -m mfn_tf2.benchmark``) asks for and returns the report dict that
``reports.render_text`` / ``render_markdown`` print. Timing itself is
``latency.py``'s: ``latency.tflite_latencies`` with its ``RUNS`` / ``WARMUP``,
as the export report's.

Example:
    >>> report = run(BenchConfig(models=("android_demo_assets/model_int8.tflite",), threads=(1,), runs=3,
    ...                          warmup=1, batch=2), {}, log=lambda line: None)
    >>> [(r["threads"], r["runs"]) for r in report["models"][0]["runs"]], report["models"][0]["not_delegated"]
    ([(1, 3)], [])
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from mfn_tf2 import config as C
from mfn_tf2.fileio import size_mb
from mfn_tf2.images import ImageError, folder_images, read_rgb, warn_skipped
from mfn_tf2.latency import (RUNS, WARMUP, LatencyError, savedmodel_throughput, timed, tflite_latencies,
                             tflite_throughput)
from mfn_tf2.models import accepted_kind
from mfn_tf2.preprocess import resize
from mfn_tf2.reports import machine_info

# Real faces read for --images (enough for 4 distinct batches of 32).
_MAX_IMAGES = 128
# The model kinds that are timed (models.KINDS): LiteRT latency, or TensorFlow throughput.
TIMED = ("tflite", "saved_model")


@dataclass(frozen=True)
class BenchConfig:
    """What ``run`` measures: the flags of ``python -m mfn_tf2.benchmark`` (the model flags go in ``configs``).

    Example:
        >>> BenchConfig(models=("m.tflite",), threads=(1, 2)).runs
        100
    """
    models: tuple[str, ...] = ()           # .tflite files and SavedModel folders
    threads: tuple[int, ...] = (1, 2, 4)   # LiteRT thread counts
    runs: int = RUNS                       # timed invocations per (model, threads)
    warmup: int = WARMUP                   # untimed invocations first
    batch: int = 32                        # images per invocation of the throughput runs
    images: str | None = None              # folder of real faces to feed; None: smooth random images
    train: bool = False                    # also time training (configs' model, data and train)
    train_steps: int = 10                  # timed optimizer steps
    train_warmup: int = 3                  # untimed steps first
    classes: int = 1000                    # identities of the synthetic data
    pipeline_batches: int = 20             # batches timed of the input pipeline alone


def load_images(directory: str, limit: int = _MAX_IMAGES) -> np.ndarray:
    """Up to ``limit`` faces found under ``directory`` (sorted), as (N, H, W, 3) pixels 0..255.

    Images of another size are resized to the first one's.

    Raises:
        LatencyError: the folder holds no readable image.
    """
    paths, skipped = folder_images(directory)  # by content, as everywhere images are read
    warn_skipped(skipped)
    paths = paths[:limit]
    if not paths:
        raise LatencyError(f"--images {directory}: no images found")
    try:
        faces = [read_rgb(p) for p in paths]
    except ImageError as err:
        raise LatencyError(f"--images: {err}") from None
    h, w = faces[0].shape[:2]
    return np.stack([f if f.shape[:2] == (h, w) else resize(f, h, w) for f in faces])


def delegation(path: str, threads: int) -> dict:
    """Op count and the ops XNNPACK leaves to the builtin kernels ("N x OP (dtype)")."""
    from mfn_tf2.tflite import left_out, op_report  # lazy: tflite.py imports TensorFlow; timing needs only LiteRT
    ops = op_report(path, num_threads=threads)  # one interpreter: the count and what is left out
    return {"ops": len(ops), "not_delegated": left_out(ops)}


def bench_tflite(path: str, cfg: BenchConfig, images) -> dict:
    """Latency per thread count at batch 1, throughput at ``cfg.batch``, size and delegation."""
    result = {"model": path, "kind": "tflite", "size_mb": size_mb(path), "runs": []}
    for threads, stats in tflite_latencies([path], cfg.threads, cfg.runs, cfg.warmup, images)[path].items():
        stats["throughput"] = tflite_throughput(path, threads, cfg.batch, images=images)
        result["runs"].append(stats)
    result.update(delegation(path, max(cfg.threads)))
    return result


def bench_savedmodel(path: str, cfg: BenchConfig, images) -> dict:
    """Images/s of a SavedModel at ``cfg.batch``."""
    speed = savedmodel_throughput(path, cfg.batch, images=images)
    return {"model": path, "kind": "saved_model", "runs": [{"batch": cfg.batch, "throughput": speed}]}


def train_speed(model_cfg: C.ModelConfig, data_cfg: C.DataConfig, train_cfg: C.TrainConfig,
                steps: int, warmup: int, num_classes: int = 1000) -> dict:
    """Training images/s of a configuration at steady state.

    Args:
        model_cfg: the backbone and head.
        data_cfg: batch_size; with a train_directory the real pipeline feeds
            the model, else one batch of random normalised images.
        train_cfg: optimizer and mixed_precision.
        steps: timed optimizer steps.
        warmup: untimed steps first (the first one traces the graph).
        num_classes: identities of the synthetic data.

    Returns:
        dict(images_per_second, step_ms (mean), steps, batch_size, precision, ...).
    """
    from mfn_tf2.backend import tf  # lazy: TensorFlow only for --train
    from mfn_tf2.backbones import complexity  # lazy: TensorFlow only for --train
    from mfn_tf2.recognizer import build_recognizer, make_optimizer, set_precision  # lazy: TensorFlow only for --train
    policy = set_precision(train_cfg.mixed_precision)
    batch = data_cfg.batch_size
    if data_cfg.train_directory:
        from mfn_tf2.pipeline import open_training_data  # lazy: TensorFlow only for --train
        data = open_training_data(data_cfg, model_cfg.image_size)
        dataset, num_classes = data.train_dataset().repeat(), data.num_classes
    else:
        size = model_cfg.image_size
        images = tf.random.uniform((batch, size, size, 3), -1.0, 1.0, seed=train_cfg.seed)
        labels = tf.random.uniform((batch,), 0, num_classes, tf.int32, seed=train_cfg.seed)
        dataset = tf.data.Dataset.from_tensors((images, labels)).repeat()
    recognizer = build_recognizer(model_cfg, num_classes, optimizer=make_optimizer(train_cfg, steps_per_epoch=1000))
    step, batches, logs, cpu = recognizer.make_train_function(), iter(dataset), {}, []
    # CPU time from the first timed step on (the warm-up traces the graph).
    times = timed(lambda: logs.update(step(batches)), steps, warmup,
                  prepare=lambda i: cpu.append(time.process_time()) if i == warmup else None)
    cpu_seconds = time.process_time() - cpu[0]
    if not np.isfinite(float(logs["loss"])):
        raise FloatingPointError(f"training loss became {float(logs['loss'])} while benchmarking")
    return {**_rates(steps * batch, sum(times), cpu_seconds), "step_ms": 1e3 * float(np.mean(times)),
            "step_ms_min": 1e3 * float(np.min(times)), "steps": steps, "warmup": warmup,
            "batch_size": batch, "precision": policy, "optimizer": train_cfg.optimizer,
            "classes": num_classes, "data": data_cfg.train_directory or "synthetic",
            "model": C.to_dict(model_cfg), "macs_per_image": complexity(recognizer.backbone)["macs"]}


def pipeline_speed(data_cfg: C.DataConfig, image_size: int, batches: int) -> dict:
    """Images/s of the input pipeline alone (decode, augment, batch), no model.

    The first batch (file listing, buffer filling) is not timed.
    """
    from mfn_tf2.pipeline import open_training_data  # lazy: TensorFlow only for --train
    data = open_training_data(data_cfg, image_size)
    stream, cpu = iter(data.train_dataset().repeat()), []
    times = timed(lambda: next(stream), batches, warmup=1,
                  prepare=lambda i: cpu.append(time.process_time()) if i == 1 else None)
    cpu_seconds = time.process_time() - cpu[0]
    return {**_rates(batches * data_cfg.batch_size, sum(times), cpu_seconds), "batches": batches,
            "batch_size": data_cfg.batch_size, "data": data_cfg.train_directory,
            "num_train": data.num_train, "classes": data.num_classes}


def _rates(images: int, wall_seconds: float, cpu_seconds: float) -> dict:
    """images/s, images per CPU-second, and the share of the usable cores this process
    kept busy (well below 1: other programs took the rest)."""
    return {"images_per_second": images / wall_seconds, "images_per_cpu_second": images / cpu_seconds,
            "cpu_share": cpu_seconds / (wall_seconds * len(os.sched_getaffinity(0)))}


def _tf_threads() -> dict:
    """TensorFlow's intra/inter-op pool sizes (0: its default), when TensorFlow is in use."""
    if "mfn_tf2.backend" not in sys.modules:
        return {}
    threading = sys.modules["mfn_tf2.backend"].tf.config.threading
    return {"tf_intra_op": threading.get_intra_op_parallelism_threads(),
            "tf_inter_op": threading.get_inter_op_parallelism_threads()}


def run(cfg: BenchConfig, configs: dict, log=print) -> dict:
    """Benchmarks everything ``cfg`` asks for and returns the report dict.

    Args:
        cfg: the models and the timing settings.
        configs: {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}, read with ``cfg.train``.
        log: where progress lines go.

    Raises:
        ModelError: a path that is missing or no .tflite file / SavedModel folder (all checked first);
            LatencyError, DataError, ...: a model or folder that cannot be timed.
    """
    kinds = [(path, accepted_kind(path, TIMED)) for path in cfg.models]
    report = {"machine": machine_info(),
              "settings": {"threads": list(cfg.threads), "runs": cfg.runs, "warmup": cfg.warmup,
                           "batch": cfg.batch, "images": cfg.images or "smooth random"},
              "models": []}
    images = load_images(cfg.images) if cfg.images else None
    for path, kind in kinds:
        log(f"benchmarking {path}")
        bench = bench_tflite if kind == "tflite" else bench_savedmodel
        report["models"].append(bench(path, cfg, images))
    if cfg.train:
        model_cfg, data_cfg = configs["model"], configs["data"]
        if data_cfg.train_directory:
            log(f"input pipeline on {data_cfg.train_directory}")
            report["pipeline"] = pipeline_speed(data_cfg, model_cfg.image_size, cfg.pipeline_batches)
        log(f"training {model_cfg.arch} at batch {data_cfg.batch_size} ({configs['train'].mixed_precision})")
        report["training"] = train_speed(model_cfg, data_cfg, configs["train"], cfg.train_steps,
                                         cfg.train_warmup, cfg.classes)
    report["settings"].update(_tf_threads())
    report["load_after"] = [round(v, 2) for v in os.getloadavg()]
    return report


__all__ = ["BenchConfig", "TIMED", "run", "bench_tflite", "bench_savedmodel", "train_speed", "pipeline_speed",
           "load_images", "delegation"]
