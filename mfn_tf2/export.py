"""Strip the head, quantize and export; prove every exported model against the float one.

    # everything, from a training directory, checked on LFW's held-out pairs
    python -m mfn_tf2.export weights/ --out export/lfw \\
        --representative_dir ../shared/data/lfw/train --train_directory ../shared/data/lfw/train \\
        --pairs_filename ../shared/data/lfw/pairs_heldout.txt --data_directory ../shared/data/lfw/heldout

    # only the float and post-training int8 files, from a SavedModel, plus the Android assets
    python -m mfn_tf2.export weights/embedding_model --out export/app --formats saved_model,fp32,int8 \\
        --representative_dir faces/ --pairs_filename pairs.txt --data_directory faces/ \\
        --android_assets android_demo_assets/

Writes into ``--out`` (layout: export/README.md): saved_model/, model_<format>.tflite,
metadata.json, report.md, report.json. Exits non-zero when a model fails to load
or disagrees with the float model beyond --max_accuracy_drop / --min_cosine;
the files stay for inspection.
"""
from __future__ import annotations

import argparse
import os

import cv2
import numpy as np

from mfn_tf2 import cli
from mfn_tf2 import config as C
from mfn_tf2.android import AssetsError, write_assets
from mfn_tf2.backend import keras, tf
from mfn_tf2.checkpoints import CheckpointError, load_backbone, read_run
from mfn_tf2.data import DataError
from mfn_tf2.embedders import EmbedderError, FeatureExtractor
from mfn_tf2.fileio import OutputError, OutputLock, atomic_directory, write_bytes, write_json
from mfn_tf2.host import machine_info
from mfn_tf2.images import ImageError, read_rgb, split_images, warn_skipped
from mfn_tf2.pairs import PairsError
from mfn_tf2.qat import finetune
from mfn_tf2.verification import load_pairs, verify_models

CONFIGS = {"export": C.ExportConfig, "eval": C.EvalConfig, "data": C.DataConfig}
# Export format -> file name inside the export folder.
FILES = {"saved_model": "saved_model", "fp32": "model_fp32.tflite", "fp16": "model_fp16.tflite",
         "dynamic": "model_dynamic.tflite", "int8": "model_int8.tflite", "qat_int8": "model_qat_int8.tflite"}
THRESHOLD_FAR = 1e-3


class ExportError(ValueError):
    """An export that cannot start or whose models fail the parity check."""


def load_float_model(path: str) -> tuple[keras.Model, dict | None]:
    """The backbone of a training directory or a Keras SavedModel, and the run's info."""
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        try:
            return keras.models.load_model(path, compile=False), None
        except (ValueError, OSError) as err:
            raise ExportError(f"{path}: not a Keras SavedModel of a backbone ({err})") from None
    if read_run(path) is None:
        raise ExportError(f"{path}: not a training directory (run.json) nor a SavedModel (saved_model.pb)")
    return load_backbone(path), read_run(path)


def calibration_images(folder: str, size: int, count: int, seed: int = 0) -> np.ndarray:
    """``count`` real faces from ``folder`` (recursively), normalised, (N, size, size, 3) float32."""
    paths, skipped = split_images(sorted(os.path.join(d, f) for d, _, files in os.walk(folder) for f in files))
    warn_skipped(skipped)
    if not paths:
        raise ExportError(f"--representative_dir {folder}: no images found")
    chosen = np.random.default_rng(seed).choice(paths, size=min(count, len(paths)), replace=False)
    x = np.stack([cv2.resize(read_rgb(p), (size, size), interpolation=cv2.INTER_AREA) for p in chosen])
    return ((x.astype(np.float32) - C.PIXEL_MEAN) / C.PIXEL_STD).astype(np.float32)


class _Serving(tf.Module):
    """RGB uint8 (B, S, S, 3) -> L2-normalised embedding, pre-processing inside the graph."""

    def __init__(self, backbone: keras.Model):
        super().__init__()
        self.backbone = backbone
        size = backbone.input_shape[1]
        self.serve = tf.function(self._serve, input_signature=[
            tf.TensorSpec((None, size, size, 3), tf.uint8, name="image")])

    def _serve(self, image):
        x = (tf.cast(image, tf.float32) - C.PIXEL_MEAN) / C.PIXEL_STD
        return {"embedding": tf.math.l2_normalize(self.backbone(x, training=False), axis=1)}


