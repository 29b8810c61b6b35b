"""TFLite conversion, and which ops LiteRT's XNNPACK delegate really runs.

``convert`` turns a Keras model that takes normalised float images into
.tflite bytes of one kind (fp32, fp16 weights, dynamic range, full int8, or
int8 with the PReLUs and depthwise convs left float between int8 pointwise
convs: "int8_islands").
``convert_all`` writes every TFLite file an export asks for (``tensor_info``: each
one's input and output, for metadata.json). ``op_report`` loads a .tflite file in
LiteRT with its default XNNPACK delegate and tells, op by op, whether the delegate took it: after delegation the
interpreter's node list holds the original nodes plus one DELEGATE node per
delegated partition, and the original nodes a partition replaced are exactly
those between that DELEGATE node's inputs and outputs. Everything else runs
on TFLite's builtin (reference/optimized-fallback) kernels, which for int8
PRELU and MAXIMUM is 10-20 times slower than XNNPACK.

Example (a conv and a PReLU, full int8: XNNPACK leaves the int8 PRELU to the builtin kernel,
which is why ``export_form`` rewrites PReLU; the shipped file has no such op):
    >>> from mfn_tf2.backend import keras
    >>> x = keras.Input((8, 8, 3))
    >>> model = keras.Model(x, keras.layers.PReLU(shared_axes=[1, 2])(keras.layers.Conv2D(4, 3)(x)))
    >>> calibration = np.random.default_rng(0).uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)
    >>> reference_only_ops(convert(model, "int8", calibration))
    ['1 x PRELU (int8)']
    >>> reference_only_ops("android_demo_assets/model_int8.tflite")
    []
"""
from __future__ import annotations

import collections
import os

import numpy as np

from mfn_tf2 import config as C
from mfn_tf2.backend import tf
from mfn_tf2.export_form import export_form, has_channel_prelu
from mfn_tf2.fileio import size_mb, write_bytes
from mfn_tf2.models import open_interpreter

# After backend (Keras 2 chosen before TensorFlow loads): the converter's own quantizer,
# which "int8_islands" calls on a calibrated model with the island ops denylisted.
from tensorflow.lite.python import convert as tflite_convert  # noqa: E402


class ConversionError(ValueError):
    """A model or calibration set that cannot be converted (message says why)."""


def _integer_io(converter):
    """int8 input and output (the ops are int8 wherever ranges are known)."""
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8


def _calibrated(converter, calibration):
    """Post-training int8: activation ranges measured on the calibration faces."""
    if calibration is None or len(calibration) == 0:
        raise ConversionError("int8 conversion needs calibration images: pass a float32 array "
                              "(N, S, S, 3) of normalised real faces (--representative_dir)")
    images = np.asarray(calibration, np.float32)
    converter.representative_dataset = lambda: ([images[i:i + 1]] for i in range(len(images)))
    _integer_io(converter)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]


def _learned(converter, calibration):
    """QAT int8: every range comes from the model's fake-quant ops; no calibration.

    (The converter refuses ``TFLITE_BUILTINS_INT8`` without a representative
    dataset even for a QAT graph; tests check every op is int8 anyway.)
    """
    _integer_io(converter)


def _float16(converter, calibration):
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


def _dynamic(converter, calibration):
    converter.optimizations = [tf.lite.Optimize.DEFAULT]


# Kind -> converter settings. "int8" expects the export form of a float backbone
# (``export_form.export_form``); "qat_int8" the fine-tuned ``quantize.qat_model``,
# which is that same export form with fake-quant ops whose learned ranges become
# the file's scales and zero points.
KINDS = {
    "fp32": lambda c, cal: None,
    "fp16": _float16,
    "dynamic": _dynamic,
    "int8": _calibrated,
    "qat_int8": _learned,
    "int8_islands": _calibrated,
}
# Where the activation ranges of an int8 kind come from (reports say it).
RANGES = {"int8": "calibration", "qat_int8": "QAT", "int8_islands": "calibration"}
# Ops "int8_islands" leaves in float between int8 pointwise convs: the PReLUs and depthwise
# convs of ``export_form(backbone, float_prelu=True)``, DEQUANTIZE before and QUANTIZE after
# each run of them; XNNPACK takes all of them, and they run faster than int8 per-channel PReLU.
FLOAT_ISLAND_OPS = ("PRELU", "DEPTHWISE_CONV_2D")
# Op input dtypes that must not appear in an int8 file.
_FLOAT = ("float32", "float16")


class _Weights(tf.Module):
    """Holds a Keras model's variables, and nothing else, for the converter's SavedModel.

    ``from_keras_model`` saves the whole Keras model first, tracing every layer
    for Keras' own serialization: 12 s of a 13 s conversion of a small
    backbone. Saving only the variables and one serving function gives the same
    ops, signature ("serving_default": input and output names of the model)
    and numbers, 4-5x faster.
    """

    def __init__(self, model):
        super().__init__()
        self.variables_of_model = list(model.variables)


