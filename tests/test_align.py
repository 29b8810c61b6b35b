"""5-point alignment onto the ArcFace template (mfn_tf2/alignment.py) on real faces."""
import json

import cv2
import numpy as np
import pytest

from conftest import DEMO_DATA, run_cli
from mfn_tf2.alignment import TEMPLATES, align_face, similarity_transform, template_points, warp_matrix
from mfn_tf2.embedders import EmbedderError, FeatureExtractor
from mfn_tf2.images import read_rgb

FACE = DEMO_DATA / "heldout" / "Aaron_Tippin" / "Aaron_Tippin_0001.jpg"


def photo_and_landmarks(seed: int, template: str = "112x112"):
    """A 'photo': 5 Gaussian dots on a real face, placed by a random similarity; (photo, dots)."""
    rng = np.random.default_rng(seed)
    angle, scale = rng.uniform(-0.5, 0.5), rng.uniform(1.3, 2.2)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = template_points(template)[0] @ rotation.T + rng.uniform(40, 80, 2)
    photo = cv2.resize(read_rgb(FACE), (320, 320)).astype(np.float64) * 0.2
    yy, xx = np.mgrid[:320, :320]
    for x, y in points:
        photo[..., 0] += 200 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * (2.0 * scale) ** 2))
    return np.clip(photo, 0, 255).astype(np.float32), points


def dot_centres(aligned: np.ndarray, near: np.ndarray, radius: int = 7) -> np.ndarray:
    """Intensity centroids of the red dots (red minus green: the face is grey) around each point."""
    red = aligned[..., 0].astype(np.float64) - aligned[..., 1]
    centres = []
    for x, y in near:
        x0, y0 = int(round(x)) - radius, int(round(y)) - radius
        patch = red[y0:y0 + 2 * radius + 1, x0:x0 + 2 * radius + 1]
        yy, xx = np.mgrid[y0:y0 + patch.shape[0], x0:x0 + patch.shape[1]]
        centres.append([(patch * xx).sum() / patch.sum(), (patch * yy).sum() / patch.sum()])
    return np.array(centres)


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_warp_puts_landmarks_on_the_template_within_a_tenth_of_a_pixel(template):
    target, (height, width) = template_points(template)
    for seed in range(3):
        photo, points = photo_and_landmarks(seed, template)
        matrix = warp_matrix(points, template)
        mapped = points @ matrix[:, :2].T + matrix[:, 2]
        assert np.abs(mapped - target).max() < 1e-6
        aligned = align_face(photo, points, template)
        assert aligned.shape == (height, width, 3)
        assert np.abs(dot_centres(aligned, target) - target).max() < 0.1


def test_similarity_is_the_least_squares_one():
    rng = np.random.default_rng(1)
    src, dst = rng.normal(size=(5, 2)) * 30 + 100, TEMPLATES["112x112"][0]
    matrix = similarity_transform(src, dst)
    # dst = [a -b; b a] src + t, solved as a linear least-squares problem in (a, b, tx, ty)
    rows = np.zeros((10, 4))
    rows[0::2] = np.c_[src[:, 0], -src[:, 1], np.ones(5), np.zeros(5)]
    rows[1::2] = np.c_[src[:, 1], src[:, 0], np.zeros(5), np.ones(5)]
    a, b, tx, ty = np.linalg.lstsq(rows, dst.reshape(-1), rcond=None)[0]
    np.testing.assert_allclose(matrix, [[a, -b, tx], [b, a, ty]], atol=1e-9)


