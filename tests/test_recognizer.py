"""Recognizer pieces: the one builder, margin warm-up, learning-rate schedule, optimizer choice, precision policy.

Bad optimizer / schedule / precision names are refused by TrainConfig (tests/test_config.py)."""
import subprocess
import sys

import numpy as np
import pytest

from mfn_tf2.backend import keras
from mfn_tf2.config import ModelConfig, TrainConfig, replace
from mfn_tf2.backbones import build_backbone
from mfn_tf2.recognizer import Recognizer, WarmupDecay, build_recognizer, make_optimizer, set_precision

TINY = ModelConfig(width=0.25, image_size=32, embedding_dim=16, loss_scale=32.0, loss_margin=0.4)


@pytest.fixture(scope="module")
def recognizer():
    return build_recognizer(TINY, 5, optimizer=make_optimizer(TrainConfig(epochs=2), steps_per_epoch=10),
                            margin_warmup_steps=10)


def test_build_recognizer_takes_the_model_config(recognizer):
    assert isinstance(recognizer, Recognizer) and recognizer.optimizer is not None
    assert recognizer.backbone.input_shape == (None, 32, 32, 3) and recognizer.backbone.output_shape == (None, 16)
    head = recognizer.head
    assert head.built and tuple(head.kernel.shape) == (16, 5)
    assert (head.scale, head.target_margin, head.warmup_steps) == (32.0, 0.4, 10)
    # A given backbone (QAT's fake-quantized model) is trained instead of a fresh one.
    backbone = build_backbone(TINY)
    assert build_recognizer(TINY, 3, backbone=backbone).backbone is backbone


def test_margin_warms_up_linearly_then_holds(recognizer):
    """The head's margin variable is the margin in force: every step sets it from the warm-up."""
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-1, 1, (5, 32, 32, 3)).astype(np.float32), np.arange(5)
    for step, expected in ((0, 0.0), (5, 0.2), (10, 0.4), (50, 0.4)):
        recognizer.optimizer.iterations.assign(step)
        assert float(recognizer.head.margin_at(recognizer.optimizer.iterations)) == pytest.approx(expected)
        recognizer.test_on_batch(x, y)
        assert float(recognizer.head.margin.numpy()) == pytest.approx(expected)


@pytest.mark.slow
def test_train_step_lowers_loss_on_fixed_batch(recognizer):
    recognizer.optimizer.iterations.assign(10)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (10, 32, 32, 3)).astype(np.float32)
    y = np.arange(10) % 5
    first = recognizer.train_on_batch(x, y, return_dict=True)["loss"]
    for _ in range(15):
        last = recognizer.train_on_batch(x, y, return_dict=True)["loss"]
    assert np.isfinite(last) and last < first


@pytest.mark.parametrize("kind", ["cosine", "polynomial", "constant"])
def test_schedule_warms_up_then_decays(kind):
    sched = WarmupDecay(0.1, warmup_steps=10, total_steps=100, kind=kind)
    lr = [float(sched(s)) for s in (0, 5, 10, 55, 100)]
    assert lr[0] == pytest.approx(0.001) and lr[0] < lr[1] < lr[2] == pytest.approx(0.1)
    assert (lr[4] == pytest.approx(0.1)) if kind == "constant" else (lr[2] > lr[3] > lr[4] == pytest.approx(0.0))


def test_optimizers():
    assert isinstance(make_optimizer(replace(TrainConfig(), optimizer="adamw"), 10), keras.optimizers.AdamW)
    assert isinstance(make_optimizer(TrainConfig(), 10), keras.optimizers.SGD)
    # Bad names never reach here: TrainConfig refuses them.
    with pytest.raises(ValueError, match="--optimizer"):
        make_optimizer(replace(TrainConfig(), optimizer="lion"), 10)
    with pytest.raises(ValueError, match="--lr_schedule"):
        replace(TrainConfig(), lr_schedule="step")


def test_precision_policies():
    try:
        assert set_precision("bfloat16") == "mixed_bfloat16"
        assert set_precision("off") == "float32"
        assert set_precision("auto") in ("float32", "mixed_bfloat16")
        with pytest.raises(ValueError, match="--mixed_precision"):
            replace(TrainConfig(), mixed_precision="int4")
    finally:
        keras.mixed_precision.set_global_policy("float32")


# set_precision("bf32") in a fresh process, and after a float32 convolution ran (oneDNN reads the
# math mode once). Whatever the kit's probe answers, a convolution of its own (3x3, other shapes and
# values than the probe's) measured here against NumPy in float64 must agree with the answer.
BF32_PROBE = """
import os, sys
import numpy as np
from mfn_tf2.backend import tf
from mfn_tf2.recognizer import FPMATH_VARIABLE, set_precision
if sys.argv[1] == "late":
    tf.nn.conv2d(tf.ones((1, 4, 4, 8)), tf.ones((1, 1, 8, 8)), 1, "VALID")
answer = set_precision("bf32")
rng = np.random.default_rng(7)
x, k = rng.standard_normal((4, 12, 12, 24)), rng.standard_normal((3, 3, 24, 40))
got = tf.nn.conv2d(tf.constant(x, tf.float32), tf.constant(k, tf.float32), 1, "VALID").numpy()
windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))  # (4, 10, 10, 24, 3, 3)
want = np.einsum("nhwcij,ijco->nhwo", windows, k)
print(os.environ.get(FPMATH_VARIABLE), answer, float(np.abs(got - want).max() / np.abs(want).max()))
"""


@pytest.mark.parametrize("when", ["first", "late"])
def test_bf32_reports_what_the_convolutions_do(when):
    out = subprocess.run([sys.executable, "-c", BF32_PROBE, when], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    variable, answer, error = out.stdout.split()[-3:]
    error = float(error)
    assert answer in ("bf32", "float32"), out.stdout
    if answer == "bf32":
        # bfloat16 products (8-bit mantissa): about 1e-3 of the largest output.
        assert 1e-4 < error < 3e-2 and variable == "BF16", (variable, answer, error)
    else:
        # float32 products: about 1e-7; the variable is gone, so a child process cannot inherit it.
        assert error < 1e-5 and variable == "None", (variable, answer, error)
