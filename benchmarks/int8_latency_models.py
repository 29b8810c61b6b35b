"""int8 against fp32 latency, in one run: the paper MobileFaceNet and an outside reference.

    python benchmarks/int8_latency_models.py OUT                   # write 8 files into OUT, time them, print ratios
    python benchmarks/int8_latency_models.py OUT --size 64 --rounds 10 --runs 50 --json lat.json
    python benchmarks/int8_latency_models.py OUT --write_only      # the files only (for python -m mfn_tf2.benchmark)

Files (``S`` = ``--size``): ``paperS_{channel,shared}_{fp32,int8}.tflite``, the
paper network with one PReLU slope per channel (the paper's) and one per layer
(``--prelu shared``); ``paperS_islands_{fp32,int8}.tflite``, the per-channel
network again (its fp32 file is channel's) with the candidate int8 form beside
the shipped one: int8 pointwise convs with the PReLUs and depthwise convs left
float between them (``export_form(float_prelu=True)`` converted as
"int8_islands"); and ``mobilenetv2_S_{fp32,int8}.tflite``, Keras'
MobileNetV2 (alpha 1.0, ReLU6, 1000 logits, no softmax: XNNPACK leaves an
int8 SOFTMAX to LiteRT's reference kernels): a network that XNNPACK's int8
runs well everywhere, so its int8/fp32 ratio on a machine is that machine's
bound for the kit's ratios.

Latency does not depend on the weights' values, only on the graph, so the
networks are untrained; batch-norm statistics and slopes are set to spread
values (as after training) so that int8 ranges are realistic. fp32 files are
converted from the float model as ``export`` does (PReLU and batch norm as the
converter folds them); int8 files post-training from the export form (the
reference: from itself) as ``tflite.convert`` kind "int8" (islands:
"int8_islands"), all calibrated on the same 32 smooth random images.

Timing (``latency.tflite_latency``: batch 1, LiteRT + XNNPACK, ``invoke()``
only) runs in ``--rounds`` rounds; each round times every file at every thread
count, in alternating order, so that other work on the machine slows all files
alike. Per file and thread count: ``min`` is the fastest invocation of all
rounds, ``p50`` the median of the rounds' medians; ratios compare files of
this run only. The header names the CPU's int8 instructions and the load
average before and after.
"""
import argparse
import json
import os
import sys

import numpy as np

from mfn_tf2 import cli
from mfn_tf2.backbones import build_backbone
from mfn_tf2.backend import keras
from mfn_tf2.benchmarking import delegation, load_images
from mfn_tf2.config import MODEL_PRESETS, PIXEL_MEAN, PIXEL_STD, replace
from mfn_tf2.export_form import export_form
from mfn_tf2.fileio import write_bytes, write_json
from mfn_tf2.latency import LatencyError, smooth_images, tflite_latency
from mfn_tf2.machine import machine_info, machine_line
from mfn_tf2.tflite import convert


def trained_looking(model: keras.Model, seed: int = 0) -> None:
    """Spread batch-norm statistics and PReLU slopes, as a trained network has."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = weights
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape),
                               rng.normal(0, 0.2, mean.shape), rng.uniform(0.5, 2.0, var.shape)])
        elif isinstance(layer, keras.layers.PReLU):
            layer.set_weights([rng.uniform(0.05, 0.4, weights[0].shape)])


def models(size: int) -> dict:
    """{file stem: (float model, the model int8 is converted from, its tflite kind)} at ``size`` px, seeded."""
    built = {}
    for prelu in ("channel", "shared"):
        keras.utils.set_random_seed(0)
        backbone = build_backbone(replace(MODEL_PRESETS["paper"], prelu=prelu, image_size=size))
        trained_looking(backbone)
        built[f"paper{size}_{prelu}"] = (backbone, export_form(backbone), "int8")
        if prelu == "channel":
            # The same float network: only its int8 form differs from the shipped one.
            built[f"paper{size}_islands"] = (backbone, export_form(backbone, float_prelu=True), "int8_islands")
    keras.utils.set_random_seed(0)
    reference = keras.applications.MobileNetV2(weights=None, input_shape=(size, size, 3),
                                               classifier_activation=None)
    trained_looking(reference)
    built[f"mobilenetv2_{size}"] = (reference, reference, "int8")
    return built


def write_files(out: str, size: int) -> dict:
    """Writes every network's fp32 and int8 file into ``out``; {stem: {"fp32": path, "int8": path}}."""
    os.makedirs(out, exist_ok=True)
    calibration = (smooth_images(32, size).astype(np.float32) - PIXEL_MEAN) / PIXEL_STD
    files = {}
    for stem, (float_model, int8_form, int8_kind) in models(size).items():
        files[stem] = {kind: os.path.join(out, f"{stem}_{kind}.tflite") for kind in ("fp32", "int8")}
        write_bytes(files[stem]["fp32"], convert(float_model, "fp32"))
        write_bytes(files[stem]["int8"], convert(int8_form, int8_kind, calibration))
    return files


