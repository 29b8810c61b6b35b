"""Faces found in raw photos (mfn_tf2/detection.py): real LFW faces pasted into larger scenes.

A raw photo here is a real face crop of the bundled LFW set pasted into a 480x360 scene (smooth colours,
rectangles, noise) at another place, size and angle. Its known landmarks are the crop's own (found upright,
at the crop's size, on a plain margin) carried into the scene by the paste's known similarity.
test_align.py and test_evaluate.py build their photos with the helpers here.
"""
import os

import cv2
import numpy as np
import pytest

from conftest import DEMO_DATA, REPO
from mfn_tf2.detection import (DetectionError, Face, crop_check, detect_faces, largest_landmarks,
                               pairs_with_faces)
from mfn_tf2.alignment import TEMPLATES, align_face
from mfn_tf2.embedders import EmbedderError
from mfn_tf2.images import read_rgb
from mfn_tf2.pairs import PairSet

# The committed Android demo model (64x64 input): a model trained elsewhere, as far as these tests go.
DEMO_MODEL = REPO / "android_demo_assets" / "model_int8.tflite"
# A spread of held-out people, one image each.
FACES = sorted(DEMO_DATA.glob("heldout/*/*.jpg"))[::97][:8]


def scene(rng, height: int = 360, width: int = 480) -> np.ndarray:
    """A (height, width, 3) float32 background: smooth colour blobs, a few rectangles, noise; no face."""
    out = cv2.resize(rng.uniform(40, 215, (4, 5, 3)).astype(np.float32), (width, height),
                     interpolation=cv2.INTER_CUBIC)
    for _ in range(6):
        x, y = (int(v) for v in rng.integers(0, [width, height]))
        w, h = (int(v) for v in rng.integers(20, 120, 2))
        cv2.rectangle(out, (x, y), (x + w, y + h), tuple(float(v) for v in rng.uniform(0, 255, 3)), -1)
    return out + rng.normal(0, 6, out.shape).astype(np.float32)


def paste(background: np.ndarray, face: np.ndarray, rng, side=(100, 190), max_angle: float = 25.0,
          centre=None):
    """Pastes a face crop at a random place (or ``centre``), side in pixels and angle (degrees).

    Returns:
        (photo float32, (2, 3) matrix taking crop pixels to photo pixels).
    """
    h, w = face.shape[:2]
    scale, angle = rng.uniform(*side) / w, rng.uniform(-max_angle, max_angle)
    half = 0.75 * scale * w  # the rotated square's half extent, at most
    if centre is None:
        centre = rng.uniform([half, half], [background.shape[1] - half, background.shape[0] - half])
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    matrix[:, 2] += np.asarray(centre) - [w / 2, h / 2]
    size = background.shape[1::-1]
    warped = cv2.warpAffine(face.astype(np.float32), matrix, size, flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.ones((h, w), np.float32), matrix, size, flags=cv2.INTER_LINEAR)[..., None]
    return background * (1 - mask) + warped * mask, matrix


def crop_landmarks(face: np.ndarray) -> np.ndarray:
    """(5, 2) landmarks of a face crop, found upright at its own size with a grey margin around it."""
    margin = face.shape[0] // 2
    padded = cv2.copyMakeBorder(face, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=(128, 128, 128))
    return detect_faces(padded)[0].landmarks - margin


def raw_photo(face_path, seed: int, **paste_args):
    """A raw photo of one face: (uint8 RGB photo, (2, 3) matrix taking crop pixels to photo pixels)."""
    rng = np.random.default_rng(seed)
    photo, matrix = paste(scene(rng), read_rgb(face_path), rng, **paste_args)
    return np.clip(np.round(photo), 0, 255).astype(np.uint8), matrix


def known_landmarks(face_path, matrix: np.ndarray) -> np.ndarray:
    """(5, 2) landmarks of a pasted face in its photo: the crop's own, carried by the paste's matrix."""
    return crop_landmarks(read_rgb(face_path)) @ matrix[:, :2].T + matrix[:, 2]


