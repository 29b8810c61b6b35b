"""The MobileFaceNet backbone: published cost, shapes on real faces, round trips, CLI."""
import numpy as np
import pytest
from PIL import Image

from conftest import run_cli, run_main
from mfn_tf2.backend import keras
from mfn_tf2.config import MODEL_PRESETS, PIXEL_MEAN, PIXEL_STD, ModelConfig, replace
from mfn_tf2.backbones import build_backbone, complexity

SMALL = ModelConfig(width=0.25, image_size=32)


def real_faces(demo_data, size, count=2):
    """``count`` bundled LFW faces resized to size x size, normalised like training."""
    files = sorted((demo_data / "train").glob("*/*.jpg"))[:count]
    pixels = [np.asarray(Image.open(f).convert("RGB").resize((size, size)), np.float32)
              for f in files]
    return (np.stack(pixels) - PIXEL_MEAN) / PIXEL_STD


def test_paper_model_matches_published_cost():
    # Chen et al. 2018, Table/Sec. 4: 0.99 M parameters, 221 M MAdds (128-d, 112x112).
    cost = complexity(build_backbone(MODEL_PRESETS["paper"]))
    assert cost["trainable"] == pytest.approx(0.99e6, rel=0.03)
    assert cost["macs"] == pytest.approx(221e6, rel=0.03)
    # Keras' count adds the BatchNorm moving statistics on top.
    assert cost["params"] > cost["trainable"]


def test_mbf_cost_matches_insightface():
    # insightface get_mbf at 112x112 is ~437 M multiply-adds; this build counts 437.5 M,
    # twice the paper model (doubled widths, grouped stem conv).
    model = build_backbone(MODEL_PRESETS["mbf"])
    cost = complexity(model)
    assert cost["macs"] == pytest.approx(437e6, rel=0.03)
    stem = model.get_layer("stem_group_conv")
    assert (stem.filters, stem.groups) == (128, 64)
    assert model.output_shape == (None, 512)


@pytest.mark.parametrize("arch,expansion,size", [
    ("mobilefacenet", "6", 32), ("mobilefacenet", "paper", 64), ("mbf", "6", 64)])
def test_output_shapes_on_real_faces(demo_data, arch, expansion, size):
    cfg = replace(SMALL, arch=arch, expansion_ratio=expansion, image_size=size, embedding_dim=64)
    model = build_backbone(cfg)
    assert model.name == arch
    assert model.input.name.startswith("image")
    out = model(real_faces(demo_data, size), training=False).numpy()
    assert out.shape == (2, 64) and out.dtype == np.float32
    assert np.isfinite(out).all()
    # Raw embedding: the backbone does not L2-normalise.
    assert not np.allclose(np.linalg.norm(out, axis=1), 1.0)
    # The global depthwise conv spans the whole image_size / 16 feature map.
    assert model.get_layer("gdc_conv").kernel_size == (size // 16, size // 16)


def test_layer_names_are_stable_and_descriptive():
    names = [layer.name for layer in build_backbone(SMALL).layers]
    assert names == [layer.name for layer in build_backbone(SMALL).layers]
    for name in ("stem_conv", "stem_dw_conv", "block3_2_expand_conv", "block3_2_expand_prelu",
                 "block3_2_dw_conv", "block3_2_project_bn", "block3_2_add", "sep_prelu",
                 "gdc_conv", "embedding_conv", "embedding"):
        assert name in names
    # Stride-2 and channel-changing bottlenecks have no residual add.
    assert "block1_1_add" not in names and "block2_1_add" not in names


def test_width_and_expansion_set_channels():
    model = build_backbone(replace(SMALL, expansion_ratio="paper"))
    assert model.get_layer("stem_conv").filters == 16              # 64 x 0.25
    assert model.get_layer("block2_1_expand_conv").filters == 64   # 16 x t=4
    assert model.get_layer("block3_1_expand_conv").filters == 64   # 32 x t=2
    assert model.get_layer("sep_conv").filters == 128              # 512 x 0.25
    prelu = model.get_layer("stem_prelu")
    np.testing.assert_allclose(prelu.get_weights()[0], 0.25)
    assert prelu.get_weights()[0].shape == (1, 1, 16)


def test_config_round_trip_gives_identical_outputs(demo_data):
    cfg = replace(SMALL, image_size=64, expansion_ratio="paper", embedding_dim=32)
    model = build_backbone(cfg)
    # Non-trivial BatchNorm statistics, so a wrong layer mapping would show.
    rng = np.random.default_rng(0)
    model.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) ** 2
                       for w in model.get_weights()])
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    faces = real_faces(demo_data, 64, count=3)
    np.testing.assert_allclose(clone(faces, training=False).numpy(),
                               model(faces, training=False).numpy(), rtol=1e-5, atol=1e-5)
    assert clone.name == "mobilefacenet"


def test_cli_prints_the_cost_of_a_preset():
    done = run_cli("model", "--preset", "paper", timeout=300)
    assert done.returncode == 0, done.stderr
    assert "embedding_dim 128" in done.stdout and "expansion_ratio paper" in done.stdout
    assert "1.00 M trainable" in done.stdout
    assert "221.0 M per image" in done.stdout


def test_cli_flags_override_the_preset_and_report_bad_sizes():
    """Rules of the flags' parsing: in-process (the process itself: the test above)."""
    done = run_main("model", "--preset", "paper", "--width", "0.25", "--image_size", "32")
    assert done.returncode == 0, done.stderr
    assert "width 0.25" in done.stdout and "expansion_ratio paper" in done.stdout
    bad = run_main("model", "--image_size", "40")
    assert bad.returncode != 0
    assert bad.returncode == 2 and "--image_size 40: MobileFaceNet needs a multiple of 16" in bad.stderr


@pytest.fixture
def mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_float32_embedding_under_mixed_bfloat16(demo_data, mixed_bfloat16):
    model = build_backbone(SMALL)
    assert model.get_layer("block1_1_expand_conv").compute_dtype == "bfloat16"
    # Depthwise units stay in float32 (TF's bfloat16 depthwise gradients are slow).
    for part in ("conv", "bn", "prelu"):
        assert model.get_layer(f"block1_1_dw_{part}").compute_dtype == "float32"
    out = model(real_faces(demo_data, 32), training=False)
    assert out.dtype == np.float32 and np.isfinite(out.numpy()).all()
