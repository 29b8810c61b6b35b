"""Faces from raw photos: the kit's ``evaluate --detect`` against an independent detect-align-embed reference.

Raw photos are made from LFW's held-out pairs: each face image is pasted into its own 640x480 scene (colour
blobs, boxes, noise) at another place, size and angle, and saved as JPEG; the pairs are written as a plain
pairs file naming those photos (same and different pairs alternating, so the 10 contiguous folds hold both).
Then the same photos are scored twice with a model trained elsewhere (default: the committed Android demo
model):

* the kit: ``python -m mfn_tf2.evaluate MODEL --detect`` in a subprocess;
* a reference that shares no code with the kit: ``mtcnn.MTCNN().detect_faces`` (its JSON output, confidence
  >= 0.9, the largest box), ``cv2.estimateAffinePartial2D`` onto a 5-point layout scaled to the model's input,
  ``cv2.warpAffine``, the LiteRT interpreter fed as the model's metadata.json says, and the LFW 10-fold
  accuracy written out here (each fold scored at the best threshold of the other nine).

Two layouts: insightface's ArcFace template (``--template 112x112``), and the layout of the bundled faces the
demo model was trained on (``--template lfw_a``; the reference measures it itself: the mean keypoints of 300
bundled training crops). Pairs with a photo where no face is found are left out by both, on the folds of the
whole file. Kit and reference must agree within 2 points on each. Also printed: the detector's time per photo
(reference loop), the kit's wall time, the same photos scored as if they were face crops (``--crop_check
false``: what the kit refuses to print without that flag), and the same pairs on the bundled face crops.

    python benchmarks/detect_reference.py                          # data/lfw_demo (64x64 crops), 600 pairs
    python benchmarks/detect_reference.py --lfw LFW_DIR --pairs 1200 --json detect_reference.json

``--lfw`` is a folder with ``pairs_heldout.txt`` and ``heldout/`` (the full LFW copy described in the README;
``MFN_LFW_ROOT`` names it too).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # mtcnn builds its networks with tf.keras: Keras 2 here
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# insightface's ArcFace 112x112 template: left eye, right eye, nose tip, mouth left, mouth right (x, y).
ARCFACE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                    [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)
KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")  # mtcnn's names, image-left first
MIN_SCORE = 0.9


def lfw_pairs(root: Path, limit: int) -> list[tuple[str, str, int]]:
    """The first ``limit`` pairs of ``root/pairs_heldout.txt`` (official format) as (file1, file2, label)."""
    lines = (root / "pairs_heldout.txt").read_text().split("\n")[1:]
    def image(name, index):
        return f"{name}/{name}_{int(index):04d}.jpg"
    pairs = []
    for f in filter(None, (ln.split() for ln in lines)):
        same = len(f) == 3  # name i j, or name1 i name2 j
        pairs.append((image(f[0], f[1]), image(f[0], f[2]), 1) if same else (image(f[0], f[1]), image(f[2], f[3]), 0))
    same, different = [p for p in pairs if p[2]][:limit // 2], [p for p in pairs if not p[2]][:limit // 2]
    return [p for both in zip(same, different) for p in both]  # alternating: every contiguous fold holds both


def make_photo(face: np.ndarray, rng) -> np.ndarray:
    """A 640x480 BGR scene with the face crop pasted at a random place, side (1.2-2.6 x 100 px) and angle."""
    scene = cv2.resize(rng.uniform(30, 225, (3, 4, 3)).astype(np.float32), (640, 480), interpolation=cv2.INTER_CUBIC)
    for _ in range(8):
        x, y, w, h = (int(v) for v in rng.integers([0, 0, 15, 15], [640, 480, 160, 160]))
        cv2.rectangle(scene, (x, y), (x + w, y + h), tuple(float(v) for v in rng.uniform(0, 255, 3)), -1)
    side, angle = rng.uniform(120, 260), rng.uniform(-20, 20)
    half = 0.75 * side
    centre = rng.uniform([half, half], [640 - half, 480 - half])
    matrix = cv2.getRotationMatrix2D((face.shape[1] / 2, face.shape[0] / 2), angle, side / face.shape[1])
    matrix[:, 2] += centre - [face.shape[1] / 2, face.shape[0] / 2]
    warped = cv2.warpAffine(face.astype(np.float32), matrix, (640, 480))
    mask = cv2.warpAffine(np.ones(face.shape[:2], np.float32), matrix, (640, 480))[..., None]
    photo = scene * (1 - mask) + warped * mask + rng.normal(0, 5, scene.shape)
    return np.clip(np.round(photo), 0, 255).astype(np.uint8)


def write_photos(root: Path, pairs, out: Path, seed: int) -> Path:
    """One JPEG photo per face image; the plain pairs file naming them. Returns the pairs file."""
    rng, done = np.random.default_rng(seed), set()
    for name in sorted({n for a, b, _ in pairs for n in (a, b)}):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out / name), make_photo(cv2.imread(str(root / "heldout" / name)), rng),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        done.add(name)
    pairs_file = out.parent / "photo_pairs.txt"
    pairs_file.write_text("".join(f"{a} {b} {y}\n" for a, b, y in pairs))
    return pairs_file


class Reference:
    """mtcnn + OpenCV + LiteRT, as an app team would write it."""

    def __init__(self, model: Path):
        import tensorflow  # noqa: F401  (before mtcnn, with TF_USE_LEGACY_KERAS set above)
        from ai_edge_litert.interpreter import Interpreter
        from mtcnn import MTCNN
        self.detector = MTCNN()
        self.interp = Interpreter(model_path=str(model), num_threads=2)
        self.interp.allocate_tensors()
        self.inp, self.out = self.interp.get_input_details()[0], self.interp.get_output_details()[0]
        self.height, self.width = (int(v) for v in self.inp["shape"][1:3])
        meta = json.loads((model.parent / "metadata.json").read_text())["preprocessing"]
        self.mean, self.std, self.bgr = meta["mean"], meta["std"], meta.get("bgr", False)
        self.detect_seconds = []

    def landmarks(self, rgb: np.ndarray):
        """(5, 2) keypoints of the largest face with confidence >= MIN_SCORE, or None."""
        start = time.perf_counter()
        found = [f for f in self.detector.detect_faces(rgb) if f["confidence"] >= MIN_SCORE]
        self.detect_seconds.append(time.perf_counter() - start)
        if not found:
            return None
        face = max(found, key=lambda f: f["box"][2] * f["box"][3])
        return np.array([face["keypoints"][k] for k in KEYPOINTS], np.float32)

    def layout(self, crops: list[Path]) -> np.ndarray:
        """(5, 2) mean keypoints of face crops (each found upright on a grey margin), in 112x112 pixels."""
        points = []
        for path in crops:
            crop = cv2.imread(str(path))[..., ::-1]
            margin = crop.shape[0] // 2
            padded = cv2.copyMakeBorder(crop, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=(128,) * 3)
            found = self.landmarks(padded)
            if found is not None:
                points.append((found - margin) * [112 / crop.shape[1], 112 / crop.shape[0]])
        return np.mean(points, axis=0).astype(np.float32)

    def embed(self, rgb: np.ndarray, points: np.ndarray, template112: np.ndarray) -> np.ndarray:
        """The L2-normalised embedding of the face whose keypoints are ``points``, warped onto a 112x112 layout
        scaled to the model's input."""
        template = template112 * [self.width / 112, self.height / 112]
        # all 5 points inliers (threshold far above any residual): the least-squares similarity, LM-refined
        matrix, _ = cv2.estimateAffinePartial2D(points, template, method=cv2.RANSAC, ransacReprojThreshold=1e4)
        face = cv2.warpAffine(rgb, matrix, (self.width, self.height), flags=cv2.INTER_LINEAR, borderValue=0)
        face = face[..., ::-1] if self.bgr else face
        x = (face.astype(np.float32) - self.mean) / self.std
        scale, zero = self.inp["quantization"]
        if scale:
            x = np.clip(np.round(x / scale) + zero, -128, 127)
        self.interp.set_tensor(self.inp["index"], x[None].astype(self.inp["dtype"]))
        self.interp.invoke()
        e = self.interp.get_tensor(self.out["index"])[0].astype(np.float32)
        scale, zero = self.out["quantization"]
        e = (e - zero) * scale if scale else e
        return e / np.linalg.norm(e)


