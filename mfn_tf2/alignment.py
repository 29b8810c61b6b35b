"""5-point face alignment: the similarity warp onto the ArcFace template.

Every model the kit trains expects faces laid out the same way: a face
detector's five landmarks (left eye, right eye, nose tip, left and right mouth
corners, as (x, y) pixels of the image; "left" as seen in the image) are
mapped onto fixed template points by the similarity transform (rotation,
uniform scale, translation) that fits them best in least squares (Umeyama
1991), and the image is warped with it (bilinear, black outside). The
templates are insightface's: ArcFace's 112x112 and the 112x96 one of
SphereFace/CosFace (the same points, 8 px to the left); and "lfw_a", the
layout of the bundled LFW faces, which models trained on them expect. A model
of another input size gets the template scaled to it, so the warp lands
directly at the model's size.

    # a folder of photos + a detector's landmarks -> aligned 112x112 faces (same sub-folders)
    python -m mfn_tf2.align photos/ landmarks.csv aligned/ --template 112x112

Landmarks files: CSV rows ``path,x1,y1,x2,y2,x3,y3,x4,y4,x5,y5`` (a header
row is allowed; paths relative to the image folder), or JSON
``{"path": [[x1, y1], ..., [x5, y5]], ...}``.

Example:
    >>> points = TEMPLATES["112x112"][0] * 2 + 10        # a face twice as big, shifted
    >>> (np.round(warp_matrix(points), 6) + 0.0).tolist()
    [[0.5, 0.0, -5.0], [0.0, 0.5, -5.0]]
"""
from __future__ import annotations

import csv
import json
import os

import cv2
import numpy as np

from mfn_tf2.fileio import write_bytes
from mfn_tf2.images import ImageError, encode_png, read_rgb

# insightface's ArcFace template: (x, y) of the 5 points in a 112x112 face.
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)
# The layout of the bundled faces (data/lfw_demo: LFW-a, the central 112x112 of its 144x144 crop) as the
# kit's detector (MTCNN) sees it: the mean landmarks of 686 of its training images, in 112x112 pixels.
# Models trained on those faces expect it (face ~1.25x larger than ArcFace's, eyes 8 px higher).
LFW_A_112 = np.array([[34.35, 43.86], [78.57, 42.93], [56.40, 69.30], [37.94, 92.25], [76.35, 91.66]], np.float64)
# name -> (points, (height, width)); 112x96 is the same face 8 px narrower on each side.
TEMPLATES = {"112x112": (ARCFACE_112, (112, 112)),
             "112x96": (ARCFACE_112 - [8.0, 0.0], (112, 96)),
             "lfw_a": (LFW_A_112, (112, 112))}


class AlignError(ValueError):
    """Landmarks that cannot be used; the message names the file, line or image."""


def similarity_transform(src, dst) -> np.ndarray:
    """The (2, 3) similarity matrix M that maps ``src`` points onto ``dst`` in least squares.

    Umeyama's closed form: rotation from the SVD of the points' covariance
    (no reflection), scale from the singular values, translation from the means.

    Args:
        src, dst: (K, 2) points (x, y), K >= 2.

    Returns:
        float64 (2, 3): dst ~ M @ [x, y, 1].
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mean_s, mean_d = src.mean(0), dst.mean(0)
    s, d = src - mean_s, dst - mean_d
    u, sigma, vt = np.linalg.svd(d.T @ s / len(src))
    sign = np.array([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rotation = u @ np.diag(sign) @ vt
    scale = (sigma * sign).sum() / s.var(0).sum()
    return np.hstack([scale * rotation, (mean_d - scale * rotation @ mean_s)[:, None]])


def template_points(template: str = "112x112", size: tuple[int, int] | None = None):
    """(points (5, 2), (height, width)) of a template, scaled to ``size`` (height, width) if given."""
    points, shape = TEMPLATES[template]
    if size is None or tuple(size) == shape:
        return points, shape
    return points * [size[1] / shape[1], size[0] / shape[0]], tuple(size)


def template_for(size: tuple[int, int]) -> str:
    """The template whose aspect matches a model input (height, width)."""
    return "112x96" if size[0] * 96 == size[1] * 112 else "112x112"


def _check_landmarks(landmarks) -> np.ndarray:
    points = np.asarray(landmarks, np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise AlignError(f"landmarks have shape {points.shape}: expected 5 finite (x, y) points "
                         "(left eye, right eye, nose, left and right mouth corners)")
    return points


def warp_matrix(landmarks, template: str = "112x112", size: tuple[int, int] | None = None) -> np.ndarray:
    """(2, 3) float64 matrix taking image pixels to the aligned face (see ``similarity_transform``)."""
    return similarity_transform(_check_landmarks(landmarks), template_points(template, size)[0])


def align_face(image: np.ndarray, landmarks, template: str = "112x112",
               size: tuple[int, int] | None = None) -> np.ndarray:
    """Warps ``image`` (H, W, 3) so its landmarks land on the template.

    Args:
        image: the photo, any size; uint8 or float.
        landmarks: (5, 2) points (x, y) in ``image``.
        template: "112x112" (ArcFace) or "112x96".
        size: (height, width) to scale the template to (default: its own).

    Returns:
        (height, width, 3) of the image's dtype; bilinear, black outside the photo.
    """
    matrix = warp_matrix(landmarks, template, size)
    height, width = template_points(template, size)[1]
    return cv2.warpAffine(np.asarray(image), matrix, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def align_faces(images, size: tuple[int, int], landmarks, template: str | None = None) -> np.ndarray:
    """Photos + (N, 5, 2) landmarks -> (N, height, width, 3) faces on ``template`` (None: ``template_for(size)``)
    scaled to a model's input ``size``, warped directly at that size."""
    template = template or template_for(size)
    return np.stack([align_face(im, p, template, size) for im, p in zip(images, landmarks)])


