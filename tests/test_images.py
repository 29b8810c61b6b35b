"""read_rgb on real faces saved in every file mode and format, and on broken files;
images told from other files by content."""
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from mfn_tf2.images import (IMAGE_EXTENSIONS, ImageError, folder_images, image_format, list_folder, read_rgb,
                           split_images)


@pytest.fixture(scope="module")
def face(demo_data) -> np.ndarray:
    """A real LFW face as (64, 64, 3) uint8 RGB, with a colour tint so the
    channels differ (the bundled faces are grayscale)."""
    path = sorted((demo_data / "heldout").glob("*/*.jpg"))[0]
    gray = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    tint = np.stack([gray, gray * 0.8, gray * 0.6], axis=-1)
    return tint.astype(np.uint8)


def test_bundled_jpeg_is_gray_replicated(demo_data):
    path = sorted((demo_data / "heldout").glob("*/*.jpg"))[0]
    img = read_rgb(path)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
    assert np.array_equal(img[..., 0], np.asarray(Image.open(path)))


@pytest.mark.parametrize("ext", [".png", ".bmp"])
def test_lossless_rgb_round_trip(tmp_path, face, ext):
    path = tmp_path / f"face{ext}"
    Image.fromarray(face).save(path)
    assert np.array_equal(read_rgb(path), face)


def test_rgba_drops_alpha(tmp_path, face):
    alpha = np.zeros(face.shape[:2], np.uint8)  # fully transparent: pixels must survive
    Image.fromarray(np.dstack([face, alpha]), "RGBA").save(tmp_path / "a.png")
    assert np.array_equal(read_rgb(tmp_path / "a.png"), face)


def test_grayscale_png(tmp_path, face):
    gray = face[..., 0]
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    assert np.array_equal(read_rgb(tmp_path / "g.png"), np.dstack([gray] * 3))


def test_palette_png(tmp_path, face):
    pal = Image.fromarray(face).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    pal.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    assert np.array_equal(read_rgb(tmp_path / "p.png"), np.asarray(pal.convert("RGB")))


def test_sixteen_bit_gray_png_is_scaled(tmp_path, face):
    wide = face[..., 0].astype(np.uint16) * 257  # 8-bit values spread over 0..65535
    Image.fromarray(wide).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    img = read_rgb(tmp_path / "g16.png")
    assert np.array_equal(img[..., 1], face[..., 0])


def test_sixteen_bit_colour_png(tmp_path, face):
    wide_bgr = face[..., ::-1].astype(np.uint16) * 257
    assert cv2.imwrite(str(tmp_path / "c16.png"), wide_bgr)
    assert np.abs(read_rgb(tmp_path / "c16.png").astype(int) - face).max() <= 1


def test_cmyk_jpeg_is_converted(tmp_path, face):
    Image.fromarray(face).convert("CMYK").save(tmp_path / "c.jpg", quality=98)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    img = read_rgb(tmp_path / "c.jpg")
    assert img.shape == face.shape
    assert np.abs(img.astype(float) - face).mean() < 4.0


def test_extensions_are_lower_case_with_dot():
    assert all(e.startswith(".") and e == e.lower() for e in IMAGE_EXTENSIONS)
    assert {".jpg", ".png", ".bmp", ".pgm", ".ppm", ".pbm", ".tif", ".tiff", ".webp", ".gif"} <= set(IMAGE_EXTENSIONS)


# Lossless formats give the face back exactly; the others within their loss.
FORMATS = {"pgm": ("L", 0), "ppm": ("RGB", 0), "pbm": ("1", 0), "tiff": ("RGB", 0), "webp": ("RGB", 12),
           "gif": ("P", 40)}


@pytest.mark.parametrize("ext", FORMATS)
def test_every_face_data_format_decodes(tmp_path, face, ext):
    mode, tolerance = FORMATS[ext]
    image = Image.fromarray(face).convert(mode)
    path = tmp_path / f"face.{ext}"
    image.save(path)
    expected = np.asarray(image.convert("RGB"), np.int32)
    assert image_format(path)[0] is not None
    assert np.abs(read_rgb(path).astype(np.int32) - expected).mean() <= tolerance


