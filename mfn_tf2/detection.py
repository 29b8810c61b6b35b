"""Faces found in raw photos: MTCNN boxes and 5 landmarks, ready for ``alignment``.

The detector is MTCNN (the ``mtcnn`` package, MIT, weights in its wheel), the
one insightface aligned its training sets with. It runs on TensorFlow with
tf-keras: ``mfn_tf2.backend`` is imported first so it never gets Keras 3. One
detector per process, built on first use (about a second). Landmarks come in
the template's order, as seen in the image: eye on the image's left, eye on
the image's right, nose tip, mouth corner on the image's left, mouth corner on
the image's right.

``detect_faces`` takes one RGB image; ``find_faces`` image files (every face
of each, remembered per process, so several models evaluated on the same
photos detect once); ``pairs_with_faces`` leaves out the pairs of a pairs file
that name a photo with no face, and names those photos; ``crop_check`` says
whether a sample of images looks like face crops for a model or like photos
that need ``--detect``; ``align_photos`` is ``python -m mfn_tf2.align PHOTOS
OUT --detect``.

Example:
    >>> import cv2
    >>> crop = read_rgb("data/lfw_demo/heldout/Aaron_Tippin/Aaron_Tippin_0001.jpg")   # 64x64
    >>> photo = cv2.copyMakeBorder(crop, 40, 40, 120, 40, cv2.BORDER_CONSTANT, value=(128, 128, 128))  # 224x144
    >>> face = detect_faces(photo)[0]
    >>> face.landmarks.shape, bool(120 < face.landmarks[0, 0] < face.landmarks[1, 0] < 184)
    ((5, 2), True)
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from mfn_tf2.alignment import align_face, template_for, template_points, write_face
from mfn_tf2.fileio import write_json
from mfn_tf2.images import ImageError, folder_images, read_rgb
from mfn_tf2.pairs import PairSet

# MTCNN's smallest pyramid input (px): a smaller image cannot hold a face.
_MIN_SIDE = 12
# Crop check: images larger than this many times the model input (either side) are
# probed with the detector; a face whose landmarks sit farther than this share of the
# model's width from the template's points (mean over the 5) is not in a crop's place.
# Face-crop sets measure 0.06-0.10 (LFW crops, 64 and 144 px); a face in a photo 0.2 and more.
SIZE_RATIO, CROP_DISTANCE, CROP_SAMPLE = 2.0, 0.15, 8

_detector = None
_found: dict[tuple, tuple] = {}  # (path, mtime_ns, size, min_score) -> (Face, ...) largest first


class DetectionError(ValueError):
    """No face where one is needed, or an image the detector cannot take; the message names it."""


class Face(NamedTuple):
    """One detected face.

    Args:
        box: (x, y, w, h) pixels.
        score: the detector's confidence, 0-1.
        landmarks: (5, 2) float32 (x, y) pixels in the template's order (see module doc).
    """
    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray


def _mtcnn():
    """The process's detector, built on first use on tf-keras (Keras 2)."""
    global _detector
    if _detector is None:
        # before mtcnn: tf.keras must resolve to tf-keras
        from mfn_tf2.backend import keras  # lazy: keeps TensorFlow out of align/evaluate --help
        try:
            import mtcnn  # lazy: mtcnn loads TensorFlow; detection is imported by light shells
            from mtcnn.network import pnet  # lazy: with mtcnn
        except ImportError as err:
            raise DetectionError(f"face detection needs the mtcnn package ({err}): "
                                 "pip install mtcnn==1.0.0 (or pip install -e . in the repository)") from None
        if not pnet.L.__name__.startswith("tf_keras"):
            raise DetectionError(f"mtcnn got {pnet.L.__name__} instead of tf-keras {keras.__version__}: "
                                 "import mfn_tf2.backend before tensorflow")
        _detector = mtcnn.MTCNN()
    return _detector