def tenfold_accuracy(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> float:
    """Mean over folds of the accuracy at the threshold that is best on the other folds."""
    accs = []
    for k in np.unique(folds):
        train, test = folds != k, folds == k
        candidates = np.unique(scores[train])
        best = max(candidates, key=lambda t: np.mean((scores[train] >= t) == labels[train]))
        accs.append(np.mean((scores[test] >= best) == labels[test]))
    return float(np.mean(accs))


def kit(model: Path, pairs_file: Path, photos: Path, report: Path, *flags) -> tuple[dict | None, float, str]:
    """``python -m mfn_tf2.evaluate`` in a subprocess: (its --json report or None, wall seconds, last stderr line)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mfn_tf2.evaluate", str(model), "--pairs_filename", str(pairs_file),
                           "--data_directory", str(photos), "--json", str(report), *flags],
                          capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - start
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    return (json.loads(report.read_text()) if proc.returncode == 0 else None), seconds, last


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lfw", default=os.environ.get("MFN_LFW_ROOT", str(REPO / "data" / "lfw_demo")),
                   help="folder with pairs_heldout.txt and heldout/ (default: MFN_LFW_ROOT, else data/lfw_demo)")
    assets = REPO / "android_demo_assets"
    default_model = next(m for m in (assets / f"model_{k}.tflite" for k in ("fp32", "fp16", "int8")) if m.exists())
    p.add_argument("--model", type=Path, default=default_model, help="a .tflite beside its metadata.json")
    p.add_argument("--pairs", type=int, default=600, help="pairs used, half same, half different (default: 600)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write every figure here")
    ns = p.parse_args()
    root, ns.model = Path(ns.lfw), ns.model.resolve()
    pairs = lfw_pairs(root, ns.pairs)
    labels = np.array([y for _, _, y in pairs])
    folds = np.arange(len(pairs)) * 10 // len(pairs)  # 10 contiguous folds of the whole file, as the kit cuts them
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pairs_file = write_photos(root, pairs, work / "photos", ns.seed)
        print(f"{len(pairs)} pairs, {len({n for a, b, _ in pairs for n in (a, b)})} photos (640x480 JPEG) "
              f"from {root.name}; model {ns.model.relative_to(REPO) if ns.model.is_relative_to(REPO) else ns.model}")
        # the reference: ArcFace's template, and the bundled faces' layout as measured here
        ref = Reference(ns.model)
        layouts = {"112x112": ARCFACE, "lfw_a": ref.layout(sorted((REPO / "data" / "lfw_demo" / "train")
                                                                  .glob("*/*.jpg"))[::20][:300])}
        ref.detect_seconds.clear()
        embedded, no_face = {name: {} for name in layouts}, []
        start = time.perf_counter()
        for photo in sorted({n for a, b, _ in pairs for n in (a, b)}):
            rgb = cv2.imread(str(work / "photos" / photo))[..., ::-1].copy()
            points = ref.landmarks(rgb)
            if points is None:
                no_face.append(photo)
            for name, template in layouts.items() if points is not None else ():
                embedded[name][photo] = ref.embed(rgb, points, template)
        ref_seconds = time.perf_counter() - start
        keep = np.array([a not in no_face and b not in no_face for a, b, _ in pairs])
        rows = {}
        for name in layouts:
            scores = np.array([float(embedded[name][a] @ embedded[name][b]) for (a, b, _), k in zip(pairs, keep) if k])
            report, seconds, _ = kit(ns.model, pairs_file, work / "photos", work / f"{name}.json", "--detect",
                                     "--template", name)
            rows[name] = {"reference": tenfold_accuracy(scores, labels[keep], folds[keep]),
                          "kit": report["models"][0]["report"]["accuracy"],
                          "kit_pairs": report["models"][0]["report"]["n_pairs"], "kit_seconds": seconds,
                          "kit_no_face": [os.path.relpath(f, work / "photos") for f in report["detection"]["no_face"]]}
        as_crops, _, _ = kit(ns.model, pairs_file, work / "photos", work / "as_crops.json", "--crop_check", "false")
        _, _, refusal = kit(ns.model, pairs_file, work / "photos", work / "refused.json")
        # the same pairs on the bundled face crops: the form the demo model was trained on
        (work / "crop_pairs.txt").write_text("".join(f"{a} {b} {y}\n" for a, b, y in pairs))
        bundled = REPO / "data" / "lfw_demo" / "heldout"
        crops, _, _ = kit(ns.model, work / "crop_pairs.txt", bundled, work / "crops.json")
    times = np.array(ref.detect_seconds)
    result = {
        "pairs": len(pairs), "photos": len(times), "model": ns.model.name,
        "layouts_112": {name: np.round(np.asarray(t, np.float64), 2).tolist() for name, t in layouts.items()},
        "reference_pairs": int(keep.sum()), "reference_no_face": no_face, "reference_seconds": ref_seconds,
        "detector_seconds_per_photo": {"median": float(np.median(times)), "mean": float(times.mean())},
        "rows": rows,
        "kit_as_crops": as_crops["models"][0]["report"]["accuracy"],
        "kit_refusal": refusal,
        "bundled_crops": crops["models"][0]["report"]["accuracy"],
        "agree_within_2_points": all(abs(r["kit"] - r["reference"]) <= 0.02 for r in rows.values()),
    }
    print(f"reference: {keep.sum()} pairs scored, no face in {len(no_face)} photos; "
          f"the bundled faces' layout measured here (112 px): {result['layouts_112']['lfw_a']}")
    print("| template | reference (mtcnn + cv2 + LiteRT) | kit evaluate --detect | difference | kit: pairs, no face |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {100 * r['reference']:.2f} % | {100 * r['kit']:.2f} % | "
              f"{100 * (r['kit'] - r['reference']):+.2f} points | {r['kit_pairs']}, {len(r['kit_no_face'])} photos |")
    print(f"agree within 2 points: {'yes' if result['agree_within_2_points'] else 'NO'}")
    print(f"detector time per 640x480 photo (reference loop): median {1000 * np.median(times):.0f} ms, "
          f"mean {1000 * times.mean():.0f} ms; kit evaluate --detect wall time {rows['112x112']['kit_seconds']:.0f} s "
          f"for {len(times)} photos (process start, detection, embedding)")
    print(f"the same photos scored as crops (--crop_check false): {100 * result['kit_as_crops']:.2f} %; "
          f"without that flag the kit says: {refusal}")
    print(f"the same pairs on the bundled face crops (the demo model's training form): "
          f"{100 * result['bundled_crops']:.2f} %")
    if ns.json:
        Path(ns.json).write_text(json.dumps(result, indent=1))
    sys.exit(0 if result["agree_within_2_points"] else 1)


if __name__ == "__main__":
    main()