def test_gif_gives_its_first_frame(tmp_path, face):
    frames = [Image.fromarray(face), Image.fromarray(255 - face)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    img = read_rgb(tmp_path / "anim.gif").astype(float)
    assert np.abs(img - face).mean() < np.abs(img - (255 - face)).mean()


def test_an_opencv_only_format_decodes(tmp_path, face):
    # Sun raster: OpenCV reads it, Pillow's list of face formats does not hold it.
    assert cv2.imwrite(str(tmp_path / "face.ras"), face[..., ::-1])
    assert image_format(tmp_path / "face.ras") == ("OPENCV", "")
    assert np.array_equal(read_rgb(tmp_path / "face.ras"), face)


def test_images_by_content_not_by_name(tmp_path, face):
    Image.fromarray(face).save(tmp_path / "yaleB01_P00A+000E+00.pgm")
    Image.fromarray(face).save(tmp_path / "no_extension", format="PNG")
    (tmp_path / "yaleB01_P00.info").write_text("yaleB01_P00A+000E+00.pgm\n")
    (tmp_path / "WS_FTP.LOG").write_text("2003.01.01 12:00 B ftp.example.org yaleB01\n")
    (tmp_path / "DEADJOE").write_text("*** Modified files in JOE when it aborted\n")
    (tmp_path / "fake.jpg").write_text("P5 but not a PGM\n")
    images, skipped = split_images(sorted(str(p) for p in tmp_path.iterdir()))
    assert sorted(map(os.path.basename, images)) == ["no_extension", "yaleB01_P00A+000E+00.pgm"]
    assert sorted(os.path.basename(p) for p, _ in skipped) == ["DEADJOE", "WS_FTP.LOG", "fake.jpg",
                                                               "yaleB01_P00.info"]


def test_hidden_entries_are_left_out_at_every_level(tmp_path, face):
    """One rule for every listing: names starting with '.' are not data, files or folders."""
    for folder in (tmp_path, tmp_path / "b", tmp_path / ".thumbnails", tmp_path / "b" / ".cache"):
        folder.mkdir(exist_ok=True)
        Image.fromarray(face).save(folder / "face.png")
        Image.fromarray(face).save(folder / ".face.png")
    (tmp_path / "notes.txt").write_text("not a face\n")
    files, folders = list_folder(tmp_path)
    assert [os.path.basename(p) for p in files] == ["face.png", "notes.txt"]
    assert folders == [str(tmp_path / "b")]
    images, skipped = folder_images(tmp_path)
    assert images == [str(tmp_path / "b" / "face.png"), str(tmp_path / "face.png")]
    assert skipped == [(str(tmp_path / "notes.txt"), "not an image")]


def _absent(tmp_path, demo_data):
    return tmp_path / "absent.jpg"


def _empty(tmp_path, demo_data):
    (tmp_path / "empty.jpg").write_bytes(b"")
    return tmp_path / "empty.jpg"


def _text(tmp_path, demo_data):
    (tmp_path / "notes.jpg").write_text("not a face\n")
    return tmp_path / "notes.jpg"


def _truncated(tmp_path, demo_data):
    src = sorted((demo_data / "heldout").glob("*/*.jpg"))[0].read_bytes()
    (tmp_path / "cut.jpg").write_bytes(src[: len(src) // 2])
    return tmp_path / "cut.jpg"


@pytest.mark.parametrize("make, reason", [
    (_absent, "no such file"),
    (_empty, "empty file"),
    (_text, "not an image"),
    (_truncated, "truncated"),
])
def test_broken_files_name_path_and_reason(tmp_path, demo_data, make, reason):
    path = make(tmp_path, demo_data)
    with pytest.raises(ImageError) as err:
        read_rgb(path)
    message = str(err.value)
    assert message.startswith(f"{path}: cannot read image (")
    assert reason in message and "\n" not in message
    assert isinstance(err.value, ValueError)