def detect_faces(image: np.ndarray, min_score: float = 0.9) -> list[Face]:
    """Every face in an RGB photo, largest box first.

    Args:
        image: (H, W, 3) uint8 RGB.
        min_score: confidence a face needs (MTCNN's last stage), in (0, 1).

    Returns:
        [Face], empty when there is none.

    Raises:
        DetectionError: an image that is not (H, W, 3) uint8, or min_score outside (0, 1).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DetectionError(f"image has shape {image.shape} and dtype {image.dtype}: "
                             "expected (H, W, 3) uint8 RGB")
    if not 0 < min_score < 1:
        raise DetectionError(f"min_score {min_score}: expected a confidence in (0, 1)")
    if min(image.shape[:2]) < _MIN_SIDE:
        return []
    # rows: image id, x, y, w, h, score, x1..x5, y1..y5 (numpy output: landmarks unrounded)
    rows = _mtcnn().detect_faces(image, output_type="numpy", box_format="xywh", threshold_onet=min_score)
    faces = [Face(tuple(float(v) for v in r[1:5]), float(r[5]),
                  np.stack([r[6:11], r[11:16]], axis=1).astype(np.float32))
             for r in np.asarray(rows).reshape(-1, 16) if r[5] >= min_score]
    return sorted(faces, key=lambda f: -f.box[2] * f.box[3])


def _key(path: str, min_score: float) -> tuple:
    stat = os.stat(path)
    return os.path.abspath(path), stat.st_mtime_ns, stat.st_size, min_score


def find_faces(paths, min_score: float = 0.9, progress: bool = False) -> dict[str, tuple[Face, ...]]:
    """Every face of each image file, largest first, remembered for this process.

    Args:
        paths: image files.
        min_score: see ``detect_faces``.
        progress: show a progress bar.

    Returns:
        {path: (Face, ...)} in the order given; () for a photo with no face.

    Raises:
        ImageError: a file that cannot be read (``images.read_rgb``).
    """
    found = {}
    for path in tqdm(paths, desc="finding faces", unit="img", disable=not progress, leave=False):
        key = _key(path, min_score)
        if key not in _found:
            _found[key] = tuple(detect_faces(read_rgb(path), min_score))
        found[path] = _found[key]
    return found


def largest_landmarks(items, min_score: float = 0.9) -> np.ndarray:
    """(N, 5, 2) landmarks of the largest face of each image file (``find_faces``, remembered)
    or RGB array (uint8, or float 0-255: rounded).

    Raises:
        DetectionError: an item with no face, named by its path or as "image k".
    """
    points = []
    for k, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            faces, name = find_faces([item], min_score)[item], os.fspath(item)
        else:
            pixels = np.asarray(item)
            pixels = pixels if pixels.dtype == np.uint8 else np.clip(np.round(pixels), 0, 255).astype(np.uint8)
            faces, name = detect_faces(pixels, min_score), f"image {k}"
        if not faces:
            raise DetectionError(f"{name}: no face found (min_score {min_score})")
        points.append(faces[0].landmarks)
    return np.stack(points) if points else np.zeros((0, 5, 2), np.float32)


def pairs_with_faces(pairs: PairSet, min_score: float = 0.9, progress: bool = False) -> tuple[PairSet, dict]:
    """The pairs whose two photos both hold a face; the others are left out and counted.

    Args:
        pairs: pairs naming raw photos.
        min_score: see ``detect_faces``.
        progress: show a progress bar.

    Returns:
        (kept pairs, {"photos": n, "no_face": [photo], "several_faces": n photos (their
        largest face is used), "left_out_pairs": n}).

    Raises:
        ImageError: a photo that cannot be read.
        DetectionError: no pair left.
    """
    faces = find_faces(pairs.unique_paths(), min_score, progress)
    keep = [k for k, (a, b) in enumerate(zip(pairs.paths1, pairs.paths2)) if faces[a] and faces[b]]
    info = {"photos": len(faces), "no_face": [p for p, f in faces.items() if not f],
            "several_faces": sum(len(f) > 1 for f in faces.values()), "left_out_pairs": len(pairs) - len(keep)}
    if not keep:
        raise DetectionError(f"{pairs.source}: no pair left: no face found in {len(info['no_face'])} of "
                             f"{len(faces)} photos (e.g. {info['no_face'][0]})")
    kept = PairSet([pairs.paths1[k] for k in keep], [pairs.paths2[k] for k in keep], pairs.labels[keep],
                   pairs.folds[keep], skipped=pairs.skipped, source=pairs.source)
    return kept, info


def detection_lines(info: dict, shown: int = 10) -> list[str]:
    """What ``pairs_with_faces`` left out, as lines for the user (none when nothing was).

    Example:
        >>> for line in detection_lines({"photos": 4, "no_face": ["a.jpg"], "several_faces": 1, "left_out_pairs": 2}):
        ...     print(line)
        no face found in 1 of 4 photos: 2 pairs left out (not scored): a.jpg
        1 photos hold several faces: the largest was used
    """
    lines, missing = [], info["no_face"]
    if missing:
        more = f" and {len(missing) - shown} more" if len(missing) > shown else ""
        lines.append(f"no face found in {len(missing)} of {info['photos']} photos: {info['left_out_pairs']} pairs "
                     f"left out (not scored): {', '.join(missing[:shown])}{more}")
    if info["several_faces"]:
        lines.append(f"{info['several_faces']} photos hold several faces: the largest was used")
    return lines


def _in_model(points: np.ndarray, shape, size, box) -> np.ndarray:
    """Image points (5, 2) -> where the embedder's crop + resize puts them in a (height, width) input."""
    left, top, right, bottom = box or (0, 0, shape[1], shape[0])
    return (points - [left, top]) * [size[1] / (right - left), size[0] / (bottom - top)]


