"""How fast are my models? LiteRT latency, batch throughput, delegation, and training speed.

    # p50/p90/p99 latency at batch 1 on 1, 2 and 4 threads, throughput at batch 32, XNNPACK coverage
    python -m mfn_tf2.benchmark export/demo/model_fp32.tflite export/demo/model_int8.tflite \\
        --threads 1,2,4 --images data/lfw_demo/heldout --json bench.json --markdown bench.md

    # a SavedModel: images/s at batch 32 on TensorFlow
    python -m mfn_tf2.benchmark export/demo/saved_model --batch 32

    # training images/s at batch 64, synthetic data (1000 classes): fp32, then bfloat16
    python -m mfn_tf2.benchmark --train --preset paper
    python -m mfn_tf2.benchmark --train --preset paper --mixed_precision bfloat16

    # training on real faces, and the input pipeline alone: which one limits you?
    python -m mfn_tf2.benchmark --train --preset mbf --train_directory data/lfw_demo/train

Latency times ``invoke()`` only, after ``--warmup`` untimed runs; training is
timed over ``--train_steps`` optimizer steps after ``--train_warmup`` steps
(the first traces the graph). Other programs using the CPU slow every figure:
the header records the load average before and after.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import sys
import time

import numpy as np

from mfn_tf2 import cli
from mfn_tf2 import config as C
from mfn_tf2.fileio import write_json, write_text
from mfn_tf2.host import machine_info, machine_line
from mfn_tf2.images import IMAGE_EXTENSIONS, ImageError, read_rgb
from mfn_tf2.latency import (LatencyError, savedmodel_throughput, tflite_latency,
                             tflite_throughput)

# TrainConfig fields that change training speed; the rest get no flag here.
_TRAIN_FIELDS = ("optimizer", "mixed_precision")
# The pipeline must outrun training by this factor not to slow it (both share the CPU).
_PIPELINE_HEADROOM = 3.0
# Real faces read for --images (enough for 4 distinct batches of 32).
_MAX_IMAGES = 128


def load_images(directory: str, limit: int = _MAX_IMAGES) -> np.ndarray:
    """Up to ``limit`` faces found under ``directory`` (sorted), as uint8 (N, H, W, 3).

    Images of another size are resized to the first one's.

    Raises:
        LatencyError: the folder holds no readable image.
    """
    import cv2
    paths = sorted(os.path.join(root, name) for root, _, names in os.walk(directory)
                   for name in names if name.lower().endswith(IMAGE_EXTENSIONS))[:limit]
    if not paths:
        raise LatencyError(f"--images {directory}: no JPEG/PNG/BMP images found")
    try:
        faces = [read_rgb(p) for p in paths]
    except ImageError as err:
        raise LatencyError(f"--images: {err}") from None
    h, w = faces[0].shape[:2]
    return np.stack([f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h)) for f in faces])


def delegation(path: str, threads: int) -> dict:
    """Op count and the ops XNNPACK leaves to the builtin kernels ("OP (dtype)", with counts)."""
    from mfn_tf2.tflite import op_report
    report = op_report(path, num_threads=threads)
    slow = collections.Counter(f"{op['op']} ({op['dtype']})" for op in report if not op["delegated"])
    return {"ops": len(report), "not_delegated": [f"{n} x {name}" for name, n in sorted(slow.items())]}


def bench_tflite(path: str, args, images) -> dict:
    """Latency per thread count at batch 1, throughput at ``--batch``, size and delegation."""
    result = {"model": path, "kind": "tflite", "size_mb": os.path.getsize(path) / 2**20, "runs": []}
    for threads in args.threads:
        stats = tflite_latency(path, threads, runs=args.runs, warmup=args.warmup, images=images)
        stats["throughput"] = tflite_throughput(path, threads, args.batch, images=images)
        result["runs"].append(stats)
    result.update(delegation(path, max(args.threads)))
    return result


def bench_savedmodel(path: str, args, images) -> dict:
    """Images/s of a SavedModel at ``--batch``."""
    speed = savedmodel_throughput(path, args.batch, images=images)
    return {"model": path, "kind": "saved_model", "runs": [{"batch": args.batch, "throughput": speed}]}


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
    from mfn_tf2.backend import tf
    from mfn_tf2.model import build_backbone, complexity
    from mfn_tf2.recognizer import Recognizer, make_optimizer, set_precision
    policy = set_precision(train_cfg.mixed_precision)
    batch = data_cfg.batch_size
    if data_cfg.train_directory:
        data = _open_data(data_cfg, model_cfg.image_size)
        dataset, num_classes = data.train_dataset().repeat(), data.num_classes
    else:
        size = model_cfg.image_size
        images = tf.random.uniform((batch, size, size, 3), -1.0, 1.0, seed=train_cfg.seed)
        labels = tf.random.uniform((batch,), 0, num_classes, tf.int32, seed=train_cfg.seed)
        dataset = tf.data.Dataset.from_tensors((images, labels)).repeat()
    backbone = build_backbone(model_cfg)
    recognizer = Recognizer(backbone, num_classes, model_cfg.loss_scale, model_cfg.loss_margin)
    recognizer.compile(optimizer=make_optimizer(train_cfg, steps_per_epoch=1000))
    step = recognizer.make_train_function()
    batches = iter(dataset)
    for _ in range(warmup):
        step(batches)
    times, cpu_start = [], time.process_time()
    for _ in range(steps):
        start = time.perf_counter()
        logs = step(batches)
        times.append(time.perf_counter() - start)
    cpu_seconds = time.process_time() - cpu_start
    if not np.isfinite(float(logs["loss"])):
        raise FloatingPointError(f"training loss became {float(logs['loss'])} while benchmarking")
    return {**_rates(steps * batch, sum(times), cpu_seconds), "step_ms": 1e3 * float(np.mean(times)),
            "step_ms_min": 1e3 * float(np.min(times)), "steps": steps, "warmup": warmup,
            "batch_size": batch, "precision": policy, "optimizer": train_cfg.optimizer,
            "classes": num_classes, "data": data_cfg.train_directory or "synthetic",
            "model": C.to_dict(model_cfg), "macs_per_image": complexity(backbone)["macs"]}


def pipeline_speed(data_cfg: C.DataConfig, image_size: int, batches: int) -> dict:
    """Images/s of the input pipeline alone (decode, augment, batch), no model.

    The first batch (file listing, buffer filling) is not timed.
    """
    data = _open_data(data_cfg, image_size)
    stream = iter(data.train_dataset().repeat())
    next(stream)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(stream)
    elapsed, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {**_rates(batches * data_cfg.batch_size, elapsed, cpu_seconds), "batches": batches,
            "batch_size": data_cfg.batch_size, "data": data_cfg.train_directory,
            "num_train": data.num_train, "classes": data.num_classes}


def _rates(images: int, wall_seconds: float, cpu_seconds: float) -> dict:
    """images/s, images per CPU-second, and the share of the usable cores this process
    kept busy (well below 1: other programs took the rest)."""
    return {"images_per_second": images / wall_seconds, "images_per_cpu_second": images / cpu_seconds,
            "cpu_share": cpu_seconds / (wall_seconds * len(os.sched_getaffinity(0)))}


def _open_data(data_cfg: C.DataConfig, image_size: int):
    from mfn_tf2.data import open_training_data
    return open_training_data(C.replace(data_cfg, image_size=image_size))


def _ms(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _rate(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """The result table: (header, rows of strings), one row per model and thread count."""
    header = ["model", "kind", "MB", "threads", "p50 ms", "p90 ms", "p99 ms", "mean ms",
              f"img/s @{report['settings']['batch']}", "ops", "not on XNNPACK"]
    table = []
    for m in report["models"]:
        slow = m.get("not_delegated")
        for r in m["runs"]:
            table.append([m["model"], m["kind"],
                          f"{m['size_mb']:.2f}" if "size_mb" in m else "-", str(r.get("threads", "tf")),
                          _ms(r.get("p50")), _ms(r.get("p90")), _ms(r.get("p99")), _ms(r.get("mean")),
                          _rate(r["throughput"]), "-" if m.get("ops") is None else str(m["ops"]),
                          "-" if slow is None else (", ".join(slow) or "none")])
    return header, table


def summary_lines(report: dict) -> list[str]:
    """The header and training lines shared by the text and markdown outputs."""
    mach, s = report["machine"], report["settings"]
    versions = ", ".join(f"{k} {v}" for k, v in mach["versions"].items() if v)
    lines = [f"machine: {machine_line(mach)} ({mach['usable_cores']} usable), "
             f"load {mach['load_average']} -> {report['load_after']}",
             f"versions: {versions}; malloc: {mach['malloc']}"]
    threads = [f"LiteRT {','.join(map(str, s['threads']))}"] if report["models"] else []
    if "tf_intra_op" in s:
        threads.append(f"TensorFlow intra-op {s['tf_intra_op'] or 'default'}, "
                       f"inter-op {s['tf_inter_op'] or 'default'}")
    if threads:
        lines.append("threads: " + "; ".join(threads))
    if "pipeline" in report:
        p = report["pipeline"]
        lines.append(f"input pipeline: {p['images_per_second']:.1f} images/s at batch {p['batch_size']} "
                     f"on {p['data']} (no model; {100 * p['cpu_share']:.0f}% of the cores)")
    if "training" in report:
        t = report["training"]
        lines.append(f"training: {t['images_per_second']:.1f} images/s at batch {t['batch_size']} "
                     f"on {t['data']} ({t['precision']}, {t['optimizer']}, "
                     f"{t['macs_per_image'] / 1e6:.0f} M MACs/img, {t['step_ms']:.0f} ms/step, "
                     f"{100 * t['cpu_share']:.0f}% of the cores)")
    if "pipeline" in report and "training" in report:
        # Per CPU-second: both share the cores, and other programs may take a
        # different share of them during each measurement.
        pipe, train = report["pipeline"], report["training"]
        ratio = pipe["images_per_cpu_second"] / train["images_per_cpu_second"]
        limit = "compute" if ratio >= _PIPELINE_HEADROOM else "the input pipeline (decoding)"
        lines.append(f"per CPU-second the pipeline does {ratio:.1f}x the images training does (decoding "
                     f"costs about {100 / ratio:.0f}% of the training CPU time): {limit} limits training")
    return lines


def render_text(report: dict) -> str:
    """The report as an aligned plain-text table for the terminal."""
    header, table = rows(report)
    widths = [max(len(c) for c in col) for col in zip(header, *table)]

    def line(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    body = [line(header), line(["-" * w for w in widths])] + [line(r) for r in table] if table else []
    return "\n".join(summary_lines(report) + [""] + body) + "\n"


def render_markdown(report: dict) -> str:
    """The report as markdown: a bullet list header and a table."""
    header, table = rows(report)
    lines = ["# mfn_tf2 benchmark", ""] + [f"- {line}" for line in summary_lines(report)]
    if table:
        lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in table]
    return "\n".join(lines) + "\n"


def build_parser(preset: str = "seed") -> argparse.ArgumentParser:
    """Every flag of ``python -m mfn_tf2.benchmark``; model defaults come from ``preset``."""
    p = argparse.ArgumentParser(prog="python -m mfn_tf2.benchmark", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("models", nargs="*", metavar="MODEL", help=".tflite files and SavedModel folders")
    p.add_argument("--threads", type=cli._number_list(int), default=(1, 2, 4),
                   help="LiteRT thread counts, comma-separated (default: 1,2,4)")
    p.add_argument("--runs", type=int, default=100, help="timed invocations per setting (default: 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed invocations first (default: 10)")
    p.add_argument("--batch", type=int, default=32, help="batch of the throughput runs (default: 32)")
    p.add_argument("--images", help="folder of real faces to feed (default: smooth random images)")
    p.add_argument("--json", help="also write the report as JSON here")
    p.add_argument("--markdown", help="also write the report as a markdown table here")
    t = p.add_argument_group("training speed (--train)")
    t.add_argument("--train", action="store_true", help="measure training images/s of the model flags")
    t.add_argument("--preset", choices=sorted(C.MODEL_PRESETS), default="seed",
                   help="model configuration to start from; model flags override it (default: seed)")
    t.add_argument("--train_steps", type=int, default=10, help="timed optimizer steps (default: 10)")
    t.add_argument("--train_warmup", type=int, default=3, help="untimed steps first (default: 3)")
    t.add_argument("--classes", type=int, default=1000,
                   help="identities of the synthetic data (default: 1000)")
    t.add_argument("--pipeline_batches", type=int, default=20,
                   help="batches timed of the input pipeline alone (default: 20)")
    cli.add_config_flags(p.add_argument_group("model"), C.ModelConfig, defaults=C.MODEL_PRESETS[preset])
    cli.add_config_flags(p.add_argument_group("data (empty --train_directory: synthetic)"), C.DataConfig,
                         defaults=C.replace(C.DataConfig(), batch_size=64))
    others = [f.name for f in dataclasses.fields(C.TrainConfig) if f.name not in _TRAIN_FIELDS]
    cli.add_config_flags(p.add_argument_group("training"), C.TrainConfig, skip=others)
    return p


def _check_args(parser, ns) -> None:
    """Rejects impossible counts and missing model paths before any work starts."""
    # flag -> (value, smallest allowed)
    counts = {"--runs": (ns.runs, 1), "--batch": (ns.batch, 1), "--train_steps": (ns.train_steps, 1),
              "--pipeline_batches": (ns.pipeline_batches, 1), "--classes": (ns.classes, 1),
              "--warmup": (ns.warmup, 0), "--train_warmup": (ns.train_warmup, 0),
              "--threads": (min(ns.threads, default=0), 1)}
    for flag, (value, least) in counts.items():
        if value < least:
            parser.error(f"{flag} {value}: must be at least {least}")
    if not ns.models and not ns.train:
        parser.error("give at least one MODEL (.tflite file or SavedModel folder), or --train")
    # Checked before TensorFlow loads: a typo fails in a second, with one line.
    for path in ns.models:
        if not os.path.exists(path):
            cli.fail(f"{path}: no such file or folder (expected a .tflite file or a SavedModel folder)")


def _tf_threads() -> dict:
    """TensorFlow's intra/inter-op pool sizes (0: its default), when TensorFlow is in use."""
    if "mfn_tf2.backend" not in sys.modules:
        return {}
    threading = sys.modules["mfn_tf2.backend"].tf.config.threading
    return {"tf_intra_op": threading.get_intra_op_parallelism_threads(),
            "tf_inter_op": threading.get_inter_op_parallelism_threads()}


