"""The int8-fast export form, and QAT of that same graph (real TF, real LiteRT, real faces)."""
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from mfn_tf2.backend import keras
from mfn_tf2.config import ModelConfig
from mfn_tf2.export_form import export_form
from mfn_tf2.backbones import build_backbone
from mfn_tf2.quantize import activation_ranges, qat_model, quantize_scope
from mfn_tf2.tflite import convert, op_report
from test_tflite import load_faces, mean_cosine, random_batchnorm, run_tflite, spread_slopes

SIZE = 32


@pytest.fixture(scope="module")
def backbone():
    keras.utils.set_random_seed(1)
    model = build_backbone(ModelConfig(width=0.25, image_size=SIZE, embedding_dim=32))
    random_batchnorm(model)
    return model


@pytest.mark.parametrize("slopes", [(-0.7, -0.1), (0.0, 0.25, 1.0), (1.5, 4.0), (-0.5, 0.3, 1.7, 3.0)])
def test_export_form_computes_the_prelu_backbone(backbone, slopes):
    spread_slopes(backbone, slopes)
    fast = export_form(backbone)
    assert not any(isinstance(layer, (keras.layers.PReLU, keras.layers.BatchNormalization))
                   for layer in fast.layers)
    assert fast.input_shape == backbone.input_shape and fast.output_shape == backbone.output_shape
    x = np.random.default_rng(2).normal(0, 1.5, (6, SIZE, SIZE, 3)).astype(np.float32)
    for images in (x, -x, np.abs(x)):
        want = backbone(images, training=False).numpy()
        got = fast(images).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())


def test_float_prelu_form_keeps_the_slopes_and_computes_the_prelu_backbone(backbone):
    spread_slopes(backbone, (-0.5, 0.3, 1.7, 3.0))
    islands = export_form(backbone, float_prelu=True)
    kinds = {type(layer).__name__ for layer in islands.layers}
    assert "PReLU" in kinds and not kinds & {"BatchNormalization", "ChannelScale", "LeakyReLU"}
    slopes = {layer.name: layer.get_weights()[0] for layer in backbone.layers if isinstance(layer, keras.layers.PReLU)}
    kept = {layer.name: layer.get_weights()[0] for layer in islands.layers if isinstance(layer, keras.layers.PReLU)}
    assert kept.keys() == slopes.keys()
    for name, alpha in slopes.items():
        np.testing.assert_array_equal(kept[name], alpha)
    x = np.random.default_rng(2).normal(0, 1.5, (6, SIZE, SIZE, 3)).astype(np.float32)
    want = backbone(x, training=False).numpy()
    np.testing.assert_allclose(islands(x).numpy(), want, atol=1e-4 * np.abs(want).max())


@pytest.mark.slow
def test_int8_export_form_runs_entirely_in_xnnpack_and_keeps_the_embedding(backbone, demo_data):
    spread_slopes(backbone, (-0.3, 0.1, 0.25, 0.7, 1.4))
    faces = load_faces(demo_data / "heldout", SIZE, 48)
    data = convert(export_form(backbone), "int8", faces[:32])
    report = op_report(data)
    assert [r for r in report if not r["delegated"]] == []
    assert all(r["dtype"] == "int8" for r in report if r["op"] in ("CONV_2D", "MUL", "ADD"))
    assert {"MUL", "ADD"} <= {r["op"] for r in report} and "PRELU" not in {r["op"] for r in report}
    assert mean_cosine(run_tflite(data, faces[32:]), backbone.predict(faces[32:], verbose=0)) > 0.98


@pytest.fixture(scope="module")
def shared_backbone():
    """The same small network with one PReLU slope per layer (LEAKY_RELU when exported)."""
    keras.utils.set_random_seed(1)
    model = build_backbone(ModelConfig(width=0.25, image_size=SIZE, embedding_dim=32, prelu="shared"))
    random_batchnorm(model)
    return model


@pytest.mark.slow
def test_shared_slopes_export_as_leaky_relu_that_xnnpack_runs_in_int8(shared_backbone, demo_data):
    spread_slopes(shared_backbone, (0.15,))
    fast = export_form(shared_backbone)
    x = np.random.default_rng(2).normal(0, 1.5, (4, SIZE, SIZE, 3)).astype(np.float32)
    want = shared_backbone(x, training=False).numpy()
    np.testing.assert_allclose(fast(x).numpy(), want, atol=1e-4 * np.abs(want).max())
    faces = load_faces(demo_data / "heldout", SIZE, 48)
    report = op_report(convert(fast, "int8", faces[:32]))
    assert {r["op"] for r in report} == {"CONV_2D", "DEPTHWISE_CONV_2D", "LEAKY_RELU", "ADD", "RESHAPE"}
    assert all(r["delegated"] for r in report)
    assert all(r["dtype"] == "int8" for r in report if r["op"] == "LEAKY_RELU")


# QAT layer -> the TFLite op it becomes (the input quantizer and ReLUs fused into MUL become none).
SHIPPED_OP = {"Conv2D": "CONV_2D", "DepthwiseConv2D": "DEPTHWISE_CONV_2D", "ChannelScale": "MUL",
              "Add": "ADD", "LeakyReLU": "LEAKY_RELU", "Flatten": "RESHAPE"}


def qat_ops(qat):
    """[(TFLite op name, QAT layer name)] in the QAT graph's order."""
    return [(SHIPPED_OP[type(layer.layer).__name__], layer.name) for layer in qat.layers if hasattr(layer, "layer")]


