"""The export runner: strip the head, quantize, convert, and prove every model against the float one.

``run(model_path, exp, eval_cfg, data_cfg)`` loads the float backbone, writes
the SavedModel (uint8 RGB in, unit embedding out), fine-tunes the QAT model
when ``qat_int8`` is asked (``finetune``: the export form with fake-quant ops
and the trained ArcFace head), converts every requested TFLite format, verifies
all of them on the same pairs, measures their latency and writes
``metadata.json``, ``report.md`` / ``report.json`` (``reports.py``) and, when
asked, the Android assets. Every exported .tflite file gets its own thresholds
at ``config.FAR_TARGETS``, measured on every pair of ``calibration_dir``
(``calibration.py``); ``metadata.json`` -> ``threshold`` is the recommended
operating point (``recommend``). The shell ``python -m mfn_tf2.export`` parses flags
and calls ``run``; ``mfn_tf2.demo`` calls it directly.

Example (the demo's weights, every format; a few minutes on 2 cores):
    >>> from mfn_tf2 import config as C
    >>> report = run("demo_out/weights", C.ExportConfig(out="export/demo"),
    ...              C.EvalConfig(pairs_filename="data/lfw_demo/pairs_heldout.txt",
    ...                           data_directory="data/lfw_demo/heldout"),
    ...              C.DataConfig(train_directory="data/lfw_demo/train"))   # doctest: +SKIP
    >>> report["ok"], sorted(report["files"])                             # doctest: +SKIP
    (True, ['dynamic', 'fp16', 'fp32', 'int8', 'int8_islands', 'qat_int8', 'saved_model'])
"""
from __future__ import annotations

import os

import numpy as np

from mfn_tf2 import config as C
from mfn_tf2.alignment import template_for
from mfn_tf2.android import write_assets
from mfn_tf2.backend import keras, tf
from mfn_tf2.calibration import FaceListing, calibrate_listing, list_faces
from mfn_tf2.checkpoints import restore_head
from mfn_tf2.distribute import make_strategy
from mfn_tf2.embedders import FeatureExtractor
from mfn_tf2.fileio import atomic_directory, write_json, write_text
from mfn_tf2.images import folder_images, read_rgb, warn_skipped
from mfn_tf2.latency import tflite_latencies
from mfn_tf2.models import ModelError, open_backbone
from mfn_tf2.pipeline import open_training_data
from mfn_tf2.plots import plot_verification
from mfn_tf2.preprocess import normalise, resize
from mfn_tf2.recognizer import build_recognizer, make_optimizer
from mfn_tf2.reports import export_markdown, int8_summary, machine_info
from mfn_tf2.folders import DataError
from mfn_tf2.tflite import convert_all, reference_only_ops, tensor_info
from mfn_tf2.verification import load_pairs, verify_models


# The app's operating point: this false accept rate (one of config.FAR_TARGETS).
THRESHOLD_FAR = 1e-3
# The int8 files the app's model is chosen from, in order of preference when latency was not measured.
INT8_FORMATS = ("int8_islands", "qat_int8", "int8")
# The files a recommended threshold may come from without an int8 file, in order of preference.
_FLOAT_FALLBACK = ("fp32", "fp16", "dynamic", "saved_model")


class ExportError(ValueError):
    """An export that cannot start (bad source model, calibration folder or settings); parity failures go to
    report.json and the exit code, not here."""


def calibration_images(folder: str, size: int, count: int, seed: int = 0) -> np.ndarray:
    """``count`` real faces from ``folder`` (recursively), normalised, (N, size, size, 3) float32."""
    paths, skipped = folder_images(folder)
    warn_skipped(skipped)
    if not paths:
        raise ExportError(f"--representative_dir {folder}: no images found")
    chosen = np.random.default_rng(seed).choice(paths, size=min(count, len(paths)), replace=False)
    return normalise(np.stack([resize(read_rgb(p), size, size) for p in chosen]))


class _Serving(tf.Module):
    """RGB uint8 (B, S, S, 3) -> L2-normalised embedding, pre-processing inside the graph."""

    def __init__(self, backbone: keras.Model):
        super().__init__()
        # The backbone's variables are tracked as a list (backbone/0, backbone/1, ...; what --pretrained_model
        # reads back), the Keras model is not (the function below closes over it): a tracked Keras model makes
        # the saver trace every layer for Keras' loader, which a served SavedModel never uses (the tests' tiny
        # model: 11 s -> 1.4 s to save).
        self.backbone = list(backbone.variables)
        size = backbone.input_shape[1]

        def serve(image):  # (B, S, S, 3) uint8 -> (B, D) unit vectors
            x = normalise(image)  # uint8 -> float32, in the graph
            return {"embedding": tf.math.l2_normalize(backbone(x, training=False), axis=1)}

        self.serve = tf.function(serve, input_signature=[tf.TensorSpec((None, size, size, 3), tf.uint8, name="image")])


