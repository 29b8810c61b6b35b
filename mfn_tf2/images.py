"""Reading one face image from disk as 8-bit RGB, whatever its file mode.

Face folders collected by hand mix every kind of file: grayscale JPEGs (LFW),
RGBA and palette PNGs from screenshots, 16-bit PNGs from camera pipelines,
CMYK JPEGs from print workflows, PGM (Extended Yale B, AT&T/ORL), TIFF, WebP,
and stray non-image files (``.info``, ``WS_FTP.LOG``). A file is an image by
its content, not its name: ``image_format`` reads its first bytes,
``split_images`` sorts a listing into images and skipped files. Every folder
of the kit is listed by ``list_folder``, under one rule: names starting with
``.`` (``.DS_Store``, ``._x.jpg``, ``.ipynb_checkpoints/``) are not data and
are left out at every level, without a count.
``read_rgb`` turns every image into the one array the models take, and every
broken file into one error line that names it, so a bad image never surfaces
as a cryptic decoder trace mid-run.

Example:
    >>> img = read_rgb("data/lfw_demo/heldout/Aaron_Tippin/Aaron_Tippin_0001.jpg")
    >>> img.shape, img.dtype
    ((64, 64, 3), dtype('uint8'))
"""
from __future__ import annotations

import logging
import os

import cv2
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

log = logging.getLogger(__name__)

# The names an LFW-style pairs file may resolve ``name_0001`` to (lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".pbm", ".pnm", ".tif", ".tiff",
                    ".webp", ".gif")
# The Pillow formats of face data (PPM covers PGM/PPM/PBM); restricting Image.open to
# them keeps a text file from passing for a headerless format such as TGA. Files of
# other formats are images when OpenCV has a reader for their signature.
PILLOW_FORMATS = ("JPEG", "PNG", "BMP", "PPM", "TIFF", "WEBP", "GIF")
NOT_AN_IMAGE = "not an image"
_WARN_PATHS = 5
# The bytes a complete JPEG / PNG file ends with (EOI marker; IEND chunk and its CRC).
IMAGE_ENDS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}

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


def image_format(path) -> tuple[str | None, str]:
    """What a file is, by its first bytes.

    Args:
        path: the file (str or Path).

    Returns:
        (Pillow format name, "") such as ("JPEG", ""); ("OPENCV", "") for a
        format only OpenCV reads; (None, "not an image") or (None, why the
        header is broken).

    Example:
        >>> image_format("data/lfw_demo/train/Alejandro_Toledo/Alejandro_Toledo_0001.jpg")
        ('JPEG', '')
        >>> image_format("README.md")
        (None, 'not an image')
    """
    try:
        with Image.open(path, formats=PILLOW_FORMATS) as img:
            return img.format, ""
    except UnidentifiedImageError:
        return ("OPENCV", "") if cv2.haveImageReader(os.fspath(path)) else (None, NOT_AN_IMAGE)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return None, f"broken image ({err})"


def split_images(paths) -> tuple[list[str], list[tuple[str, str]]]:
    """Sorts files into images and the others, by content (``image_format``), order kept.

    Args:
        paths: file paths.

    Returns:
        (image paths, [(path, reason) of the other files]).

    Example:
        >>> split_images(["data/lfw_demo/pairs_heldout.txt"])
        ([], [('data/lfw_demo/pairs_heldout.txt', 'not an image')])
    """
    images, skipped = [], []
    for path in paths:
        kind, why = image_format(path)
        if kind:
            images.append(path)
        else:
            skipped.append((path, why))
    return images, skipped


def list_folder(folder) -> tuple[list[str], list[str]]:
    """The kit's one folder listing: the entries of ``folder``, hidden ones left out.

    Hidden entries (names starting with ``.``) are left out; so are entries
    that are neither a file nor a folder (sockets, pipes), except broken
    links, listed as files so that reading them names them.

    Args:
        folder: the folder (str or Path).

    Returns:
        (file paths, sub-folder paths), each sorted by name.

    Raises:
        OSError: a missing or unreadable folder (PermissionError, ...).

    Example:
        >>> files, folders = list_folder("data/lfw_demo")
        >>> [os.path.basename(f) for f in folders]
        ['heldout', 'train']
    """
    files, folders = [], []
    with os.scandir(folder) as entries:
        for e in sorted(entries, key=lambda e: e.name):
            if e.name.startswith("."):
                continue
            if e.is_dir():
                folders.append(e.path)
            elif e.is_file() or e.is_symlink():
                files.append(e.path)
    return files, folders


def folder_images(folder) -> tuple[list[str], list[tuple[str, str]]]:
    """Every file under ``folder``, recursively, sorted into images and skipped files by content.

    Args:
        folder: a folder of photos, or of sub-folders of them.

    Returns:
        (image paths, [(path, reason) of the other files]), sorted by path.

    Example:
        >>> paths, skipped = folder_images("data/lfw_demo/heldout/Al_Gore")
        >>> len(paths) > 1, skipped
        (True, [])
    """
    files, todo = [], [folder]
    while todo:
        found, sub_folders = list_folder(todo.pop())
        files += found
        todo += sub_folders
    return split_images(sorted(files))


def warn_skipped(skipped: list[tuple[str, str]]) -> None:
    """One warning that counts the files left out and names the first few.

    Args:
        skipped: [(path, reason)] as ``split_images`` gives them; nothing is
            logged when it is empty.

    Example:
        >>> warn_skipped([])
    """
    if skipped:
        shown = "; ".join(f"{p} ({why})" for p, why in skipped[:_WARN_PATHS])
        log.warning("left out %d unusable file(s), e.g. %s", len(skipped), shown)


def _opencv_rgb(path) -> np.ndarray:
    """A file Pillow does not know, decoded by OpenCV (as 8-bit RGB)."""
    pixels = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR) if cv2.haveImageReader(os.fspath(path)) else None
    if pixels is None:
        raise ImageError(f"{path}: cannot read image ({NOT_AN_IMAGE})")
    return np.ascontiguousarray(pixels[..., ::-1])


def read_rgb(path) -> np.ndarray:
    """Decodes an image file (JPEG, PNG, BMP, PGM/PPM/PBM, TIFF, WebP, GIF's first
    frame, or any format OpenCV reads) into an RGB array.

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
        with Image.open(path, formats=PILLOW_FORMATS) as img:
            img.load()
            return _to_rgb(img)
    except FileNotFoundError:
        raise ImageError(f"{path}: cannot read image (no such file)") from None
    except UnidentifiedImageError:
        return _opencv_rgb(path)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"{path}: cannot read image ({err})") from None


def encode_png(rgb: np.ndarray) -> bytes:
    """The kit's one PNG encoder: an 8-bit image as lossless PNG bytes.

    Args:
        rgb: (H, W, 3) uint8 RGB, or (H, W) uint8 grayscale.

    Returns:
        The PNG file's bytes (write them with ``fileio.write_bytes``).

    Example:
        >>> import tempfile, os
        >>> face = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
        >>> path = os.path.join(tempfile.mkdtemp(), "face.png")
        >>> _ = open(path, "wb").write(encode_png(face))
        >>> bool((read_rgb(path) == face).all())
        True
    """
    pixels = np.ascontiguousarray(rgb[..., ::-1] if rgb.ndim == 3 else rgb)  # OpenCV writes BGR
    return cv2.imencode(".png", pixels)[1].tobytes()


__all__ = ["IMAGE_ENDS", "IMAGE_EXTENSIONS", "ImageError", "encode_png", "image_format", "read_rgb", "split_images",
           "list_folder", "folder_images", "warn_skipped"]
