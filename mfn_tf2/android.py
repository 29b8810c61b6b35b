"""``android_demo_assets/``: what an app team drops into ``src/main/assets``.

From an export folder: the int8 and fp16 models, ``metadata.json``, a handful
of sample faces saved losslessly at the model's input size, their golden
embeddings as LiteRT computes them (an app's own test compares against these),
and a README that says exactly how to feed the model.

Example:
    >>> write_assets("export/demo", "android_demo_assets", pairs)   # doctest: +SKIP
"""
from __future__ import annotations

import json
import os

import cv2
import numpy as np

from mfn_tf2.alignment import align_face, template_for, template_points, warp_matrix
from mfn_tf2.embedders import FeatureExtractor
from mfn_tf2.fileio import write_bytes, write_json, write_text
from mfn_tf2.images import read_rgb

MODELS = ("model_int8.tflite", "model_fp16.tflite")


class AssetsError(ValueError):
    """An export folder without a model an app can ship."""
NUM_SAMPLE_PAIRS = 3
ALIGN_CASES, ALIGN_CANVAS = 2, 192


def sample_images(pairs, count: int = NUM_SAMPLE_PAIRS) -> list[tuple[str, str, int]]:
    """The first ``count`` same-person and ``count`` different-person pairs: (path1, path2, label)."""
    chosen = []
    for label in (1, 0):
        rows = [k for k, y in enumerate(pairs.labels) if y == label][:count]
        chosen += [(pairs.paths1[k], pairs.paths2[k], label) for k in rows]
    return chosen


def write_assets(export_dir: str, assets_dir: str, pairs, log=print) -> dict:
    """Fills ``assets_dir`` from ``export_dir``; returns the golden record written.

    Args:
        export_dir: a folder written by ``mfn_tf2.export`` (with the int8 and fp16 models).
        assets_dir: the assets folder (created; existing files are replaced atomically).
        pairs: the verification PairSet; sample faces come from its first pairs.

    Raises:
        AssetsError: the export folder holds neither model.
    """
    with open(os.path.join(export_dir, "metadata.json")) as f:
        meta = json.load(f)
    models = [m for m in MODELS if os.path.exists(os.path.join(export_dir, m))]
    if not models:
        raise AssetsError(f"{export_dir}: no {' or '.join(MODELS)} to ship (export with --formats int8,fp16)")
    for name in models:
        with open(os.path.join(export_dir, name), "rb") as f:
            write_bytes(os.path.join(assets_dir, name), f.read())
    meta["files"] = {k: v for k, v in meta["files"].items() if k in models}
    write_json(os.path.join(assets_dir, "metadata.json"), meta)

    h, w = meta["preprocessing"]["input_size"]
    samples, pair_rows = {}, []
    for a, b, label in sample_images(pairs):
        for path in (a, b):
            if path not in samples:
                name = f"face_{len(samples)}.png"
                pixels = cv2.resize(read_rgb(path), (w, h), interpolation=cv2.INTER_AREA)
                # PNG is lossless: the app reads exactly the pixels the golden vectors came from.
                write_bytes(os.path.join(assets_dir, "samples", name),
                            cv2.imencode(".png", pixels[..., ::-1])[1].tobytes())
                samples[path] = {"file": f"samples/{name}", "pixels": pixels,
                                 "source": "/".join(os.path.normpath(path).split(os.sep)[-2:])}
        pair_rows.append((samples[a]["file"], samples[b]["file"], label))
    golden = {"samples": [{"file": s["file"], "source": s["source"], "embeddings": {}} for s in samples.values()],
              "pairs": [], "tolerance": {"cosine_min": 0.999}}
    batch = np.stack([s["pixels"] for s in samples.values()])
    embeddings = {}
    for name in models:
        emb = FeatureExtractor(os.path.join(assets_dir, name), batch_size=1).infer(batch)
        embeddings[name] = emb
        for row, vec in zip(golden["samples"], emb):
            row["embeddings"][name] = [round(float(v), 6) for v in vec]
    index = {s["file"]: i for i, s in enumerate(golden["samples"])}
    for fa, fb, label in pair_rows:
        golden["pairs"].append({"a": fa, "b": fb, "same_person": bool(label),
                                "cosine": {m: round(float(embeddings[m][index[fa]] @ embeddings[m][index[fb]]), 5)
                                           for m in models}})
    write_json(os.path.join(assets_dir, "golden.json"), golden)
    write_alignment(assets_dir, list(samples)[:ALIGN_CASES], models, (h, w))
    write_text(os.path.join(assets_dir, "README.md"), readme(meta, models))
    log(f"android assets: {', '.join(models)} + {len(samples)} sample faces -> {assets_dir}")
    return golden


def _photo(face: np.ndarray, seed: int, template: str):
    """A 'photo' of an aligned face: turned, scaled and shifted by a seeded similarity onto a
    canvas; returns (photo uint8, its 5 landmarks) (the template's points, moved the same way)."""
    rng = np.random.default_rng(seed)
    angle, scale = rng.uniform(-0.4, 0.4), rng.uniform(1.2, 1.8)
    turn = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shift = ALIGN_CANVAS / 2 - turn @ (np.array(face.shape[1::-1]) / 2)
    moved = np.hstack([turn, shift[:, None]])
    photo = cv2.warpAffine(face, moved, (ALIGN_CANVAS, ALIGN_CANVAS), flags=cv2.INTER_LINEAR)
    return photo, template_points(template, face.shape[:2])[0] @ turn.T + shift


