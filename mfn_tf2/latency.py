"""How fast an exported model runs: LiteRT latency and batch throughput, SavedModel throughput.

A ``.tflite`` file runs on the LiteRT interpreter with its default XNNPACK
delegate and ``threads`` CPU threads, as on a phone. Only ``invoke()`` is
timed: copying the input in and the output out are left out, since an app
keeps its buffers. Inputs are never zeros (XNNPACK and int8 kernels may take
shortcuts on them): real faces when given, else smooth random images, turned
into the model's input the way the kit feeds it (normalised pixels
``(x - 127.5) / 128``, quantized with the input's own scale and zero point
for int8 models, raw pixels for an unquantized integer input).

Every latency figure of a .tflite file (export's report, the benchmark, the
demo's table) comes from ``tflite_latencies`` or ``tflite_latency`` with the
same ``RUNS`` and ``WARMUP`` unless the user asks for others.

Example (the shipped int8 model, a few runs):
    >>> table = tflite_latencies(["android_demo_assets/model_int8.tflite"], threads=(1, 2), runs=3, warmup=1)
    >>> stats = table["android_demo_assets/model_int8.tflite"]
    >>> sorted(stats), 0 < stats[2]["min"] <= stats[2]["p50"] <= stats[2]["p99"]
    ([1, 2], True)
"""
from __future__ import annotations

import time

import cv2
import numpy as np

from mfn_tf2.models import ModelError, accepted_kind, open_interpreter, open_signature
from mfn_tf2.preprocess import model_input, resize

# The one default of every latency figure: timed and untimed invocations per (file, threads), the
# timed ones spread over ROUNDS interleaved rounds (tflite_latencies).
RUNS, WARMUP, ROUNDS = 100, 10, 5
# Thread counts of the export report and the demo's table (a phone's big cores: 1 and 2).
THREADS = (1, 2)

# Side of the random grid that smooth test images are upsampled from: a face
# crop has about this many "blobs" across, unlike white noise.
_BLOB_GRID = 7


class LatencyError(ModelError):
    """A model or input that cannot be timed; the message names it."""


class NotResizable(LatencyError):
    """A model whose batch dimension cannot be changed (a fixed reshape inside)."""


