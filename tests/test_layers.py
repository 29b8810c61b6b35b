"""The fast training layers: same outputs and gradients as the Keras layers they replace."""
import numpy as np
import pytest

from mfn_tf2 import layers
from mfn_tf2.backend import keras, tf
from mfn_tf2.config import PRELU_SLOPES, ModelConfig
from mfn_tf2.backbones import build_backbone
from mfn_tf2.export_form import export_form
from mfn_tf2.tflite import convert
from test_tflite import load_faces, mean_cosine, run_tflite


def outputs_and_gradients(layer, x, training):
    """(y, dL/dx, dL/dweights) of L = sum(y * r) for a fixed random r."""
    x = tf.constant(x)
    upstream = tf.constant(np.random.default_rng(1).normal(0, 1, layer.compute_output_shape(x.shape)),
                           tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(y * upstream)
    grads = tape.gradient(loss, [x] + layer.trainable_weights)
    return [y.numpy()] + [g.numpy() for g in grads]


def assert_same(fast, slow):
    for got, want in zip(fast, slow, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("slopes", sorted(PRELU_SLOPES))
def test_prelu_matches_keras_prelu_in_training(slopes):
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (4, 6, 6, 8)).astype(np.float32)
    shared = list(PRELU_SLOPES[slopes])
    alpha = rng.uniform(-0.5, 1.5, (1, 1, 1 if slopes == "shared" else 8)).astype(np.float32)
    fast, slow = layers.PReLU(shared_axes=shared), keras.layers.PReLU(shared_axes=shared)
    for layer in (fast, slow):
        layer.build(x.shape)
        layer.set_weights([alpha])
    assert_same(outputs_and_gradients(fast, x, True), outputs_and_gradients(slow, x, True))
    # Inference runs Keras' own graph; the config is Keras' and rebuilds a Keras PReLU.
    np.testing.assert_array_equal(fast(x, training=False).numpy(), slow(x).numpy())
    config = keras.layers.serialize(fast)
    assert config["class_name"] == "PReLU" and config["config"]["shared_axes"] == shared
    assert type(keras.layers.deserialize(config)) is keras.layers.PReLU


@pytest.mark.parametrize("shared", [None, [1], [2], [1, 3], [1, 2, 3]])
def test_prelu_slope_gradient_for_any_shared_axes(shared):
    # The slopes' gradient is a matmul when the kept axes trail, else reduce_sum: both as Keras.
    x = np.random.default_rng(4).normal(0, 1, (3, 5, 4, 6)).astype(np.float32)
    fast, slow = layers.PReLU(shared_axes=shared), keras.layers.PReLU(shared_axes=shared)
    slow.build(x.shape)
    fast.build(x.shape)
    alpha = np.random.default_rng(5).uniform(-0.5, 1.5, slow.alpha.shape).astype(np.float32)
    for layer in (fast, slow):
        layer.set_weights([alpha])
    assert_same(outputs_and_gradients(fast, x, True), outputs_and_gradients(slow, x, True))


@pytest.mark.parametrize("per_group,strides,padding", [(2, 1, "same"), (2, 2, "same"), (4, 2, "valid")])
def test_grouped_conv_trains_as_depthwise_with_keras_results(per_group, strides, padding):
    x = np.random.default_rng(2).normal(0, 1, (3, 9, 9, 16)).astype(np.float32)
    settings = dict(filters=16, kernel_size=3, strides=strides, padding=padding, groups=16 // per_group)
    fast, slow = layers.Conv2D(**settings), keras.layers.Conv2D(**settings)
    fast.build(x.shape)
    slow.build(x.shape)
    assert fast.kernel.shape == (3, 3, per_group, 16)
    rng = np.random.default_rng(3)
    weights = [rng.normal(0, 0.3, w.shape).astype(np.float32) for w in slow.get_weights()]
    fast.set_weights(weights)
    slow.set_weights(weights)
    assert_same(outputs_and_gradients(fast, x, True), outputs_and_gradients(slow, x, True))
    assert keras.layers.serialize(fast)["class_name"] == "Conv2D"


@pytest.mark.slow
def test_mbf_trains_and_still_converts_to_int8(demo_data):
    # The grouped stem conv trains through the depthwise form; its weights keep the
    # grouped layout, so the int8 export form and the converter take it as before.
    mbf = build_backbone(ModelConfig(arch="mbf", width=0.25, image_size=32, embedding_dim=16))
    faces = load_faces(demo_data / "heldout", 32, 40)
    before = mbf.get_layer("stem_group_conv").get_weights()[0].copy()
    mbf.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    mbf.fit(faces[:32], np.random.default_rng(0).normal(0, 1, (32, 16)), batch_size=8, verbose=0)
    after = mbf.get_layer("stem_group_conv").get_weights()[0]
    assert after.shape == before.shape == (3, 3, 2, 32) and not np.allclose(after, before)
    fast = export_form(mbf)
    out = run_tflite(convert(fast, "int8", faces[:32]), faces[32:])
    assert mean_cosine(out, mbf.predict(faces[32:], verbose=0)) > 0.98