@pytest.fixture(scope="module", params=["channel", "shared"])
def tuned(request, backbone, shared_backbone, demo_data):
    """A QAT model fine-tuned a little (ranges learned), and its qat_int8 file."""
    float_model = backbone if request.param == "channel" else shared_backbone
    spread_slopes(float_model, (0.1, 0.25, 0.5, 1.6) if request.param == "channel" else (0.2,))
    faces = load_faces(demo_data / "heldout", SIZE, 48)
    qat = qat_model(float_model, calibration=faces[:32])
    started = activation_ranges(qat)
    before = qat.get_layer("quant_embedding_conv").get_weights()[0].copy()
    qat.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    target = np.random.default_rng(3).normal(0, 1, (32, 32)).astype(np.float32)
    history = qat.fit(faces[:32], target, batch_size=8, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert not np.allclose(qat.get_layer("quant_embedding_conv").get_weights()[0], before)
    assert activation_ranges(qat) != started                         # the ranges trained too
    return float_model, qat, convert(qat, "qat_int8"), faces[32:]


@pytest.mark.slow
def test_qat_trains_the_shipped_graph_op_for_op(tuned):
    float_model, qat, data, faces = tuned
    assert qat.input_shape == float_model.input_shape and qat.output_shape == float_model.output_shape
    assert qat.input.name.startswith("image")
    shipped = op_report(data)
    assert [op for op, _ in qat_ops(qat)] == [r["op"] for r in shipped]
    assert all(r["delegated"] and r["dtype"] == "int8" for r in shipped)
    assert mean_cosine(run_tflite(data, faces), qat.predict(faces, verbose=0)) > 0.99


@pytest.mark.slow
def test_qat_int8_file_carries_the_ranges_qat_learned(tuned):
    _, qat, data, _ = tuned
    ranges = activation_ranges(qat)
    interpreter = Interpreter(model_content=data)
    tensors = {t["index"]: t["quantization"] for t in interpreter.get_tensor_details()}
    ops = [op for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]

    def expected(low, high):  # tfmot's fake quant: 256 levels over [low, high], zero exactly on the grid
        scale = (high - low) / 255
        return scale, int(round(-128 - low / scale))
    checked = 0
    for (op_name, layer), op in zip(qat_ops(qat), ops):
        if layer in ranges:  # every layer but Flatten (a reshape keeps its input's range)
            scale, zero = tensors[op["outputs"][0]]
            want_scale, want_zero = expected(*ranges[layer])
            assert scale == pytest.approx(want_scale, rel=1e-4), layer
            assert abs(zero - want_zero) <= 1, layer
            checked += 1
    assert checked == len(ranges) - 1  # all but the input's, checked next
    input_scale, _ = interpreter.get_input_details()[0]["quantization"]
    assert input_scale == pytest.approx(expected(*ranges[qat.layers[1].name])[0], rel=1e-4)


@pytest.mark.slow
def test_qat_ranges_start_where_the_float_activations_are(backbone, demo_data):
    faces = load_faces(demo_data / "heldout", SIZE, 32)
    fresh = activation_ranges(qat_model(backbone))
    assert fresh["quant_stem_conv"] == (-6.0, 6.0)                    # tfmot's guess
    started = activation_ranges(qat_model(backbone, calibration=faces))
    fast = export_form(backbone)
    stem = fast.get_layer("stem_conv")
    out = keras.Model(fast.input, stem.output)(faces).numpy()
    low, high = started["quant_stem_conv"]
    assert low == pytest.approx(min(out.min(), 0), rel=0.3) and high == pytest.approx(out.max(), rel=0.3)
    assert started[next(iter(started))] == pytest.approx((faces.min(), faces.max()), rel=0.05)  # the input


@pytest.mark.slow
def test_qat_model_saves_and_reloads(tuned, tmp_path):
    _, qat, _, faces = tuned
    path = str(tmp_path / "qat.h5")
    qat.save(path)
    with quantize_scope():
        loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(faces, verbose=0), qat.predict(faces, verbose=0), atol=1e-5)


@pytest.mark.slow
def test_per_tensor_qat_and_ptq_write_one_weight_scale_per_conv(backbone, demo_data):
    faces = load_faces(demo_data / "heldout", SIZE, 48)
    for data in (convert(qat_model(backbone, per_tensor=True, calibration=faces), "qat_int8", per_tensor=True),
                 convert(export_form(backbone), "int8", faces[:16], per_tensor=True)):
        interpreter = Interpreter(model_content=data)
        tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
        convs = [op for op in interpreter._get_ops_details() if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
        assert convs
        for op in convs:
            weights = tensors[op["inputs"][1]]
            assert weights["dtype"] == np.int8
            assert len(weights["quantization_parameters"]["scales"]) == 1, op["op_name"]
    per_channel = Interpreter(model_content=convert(export_form(backbone), "int8", faces[:16]))
    first_conv = next(op for op in per_channel._get_ops_details() if op["op_name"] == "CONV_2D")
    scales = {t["index"]: t for t in per_channel.get_tensor_details()}[first_conv["inputs"][1]]
    assert len(scales["quantization_parameters"]["scales"]) > 1


def test_export_form_absorbs_mirrored_slopes_into_a_grouped_conv():
    # mbf's second stem conv is grouped (2 channels a group): slopes > 1 before it
    # leave a per-channel scale that the grouped kernel must take per group.
    keras.utils.set_random_seed(4)
    mbf = build_backbone(ModelConfig(arch="mbf", width=0.25, image_size=SIZE, embedding_dim=16))
    random_batchnorm(mbf)
    spread_slopes(mbf, (1.7, -0.4, 3.0, 0.2))
    x = np.random.default_rng(5).normal(0, 1.5, (4, SIZE, SIZE, 3)).astype(np.float32)
    want = mbf(x, training=False).numpy()
    np.testing.assert_allclose(export_form(mbf)(x).numpy(), want, atol=1e-4 * np.abs(want).max())