def run(args, configs: dict, log=print) -> dict:
    """Benchmarks everything ``args`` asks for and returns the report dict."""
    report = {"machine": machine_info(),
              "settings": {"threads": list(args.threads), "runs": args.runs, "warmup": args.warmup,
                           "batch": args.batch, "images": args.images or "smooth random"},
              "models": []}
    images = load_images(args.images) if args.images else None
    for path in args.models:
        log(f"benchmarking {path}")
        bench = bench_tflite if os.path.isfile(path) else bench_savedmodel
        report["models"].append(bench(path, args, images))
    if args.train:
        model_cfg, data_cfg = configs["model"], configs["data"]
        if data_cfg.train_directory:
            log(f"input pipeline on {data_cfg.train_directory}")
            report["pipeline"] = pipeline_speed(data_cfg, model_cfg.image_size, args.pipeline_batches)
        log(f"training {model_cfg.arch} at batch {data_cfg.batch_size} ({configs['train'].mixed_precision})")
        report["training"] = train_speed(model_cfg, data_cfg, configs["train"], args.train_steps,
                                         args.train_warmup, args.classes)
    report["settings"].update(_tf_threads())
    report["load_after"] = [round(v, 2) for v in os.getloadavg()]
    return report


def main(argv=None) -> None:
    """Entry point of ``python -m mfn_tf2.benchmark``."""
    preset = argparse.ArgumentParser(add_help=False)
    preset.add_argument("--preset", choices=sorted(C.MODEL_PRESETS), default="seed")
    parser = build_parser(preset.parse_known_args(argv)[0].preset)
    args = parser.parse_args(argv)
    _check_args(parser, args)
    configs = cli.build_configs(parser, args, {"model": C.ModelConfig, "data": C.DataConfig,
                                               "train": C.TrainConfig})
    try:
        report = run(args, configs, log=lambda text: print(text, file=sys.stderr))
        print(render_text(report), end="")
        if args.json:
            write_json(args.json, report)
        if args.markdown:
            write_text(args.markdown, render_markdown(report))
    except (ValueError, FloatingPointError) as err:  # LatencyError, DataError, ImageError, ...
        cli.fail(str(err).splitlines()[0])
    except OSError as err:
        cli.fail(f"{err.filename or ''}: cannot write the report ({err.strerror})")


if __name__ == "__main__":
    main()
