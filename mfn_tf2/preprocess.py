"""Pixels to model input: the one place that resizes, crops, normalises and augments faces.

Two families, for the two places pixels are prepared:

- numpy, for embedding and calibration (one image at a time, OpenCV):
  ``crop`` -> ``resize`` (area when shrinking, linear when enlarging) ->
  ``model_input`` (normalise, then cast or quantize to the model's input type);
- TensorFlow, for the training pipeline (inside ``tf.data`` maps):
  ``tf_resize`` (antialiased bilinear) -> ``augment`` -> ``normalise``.

``normalise`` serves both: (x - 127.5) / 128 maps 0..255 to about -1..1, on a
numpy array (numpy float32 out) or a tf tensor (float32 tensor out). TensorFlow
is imported only by the tf functions, so embedding with a .tflite model does
not load it.

Example:
    >>> face = np.full((250, 250, 3), 255, np.uint8)
    >>> pixels = resize(crop(face, (60, 60, 190, 190)), 112, 112)
    >>> pixels.shape, round(float(normalise(pixels).max()), 4)
    ((112, 112, 3), 0.9961)
    >>> model_input(pixels[None], np.int8, (1 / 128, -1)).max()
    np.int8(127)
"""
from __future__ import annotations

import sys

import cv2
import numpy as np

from mfn_tf2.config import PIXEL_MEAN, PIXEL_STD

# Augmentation strength: brightness in pixel units, contrast factor, crop side share.
_BRIGHTNESS, _CONTRAST, _MIN_CROP = 32.0, (0.8, 1.2), 0.85


def crop(image, box):
    """``image`` (H, W, C) cut to ``box`` = (left, top, right, bottom) pixels; no box: unchanged.

    Example:
        >>> crop(np.zeros((250, 200, 3)), (10, 20, 110, 220)).shape
        (200, 100, 3)
    """
    if not box:
        return image
    left, top, right, bottom = box
    return image[top:bottom, left:right]


def resize(image, height: int, width: int) -> np.ndarray:
    """uint8 or float (H, W, C) -> float32 (height, width, C), OpenCV.

    Area interpolation when shrinking (averages every source pixel: no
    aliasing), linear when enlarging. Resized in float32, so uint8 and float
    pixels give the same result.

    Example:
        >>> resize(np.array([[0, 100]], np.uint8)[..., None].repeat(3, 2), 1, 4)[0, :, 0].tolist()
        [0.0, 25.0, 75.0, 100.0]
    """
    interpolation = cv2.INTER_AREA if image.shape[0] > height else cv2.INTER_LINEAR
    return cv2.resize(np.asarray(image, np.float32), (width, height), interpolation=interpolation)


def _is_tensor(x) -> bool:
    """A TensorFlow tensor (eager or in a graph)? Asked without importing TensorFlow:
    a program that has not imported it holds no tensors."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and tf.is_tensor(x)


def normalise(pixels, mean: float = PIXEL_MEAN, std: float = PIXEL_STD):
    """Pixels 0..255 (any shape, any dtype) -> float32 (pixels - mean) / std.

    Args:
        pixels: a numpy array (or list) or a tf tensor.
        mean, std: the kit's 127.5 and 128 unless a model says otherwise.

    Returns:
        The same kind as given: a numpy float32 array or a float32 tensor.

    Example:
        >>> normalise(np.array([0, 255], np.uint8)).tolist()
        [-0.99609375, 0.99609375]
    """
    if _is_tensor(pixels):
        from mfn_tf2.backend import tf  # lazy: keeps TensorFlow out of numpy callers (a tensor means it is loaded)
        return (tf.cast(pixels, tf.float32) - mean) / std
    return (np.asarray(pixels, np.float32) - mean) / std


def model_input(pixels: np.ndarray, dtype, quantization=None, mean: float = PIXEL_MEAN,
                std: float = PIXEL_STD) -> np.ndarray:
    """Pixels 0-255 (N, H, W, 3) already at the model's size -> the model's input tensor.

    Float inputs get (p - mean) / std; integer inputs with a quantization
    (scale, zero_point) get those normalised values quantized; integer inputs
    without one get the raw pixels.

    Example:
        >>> model_input(np.full((1, 1, 1, 3), 255.0), np.int8, (1 / 128, -1)).ravel().tolist()
        [127, 127, 127]
    """
    dtype = np.dtype(dtype)
    scale, zero = quantization if quantization and quantization[0] else (0.0, 0)
    if dtype.kind in "iu" and not scale:
        return np.round(pixels).astype(dtype)
    x = normalise(pixels, mean, std)
    if scale:
        info = np.iinfo(dtype)
        # Half up, as Java's Math.round: (p - 127.5) * 128 lands exactly on .5 for every pixel.
        x = np.clip(np.floor(x / scale + zero + 0.5), info.min, info.max)
    return np.ascontiguousarray(x.astype(dtype))


def tf_resize(image, size: int):
    """uint8 or float (H, W, 3) tensor, 0..255 -> uint8 (size, size, 3) tensor.

    Antialiased bilinear, so huge images do not alias; the aspect ratio is not
    kept (face crops are square).

    Example:
        >>> tf_resize(np.full((40, 30, 3), 300.0), 16).numpy()[0, 0].tolist()   # clipped
        [255, 255, 255]
    """
    from mfn_tf2.backend import tf  # lazy: keeps TensorFlow out of embedding with a .tflite model
    image = tf.image.resize(image, [size, size], antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def augment(image, seed, aug_freq: float, size: int):
    """A (size, size, 3) tensor 0..255 -> float32, augmented with probability ``aug_freq``.

    The augmentation: random left-right flip, brightness (+-32 levels),
    contrast (x0.8..1.2) and a square crop of 85-100 % of the side, resized
    back to ``size``; clipped to 0..255.

    Args:
        image: uint8 or float tensor (size, size, 3).
        seed: int (2,) tensor: the same seed gives the same output (tf.random
            stateless ops), so an epoch's augmentation follows the data seed.
        aug_freq: share of images augmented, 0..1.
        size: the image's side.

    Example:
        >>> out = augment(np.full((8, 8, 3), 9, np.uint8), [1, 2], 0.0, 8)
        >>> out.dtype.name, float(out.numpy().max())
        ('float32', 9.0)
    """
    from mfn_tf2.backend import tf  # lazy: keeps TensorFlow out of embedding with a .tflite model
    seeds = tf.random.experimental.stateless_split(seed, 6)
    image = tf.cast(image, tf.float32)

    def jitter():
        out = tf.image.stateless_random_flip_left_right(image, seeds[1])
        out = tf.image.stateless_random_brightness(out, _BRIGHTNESS, seeds[2])
        out = tf.image.stateless_random_contrast(out, *_CONTRAST, seeds[3])
        side = tf.random.stateless_uniform([], seeds[4], _MIN_CROP, 1.0)
        top_left = tf.random.stateless_uniform([2], seeds[5], 0.0, 1.0) * (1.0 - side)
        box = tf.concat([top_left, top_left + side], 0)[None]  # (1, 4) y0 x0 y1 x1
        out = tf.image.crop_and_resize(out[None], box, [0], [size, size])[0]
        return tf.clip_by_value(out, 0.0, 255.0)

    augmented = tf.random.stateless_uniform([], seeds[0]) < aug_freq
    return tf.cond(augmented, jitter, lambda: image)


__all__ = ["crop", "resize", "normalise", "model_input", "tf_resize", "augment"]
