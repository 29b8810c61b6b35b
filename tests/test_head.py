"""The ArcFace head: logits vs NumPy, gradients at cos = +-1, margin, mixed precision."""
import math

import numpy as np
import pytest

from mfn_tf2.backend import keras, tf
from mfn_tf2.head import ArcFace

DIM, CLASSES = 8, 5


def reference_logits(emb, kernel, labels, scale, margin):
    """ArcFace written out with angles (arccos), independent of the layer's formula."""
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    w = kernel / np.linalg.norm(kernel, axis=0, keepdims=True)
    cos = np.clip(x @ w, -1.0, 1.0)
    out = cos.copy()
    for i, y in enumerate(labels):
        theta = np.arccos(cos[i, y])
        out[i, y] = (np.cos(theta + margin) if theta + margin <= math.pi
                     else cos[i, y] - margin * np.sin(margin))
    return scale * out


def make_head(seed=0, scale=64.0, margin=0.5):
    head = ArcFace(CLASSES, scale=scale, margin=margin)
    head.build((tf.TensorShape([None, DIM]), tf.TensorShape([None])))
    kernel = np.random.default_rng(seed).normal(size=(DIM, CLASSES)).astype(np.float32)
    head.kernel.assign(kernel)
    return head, kernel


def near_opposite_batch(kernel, rng, n=16):
    """Random embeddings; every other one close to the negative of its class weight."""
    labels = rng.integers(0, CLASSES, n)
    emb = rng.normal(size=(n, DIM)).astype(np.float32)
    emb[::2] = -kernel[:, labels[::2]].T + 0.05 * emb[::2]
    return emb, labels


def test_logits_match_numpy_reference_including_theta_plus_m_past_pi():
    head, kernel = make_head(margin=0.5)
    emb, labels = near_opposite_batch(kernel, np.random.default_rng(1))
    got = head((tf.constant(emb), tf.constant(labels, tf.int32))).numpy()
    want = reference_logits(emb, kernel, labels, 64.0, 0.5)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    # The batch really exercises both branches.
    target_cos = want[np.arange(len(labels)), labels]
    assert (target_cos < 64.0 * math.cos(math.pi - 0.5)).sum() >= 4
    assert (target_cos > 64.0 * math.cos(math.pi - 0.5)).sum() >= 4


