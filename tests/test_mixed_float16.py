"""The float16 path every GPU user takes (--mixed_precision float16, or auto on a GPU), run on the CPU.

A tiny recognizer under mixed_float16 trains on real faces through the loss-scaling optimizer, and its
checkpoint and SavedModel are written and read back."""
import numpy as np
import pytest

from conftest import make_face_tree
from mfn_tf2.backend import keras, tf
from mfn_tf2.checkpoints import restore, save_backbone, training_checkpoint
from mfn_tf2.config import DataConfig, ModelConfig, TrainConfig
from mfn_tf2.models import open_keras
from mfn_tf2.pipeline import open_training_data
from mfn_tf2.recognizer import build_recognizer, make_optimizer, set_precision

TINY = ModelConfig(width=0.25, image_size=32, embedding_dim=16)
# Dynamic loss scaling starts at 2**15: with ArcFace logits (s = 64, loss ~50) the first steps' float16
# gradients overflow, those steps are skipped and the scale halves each time (to 256 here in ~6 steps).
STEPS = 12


@pytest.fixture
def float16_policy():
    """``--mixed_precision float16`` for one test; the process goes back to float32 after it."""
    try:
        yield set_precision("float16")
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _recognizer(num_classes: int):
    optimizer = make_optimizer(TrainConfig(epochs=1, learning_rate=0.01), steps_per_epoch=STEPS)
    return build_recognizer(TINY, num_classes, optimizer=optimizer), optimizer


@pytest.mark.slow
def test_float16_training_step_with_loss_scaling(tmp_path, float16_policy):
    assert float16_policy == "mixed_float16"
    faces = make_face_tree(tmp_path / "faces")  # 6 people x 5 real faces
    data = open_training_data(DataConfig(train_directory=str(faces), batch_size=8), TINY.image_size)
    recognizer, optimizer = _recognizer(data.num_classes)
    assert isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer) and optimizer.dynamic
    convs = [layer for layer in recognizer.backbone.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(layer.compute_dtype == "float16" for layer in convs)

    images, labels = next(iter(data.train_dataset()))
    embeddings = recognizer(images)
    assert embeddings.dtype == tf.float32  # the backbone's output layer is float32 under any policy
    logits = recognizer.head((embeddings, labels), step=optimizer.iterations)
    assert logits.dtype == tf.float32 and logits.shape == (8, data.num_classes)

    before = [v.numpy().copy() for v in recognizer.trainable_variables]
    history = recognizer.fit(data.train_dataset().repeat(), steps_per_epoch=STEPS, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert int(optimizer.iterations.numpy()) == STEPS
    scale = float(optimizer.loss_scale.numpy())
    assert 1 <= scale < 2**15  # overflowing steps were caught and skipped, the scale came down
    moved = [not np.array_equal(b, v.numpy()) for b, v in zip(before, recognizer.trainable_variables)]
    assert all(np.isfinite(v.numpy()).all() for v in recognizer.trainable_variables)
    assert moved[-1] and sum(moved) > len(moved) // 2, f"{sum(moved)} of {len(moved)} variables moved"

    # The checkpoint of a run: recognizer, optimizer (its loss scale too) and epoch, read back into a new one.
    saved = training_checkpoint(recognizer, optimizer, tf.Variable(1, dtype=tf.int64)).save(
        str(tmp_path / "ckpt" / "ckpt"))
    again, again_optimizer = _recognizer(data.num_classes)
    epoch = tf.Variable(0, dtype=tf.int64)
    restore(training_checkpoint(again, again_optimizer, epoch), saved)
    assert int(epoch.numpy()) == 1 and int(again_optimizer.iterations.numpy()) == STEPS
    assert float(again_optimizer.loss_scale.numpy()) == scale
    for a, b in zip(recognizer.trainable_variables, again.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    # The SavedModel best/ and embedding_model/ are: it gives the trained backbone's embeddings.
    save_backbone(recognizer.backbone, str(tmp_path / "embedding_model"))
    loaded = open_keras(str(tmp_path / "embedding_model"))
    want, got = recognizer.backbone(images).numpy(), loaded(images).numpy()
    assert got.dtype == np.float32 and np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
    served = tf.saved_model.load(str(tmp_path / "embedding_model")).signatures["serving_default"]
    np.testing.assert_allclose(next(iter(served(images).values())).numpy(), want, rtol=1e-3, atol=1e-3)