def test_align_cli_over_a_folder_with_csv_and_json(tmp_path):
    (tmp_path / "photos" / "ann").mkdir(parents=True)
    rows, entries = ["path,x1,y1,x2,y2,x3,y3,x4,y4,x5,y5"], {}
    for k in range(2):
        photo, points = photo_and_landmarks(k)
        name = f"ann/p{k}.png"
        cv2.imwrite(str(tmp_path / "photos" / name), np.round(photo[..., ::-1]).astype(np.uint8))
        rows.append(",".join([name] + [f"{v:.4f}" for v in points.reshape(-1)]))
        entries[name] = points.tolist()
    (tmp_path / "lm.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "lm.json").write_text(json.dumps(entries))
    for kind in ("csv", "json"):
        proc = run_cli("align", tmp_path / "photos", tmp_path / f"lm.{kind}", tmp_path / kind)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "aligned 2 faces onto the 112x112 template" in proc.stdout
        got = read_rgb(tmp_path / kind / "ann" / "p1.png")
        want = align_face(read_rgb(tmp_path / "photos" / "ann" / "p1.png"), np.array(entries["ann/p1.png"]))
        assert got.shape == (112, 112, 3) and np.abs(got.astype(int) - want).max() <= 1
    (tmp_path / "bad.csv").write_text(rows[0] + "\n" + rows[1] + "\nann/p1.png,1,2,3\n")
    proc = run_cli("align", tmp_path / "photos", tmp_path / "bad.csv", tmp_path / "bad")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"error: {tmp_path / 'bad.csv'}:3: expected 'path,x1,y1,...,x5,y5' (10 numbers after the path)")


def test_infer_with_landmarks_is_infer_of_the_aligned_face(tiny_run):
    fe = FeatureExtractor(str(tiny_run[0]))
    photo, points = photo_and_landmarks(0)
    aligned = align_face(photo, points, size=fe.input_size)  # the template scaled to the model
    np.testing.assert_allclose(fe.infer(photo, landmarks=points), fe.infer(aligned), atol=1e-6)
    both = fe.infer(np.stack([photo, photo]), landmarks=np.stack([points, points]))
    np.testing.assert_allclose(both[1], fe.infer(aligned)[0], atol=1e-6)
    with pytest.raises(EmbedderError, match=r"landmarks have shape \(4, 2\)"):
        fe.infer(photo, landmarks=points[:4])


def test_android_alignment_cases_reproduce():
    from conftest import REPO
    assets = REPO / "android_demo_assets"
    record = json.loads((assets / "alignment.json").read_text())
    size = tuple(record["size"])
    assert np.abs(np.array(record["points"]) - template_points(record["template"], size)[0]).max() < 1e-3
    for case in record["cases"]:
        photo, landmarks = read_rgb(assets / case["photo"]), np.array(case["landmarks"])
        # the least-squares similarity solved independently, as an app would
        rows = np.zeros((10, 4))
        rows[0::2] = np.c_[landmarks[:, 0], -landmarks[:, 1], np.ones(5), np.zeros(5)]
        rows[1::2] = np.c_[landmarks[:, 1], landmarks[:, 0], np.zeros(5), np.ones(5)]
        a, b, tx, ty = np.linalg.lstsq(rows, np.array(record["points"]).reshape(-1), rcond=None)[0]
        assert np.abs(np.array(case["matrix"]) - [[a, -b, tx], [b, a, ty]]).max() < record["tolerance"]["matrix_abs"]
        aligned = read_rgb(assets / case["aligned"])
        assert np.abs(aligned.astype(int) - align_face(photo, landmarks, record["template"], size)).max() <= 1
        for model, golden in case["embeddings"].items():
            emb = FeatureExtractor(str(assets / model), batch_size=1).infer(photo, landmarks=landmarks)[0]
            assert float(emb @ np.array(golden)) >= 0.999