def measure(files: dict, threads: tuple, rounds: int, runs: int, warmup: int, images=None) -> list[dict]:
    """Times every file at every thread count in interleaved rounds.

    Returns:
        One row per (network, threads): fp32 and int8 ``min`` / ``p50`` (ms,
        as the module docstring defines them), their int8/fp32 ratios, and
        the ops XNNPACK leaves to LiteRT's reference kernels, per file.
    """
    paths = [path for pair in files.values() for path in pair.values()]
    rounds_of = {(path, t): [] for path in paths for t in threads}
    for r in range(rounds):
        for t in threads:
            for path in (paths if r % 2 == 0 else paths[::-1]):
                rounds_of[(path, t)].append(tflite_latency(path, t, runs=runs, warmup=warmup, images=images))
    left = {path: delegation(path, max(threads))["not_delegated"] for path in paths}
    rows = []
    for stem, pair in files.items():
        for t in threads:
            row = {"network": stem, "threads": t}
            for kind, path in pair.items():
                stats = rounds_of[(path, t)]
                row[kind] = {"min": min(s["min"] for s in stats), "p50": float(np.median([s["p50"] for s in stats])),
                             "not_delegated": left[path]}
            row["ratio"] = {k: row["int8"][k] / row["fp32"][k] for k in ("min", "p50")}
            rows.append(row)
    return rows


def table(rows: list[dict]) -> list[str]:
    """Text lines: one per network and thread count, with the int8/fp32 ratios."""
    lines = [f"{'network':20s} {'threads':>7s}  {'fp32 min / p50 ms':>17s}  {'int8 min / p50 ms':>17s}  "
             f"{'int8/fp32 min / p50':>19s}  not on XNNPACK"]
    for row in rows:
        fp32, int8, ratio = row["fp32"], row["int8"], row["ratio"]
        left = ", ".join(fp32["not_delegated"] + int8["not_delegated"]) or "none"
        lines.append(f"{row['network']:20s} {row['threads']:7d}  {fp32['min']:7.2f} / {fp32['p50']:7.2f}  "
                     f"{int8['min']:7.2f} / {int8['p50']:7.2f}  {ratio['min']:8.2f}x / {ratio['p50']:5.2f}x  {left}")
    return lines


def main(argv=None) -> None:
    """Entry point: write the files, then (unless ``--write_only``) time them and print the ratios."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("out", help="folder to write the .tflite files into (created if missing)")
    p.add_argument("--size", type=int, default=112, help="input side in pixels (default: 112; the demo's: 64)")
    p.add_argument("--threads", type=cli.number_list(int), default=(1, 2),
                   help="LiteRT thread counts, comma-separated (default: 1,2)")
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default: 10)")
    p.add_argument("--runs", type=int, default=50, help="timed invocations per file, thread count and round "
                                                        "(default: 50)")
    p.add_argument("--warmup", type=int, default=10, help="untimed invocations before each (default: 10)")
    p.add_argument("--images", help="folder of real faces to feed (default: smooth random images)")
    p.add_argument("--json", help="also write the machine and the rows as JSON here")
    p.add_argument("--write_only", action="store_true", help="write the files, time nothing")
    ns = p.parse_args(argv)
    if os.path.exists(ns.out) and not os.path.isdir(ns.out):
        p.error(f"{ns.out}: exists and is not a folder")
    least = {"--size": (ns.size, 32), "--rounds": (ns.rounds, 1), "--runs": (ns.runs, 1),
             "--warmup": (ns.warmup, 0), "--threads": (min(ns.threads, default=0), 1)}
    for flag, (value, low) in least.items():
        if value < low:
            p.error(f"{flag} {value}: must be at least {low}")
    try:
        images = load_images(ns.images) if ns.images else None
    except LatencyError as err:
        p.error(str(err))
    files = write_files(ns.out, ns.size)
    if ns.write_only:
        print(f"wrote {2 * len(files)} files into {ns.out}")
        return
    machine = machine_info()
    rows = measure(files, ns.threads, ns.rounds, ns.runs, ns.warmup, images)
    load_after = [round(v, 2) for v in os.getloadavg()]
    print(f"{machine_line(machine)}; load average before {machine['load_average']}, after {load_after}")
    print(f"batch 1, LiteRT + XNNPACK, {ns.rounds} rounds x {ns.runs} runs, "
          f"{'faces of ' + ns.images if ns.images else 'smooth random images'}")
    print("\n".join(table(rows)))
    if ns.json:
        write_json(ns.json, {"machine": machine, "load_after": load_after, "size": ns.size, "rounds": ns.rounds,
                             "runs": ns.runs, "warmup": ns.warmup, "rows": rows})


if __name__ == "__main__":
    sys.exit(main())