def write_saved_model(backbone: keras.Model, path: str) -> None:
    """A SavedModel whose ``serving_default`` takes uint8 RGB and returns unit embeddings."""
    module = _Serving(backbone)
    with atomic_directory(path) as tmp:
        tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})


def threshold_faces(exp: C.ExportConfig, eval_cfg: C.EvalConfig) -> FaceListing:
    """The faces every exported file's thresholds are measured on, checked before any conversion.

    Raises:
        ExportError: no folder; DataError / CalibrationError: one that cannot
            measure FAR (see ``calibration.list_faces``).
    """
    folder = exp.calibration_dir or eval_cfg.data_directory
    flag = "--calibration_dir" if exp.calibration_dir else "--calibration_dir (default: --data_directory)"
    if not folder:
        raise ExportError("--calibration_dir: give a folder of identity sub-folders; every pair of its faces "
                          "measures each exported file's thresholds")
    return list_faces(folder, C.FAR_TARGETS, flag)


def file_thresholds(extractors: list, names: list[str], files: dict, failed: dict, faces: FaceListing,
                    out: str, seed: int) -> list[dict]:
    """Each exported .tflite file's thresholds from its own scores (the SavedModel's without one).

    Returns:
        One row per (file, FAR target): ``calibration.measure``'s point plus
        "file", "impostor_pairs", "genuine_pairs" and "measured_on" (the
        folder relative to ``out``).
    """
    measured = [f for f, p in files.items() if p.endswith(".tflite") and f not in failed]
    measured = measured or [f for f in files if f == "saved_model"]
    rows = []
    for fmt in measured:
        cal = calibrate_listing(extractors[names.index(fmt)], faces, C.FAR_TARGETS, seed, progress=True)
        rows += [{"file": os.path.basename(files[fmt]), **point, "impostor_pairs": cal["impostor_pairs"],
                  "genuine_pairs": cal["genuine_pairs"], "measured_on": os.path.relpath(faces.folder, out)}
                 for point in cal["points"]]
    return rows


def recommend(result: dict, names: list[str], files: dict, thresholds: list[dict],
              latency: dict | None = None) -> dict | None:
    """The app's operating point: FAR ``THRESHOLD_FAR`` (else the lowest measurable) on one file.

    The file: among the int8 files (``INT8_FORMATS``) whose decisions on the
    verification pairs are not distinguishably worse than the float model's
    (its ``paired`` test against float: distinguishable with a negative
    difference disqualifies), the fastest by the export's own 2-thread latency
    median (not measured: the first of int8_islands, qat_int8, int8); when none
    qualifies, the int8 file with the most pairs right; without int8 files, the
    first of fp32, fp16, dynamic, saved_model. Only files with thresholds count.

    Args:
        result: ``verify_models``' result (first model: the float reference).
        names: the format of each model in ``result``.
        files: {format: path} of the exported files.
        thresholds: ``file_thresholds``' rows.
        latency: {format: {threads: p50 ms}}, or None when not measured.

    Returns:
        {"file", "far", "cosine", "tar", "measured_on", "why"}, or None when no
        file has thresholds.

    Example (post-training int8 is faster but distinguishably worse than float: islands ships):
        >>> worse = {"difference_points": -0.75, "distinguishable": True, "gained": 1, "lost": 10, "text": "-0.75"}
        >>> equal = {"difference_points": 0.0, "distinguishable": False, "gained": 5, "lost": 5, "text": "+0.00"}
        >>> files = {"int8": "model_int8.tflite", "int8_islands": "model_int8_islands.tflite"}
        >>> rows = [{"file": f, "far": THRESHOLD_FAR, "cosine": 0.4, "tar": 0.9, "measured_on": "faces",
        ...          "measurable": True} for f in files.values()]
        >>> recommend({"models": [{"paired": None}, {"paired": worse}, {"paired": equal}]},
        ...           ["float (Keras)", "int8", "int8_islands"], files, rows,
        ...           {"int8": {2: 1.0}, "int8_islands": {2: 1.2}})["file"]
        'model_int8_islands.tflite'
    """
    have = {r["file"] for r in thresholds}
    present = [f for f in (*INT8_FORMATS, *_FLOAT_FALLBACK) if f in files and os.path.basename(files[f]) in have]
    if not present:
        return None
    fmt, why = present[0], "no int8 file exported"
    int8 = [f for f in present if f in INT8_FORMATS]
    if int8:
        paired = {f: result["models"][names.index(f)]["paired"] for f in int8}
        fine = [f for f in int8 if not (paired[f]["distinguishable"] and paired[f]["difference_points"] < 0)]
        ms = {f: (latency or {}).get(f, {}).get(2) for f in int8}
        if fine and all(ms[f] is not None for f in fine):
            fmt = min(fine, key=lambda f: ms[f])
            why = (f"the fastest int8 file ({ms[fmt]:.2f} ms at 2 threads) of those not distinguishably "
                   "worse than float on the verification pairs")
        elif fine:
            fmt = fine[0]
            why = (f"the first of {', '.join(INT8_FORMATS)} not distinguishably worse than float on the "
                   "verification pairs (latency not measured)")
        else:  # max keeps the first of equals: INT8_FORMATS' order
            fmt = max(int8, key=lambda f: paired[f]["gained"] - paired[f]["lost"])
            why = "every int8 file is distinguishably worse than float on the verification pairs: the most pairs right"
        why += "; against float: " + "; ".join(f"{f} {paired[f]['text']}" for f in int8)
    points = [r for r in thresholds if r["file"] == os.path.basename(files[fmt]) and r["measurable"]]
    point = next((r for r in points if r["far"] == THRESHOLD_FAR), min(points, key=lambda r: r["far"]))
    if point["far"] != THRESHOLD_FAR:
        why += f"; FAR {THRESHOLD_FAR:g} is not measurable on {point['impostor_pairs']:,} different-person pairs"
    return {"file": point["file"], "far": point["far"], "cosine": point["cosine"], "tar": point["tar"],
            "measured_on": point["measured_on"], "why": why}