def crop_check(paths, size: tuple[int, int], box=None, template: str | None = None, sample: int = CROP_SAMPLE) -> dict:
    """Whether images look like face crops for a model of input ``size``, from a sample.

    A sampled image is "not a crop" when it (or its ``box``) is larger than ``SIZE_RATIO``
    times the model input and the detector finds no face in it, or finds the largest face with
    its landmarks, after the embedder's crop and resize, more than ``CROP_DISTANCE``
    of the width from the template's points. Images no larger than that are crops
    without asking the detector.

    Args:
        paths: the images (a spread sample of ``sample`` is probed).
        size: the model's (height, width).
        box: the embedder's crop (left, top, right, bottom) or None.
        template: the layout the model expects (``alignment.TEMPLATES``; None: ``template_for(size)``).
        sample: images probed.

    Returns:
        {"sampled": n, "not_crops": [(path, why)], "crops": bool (fewer than half not crops)}.
    """
    chosen = sorted({paths[int(k)] for k in np.linspace(0, len(paths) - 1, min(sample, len(paths)))}) if paths else []
    target, not_crops = template_points(template or template_for(size), size)[0], []
    for path in chosen:
        image = read_rgb(path)
        height, width = image.shape[:2]
        seen_h, seen_w = (box[3] - box[1], box[2] - box[0]) if box else (height, width)
        if max(seen_h / size[0], seen_w / size[1]) <= SIZE_RATIO:
            continue
        face = next(iter(find_faces([path])[path]), None)
        if face is None:
            not_crops.append((path, f"{width}x{height}, no face found"))
            continue
        moved = _in_model(face.landmarks, image.shape, size, box)
        distance = float(np.linalg.norm(moved - target, axis=1).mean() / size[1])
        if distance > CROP_DISTANCE:
            not_crops.append((path, f"{width}x{height}, face {distance:.2f} of the width from the template's place"))
    return {"sampled": len(chosen), "not_crops": not_crops, "crops": 2 * len(not_crops) < max(len(chosen), 1)}