def _serving_function(model):
    """The model's inference call (training=False) as one concrete function, outputs by name."""
    specs = [tf.TensorSpec((None, *t.shape[1:]), t.dtype, name=name)
             for t, name in zip(model.inputs, model.input_names)]

    def serve(*inputs):
        outputs = model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)
        return dict(zip(model.output_names, tf.nest.flatten(outputs)))

    return tf.function(serve, input_signature=specs).get_concrete_function()


def convert(model, kind: str, calibration=None, per_tensor: bool = False) -> bytes:
    """Converts a Keras model to .tflite bytes of one kind.

    Args:
        model: a Keras model taking normalised float images (B, S, S, 3); for
            "int8" ``export_form(backbone)``, for "int8_islands"
            ``export_form(backbone, float_prelu=True)``, for "qat_int8" a fine-tuned
            ``quantize.qat_model(backbone)``.
        kind: "fp32", "fp16" (float16 weights), "dynamic" (dynamic-range int8
            weights), "int8" (post-training full integer, int8 input/output),
            "int8_islands" (as "int8", but ``FLOAT_ISLAND_OPS`` stay float,
            for ``export_form(backbone, float_prelu=True)``) or "qat_int8"
            (full integer with the ranges QAT learned).
        calibration: float32 (N, S, S, 3) normalised real faces; required by
            "int8" and "int8_islands" (representative dataset), ignored by
            the others.
        per_tensor: one weight scale per conv instead of one per output
            channel (int8 kinds; a QAT model must have been built with it).

    Returns:
        The flatbuffer bytes.

    Raises:
        ConversionError: unknown kind, missing calibration, or an int8 kind
            whose file would hold a float op.

    Example:
        >>> from mfn_tf2.backend import keras
        >>> x = keras.Input((8, 8, 3))
        >>> op_report(convert(keras.Model(x, keras.layers.Conv2D(4, 1)(x)), "fp32"))
        [{'op': 'CONV_2D', 'dtype': 'float32', 'delegated': True}]
    """
    if kind not in KINDS:
        raise ConversionError(f"unknown TFLite kind {kind!r}: expected one of {', '.join(KINDS)}")
    converter = tf.lite.TFLiteConverter.from_concrete_functions([_serving_function(model)], _Weights(model))
    KINDS[kind](converter, calibration)
    # The converter's own switch (no public name): per-tensor weight scales.
    converter._experimental_disable_per_channel = per_tensor
    if kind == "int8_islands":
        # The converter has no public switch to keep some op types float in a full-integer
        # file: calibrate only (float model + recorded ranges), then quantize all but the
        # island ops, as tf.lite.experimental.QuantizationDebugger does. The calibrated model
        # has float input/output: int8 is asked for again here, as _integer_io does.
        converter._experimental_calibrate_only = True
        data = tflite_convert.mlir_quantize(converter.convert(), disable_per_channel=per_tensor,
                                            fully_quantize=True, input_data_type=tf.int8,
                                            output_data_type=tf.int8, denylisted_ops=list(FLOAT_ISLAND_OPS))
    else:
        data = converter.convert()
    if kind in RANGES:
        # qat_int8 cannot ask the converter for TFLITE_BUILTINS_INT8 (see _learned): a layer
        # without a learned range would ship as a float op, silently. Refuse it here. In
        # int8_islands only the island ops and the QUANTIZE closing each island read float.
        allowed = (*FLOAT_ISLAND_OPS, "QUANTIZE") if kind == "int8_islands" else ()
        left = sorted({f"{r['op']} ({r['dtype']})" for r in op_report(data)
                       if r["dtype"] in _FLOAT and r["op"] not in allowed})
        if left:
            raise ConversionError(f"{kind}: the converter left float ops ({', '.join(left)}): a layer of the "
                                  "model has no int8 range (for qat_int8: build it with quantize.qat_model)")
    return data


def op_report(model, num_threads: int = 2) -> list[dict]:
    """Every op of a .tflite model, with its input dtype and whether XNNPACK runs it.

    Args:
        model: a .tflite path or its bytes.
        num_threads: LiteRT threads (the delegate is applied as in deployment).

    Returns:
        One dict per original op in graph order: ``op`` (e.g. "CONV_2D"),
        ``dtype`` (of its first input, e.g. "int8"), ``delegated`` (bool).

    Raises:
        models.ModelError: not a loadable .tflite model.

    Example (the shipped int8 file: int8 from its first op to its last, all on XNNPACK):
        >>> ops = op_report("android_demo_assets/model_int8.tflite")
        >>> ops[0], all(r["delegated"] for r in ops)
        ({'op': 'CONV_2D', 'dtype': 'int8', 'delegated': True}, True)
    """
    ops = open_interpreter(model, num_threads)._get_ops_details()
    producer = {t: op["index"] for op in ops if op["op_name"] != "DELEGATE" for t in op["outputs"]}
    delegated = set()
    for node in (op for op in ops if op["op_name"] == "DELEGATE"):
        # Walk back from the partition's outputs to its inputs: every node met was replaced.
        boundary, todo = set(node["inputs"]), list(node["outputs"])
        while todo:
            tensor = todo.pop()
            if tensor in boundary or tensor not in producer or producer[tensor] in delegated:
                continue
            delegated.add(producer[tensor])
            todo.extend(ops[producer[tensor]]["inputs"])
    return [{"op": op["op_name"],
             "dtype": np.dtype(op["operand_types"][0]).name if op["operand_types"] else "",
             "delegated": op["index"] in delegated}
            for op in ops if op["op_name"] != "DELEGATE"]