def metadata(backbone, files: dict, threshold: dict | None, thresholds: list[dict], model_cfg: dict | None,
             template: str | None = None) -> dict:
    """What an app needs to feed each model and compare its embeddings.

    ``template``: the 5-point layout of the training faces (default: ArcFace's for the input's aspect).
    """
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
                              "template": template or template_for((size, size)),
                              "formula": "float input = (pixel - mean) / std; int8 input = "
                                         "round(float input / scale) + zero_point; the SavedModel takes "
                                         "uint8 pixels and normalises inside"},
            "embedding_dim": int(backbone.output_shape[-1]),
            "output": "raw embedding (TFLite) or L2-normalised (SavedModel); L2-normalise, then "
                      "cosine = dot product; same person when cosine >= threshold",
            "threshold": threshold, "thresholds": thresholds, "model": model_cfg, "files": per_file}


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


def run(model_path: str, exp: C.ExportConfig, eval_cfg: C.EvalConfig, data_cfg: C.DataConfig, log=print) -> dict:
    """Exports, verifies and reports; returns the report dict (``ok`` False on a parity failure)."""
    pairs = load_pairs(eval_cfg)
    backbone, run_info = open_backbone(model_path)
    faces = threshold_faces(exp, eval_cfg)  # a folder that cannot measure FAR fails before the slow work
    size = int(backbone.input_shape[1])
    calib_dir = exp.representative_dir or data_cfg.train_directory or eval_cfg.data_directory
    calibration = calibration_images(calib_dir, size, exp.num_calibration, data_cfg.seed)
    calibrated_on = f"{len(calibration)} faces from {os.path.relpath(calib_dir, exp.out)}"  # reports name folders relative to the export
    files, failed = {}, {}
    if "saved_model" in exp.formats:
        files["saved_model"] = os.path.join(exp.out, C.EXPORT_FILES["saved_model"])
        write_saved_model(backbone, files["saved_model"])
    qat = finetune(backbone, model_path, run_info, data_cfg, exp, calibration, log) if "qat_int8" in exp.formats else None
    files.update(convert_all(backbone, exp, calibration, qat, log))
    extractors, names = [FeatureExtractor(backbone, batch_size=eval_cfg.batch_size)], ["float (Keras)"]
    for fmt, path in files.items():
        try:
            extractors.append(FeatureExtractor(path, batch_size=eval_cfg.batch_size))
            names.append(fmt)
        except ModelError as err:
            failed[fmt] = str(err)
    result = verify_models(extractors, pairs, tuple(sorted(set(eval_cfg.far_target) | {THRESHOLD_FAR})),
                           progress=True)
    if os.path.exists(pairs.source):  # reports name files relative to the export folder
        result["pairs"]["source"] = os.path.relpath(pairs.source, exp.out)
    thresholds = file_thresholds(extractors, names, files, failed, faces, exp.out, eval_cfg.seed)
    timed = {fmt: p for fmt, p in files.items() if p.endswith(".tflite") and fmt not in failed}
    measured = tflite_latencies(list(timed.values()))  # the benchmark's and the demo's loop and defaults
    latency = {fmt: {t: round(stats["p50"], 3) for t, stats in measured[p].items()} for fmt, p in timed.items()}
    not_on_xnnpack = {fmt: reference_only_ops(p) for fmt, p in timed.items()}  # what the timing ran elsewhere
    threshold = recommend(result, names, files, thresholds, latency)  # the fastest int8 file as good as float
    write_json(os.path.join(exp.out, "metadata.json"),
               metadata(backbone, files, threshold, thresholds, run_info["model"] if run_info else None,
                        exp.template))
    plot_verification({n: (m["scores"], pairs.labels) for n, m in zip(names, result["models"])},
                      os.path.join(exp.out, "roc.png"))
    parity = check_parity(result, exp)
    ok = not failed and all(p["ok"] for p in parity)
    int8 = int8_summary(result, names, latency, exp, calibrated_on)
    report = {"ok": ok, "source": model_path, "formats": list(exp.formats), "machine": machine_info(),
              "pairs": result["pairs"],
              "threshold": threshold, "thresholds": thresholds,
              "files": {f: os.path.basename(p) for f, p in files.items()}, "failed": failed,
              "models": [{"format": n, **{k: v for k, v in m.items() if k != "scores"}}
                         for n, m in zip(names, result["models"])],
              "parity": parity, "latency_ms_p50": latency, "not_on_xnnpack": not_on_xnnpack, "int8": int8}
    write_json(os.path.join(exp.out, "report.json"), report)
    write_text(os.path.join(exp.out, "report.md"),
               export_markdown(exp.out, model_path, result, names, files, parity, latency, not_on_xnnpack,
                               threshold, thresholds, failed, int8, report["machine"]))
    if exp.android_assets:
        write_assets(exp.out, exp.android_assets, pairs, log)
    return report