def write_alignment(assets_dir: str, sources: list[str], models: list[str], size) -> dict:
    """``alignment.json``: the template at the model's size and golden cases
    photo -> landmarks -> matrix -> aligned face -> embedding, so an app can check its own warp.

    Args:
        assets_dir: the assets folder holding ``models``.
        sources: face image files (aligned crops); each becomes one seeded 'photo'.
        models: model file names in ``assets_dir``.
        size: the models' input (height, width).
    """
    template = template_for(size)
    points, _ = template_points(template, size)
    cases = []
    for k, source in enumerate(sources):
        photo, landmarks = _photo(read_rgb(source), k, template)
        matrix = warp_matrix(landmarks, template, size)
        aligned = align_face(photo, landmarks, template, size)
        files = {"photo": f"samples/photo_{k}.png", "aligned": f"samples/aligned_{k}.png"}
        for key, pixels in (("photo", photo), ("aligned", aligned)):
            write_bytes(os.path.join(assets_dir, files[key]), cv2.imencode(".png", pixels[..., ::-1])[1].tobytes())
        embeddings = {m: [round(float(v), 6) for v in FeatureExtractor(os.path.join(assets_dir, m), batch_size=1)
                          .infer(aligned)[0]] for m in models}
        cases.append({**files, "landmarks": np.round(landmarks, 6).tolist(),
                      "matrix": np.round(matrix, 8).tolist(), "embeddings": embeddings})
    record = {"template": template, "size": list(size), "points": np.round(points, 6).tolist(),
              "warp": "M = least-squares similarity (Umeyama) taking the 5 landmarks onto points; "
                      "aligned = warpAffine(photo, M, (width, height)), bilinear, black outside",
              "cases": cases, "tolerance": {"matrix_abs": 1e-4, "pixel_abs": 2, "cosine_min": 0.99}}
    write_json(os.path.join(assets_dir, "alignment.json"), record)
    return record


def readme(meta: dict, models: list[str]) -> str:
    """How to feed the models, written from the metadata so the numbers are exact."""
    pre, thr = meta["preprocessing"], meta["threshold"]
    lines = ["# android_demo_assets", "",
             "Face embedding models exported by mfn_tf2 (MobileFaceNet + ArcFace), ready for "
             "`app/src/main/assets/`. Generated by `python -m mfn_tf2.export ... --android_assets`; "
             "do not edit by hand.", "", "## Feeding the model", "",
             f"1. Crop the aligned face and resize it to {pre['input_size'][1]}x{pre['input_size'][0]} pixels "
             "(width x height).",
             "2. Lay the pixels out as NHWC, batch 1, channels in **RGB** order "
             "(Android `Bitmap.getPixels` gives ARGB ints: take R, G, B).",
             f"3. Normalise each channel value p (0..255): x = (p - {pre['mean']}) / {pre['std']}.", ""]
    for name in models:
        io_ = meta["files"][name]
        q_in, q_out = io_["input"]["quantization"], io_["output"]["quantization"]
        feed = (f"int8: q = clamp(Math.round(x / {q_in['scale']:.8g}) {_signed(q_in['zero_point'])}, -128, 127) "
                "(round half up)"
                if q_in else f"{io_['input']['dtype']}: x as is")
        read = (f"int8: e = (q {_signed(-q_out['zero_point'])}) * {q_out['scale']:.8g}" if q_out
                else f"{io_['output']['dtype']}: as is")
        lines += [f"### `{name}`", "", f"- input `{io_['input']['name']}` shape {io_['input']['shape']}, {feed}",
                  f"- output `{io_['output']['name']}` shape {io_['output']['shape']}, {read}", ""]
    lines += ["## Comparing faces", "",
              "L2-normalise each embedding e (e / |e|); the cosine similarity of two faces is the dot "
              f"product of their normalised embeddings. Same person when cosine >= **{thr['cosine']:.4f}**: "
              f"the threshold at a false accept rate of {thr['far']} measured on `{os.path.basename(thr['pairs'])}` "
              "with the float model (`metadata.json` -> `threshold`).", "",
              "## Testing your integration", "",
              "`samples/face_*.png` are model-sized RGB faces; `golden.json` holds the normalised embedding "
              "LiteRT computes for each with each model, and the cosine of a few same/different pairs. Feed "
              "each PNG as above: your embedding should have cosine >= "
              "`tolerance.cosine_min` with the golden one (XNNPACK and GPU delegates round slightly differently).",
              "", "## Aligning a face (5 landmarks)", "",
              "The model expects faces warped onto the ArcFace 5-point template (`alignment.json` -> `points`, "
              "already scaled to the input size): left eye, right eye, nose tip, left and right mouth corner, "
              "(x, y) in pixels, left/right as seen in the image. From a detector's 5 landmarks compute the "
              "similarity M (rotation, uniform scale, translation) that maps them onto `points` in least squares "
              "(Umeyama 1991: centre both point sets; SVD of their 2x2 covariance gives the rotation, the "
              "singular values over the landmarks' variance the scale; no reflection), then warp the photo "
              "with M into an input-sized bitmap, bilinear, black outside (Android: `Matrix.setValues` with M's "
              "six numbers + `Canvas.drawBitmap` with a filtering `Paint`).", "",
              "`alignment.json` -> `cases`: for each `samples/photo_*.png`, the `landmarks`, the `matrix` M "
              "(your M should agree within `tolerance.matrix_abs`), the `aligned` face the kit made "
              "(`samples/aligned_*.png`, within `tolerance.pixel_abs` levels) and its `embeddings` "
              "(cosine >= `tolerance.cosine_min`). From Python: "
              "`FeatureExtractor(model).infer(photo, landmarks=landmarks)`.", ""]
    return "\n".join(lines)


def _signed(value: int) -> str:
    """"+ 3" / "- 3": a term of a formula."""
    return f"{'+' if value >= 0 else '-'} {abs(value)}"