def write_raw_pairs(pairs_file, out_dir, n_same: int = 20, n_different: int = 20, seed: int = 0):
    """Raw photos of the first pairs of each kind in an LFW pairs file (data/lfw_demo), and a plain pairs
    file naming them: (pairs file, photos folder). Each image becomes one photo ``<name>.jpg``."""
    from mfn_tf2.pairs import read_pairs
    pairs = read_pairs(pairs_file, pairs_file.parent / "heldout")
    same = [k for k in range(len(pairs)) if pairs.labels[k] == 1][:n_same]
    different = [k for k in range(len(pairs)) if pairs.labels[k] == 0][:n_different]
    lines, written = [], set()
    for k in sorted(same + different):
        names = []
        for path in (pairs.paths1[k], pairs.paths2[k]):
            name = os.path.splitext(os.path.basename(path))[0] + ".jpg"
            if name not in written:
                write_photo(out_dir / name, raw_photo(path, seed + len(written))[0])
                written.add(name)
            names.append(name)
        lines.append(f"{names[0]} {names[1]} {int(pairs.labels[k])}")
    (out_dir.parent / "photo_pairs.txt").write_text("\n".join(lines) + "\n")
    return out_dir.parent / "photo_pairs.txt", out_dir


def write_photo(path, rgb: np.ndarray) -> None:
    """A JPEG (quality 90), as a camera would leave it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])


def errors(found: np.ndarray, known: np.ndarray) -> float:
    """The largest landmark distance, in eye distances."""
    return float(np.linalg.norm(found - known, axis=1).max() / np.linalg.norm(known[0] - known[1]))


def test_finds_pasted_faces_near_their_known_landmarks_in_template_order():
    worst = []
    for seed, path in enumerate(FACES):
        photo, matrix = raw_photo(path, seed)
        known = known_landmarks(path, matrix)
        faces = detect_faces(photo)
        assert len(faces) == 1, (path.name, len(faces))
        face = faces[0]
        assert isinstance(face, Face) and face.landmarks.shape == (5, 2) and face.landmarks.dtype == np.float32
        assert face.score >= 0.9
        x, y, w, h = face.box
        assert np.all((face.landmarks >= [x, y]) & (face.landmarks <= [x + w, y + h]))
        worst.append(errors(face.landmarks, known))
        # template order as seen in the image: eyes on the image's left then right, nose, mouth left then right
        left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
        assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    assert max(worst) < 0.2 and np.median(worst) < 0.1, np.round(worst, 3)


def test_no_face_ten_faces_and_bad_images():
    rng = np.random.default_rng(7)
    blank = np.clip(scene(rng), 0, 255).astype(np.uint8)
    assert detect_faces(blank) == []
    # ten faces of growing size on a 640x480 scene: all found, largest first
    crowd, centres = scene(rng, 480, 640), [(70 + 125 * (k % 5), 110 + 250 * (k // 5)) for k in range(10)]
    for path, side, centre in zip(sorted(DEMO_DATA.glob("heldout/*/*.jpg"))[::61][:10], np.geomspace(50, 120, 10),
                                  centres):
        crowd, _ = paste(crowd, read_rgb(path), rng, side=(side, side + 1e-3), max_angle=5, centre=centre)
    faces = detect_faces(np.clip(crowd, 0, 255).astype(np.uint8))
    areas = [f.box[2] * f.box[3] for f in faces]
    assert len(faces) == 10 and areas == sorted(areas, reverse=True)
    for cx, cy in centres:  # each pasted face in exactly one box
        assert sum(x < cx < x + w and y < cy < y + h for x, y, w, h in (f.box for f in faces)) == 1
    assert detect_faces(np.zeros((8, 400, 3), np.uint8)) == []  # smaller than the detector's smallest input
    for bad, words in ((np.zeros((50, 50), np.uint8), r"shape \(50, 50\)"),
                       (np.zeros((50, 50, 3), np.float32), "dtype float32"),
                       (np.zeros((50, 50, 4), np.uint8), "expected \\(H, W, 3\\) uint8 RGB")):
        with pytest.raises(DetectionError, match=words):
            detect_faces(bad)
    with pytest.raises(DetectionError, match="min_score 1.5"):
        detect_faces(blank, min_score=1.5)
    with pytest.raises(DetectionError, match="image 1: no face found"):
        largest_landmarks([raw_photo(FACES[0], 0)[0], blank])


def test_feature_extractor_detect_embeds_the_aligned_largest_face(tmp_path):
    from mfn_tf2.embedders import FeatureExtractor
    photo, _ = raw_photo(FACES[1], 11)
    write_photo(tmp_path / "p.jpg", photo)
    plain, detecting = FeatureExtractor(str(DEMO_MODEL)), FeatureExtractor(str(DEMO_MODEL), detect=True)
    landmarks = detect_faces(photo)[0].landmarks
    want = plain.infer(photo, landmarks=landmarks)
    np.testing.assert_allclose(detecting.infer(photo), want, atol=1e-6)
    from_file = detecting.embed_paths([str(tmp_path / "p.jpg")])
    assert from_file.shape == want.shape and float(from_file[0] @ want[0]) > 0.95  # JPEG's loss only
    # the same face as the aligned crop it came from, far closer than the photo taken as a crop
    crop = plain.infer(read_rgb(FACES[1]))[0]
    assert float(want[0] @ crop) > float(plain.infer(photo)[0] @ crop) + 0.2
    write_photo(tmp_path / "blank.jpg", np.clip(scene(np.random.default_rng(3)), 0, 255).astype(np.uint8))
    with pytest.raises(DetectionError, match="blank.jpg: no face found"):
        detecting.embed_paths([str(tmp_path / "p.jpg"), str(tmp_path / "blank.jpg")])
    # the layout comes from the model's metadata.json (the demo model: lfw_a) unless given; another one
    # warps the face onto it at the model's size, then embeds it as a crop
    arcface = FeatureExtractor(str(DEMO_MODEL), detect=True, template="112x112")
    aligned = align_face(photo, landmarks, "112x112", plain.input_size)
    np.testing.assert_allclose(arcface.infer(photo), plain.infer(aligned), atol=1e-6)
    assert arcface.describe()["template"] == "112x112" and detecting.describe()["template"] == "lfw_a"
    with pytest.raises(EmbedderError, match="template 'square': expected one of"):
        FeatureExtractor(str(DEMO_MODEL), template="square")


def test_lfw_a_template_is_the_bundled_faces_layout():
    """The held-out bundled crops (people the constant was not measured on) put their landmarks there."""
    crops = sorted(DEMO_DATA.glob("heldout/*/*.jpg"))[::37][:40]
    found = np.mean([crop_landmarks(read_rgb(p)) for p in crops], axis=0) * 112 / 64  # the crops are 64 px
    assert np.abs(found - TEMPLATES["lfw_a"][0]).max() < 2.0, np.round(found, 2)
    assert np.abs(found - TEMPLATES["112x112"][0]).max() > 6.0  # not ArcFace's: eyes higher, face larger


def test_pairs_with_faces_leaves_out_and_names_photos_without_a_face(tmp_path):
    paths = []
    for k, path in enumerate(FACES[:3]):
        write_photo(tmp_path / f"f{k}.jpg", raw_photo(path, 20 + k)[0])
        paths.append(str(tmp_path / f"f{k}.jpg"))
    write_photo(tmp_path / "blank.jpg", np.clip(scene(np.random.default_rng(4)), 0, 255).astype(np.uint8))
    blank = str(tmp_path / "blank.jpg")
    pairs = PairSet([paths[0], paths[1], blank, paths[2]], [paths[1], blank, paths[0], paths[0]],
                    [1, 0, 0, 1], [0, 0, 1, 1], source="p.txt")
    kept, info = pairs_with_faces(pairs)
    assert kept.paths1 == [paths[0], paths[2]] and kept.labels.tolist() == [1, 1] and kept.folds.tolist() == [0, 1]
    assert info == {"photos": 4, "no_face": [blank], "several_faces": 0, "left_out_pairs": 2}
    with pytest.raises(DetectionError, match="p.txt: no pair left: no face found in 1 of 1 photos"):
        pairs_with_faces(PairSet([blank], [blank], [1], [0], source="p.txt"))


def test_crop_check_tells_face_crops_from_photos(tmp_path):
    crops = [str(p) for p in FACES]
    assert crop_check(crops, (64, 64))["crops"]  # 64x64 crops: crops without asking the detector
    assert crop_check(crops, (16, 16))["crops"]  # four times the model: the detector finds them in place
    photos = []
    for k, path in enumerate(FACES):
        write_photo(tmp_path / f"{k}.jpg", raw_photo(path, 30 + k)[0])
        photos.append(str(tmp_path / f"{k}.jpg"))
    check = crop_check(photos, (64, 64))
    assert not check["crops"] and check["sampled"] == 8 and len(check["not_crops"]) >= 6
    assert all("480x360" in why for _, why in check["not_crops"])