def test_align_detect_over_raw_photos_writes_faces_and_the_landmarks_it_used(tmp_path):
    from test_detection import (FACES, errors, known_landmarks, paste, raw_photo, scene, write_photo)
    photos, known = tmp_path / "photos", {}
    for k, face in enumerate(FACES[:3]):
        photo, matrix = raw_photo(face, 40 + k)
        write_photo(photos / "ann" / f"p{k}.jpg", photo)
        known[f"ann/p{k}.jpg"] = known_landmarks(face, matrix)
    rng = np.random.default_rng(9)
    write_photo(photos / "blank.jpg", np.clip(scene(rng), 0, 255).astype(np.uint8))
    two, _ = paste(scene(rng), read_rgb(FACES[3]), rng, side=(150, 151), max_angle=0, centre=(120, 180))
    two, _ = paste(two, read_rgb(FACES[4]), rng, side=(100, 101), max_angle=0, centre=(360, 180))
    write_photo(photos / "two.jpg", np.clip(two, 0, 255).astype(np.uint8))
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    proc = run_cli("align", photos, tmp_path / "out", "--detect")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1 photos with no face found (nothing written): blank.jpg" in proc.stdout
    assert "skipped broken.jpg: not an image" in proc.stdout
    assert "aligned 4 faces (the largest face of each; 1 photos hold several faces) from 6 photos" in proc.stdout
    used = json.loads((tmp_path / "out" / "landmarks.json").read_text())
    assert sorted(used) == ["ann/p0.jpg", "ann/p1.jpg", "ann/p2.jpg", "two.jpg"]
    for name, points in known.items():
        assert errors(np.array(used[name]), points) < 0.2
        got = read_rgb(tmp_path / "out" / name.replace(".jpg", ".png"))
        want = align_face(read_rgb(photos / name), np.array(used[name]))
        assert got.shape == (112, 112, 3) and np.abs(got.astype(int) - want).max() <= 1
    assert np.mean(used["two.jpg"], axis=0)[0] < 240  # the larger face, on the left
    assert not (tmp_path / "out" / "blank.png").exists()
    # the landmarks file is the landmarks-file form: the same faces again without the detector
    proc = run_cli("align", photos, tmp_path / "out" / "landmarks.json", tmp_path / "again")
    assert proc.returncode == 0 and "aligned 4 faces" in proc.stdout, proc.stderr[-2000:]
    assert np.array_equal(read_rgb(tmp_path / "again" / "two.png"), read_rgb(tmp_path / "out" / "two.png"))
    # every face
    proc = run_cli("align", photos, tmp_path / "all", "--detect", "--all_faces")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(json.loads((tmp_path / "all" / "landmarks.json").read_text())["two.jpg"]) == 2
    assert (tmp_path / "all" / "two_0.png").exists() and (tmp_path / "all" / "two_1.png").exists()


def test_align_bad_input_is_one_line(tmp_path):
    from conftest import run_main
    proc = run_main("align", tmp_path, tmp_path / "out")
    assert proc.returncode == 2 and "expected IMAGES LANDMARKS OUT (or PHOTOS OUT --detect), got 2 paths" in proc.stderr
    proc = run_main("align", tmp_path, tmp_path / "lm.csv", tmp_path / "out", "--detect")
    assert proc.returncode == 2 and "expected PHOTOS OUT with --detect, got 3 paths" in proc.stderr
    proc = run_main("align", tmp_path / "nowhere", tmp_path / "out", "--detect")
    assert proc.returncode == 1 and proc.stderr.strip() == f"error: {tmp_path / 'nowhere'}: no such folder"
    proc = run_main("align", tmp_path, tmp_path / "out", "--detect", "--min_score", "2")
    assert proc.returncode == 2 and "--min_score 2.0: expected a confidence in (0, 1)" in proc.stderr
    # landmarks outside their image: that image skipped, named, the others aligned
    photo, points = photo_and_landmarks(0)
    (tmp_path / "photos").mkdir()
    for name in ("in.png", "out.png"):
        cv2.imwrite(str(tmp_path / "photos" / name), np.round(photo[..., ::-1]).astype(np.uint8))
    (tmp_path / "lm.json").write_text(json.dumps({"in.png": points.tolist(), "out.png": (points + 300).tolist()}))
    proc = run_main("align", tmp_path / "photos", tmp_path / "lm.json", tmp_path / "aligned")
    assert proc.returncode == 0 and "aligned 1 faces" in proc.stdout
    assert f"skipped out.png: {tmp_path / 'lm.json'}: landmark (" in proc.stdout and "outside the 320x320 image" in proc.stdout