def reference_only_ops(model, num_threads: int = 2) -> list[str]:
    """The ops XNNPACK leaves to the builtin kernels, counted: "N x OP (dtype)", by name.

    Args:
        model: a .tflite path or its bytes.
        num_threads: LiteRT threads, as ``op_report``'s.

    Returns:
        One string per kind of op left out; empty when XNNPACK runs every op.

    Example:
        >>> reference_only_ops("android_demo_assets/model_fp16.tflite")
        []
    """
    return left_out(op_report(model, num_threads))


def left_out(ops: list[dict]) -> list[str]:
    """``reference_only_ops`` of an ``op_report`` already made (its rows: op, dtype, delegated).

    Example:
        >>> left_out([{"op": "PRELU", "dtype": "int8", "delegated": False}] * 2
        ...          + [{"op": "CONV_2D", "dtype": "int8", "delegated": True}])
        ['2 x PRELU (int8)']
    """
    left = collections.Counter(f"{r['op']} ({r['dtype']})" for r in ops if not r["delegated"])
    return [f"{n} x {name}" for name, n in sorted(left.items())]


def convert_all(backbone, exp: C.ExportConfig, calibration, qat, log) -> dict:
    """Writes every requested TFLite file of an export atomically.

    "int8_islands" is skipped (one logged line) for a backbone without
    per-channel PReLU slopes: it would only leave the depthwise convs float.

    Args:
        backbone: the float backbone (``backbones.build_backbone`` layout).
        exp: ``formats`` (saved_model is not written here), ``out``, ``per_tensor``.
        calibration: float32 (N, S, S, 3) normalised faces (int8 and int8_islands).
        qat: the fine-tuned QAT model (``exporting.finetune``), or None without qat_int8.
        log: where one line per file goes.

    Returns:
        {format: path} of the files written.

    Example (one slope per PReLU layer: no islands file):
        >>> import tempfile
        >>> from mfn_tf2.backbones import build_backbone
        >>> shared = build_backbone(C.ModelConfig(width=0.25, image_size=32, prelu="shared"))
        >>> exp = C.ExportConfig(out=tempfile.mkdtemp(), formats=("int8_islands",))
        >>> lines = []
        >>> convert_all(shared, exp, None, None, lines.append), lines[0].split(":")[0]
        ({}, 'skipped model_int8_islands.tflite')
    """
    # Which Keras graph each format is converted from: int8 files from the export
    # form (post-training: calibrated; QAT: that same graph, fine-tuned; islands:
    # the export form with its per-channel PReLUs kept as PReLU layers).
    islands = "int8_islands" in exp.formats and has_channel_prelu(backbone)
    sources = {"fp32": backbone, "fp16": backbone, "dynamic": backbone,
               "int8": export_form(backbone) if "int8" in exp.formats else None, "qat_int8": qat,
               "int8_islands": export_form(backbone, float_prelu=True) if islands else None}
    written = {}
    for fmt in exp.formats:
        if fmt == "saved_model":
            continue
        if fmt == "int8_islands" and not islands:
            log(f"skipped {C.EXPORT_FILES[fmt]}: the backbone has no per-channel PReLU slopes, so float "
                "islands would only leave its depthwise convs float (slower than int8)")
            continue
        path = os.path.join(exp.out, C.EXPORT_FILES[fmt])
        write_bytes(path, convert(sources[fmt], fmt, calibration, per_tensor=exp.per_tensor))
        written[fmt] = path
        log(f"wrote {path} ({size_mb(path):.2f} MB)")
    return written


def tensor_info(path: str) -> dict:
    """Input and output name, shape, dtype and quantization of a .tflite file (metadata.json's ``files``).

    Example:
        >>> tensor_info("android_demo_assets/model_int8.tflite")["input"]["dtype"]
        'int8'
    """
    interp = open_interpreter(path)
    info = {}
    for key, d in (("input", interp.get_input_details()[0]), ("output", interp.get_output_details()[0])):
        scale, zero = d["quantization"]
        info[key] = {"name": d["name"], "shape": [int(v) for v in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
                     "quantization": {"scale": float(scale), "zero_point": int(zero)} if scale else None}
    return info


__all__ = ["ConversionError", "FLOAT_ISLAND_OPS", "KINDS", "RANGES", "convert", "op_report", "reference_only_ops",
           "left_out", "convert_all", "tensor_info"]
