"""TFLite conversion of every kind, delegation reports and atomic writes (real LiteRT)."""
import os

import numpy as np
import pytest
from PIL import Image

from mfn_tf2.backend import keras
from mfn_tf2.config import PIXEL_MEAN, PIXEL_STD, ModelConfig
from mfn_tf2.backbones import build_backbone
from mfn_tf2.export_form import export_form
from mfn_tf2.quantize import qat_model
from mfn_tf2.fileio import write_bytes
from mfn_tf2.tflite import FLOAT_ISLAND_OPS, ConversionError, convert, op_report, reference_only_ops
from ai_edge_litert.interpreter import Interpreter

SIZE = 32


def load_faces(folder, size: int, count: int) -> np.ndarray:
    """(count, size, size, 3) float32 normalised real faces, read with PIL and resized."""
    files = sorted(str(p) for p in folder.rglob("*.jpg"))[:count]
    pixels = [np.asarray(Image.open(f).convert("RGB").resize((size, size)), np.float32) for f in files]
    return (np.stack(pixels) - PIXEL_MEAN) / PIXEL_STD


def run_tflite(data: bytes, images: np.ndarray) -> np.ndarray:
    """Embeddings of ``images`` one at a time, (de)quantizing int8 input/output."""
    interpreter = Interpreter(model_content=data, num_threads=2)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    results = []
    for image in images:
        x = image[None]
        if inp["dtype"] == np.int8:
            scale, zero = inp["quantization"]
            x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"]).astype(np.float32)
        if out["dtype"] == np.int8:
            scale, zero = out["quantization"]
            y = (y - zero) * scale
        results.append(y[0])
    return np.stack(results)


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.mean(np.sum(a * b, axis=1)))


def random_batchnorm(model: keras.Model, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics (as after training), so that folding and int8 ranges are really tested."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape),
                               rng.normal(0, 0.2, mean.shape), rng.uniform(0.5, 2.0, var.shape)])


def spread_slopes(model: keras.Model, slopes=(-0.5, 0.0, 0.3, 1.0, 1.7, 3.0)) -> None:
    """Sets PReLU slopes channel by channel from ``slopes`` (negative, 0..1 and > 1)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.PReLU):
            shape = layer.get_weights()[0].shape
            layer.set_weights([np.resize(np.asarray(slopes, np.float32), shape)])


@pytest.fixture(scope="module")
def small(demo_data):
    """A small backbone (some slopes > 1 and < 0), calibration and test faces."""
    keras.utils.set_random_seed(0)
    backbone = build_backbone(ModelConfig(width=0.25, image_size=SIZE, embedding_dim=32))
    random_batchnorm(backbone)
    spread_slopes(backbone, slopes=(-0.2, 0.1, 0.25, 0.6, 1.3))
    faces = load_faces(demo_data / "heldout", SIZE, 48)
    return backbone, faces[:32], faces[32:]


KIND_MIN_COSINE = {"fp32": 0.9999, "fp16": 0.999, "dynamic": 0.98, "int8": 0.98, "qat_int8": 0.98}


@pytest.mark.parametrize("kind", sorted(KIND_MIN_COSINE))
@pytest.mark.slow
def test_every_kind_converts_and_runs_in_litert(small, kind):
    backbone, calibration, faces = small
    # int8 converts the export form (as exporting.py does); qat_int8 the QAT model itself,
    # its ranges started on the calibration faces.
    prepare = {"int8": export_form, "qat_int8": lambda m: qat_model(m, calibration=calibration)}
    source = prepare.get(kind, lambda m: m)(backbone)
    data = convert(source, kind, calibration)
    out = run_tflite(data, faces)
    assert out.shape == (len(faces), 32)
    assert mean_cosine(out, backbone.predict(faces, verbose=0)) > KIND_MIN_COSINE[kind]
    interpreter = Interpreter(model_content=data)
    io_dtype = np.int8 if kind.endswith("int8") else np.float32
    assert interpreter.get_input_details()[0]["dtype"] == io_dtype
    assert interpreter.get_output_details()[0]["dtype"] == io_dtype


@pytest.mark.slow
def test_op_report_finds_what_xnnpack_leaves_to_the_builtin_kernels(small, tmp_path):
    backbone, calibration, _ = small
    plain = convert(backbone, "int8", calibration)       # int8 PRELU: not run by XNNPACK
    report = op_report(plain)
    prelus = [r for r in report if r["op"] == "PRELU"]
    assert prelus and all(r["dtype"] == "int8" and not r["delegated"] for r in prelus)
    assert all(r["delegated"] for r in report if r["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D"))
    path = tmp_path / "plain.tflite"
    write_bytes(path, plain)
    assert op_report(str(path)) == report
    assert reference_only_ops(path) == [f"{len(prelus)} x PRELU (int8)"]
    assert reference_only_ops(convert(backbone, "fp32")) == []


@pytest.mark.slow
def test_int8_islands_keeps_only_prelu_and_depthwise_float_all_on_xnnpack(small):
    """int8 pointwise convs, float PReLU and depthwise convs between them: int8 input and
    output, every op delegated, float ops only inside the islands, and close to float."""
    backbone, calibration, faces = small
    data = convert(export_form(backbone, float_prelu=True), "int8_islands", calibration)
    interpreter = Interpreter(model_content=data)
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    report = op_report(data)
    assert reference_only_ops(data) == []
    float_ops = {r["op"] for r in report if r["dtype"] == "float32"}
    assert float_ops == {*FLOAT_ISLAND_OPS, "QUANTIZE"}
    # Each island opens with a DEQUANTIZE of an int8 tensor; every other op reads int8.
    assert all(r["dtype"] == "int8" for r in report if r["op"] not in float_ops)
    assert {r["op"] for r in report if r["dtype"] == "int8"} >= {"CONV_2D", "DEQUANTIZE"}
    prelus = sum(isinstance(layer, keras.layers.PReLU) for layer in backbone.layers)
    assert sum(r["op"] == "PRELU" for r in report) == prelus > 0
    out = run_tflite(data, faces)
    assert out.shape == (len(faces), 32)
    assert mean_cosine(out, backbone.predict(faces, verbose=0)) > 0.98


def test_bad_kind_or_missing_calibration_is_one_clear_error(small):
    backbone, _, _ = small
    with pytest.raises(ConversionError, match="unknown TFLite kind 'int4'"):
        convert(backbone, "int4")
    with pytest.raises(ConversionError, match="needs calibration images"):
        convert(backbone, "int8", calibration=None)



def test_an_int8_file_with_a_float_op_is_refused():
    """qat_int8 cannot ask the converter for int8 builtins only: a layer without a learned
    range (here a Dense after the QAT graph of a small conv net) would ship as a float op;
    convert refuses it."""
    x = keras.Input((SIZE, SIZE, 3))
    qat = qat_model(keras.Model(x, keras.layers.Flatten()(keras.layers.Conv2D(4, 3, strides=4, name="conv")(x))))
    island = keras.Model(qat.input, keras.layers.Dense(8, name="float_island")(qat.output))
    with pytest.raises(ConversionError, match=r"qat_int8: the converter left float ops \(FULLY_CONNECTED \(float32\)\)"):
        convert(island, "qat_int8")

def test_write_bytes_replaces_whole_files_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "model.tflite"
    write_bytes(path, b"first")
    write_bytes(path, b"second")
    assert path.read_bytes() == b"second"
    with pytest.raises(TypeError):
        write_bytes(path, "not bytes")
    assert path.read_bytes() == b"second"
    assert os.listdir(path.parent) == ["model.tflite"]
