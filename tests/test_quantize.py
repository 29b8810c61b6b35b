"""QAT of the PReLU backbone and the int8-fast export form (real TF, real LiteRT, real faces)."""
import numpy as np
import pytest

from mfn_tf2.backend import keras
from mfn_tf2.config import ModelConfig
from mfn_tf2.model import build_backbone
from mfn_tf2.quantize import export_form, qat_model, quantize_scope
from mfn_tf2.tflite import convert, op_report
from test_tflite import load_faces, mean_cosine, run_tflite, spread_slopes

SIZE = 32


def random_batchnorm(model: keras.Model, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics, so that folding them is really tested."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape),
                               rng.normal(0, 0.2, mean.shape), rng.uniform(0.5, 2.0, var.shape)])


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


def test_int8_export_form_runs_entirely_in_xnnpack_and_keeps_the_embedding(backbone, demo_data):
    spread_slopes(backbone, (-0.3, 0.1, 0.25, 0.7, 1.4))
    faces = load_faces(demo_data / "heldout", SIZE, 48)
    data = convert(export_form(backbone), "int8", faces[:32])
    report = op_report(data)
    assert [r for r in report if not r["delegated"]] == []
    assert all(r["dtype"] == "int8" for r in report if r["op"] in ("CONV_2D", "MUL", "ADD"))
    assert {"MUL", "ADD"} <= {r["op"] for r in report} and "PRELU" not in {r["op"] for r in report}
    assert mean_cosine(run_tflite(data, faces[32:]), backbone.predict(faces[32:], verbose=0)) > 0.98


def test_qat_trains_converts_to_int8_and_reloads(backbone, demo_data, tmp_path):
    spread_slopes(backbone, (0.1, 0.25, 0.5))
    qat = qat_model(backbone)
    assert qat.input_shape == backbone.input_shape and qat.output_shape == backbone.output_shape
    assert qat.input.name.startswith("image")
    prelus = [layer for layer in qat.layers if getattr(layer, "layer", None).__class__ is keras.layers.PReLU]
    assert len(prelus) == sum(isinstance(layer, keras.layers.PReLU) for layer in backbone.layers)
    assert any("alpha_min" in w.name for w in prelus[0].weights)

    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (32, SIZE, SIZE, 3)).astype(np.float32)
    target = rng.normal(0, 1, (32, 32)).astype(np.float32)
    before = qat.get_layer("quant_stem_conv").get_weights()[0].copy()
    qat.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    history = qat.fit(x, target, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert not np.allclose(qat.get_layer("quant_stem_conv").get_weights()[0], before)

    faces = load_faces(demo_data / "heldout", SIZE, 48)
    tuned_float = export_form(qat)          # the QAT model's trained float weights
    out = run_tflite(convert(qat, "qat_int8", faces[:32]), faces[32:])
    assert np.isfinite(out).all()
    assert mean_cosine(out, tuned_float.predict(faces[32:], verbose=0)) > 0.98

    path = str(tmp_path / "qat.h5")
    qat.save(path)
    with quantize_scope():
        loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(faces[32:], verbose=0), qat.predict(faces[32:], verbose=0),
                               atol=1e-5)


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