def test_int64_labels_and_cosine_without_margin():
    head, kernel = make_head(scale=30.0, margin=0.3)
    emb, labels = near_opposite_batch(kernel, np.random.default_rng(2), n=6)
    got = head((tf.constant(emb), tf.constant(labels, tf.int64))).numpy()
    np.testing.assert_allclose(got, reference_logits(emb, kernel, labels, 30.0, 0.3),
                               rtol=1e-4, atol=1e-4)
    cos = head.cosine(tf.constant(emb)).numpy()
    np.testing.assert_allclose(cos, reference_logits(emb, kernel, labels, 1.0, 0.0), atol=1e-5)
    # Only the labelled column carries the margin.
    others = np.ones_like(cos, bool)
    others[np.arange(len(labels)), labels] = False
    np.testing.assert_allclose(got[others], 30.0 * cos[others], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("exact", [True, False])
def test_gradients_stay_finite_at_cos_plus_minus_one(sign, exact):
    head, kernel = make_head()
    if exact:  # axis-aligned vectors: cos(theta_y) is exactly +-1 in float32
        kernel = 2.0 * np.eye(DIM, CLASSES, dtype=np.float32)
        head.kernel.assign(kernel)
    labels = np.array([0, 1, 2, 3])
    emb = tf.constant(sign * 3.0 * kernel[:, labels].T)
    with tf.GradientTape() as tape:
        tape.watch(emb)
        # A unit gradient on every logit: a saturated softmax would hide a NaN.
        loss = tf.reduce_sum(head((emb, tf.constant(labels))))
    grad_emb, grad_kernel = tape.gradient(loss, [emb, head.kernel])
    np.testing.assert_allclose(head.cosine(emb).numpy()[np.arange(4), labels], sign, atol=1e-6)
    assert np.isfinite(grad_emb.numpy()).all() and np.isfinite(grad_kernel.numpy()).all()
    assert np.abs(grad_kernel.numpy()).sum() > 0


def test_margin_variable_is_the_margin_in_force():
    head, kernel = make_head(margin=0.5)
    assert [w.name for w in head.trainable_weights] == [head.kernel.name]
    assert [w.name for w in head.non_trainable_weights] == [head.margin.name]
    emb, labels = near_opposite_batch(kernel, np.random.default_rng(3), n=8)
    inputs = (tf.constant(emb), tf.constant(labels))
    # Without a step (evaluation, user code) the variable is used as it is.
    head.margin.assign(0.0)
    np.testing.assert_allclose(head(inputs).numpy(), 64.0 * head.cosine(emb).numpy(), atol=1e-4)
    head.margin.assign(0.2)
    np.testing.assert_allclose(head(inputs).numpy(),
                               reference_logits(emb, kernel, labels, 64.0, 0.2),
                               rtol=1e-4, atol=1e-3)
    # A training call (a step given) sets the variable to the configured margin (no warm-up) and uses it.
    np.testing.assert_allclose(head(inputs, step=tf.constant(3)).numpy(),
                               reference_logits(emb, kernel, labels, 64.0, 0.5), rtol=1e-4, atol=1e-3)
    assert float(head.margin.numpy()) == pytest.approx(0.5)
    # The configured margin, not an assigned value, is what a rebuilt head starts from.
    head.margin.assign(0.1)
    assert ArcFace.from_config(head.get_config()).margin.numpy() == pytest.approx(0.5)


def test_margin_warm_up_ramps_the_variable():
    head = ArcFace(CLASSES, scale=64.0, margin=0.4, warmup_steps=10)
    emb, labels = near_opposite_batch(make_head()[1], np.random.default_rng(7), n=4)
    head((tf.constant(emb), tf.constant(labels)))
    kernel = head.kernel.numpy()
    for step, expected in ((0, 0.0), (5, 0.2), (10, 0.4), (50, 0.4)):
        logits = head((tf.constant(emb), tf.constant(labels)), step=tf.constant(step))
        assert float(head.margin.numpy()) == pytest.approx(expected)
        np.testing.assert_allclose(logits.numpy(), reference_logits(emb, kernel, labels, 64.0, expected),
                                   rtol=1e-4, atol=1e-3)
    assert ArcFace.from_config(head.get_config()).warmup_steps == 10


def test_get_config_round_trip():
    head, kernel = make_head(scale=32.0, margin=0.4)
    clone = ArcFace.from_config(head.get_config())
    assert (clone.num_classes, clone.scale, clone.name) == (CLASSES, 32.0, head.name)
    emb, labels = near_opposite_batch(kernel, np.random.default_rng(4), n=6)
    clone((tf.constant(emb), tf.constant(labels)))
    clone.set_weights(head.get_weights())
    np.testing.assert_allclose(clone((emb, labels)).numpy(), head((emb, labels)).numpy())


@pytest.fixture
def mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_float32_logits_under_mixed_bfloat16(mixed_bfloat16):
    images = keras.Input((DIM,), name="features")
    labels = keras.Input((), dtype="int32", name="labels")
    embedding = keras.layers.Dense(DIM, name="embed")(images)  # bfloat16 activations
    head = ArcFace(CLASSES, name="arcface")
    model = keras.Model([images, labels], head((embedding, labels)))
    assert embedding.dtype == tf.bfloat16
    assert head.kernel.dtype == tf.float32 and head.margin.dtype == tf.float32
    emb, y = near_opposite_batch(head.kernel.numpy(), np.random.default_rng(5), n=4)
    logits = model([emb, y])
    assert logits.dtype == tf.float32
    assert np.isfinite(logits.numpy()).all()
    assert head.cosine(tf.cast(emb, tf.bfloat16)).dtype == tf.float32


def test_runs_under_mirrored_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        head, kernel = make_head()
        head.margin.assign(0.25)
    emb, labels = near_opposite_batch(kernel, np.random.default_rng(6), n=4)
    out = strategy.run(tf.function(lambda e, y: head((e, y))),
                       args=(tf.constant(emb), tf.constant(labels)))
    np.testing.assert_allclose(strategy.experimental_local_results(out)[0].numpy(),
                               reference_logits(emb, kernel, labels, 64.0, 0.25),
                               rtol=1e-4, atol=1e-3)
    # A training call writes the margin variable from inside the replica.
    out = strategy.run(tf.function(lambda e, y: head((e, y), step=tf.constant(1))),
                       args=(tf.constant(emb), tf.constant(labels)))
    np.testing.assert_allclose(strategy.experimental_local_results(out)[0].numpy(),
                               reference_logits(emb, kernel, labels, 64.0, 0.5),
                               rtol=1e-4, atol=1e-3)
    assert float(head.margin.numpy()) == pytest.approx(0.5)