def write_saved_model(backbone: keras.Model, path: str) -> None:
    """A SavedModel whose ``serving_default`` takes uint8 RGB and returns unit embeddings."""
    module = _Serving(backbone)
    with atomic_directory(path) as tmp:
        tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})


def convert_all(backbone, exp: C.ExportConfig, calibration, qat, log) -> dict:
    """Writes every requested TFLite file atomically; returns {format: path}."""
    from mfn_tf2.export_form import export_form
    from mfn_tf2.tflite import convert
    # Which Keras graph each format is converted from: int8 files from the export
    # form (post-training: calibrated; QAT: that same graph, fine-tuned).
    sources = {"fp32": backbone, "fp16": backbone, "dynamic": backbone,
               "int8": export_form(backbone) if "int8" in exp.formats else None, "qat_int8": qat}
    written = {}
    for fmt in exp.formats:
        if fmt == "saved_model":
            continue
        path = os.path.join(exp.out, FILES[fmt])
        write_bytes(path, convert(sources[fmt], fmt, calibration, per_tensor=exp.per_tensor))
        written[fmt] = path
        log(f"wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB)")
    return written


def tensor_info(path: str) -> dict:
    """Input and output name, shape, dtype and quantization of a .tflite file."""
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=path)
    info = {}
    for key, d in (("input", interp.get_input_details()[0]), ("output", interp.get_output_details()[0])):
        scale, zero = d["quantization"]
        info[key] = {"name": d["name"], "shape": [int(v) for v in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
                     "quantization": {"scale": float(scale), "zero_point": int(zero)} if scale else None}
    return info


def metadata(backbone, files: dict, threshold: dict, model_cfg: dict | None) -> dict:
    """What an app needs to feed each model and compare its embeddings."""
    size = int(backbone.input_shape[1])
    per_file = {os.path.basename(p): tensor_info(p) for p in files.values() if p.endswith(".tflite")}
    if "saved_model" in files:
        per_file["saved_model"] = {"input": {"name": "image", "shape": [-1, size, size, 3], "dtype": "uint8",
                                             "quantization": None},
                                   "output": {"name": "embedding", "shape": [-1, int(backbone.output_shape[-1])],
                                              "dtype": "float32", "quantization": None}}
    return {"preprocessing": {"channel_order": "RGB", "bgr": False, "pixel_range": [0, 255],
                              "mean": C.PIXEL_MEAN, "std": C.PIXEL_STD, "crop": None,
                              "input_size": [size, size], "resize": "area (downscale) / bilinear (upscale)",
                              "formula": "float input = (pixel - mean) / std; int8 input = "
                                         "round(float input / scale) + zero_point; the SavedModel takes "
                                         "uint8 pixels and normalises inside"},
            "embedding_dim": int(backbone.output_shape[-1]),
            "output": "raw embedding (TFLite) or L2-normalised (SavedModel); L2-normalise, then "
                      "cosine = dot product; same person when cosine >= threshold",
            "threshold": threshold, "model": model_cfg, "files": per_file}


def check_parity(result: dict, exp: C.ExportConfig) -> list[dict]:
    """Per exported model: accuracy drop and cosine to the float reference, and a verdict."""
    ref = result["models"][0]["report"]["accuracy"]
    rows = []
    for m in result["models"][1:]:
        drop = 100 * (ref - m["report"]["accuracy"])
        cos = m["agreement"]["mean"]
        failures = ([f"accuracy -{drop:.2f} points > {exp.max_accuracy_drop}"] if drop > exp.max_accuracy_drop else []) \
            + ([f"cosine {cos:.4f} < {exp.min_cosine}"] if cos < exp.min_cosine else [])
        rows.append({"model": m["name"], "accuracy_drop_points": drop, "mean_cosine": cos,
                     "ok": not failures, "why": "; ".join(failures)})
    return rows


def int8_summary(result: dict, names: list[str], latency: dict, exp: C.ExportConfig, calibration: str) -> list[dict]:
    """Per int8 model: accuracy against float, cosine, latency ratio to fp32, where its ranges came from.

    Args:
        result: ``verify_models``' result (first model: the float reference).
        names: the format of each model in ``result`` ("float (Keras)", "fp32", "int8", ...).
        latency: {format: {threads: p50 ms}}.
        exp: the export settings (weight scales, QAT epochs).
        calibration: what calibrated post-training int8 ("200 faces from faces/").
    """
    from mfn_tf2.tflite import RANGES
    ref = result["models"][0]["report"]["accuracy"]
    ranges = {"calibration": f"calibration ({calibration})",
              "QAT": f"QAT ({exp.qat_epochs} epoch(s), lr {exp.qat_learning_rate:g})"}
    rows = []
    for name, m in zip(names, result["models"]):
        if name not in RANGES:
            continue
        fp32, own = latency.get("fp32", {}), latency.get(name, {})
        rows.append({"format": name, "weight_scales": "per-tensor" if exp.per_tensor else "per-channel",
                     "ranges": ranges[RANGES[name]], "accuracy": m["report"]["accuracy"],
                     "accuracy_change_points": 100 * (m["report"]["accuracy"] - ref),
                     "cosine_mean": m["agreement"]["mean"], "cosine_min": m["agreement"]["min"],
                     "latency_ratio_to_fp32": {t: round(own[t] / fp32[t], 3) for t in own if fp32.get(t)}})
    return rows


def int8_markdown(rows: list[dict]) -> list[str]:
    """The report's int8 table (empty without int8 models)."""
    if not rows:
        return []
    lines = ["## int8 models", "", "| model | weight scales | ranges from | accuracy (%) | vs float (points) | "
             "cosine to float (mean / min) | latency / fp32 (1 / 2 threads) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = " / ".join(f"{v:.2f}x" for v in r["latency_ratio_to_fp32"].values()) or "-"
        lines.append(f"| {r['format']} | {r['weight_scales']} | {r['ranges']} | {100 * r['accuracy']:.2f} | "
                     f"{r['accuracy_change_points']:+.2f} | {r['cosine_mean']:.4f} / {r['cosine_min']:.4f} | {ratio} |")
    return lines + [""]


def report_markdown(out: str, source: str, result: dict, names: list[str], files: dict, parity: list[dict],
                    latency: dict, threshold: dict, failed: dict, int8: list[dict], machine: dict) -> str:
    """report.md: the verification table, the int8 table, files with sizes and latency, parity verdicts."""
    from mfn_tf2.host import machine_line
    from mfn_tf2.verification import markdown_table
    lines = [f"# Export report: {out}", "", f"Source: `{source}`. Pairs: `{result['pairs']['source']}` "
             f"({result['pairs']['n_pairs']} pairs, {result['pairs']['n_images']} images). "
             f"Latency measured on {machine_line(machine)}.", "",
             "## Verification (10-fold protocol of the pairs file; cosine scores)", "",
             markdown_table(result, names), "", "![ROC curves and score histograms](roc.png)", "",
             *int8_markdown(int8),
             "## Files", "", "| format | file | size (MB) | p50 1 thread (ms) | p50 2 threads (ms) | parity |",
             "|---|---|---|---|---|---|"]
    verdict = {os.path.basename(p["model"]): ("ok" if p["ok"] else f"FAIL: {p['why']}") for p in parity}
    for fmt, path in files.items():
        size = (sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
                if os.path.isdir(path) else os.path.getsize(path)) / 1e6
        lat = latency.get(fmt, {})
        lines.append(f"| {fmt} | {os.path.basename(path)} | {size:.2f} | {lat.get(1, '-')} | {lat.get(2, '-')} | "
                     f"{verdict.get(os.path.basename(path), 'reference')} |")
    for fmt, why in failed.items():
        lines.append(f"| {fmt} | {FILES[fmt]} | - | - | - | FAIL: {why} |")
    lines += ["", f"Threshold for apps: cosine >= {threshold['cosine']:.4f} is the same person "
              f"(FAR {threshold['far']} on these pairs, float model).", ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """Every flag of ``python -m mfn_tf2.export``."""
    p = argparse.ArgumentParser(prog="python -m mfn_tf2.export", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("model", metavar="MODEL", help="training directory or SavedModel of a backbone")
    cli.add_config_flags(p.add_argument_group("export"), C.ExportConfig)
    cli.add_config_flags(p.add_argument_group("verification pairs"), C.EvalConfig,
                         skip=("sample_type", "repeat_times", "num_person", "num_sample", "crop", "mean",
                               "std", "bgr", "flip"))  # no flip: the app and its threshold use one image
    cli.add_config_flags(p.add_argument_group("QAT fine-tuning data"), C.DataConfig,
                         skip=("valid_directory", "valid_split_ratio", "image_size"))
    return p


def run(model_path: str, exp: C.ExportConfig, eval_cfg: C.EvalConfig, data_cfg: C.DataConfig, log=print) -> dict:
    """Exports, verifies and reports; returns the report dict (``ok`` False on a parity failure)."""
    from mfn_tf2.latency import tflite_latency
    pairs = load_pairs(eval_cfg)
    backbone, run_info = load_float_model(model_path)
    size = int(backbone.input_shape[1])
    calib_dir = exp.representative_dir or data_cfg.train_directory or eval_cfg.data_directory
    calibration = calibration_images(calib_dir, size, exp.num_calibration, data_cfg.seed)
    calibrated_on = f"{len(calibration)} faces from {calib_dir}"
    files, failed = {}, {}
    if "saved_model" in exp.formats:
        files["saved_model"] = os.path.join(exp.out, FILES["saved_model"])
        write_saved_model(backbone, files["saved_model"])
    qat = finetune(backbone, model_path, run_info, data_cfg, exp, calibration, log) if "qat_int8" in exp.formats else None
    files.update(convert_all(backbone, exp, calibration, qat, log))
    extractors, names = [FeatureExtractor(backbone, batch_size=eval_cfg.batch_size)], ["float (Keras)"]
    for fmt, path in files.items():
        try:
            extractors.append(FeatureExtractor(path, batch_size=eval_cfg.batch_size))
            names.append(fmt)
        except EmbedderError as err:
            failed[fmt] = str(err)
    result = verify_models(extractors, pairs, tuple(sorted(set(eval_cfg.far_target) | {THRESHOLD_FAR})),
                           progress=True)
    ref = result["models"][0]
    from mfn_tf2.metrics import tar_at_far
    threshold = {"far": THRESHOLD_FAR, "cosine": float(tar_at_far(ref["scores"], pairs.labels, THRESHOLD_FAR)[1]),
                 "pairs": pairs.source}
    write_json(os.path.join(exp.out, "metadata.json"),
               metadata(backbone, files, threshold, run_info["model"] if run_info else None))
    latency = {fmt: {t: round(tflite_latency(p, threads=t, runs=50, warmup=5)["p50"], 3) for t in (1, 2)}
               for fmt, p in files.items() if p.endswith(".tflite") and fmt not in failed}
    from mfn_tf2.plots import plot_verification
    plot_verification({n: (m["scores"], pairs.labels) for n, m in zip(names, result["models"])},
                      os.path.join(exp.out, "roc.png"))
    parity = check_parity(result, exp)
    ok = not failed and all(p["ok"] for p in parity)
    int8 = int8_summary(result, names, latency, exp, calibrated_on)
    report = {"ok": ok, "source": model_path, "machine": machine_info(), "pairs": result["pairs"], "threshold": threshold,
              "files": {f: os.path.basename(p) for f, p in files.items()}, "failed": failed,
              "models": [{"format": n, **{k: v for k, v in m.items() if k != "scores"}}
                         for n, m in zip(names, result["models"])],
              "parity": parity, "latency_ms_p50": latency, "int8": int8}
    write_json(os.path.join(exp.out, "report.json"), report)
    from mfn_tf2.fileio import write_text
    write_text(os.path.join(exp.out, "report.md"),
               report_markdown(exp.out, model_path, result, names, files, parity, latency, threshold, failed, int8,
                               report["machine"]))
    if exp.android_assets:
        write_assets(exp.out, exp.android_assets, pairs, log)
    return report


def main(argv=None) -> None:
    """Entry point of ``python -m mfn_tf2.export``."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    cfg = cli.build_configs(parser, ns, CONFIGS)
    try:
        with OutputLock(cfg["export"].out):
            report = run(ns.model, cfg["export"], cfg["eval"], cfg["data"])
    except (ExportError, CheckpointError, DataError, PairsError, ImageError, EmbedderError, OutputError,
            AssetsError) as err:
        cli.fail(str(err))
    print(open(os.path.join(cfg["export"].out, "report.md")).read())
    if not report["ok"]:
        cli.fail("exported models failed the parity check (see the table above); files kept in "
                 f"{cfg['export'].out}")


if __name__ == "__main__":
    main()