def _row_points(source: str, values: list[str]) -> np.ndarray:
    try:
        return _check_landmarks(np.array([float(v) for v in values]).reshape(5, 2))
    except (ValueError, AlignError):
        raise AlignError(f"{source}: expected 'path,x1,y1,...,x5,y5' (10 numbers after the path), "
                         f"got {','.join(values)[:60]!r}") from None


def read_landmarks(path: str) -> dict[str, np.ndarray]:
    """{image path as written: (5, 2) points} of a CSV or JSON landmarks file (see module doc).

    Raises:
        AlignError: "<file>:<line>: ..." for a row that is not a path and 10 numbers.
    """
    if not os.path.isfile(path):
        raise AlignError(f"{path}: landmarks file not found")
    if path.lower().endswith(".json"):
        try:
            with open(path) as f:
                entries = json.load(f)
            return {name: _check_landmarks(points) for name, points in entries.items()}
        except (ValueError, AttributeError, AlignError) as err:
            raise AlignError(f"{path}: expected {{\"image path\": [[x1, y1], ..., [x5, y5]]}} ({err})") from None
    found = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        for no, row in enumerate(csv.reader(f), 1):
            if not row or (no == 1 and not _is_number(row[-1])):
                continue  # blank line, header
            found[row[0].strip()] = _row_points(f"{path}:{no}", row[1:])
    return found


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def write_face(path: str, rgb: np.ndarray) -> None:
    """Writes an aligned face as PNG (lossless: the exact warp), creating folders."""
    write_bytes(path, encode_png(rgb))


def outside(points: np.ndarray, shape) -> str:
    """Why (5, 2) landmarks do not lie in an image of ``shape`` (H, W, ...), or "" when they do.

    Example:
        >>> outside(TEMPLATES["112x112"][0] + 100, (120, 160, 3))
        'landmark (138.3, 151.7) outside the 160x120 image'
    """
    height, width = shape[:2]
    for x, y in np.asarray(points, np.float64):
        if not (0 <= x <= width and 0 <= y <= height):
            return f"landmark ({x:.1f}, {y:.1f}) outside the {width}x{height} image"
    return ""


def align_folder(images_dir: str, landmarks_file: str, out_dir: str, template: str = "112x112") -> dict:
    """Aligns every image named in ``landmarks_file`` into ``out_dir`` (same relative paths, PNG).

    Returns:
        {"written": n, "skipped": [(path, reason)]}: unreadable images and landmarks
        outside their image are skipped.
    """
    landmarks, skipped, written = read_landmarks(landmarks_file), [], 0
    for name, points in landmarks.items():
        try:
            image = read_rgb(os.path.join(images_dir, name))
        except ImageError as err:
            skipped.append((name, str(err)))
            continue
        if outside(points, image.shape):
            skipped.append((name, f"{landmarks_file}: {outside(points, image.shape)}"))
            continue
        write_face(os.path.join(out_dir, os.path.splitext(name)[0] + ".png"), align_face(image, points, template))
        written += 1
    return {"written": written, "skipped": skipped}


__all__ = ["ARCFACE_112", "LFW_A_112", "TEMPLATES", "AlignError", "similarity_transform", "template_points",
           "template_for", "warp_matrix", "align_face", "align_faces", "read_landmarks", "write_face", "outside",
           "align_folder"]