def finetune(backbone: keras.Model, model_path: str, run: dict | None, data_cfg: C.DataConfig,
             exp: C.ExportConfig, calibration, log=print) -> keras.Model:
    """Quantization-aware fine-tuning of the export form, with the trained ArcFace head.

    The head comes from the training directory's checkpoint when the training
    data has the same classes; otherwise a fresh head is trained (and said so).

    Args:
        backbone: the float backbone (``backbones.build_backbone`` layout).
        model_path: its training directory (for the head) or SavedModel.
        run: the training run's run.json (its model config), or None.
        data_cfg: the training faces (``train_directory``) and batch size.
        exp: ``qat_epochs``, ``qat_learning_rate``, ``per_tensor``.
        calibration: float32 (N, S, S, 3) normalised faces the activation ranges start from.
        log: where progress lines go.

    Returns:
        The fine-tuned QAT model (fake-quantized export form, same input and
        output as the backbone), ready for ``tflite.convert(qat, "qat_int8")``.

    Raises:
        DataError: no ``train_directory``, or training data that cannot be read.
    """
    from mfn_tf2.quantize import qat_model  # lazy: tensorflow_model_optimization only for qat_int8
    if not data_cfg.train_directory:
        raise DataError("qat_int8 needs --train_directory (the training faces) for fine-tuning")
    model_cfg = C.from_dict(C.ModelConfig, run["model"]) if run else C.ModelConfig(
        image_size=backbone.input_shape[1], embedding_dim=backbone.output_shape[-1])
    data = open_training_data(data_cfg, model_cfg.image_size)
    strategy = make_strategy()
    epoch = max(1, data.num_train // data_cfg.batch_size)
    steps = max(1, round(exp.qat_epochs * epoch))  # one fit "epoch" of all the steps: fractions allowed
    with strategy.scope():
        qat = qat_model(backbone, per_tensor=exp.per_tensor, calibration=calibration)
        train_cfg = C.TrainConfig(learning_rate=exp.qat_learning_rate, epochs=1,
                                  lr_schedule="cosine", weight_decay=0.0)
        recognizer = build_recognizer(model_cfg, data.num_classes, backbone=qat,
                                      optimizer=make_optimizer(train_cfg, steps))
        if not restore_head(model_path, recognizer.head):
            log(f"QAT: no trained head for these {data.num_classes} classes in {model_path}; "
                "fine-tuning with a fresh head (pass the training run's data flags to reuse it)")
    dataset = strategy.distribute_datasets_from_function(lambda ctx: data.train_dataset(ctx).repeat())
    scales = "per-tensor" if exp.per_tensor else "per-channel"
    log(f"QAT ({scales} weight scales): {exp.qat_epochs:g} epoch(s) = {steps} steps of {data_cfg.batch_size} "
        f"from {data.num_train} images")
    recognizer.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=2)
    return recognizer.backbone


__all__ = ["ExportError", "THRESHOLD_FAR", "INT8_FORMATS", "run", "finetune", "calibration_images", "write_saved_model",
           "threshold_faces", "file_thresholds", "recommend", "metadata", "check_parity"]
