"""Reading one face image from disk as 8-bit RGB, whatever its file mode.

Face folders collected by hand mix every kind of file: grayscale JPEGs (LFW),
RGBA and palette PNGs from screenshots, 16-bit PNGs from camera pipelines,
CMYK JPEGs from print workflows. ``read_rgb`` turns all of them into the one
array the models take, and turns every broken file into one error line that
names it, so a bad image never surfaces as a cryptic decoder trace mid-run.

Example:
    >>> img = read_rgb("data/lfw_demo/heldout/Aaron_Tippin/Aaron_Tippin_0001.jpg")
    >>> img.shape, img.dtype
    ((112, 112, 3), dtype('uint8'))
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

# The file types the data pipeline and the pair readers look for (lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

# 16-bit grayscale PNGs open in one of these modes; 65535 / 257 = 255 maps the
# full 16-bit range onto the full 8-bit range.
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_SIXTEEN_TO_EIGHT = 257.0


class ImageError(ValueError):
    """A file that cannot be decoded; the message names it and says why."""


def _to_rgb(img: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a loaded PIL image of any mode."""
    if img.mode in _SIXTEEN_BIT_MODES:
        gray = np.asarray(img, dtype=np.float64) / _SIXTEEN_TO_EIGHT
        gray = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    # convert() handles L, LA, 1, P (with or without transparency), RGBA
    # (alpha dropped, not blended), CMYK (Adobe-inverted files are already
    # un-inverted by the JPEG decoder) and YCbCr.
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def read_rgb(path) -> np.ndarray:
    """Decodes a JPEG/PNG/BMP file into an RGB array.

    EXIF orientation is not applied, as ``tf.io.decode_image`` does not apply
    it either: training and evaluation see the same pixels.

    Args:
        path: the image file (str or Path).

    Returns:
        uint8 array (H, W, 3), RGB. Grayscale is replicated over the three
        channels, alpha dropped, 16-bit scaled to 8 bit, CMYK converted.

    Raises:
        ImageError: "<path>: cannot read image (<reason>)" for a missing,
            empty, truncated or non-image file.

    Example:
        >>> face = read_rgb("data/lfw_demo/train/Alejandro_Toledo/Alejandro_Toledo_0001.jpg")
        >>> bool((face[..., 0] == face[..., 2]).all())  # LFW is grayscale
        True
    """
    # PIL's default, forced here because a library that set it True would
    # make truncated files decode silently with a grey bottom.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise ImageError(f"{path}: cannot read image (empty file)")
    try:
        with Image.open(path) as img:
            img.load()
            return _to_rgb(img)
    except FileNotFoundError:
        raise ImageError(f"{path}: cannot read image (no such file)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: cannot read image (not a JPEG, PNG or BMP image)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"{path}: cannot read image ({err})") from None


__all__ = ["IMAGE_EXTENSIONS", "ImageError", "read_rgb"]