def smooth_images(count: int, size: int, seed: int = 0) -> np.ndarray:
    """Random but image-like pixels: low-frequency colour blobs plus a little noise.

    Args:
        count: number of images.
        size: square side in pixels.
        seed: numpy seed.

    Returns:
        uint8 (count, size, size, 3), values spread over 0-255, never all zero.

    Example:
        >>> smooth_images(2, 32).shape
        (2, 32, 32, 3)
    """
    rng = np.random.default_rng(seed)
    grids = rng.uniform(20, 235, (count, _BLOB_GRID, _BLOB_GRID, 3)).astype(np.float32)
    blobs = np.stack([cv2.resize(g, (size, size), interpolation=cv2.INTER_CUBIC) for g in grids])
    noisy = blobs + rng.normal(0, 4, blobs.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _sized(images: np.ndarray | None, count: int, height: int, width: int) -> np.ndarray:
    """``count`` images at (height, width), pixels 0..255: the given ones cycled, else smooth random."""
    if images is None:
        return smooth_images(count, max(height, width))[:, :height, :width]
    picked = [images[i % len(images)] for i in range(count)]
    return np.stack([im if im.shape[:2] == (height, width) else resize(im, height, width) for im in picked])


def _interpreter(path: str, threads: int, batch: int):
    """A LiteRT interpreter on ``path`` with its input batch set to ``batch``."""
    accepted_kind(path, ("tflite",))
    interp = open_interpreter(path, threads)
    detail = interp.get_input_details()[0]
    if detail["shape"][0] != batch:
        try:
            interp.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise NotResizable(f"{path}: batch cannot be resized to {batch} "
                               f"({str(err).splitlines()[0]})") from None
        if interp.get_output_details()[0]["shape"][0] != batch:
            raise NotResizable(f"{path}: output batch stays "
                               f"{interp.get_output_details()[0]['shape'][0]} at input batch {batch}")
    return interp


def timed(fn, runs: int, warmup: int = 0, prepare=None) -> list[float]:
    """Seconds of each of ``runs`` calls of ``fn()``, after ``warmup`` untimed calls.

    Args:
        fn: the work to time, called without arguments.
        runs: timed calls.
        warmup: untimed calls first (tracing, weight packing, caches).
        prepare: called untimed with the call's index (0 .. warmup + runs - 1)
            before each call, e.g. to copy the next input in.

    Returns:
        ``runs`` wall-clock durations in seconds (``time.perf_counter``).

    Example:
        >>> len(timed(lambda: sum(range(100)), runs=3, warmup=1))
        3
    """
    times = []
    for i in range(warmup + runs):
        if prepare is not None:
            prepare(i)
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        if i >= warmup:
            times.append(elapsed)
    return times


def _percentiles(times_ms: list[float]) -> dict:
    t = np.asarray(times_ms)
    return {"p50": float(np.percentile(t, 50)), "p90": float(np.percentile(t, 90)),
            "p99": float(np.percentile(t, 99)), "mean": float(t.mean()), "min": float(t.min())}


def tflite_latency(path: str, threads: int, runs: int = RUNS, warmup: int = WARMUP, batch: int = 1,
                   images: np.ndarray | None = None) -> dict:
    """Milliseconds per ``invoke()`` of a .tflite model on LiteRT (XNNPACK).

    Args:
        path: the .tflite file.
        threads: interpreter threads (``num_threads``).
        runs: timed invocations.
        warmup: untimed invocations first (XNNPACK packs weights on the first).
        batch: images per invocation (the input is resized when not 1).
        images: uint8 (N, H, W, 3) real faces to feed (resized and cycled),
            else smooth random images.

    Returns:
        dict(p50, p90, p99, mean, min) in ms, plus runs, warmup, threads, batch.

    Raises:
        ModelError: missing or unloadable file; NotResizable when ``batch``
            cannot be set.

    Example:
        >>> tflite_latency("android_demo_assets/model_int8.tflite", threads=1, runs=3, warmup=1)["runs"]
        3
    """
    invoke, prepare = _invoker(path, threads, batch, images)
    times_ms = [1e3 * t for t in timed(invoke, runs, warmup, prepare=prepare)]
    return {**_percentiles(times_ms), "runs": runs, "warmup": warmup, "threads": threads, "batch": batch}


def _invoker(path: str, threads: int, batch: int, images: np.ndarray | None):
    """(invoke, prepare(i)) of one interpreter, fed a few distinct inputs in turn."""
    interp = _interpreter(path, threads, batch)
    detail = interp.get_input_details()[0]
    _, height, width, _ = detail["shape"]
    # A few different batches, so that no cache sees the same pixels every run.
    distinct = 4
    pixels = _sized(images, distinct * batch, int(height), int(width))
    inputs = [model_input(pixels[i * batch:(i + 1) * batch], detail["dtype"], detail["quantization"])
              for i in range(distinct)]
    return interp.invoke, lambda i: interp.set_tensor(detail["index"], inputs[i % distinct])


def tflite_latencies(paths: list[str], threads: tuple[int, ...] = THREADS, runs: int = RUNS, warmup: int = WARMUP,
                     images: np.ndarray | None = None) -> dict[str, dict[int, dict]]:
    """Batch-1 latency of each .tflite file at each thread count: the one loop behind every report.

    Args:
        paths: .tflite files.
        threads: interpreter thread counts.
        runs, warmup, images: as ``tflite_latency``.

    Returns:
        {path: {threads: ``tflite_latency``'s dict (p50, p90, p99, mean, min in ms, ...)}}.

    Raises:
        ModelError: a missing, unloadable or non-.tflite file.
    """
    # Interleaved rounds: each round times every file at every thread count, so a passing disturbance
    # (another process, a library's worker threads still spinning after a big matmul) lands on all
    # files alike instead of on whichever file was being timed.
    invokers = {(p, t): _invoker(p, t, 1, images) for p in paths for t in threads}
    times_ms = {key: [] for key in invokers}
    for r in range(ROUNDS):
        for key, (invoke, prepare) in invokers.items():
            share = runs // ROUNDS + (r < runs % ROUNDS)
            times_ms[key] += [1e3 * t for t in timed(invoke, share, warmup if r == 0 else 1, prepare=prepare)]
    return {p: {t: {**_percentiles(times_ms[(p, t)]), "runs": runs, "warmup": warmup, "threads": t, "batch": 1}
                for t in threads} for p in paths}


def tflite_throughput(path: str, threads: int, batch: int, runs: int = 10, warmup: int = 2,
                      images: np.ndarray | None = None) -> float | None:
    """Images per second of a .tflite model at ``batch`` images per invocation.

    Args:
        path, threads, images: as ``tflite_latency``.
        batch: images per invocation.
        runs, warmup: timed and untimed invocations.

    Returns:
        batch / mean invocation time, or None when the model's batch is fixed.

    Example:
        >>> tflite_throughput("android_demo_assets/model_int8.tflite", threads=1, batch=2, runs=2, warmup=1) > 0
        True
    """
    try:
        stats = tflite_latency(path, threads, runs=runs, warmup=warmup, batch=batch, images=images)
    except NotResizable:
        return None
    return batch * 1e3 / stats["mean"]


def savedmodel_throughput(path: str, batch: int, runs: int = 10, warmup: int = 2,
                          images: np.ndarray | None = None) -> float | None:
    """Images per second of a SavedModel's ``serving_default`` at ``batch`` images a call.

    TensorFlow uses its default thread pools (all cores).

    Args:
        path: the SavedModel folder.
        batch: images per call.
        runs, warmup: timed and untimed calls.
        images: as ``tflite_latency``.

    Returns:
        batch / mean call time, or None when the signature's batch is fixed
        to another size.

    Raises:
        ModelError: not a SavedModel with a serving_default signature.

    Example:
        >>> images_per_second = savedmodel_throughput("export/demo/saved_model", batch=32)   # doctest: +SKIP
    """
    from mfn_tf2.backend import tf  # lazy: keeps TensorFlow out of timing .tflite files
    fn = open_signature(path)
    (name, spec), = fn.structured_input_signature[1].items()
    fixed, height, width, _ = spec.shape
    if fixed is not None and fixed != batch:
        return None
    pixels = _sized(images, batch, int(height), int(width))
    feed = {name: tf.constant(model_input(pixels, spec.dtype.as_numpy_dtype))}
    return batch / float(np.mean(timed(lambda: fn(**feed), runs, warmup)))


__all__ = ["LatencyError", "NotResizable", "RUNS", "WARMUP", "THREADS", "smooth_images", "timed",
           "tflite_latency", "tflite_latencies", "tflite_throughput", "savedmodel_throughput"]
