"""mfn_tf2/preprocess.py: each function eagerly on numpy, and inside tf.data where it runs there."""
import numpy as np
import pytest

from conftest import DEMO_DATA
from mfn_tf2.backend import tf
from mfn_tf2.images import read_rgb
from mfn_tf2.preprocess import augment, crop, model_input, normalise, resize, tf_resize

FACE = sorted((DEMO_DATA / "heldout").rglob("*.jpg"))[0]


def in_dataset(function, *elements):
    """``function`` mapped over a one-element tf.data dataset, the result as numpy."""
    ds = tf.data.Dataset.from_tensors(elements).map(function)
    return next(iter(ds)).numpy()


def test_crop_cuts_left_top_right_bottom():
    image = np.arange(10 * 8).reshape(10, 8, 1)
    part = crop(image, (2, 3, 6, 9))  # left, top, right, bottom
    assert part.shape == (6, 4, 1) and part[0, 0, 0] == image[3, 2, 0] and part[-1, -1, 0] == image[8, 5, 0]
    assert crop(image, None) is image and crop(image, []) is image


def test_resize_averages_when_shrinking_interpolates_when_enlarging():
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), np.uint8)
    small = resize(image, 2, 2)
    assert small.shape == (2, 2, 3) and small.dtype == np.float32
    blocks = image.reshape(2, 4, 2, 4, 3).astype(np.float64).mean(axis=(1, 3))  # 4x4 block means
    np.testing.assert_allclose(small, blocks, atol=1e-3)

    row = np.array([[0, 100]], np.uint8)[..., None].repeat(3, axis=2)
    assert resize(row, 1, 4)[0, :, 0].tolist() == [0.0, 25.0, 75.0, 100.0]  # linear, not nearest
    assert resize(np.zeros((5, 5, 3)), 7, 3).shape == (7, 3, 3)  # (height, width)


def test_resize_gives_the_same_for_uint8_and_float_pixels():
    face = read_rgb(FACE)
    np.testing.assert_array_equal(resize(face, 37, 37), resize(face.astype(np.float32), 37, 37))


def test_normalise_numpy_tensor_and_tf_data_agree():
    for pixels in (np.array([[0, 128, 255]], np.uint8), [[0.0, 128.0, 255.0]]):
        as_numpy = normalise(pixels)
        assert isinstance(as_numpy, np.ndarray) and as_numpy.dtype == np.float32
        np.testing.assert_allclose(as_numpy, [[-127.5 / 128, 0.5 / 128, 127.5 / 128]])
    as_tensor = normalise(tf.constant(np.array([[0, 128, 255]], np.uint8)))
    assert tf.is_tensor(as_tensor) and as_tensor.dtype == tf.float32
    np.testing.assert_allclose(as_tensor.numpy(), [[-127.5 / 128, 0.5 / 128, 127.5 / 128]])
    mapped = in_dataset(normalise, tf.constant([0, 255], tf.uint8))
    np.testing.assert_allclose(mapped, [-127.5 / 128, 127.5 / 128])
    np.testing.assert_allclose(normalise(np.array([10.0]), mean=0.0, std=10.0), [1.0])


def test_model_input_matches_each_input_kind():
    pixels = np.array([0, 127, 255], np.uint8).reshape(1, 1, 3, 1).repeat(3, axis=3)
    as_float = model_input(pixels, np.float32)
    np.testing.assert_allclose(as_float[0, 0, :, 0], [-127.5 / 128, -0.5 / 128, 127.5 / 128])
    # int8 with scale 1/128, zero point 0: normalised x -> 128 x rounded half up, clipped to [-128, 127].
    as_int8 = model_input(pixels, np.int8, (1 / 128, 0))
    assert as_int8.dtype == np.int8 and list(as_int8[0, 0, :, 0]) == [-127, 0, 127]
    # uint8 without quantization: the raw pixels.
    assert model_input(pixels, np.uint8).tolist() == pixels.tolist()


@pytest.mark.parametrize("pixel, code", [(127, 0), (128, 1), (0, -128), (255, 127)])
def test_model_input_rounds_half_up_and_clips(pixel, code):
    # (p - 127.5) / 128 at scale 1/128 is p - 127.5, exactly halfway for every pixel: 127 -> -0.5
    # rounds up to 0 (half away from zero would give -1), 128 -> 0.5 up to 1 (half to even: 0);
    # zero point -1 moves 0 -> -128.5 -> -128, 255 -> 126.5 -> 127.
    zero = -1 if pixel in (0, 255) else 0
    got = model_input(np.full((1, 1, 1, 3), pixel, np.uint8), np.int8, (1 / 128, zero))
    assert got.dtype == np.int8 and got.ravel().tolist() == [code] * 3
    assert model_input(np.full((1, 1, 1, 3), 300.0), np.int8, (1 / 128, 0)).ravel()[0] == 127  # clipped


def test_tf_resize_eagerly_and_in_tf_data():
    colour = np.full((40, 30, 3), (12, 200, 99), np.uint8)
    out = tf_resize(colour, 16)
    assert out.dtype == tf.uint8 and out.shape == (16, 16, 3)
    assert out.numpy().reshape(-1, 3).tolist() == [[12, 200, 99]] * 256
    assert tf_resize(np.full((4, 4, 3), 300.0), 8).numpy().max() == 255  # clipped, not wrapped
    # Antialiased: every 4th column white, shrunk 4x, averages to a quarter grey; plain bilinear
    # would sample only the black columns between them.
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::4] = 255
    grey = in_dataset(lambda image: tf_resize(image, 16), stripes)[:, 1:-1]  # borders see padding
    assert grey.dtype == np.uint8 and np.abs(grey.astype(int) - 64).max() <= 2
    face = read_rgb(FACE)
    np.testing.assert_array_equal(in_dataset(lambda image: tf_resize(image, 24), face),
                                  tf_resize(face, 24).numpy())


def seed_of(n: int):
    """The (2,) int64 seed the pipeline gives ``augment`` (a random number, the worker)."""
    return tf.constant([n, 0], tf.int64)


def test_augment_follows_seed_and_frequency():
    face = tf_resize(read_rgb(FACE), 32)
    plain = augment(face, [1, 2], 0.0, 32)
    assert plain.dtype == tf.float32 and np.array_equal(plain.numpy(), face.numpy().astype(np.float32))
    jittered = [augment(face, seed_of(seed), 1.0, 32).numpy() for seed in (1, 1, 2)]
    assert jittered[0].shape == (32, 32, 3) and 0.0 <= jittered[0].min() and jittered[0].max() <= 255.0
    assert np.array_equal(jittered[0], jittered[1]) and not np.array_equal(jittered[0], jittered[2])
    assert not np.array_equal(jittered[0], plain.numpy())
    mapped = in_dataset(lambda image, seed: augment(image, seed, 1.0, 32), face, seed_of(1))
    np.testing.assert_allclose(mapped, jittered[0], atol=1e-4)
    # About aug_freq of the images are augmented.
    changed = [not np.array_equal(augment(face, seed_of(seed), 0.5, 32).numpy(), plain.numpy()) for seed in range(40)]
    assert 8 <= sum(changed) <= 32