def crop_line(check: dict, size: tuple[int, int], source: str) -> str:
    """The one line that says a ``crop_check`` found photos, not face crops, and what to do.

    Example:
        >>> crop_line({"sampled": 8, "not_crops": [("a.jpg", "640x480, no face found")] * 5}, (112, 112), "p.txt")[:72]
        'p.txt: 5 of 8 sampled images do not look like face crops for a 112x112 m'
    """
    path, why = check["not_crops"][0]
    return (f"{source}: {len(check['not_crops'])} of {check['sampled']} sampled images do not look like face "
            f"crops for a {size[0]}x{size[1]} model (e.g. {path}: {why}), so a score would be near chance: "
            "add --detect to find and align the faces (or align them first: python -m mfn_tf2.align PHOTOS OUT "
            "--detect); --crop_check false scores the images as they are")


def align_photos(images_dir: str, out_dir: str, template: str = "112x112", all_faces: bool = False,
                 min_score: float = 0.9, landmarks_out: str | None = None) -> dict:
    """Detects faces in every photo under ``images_dir`` and aligns them into ``out_dir``.

    Args:
        images_dir: photos, any sub-folders; files are images by content (``out_dir``, if inside, is not read).
        out_dir: ``<relative path stem>.png`` per photo (its largest face), or
            ``<stem>_0.png``, ``<stem>_1.png``... (every face, largest first) with ``all_faces``.
        template: "112x112" or "112x96" (``alignment.TEMPLATES``).
        all_faces: align every face found, not only the largest.
        min_score: see ``detect_faces``.
        landmarks_out: JSON of the landmarks used, ``alignment.read_landmarks``' format
            ({photo: (5, 2)} or, with all_faces, {photo: [(5, 2), ...]}); default ``out_dir/landmarks.json``.

    Returns:
        {"photos": files seen, "written": faces written, "landmarks": file, "no_face": [photo],
         "several_faces": n photos, "skipped": [(file, reason)] (unreadable)}; files relative to ``images_dir``.

    Raises:
        DetectionError: ``images_dir`` is no folder or holds no file.
    """
    if not os.path.isdir(images_dir):
        raise DetectionError(f"{images_dir}: no such folder")
    landmarks_out = landmarks_out or os.path.join(out_dir, "landmarks.json")
    inside_out = os.path.abspath(out_dir) + os.sep
    photos, others = folder_images(images_dir)
    photos = [p for p in photos if not os.path.abspath(p).startswith(inside_out)]
    if not photos and not others:
        raise DetectionError(f"{images_dir}: no files in this folder")
    entries, no_face, several, written = {}, [], 0, 0
    skipped = [(os.path.relpath(p, images_dir), why) for p, why in others]
    for path in photos:
        name = os.path.relpath(path, images_dir)
        try:
            image = read_rgb(path)
        except ImageError as err:
            skipped.append((name, str(err).removeprefix(f"{path}: ")))
            continue
        faces = detect_faces(image, min_score)
        several += len(faces) > 1
        faces = faces if all_faces else faces[:1]
        if not faces:
            no_face.append(name)
            continue
        for k, face in enumerate(faces):
            suffix = f"_{k}" if all_faces else ""
            write_face(os.path.join(out_dir, os.path.splitext(name)[0] + suffix + ".png"),
                       align_face(image, face.landmarks, template))
        written += len(faces)
        points = [f.landmarks.astype(np.float64).tolist() for f in faces]  # exact: the warp repeats bit for bit
        entries[name] = points if all_faces else points[0]
    write_json(landmarks_out, entries)
    return {"photos": len(photos) + len(others), "written": written, "landmarks": landmarks_out,
            "no_face": no_face, "several_faces": several, "skipped": skipped}


__all__ = ["Face", "DetectionError", "detect_faces", "find_faces", "largest_landmarks", "pairs_with_faces",
           "detection_lines", "crop_check", "crop_line", "align_photos", "SIZE_RATIO", "CROP_DISTANCE", "CROP_SAMPLE"]
