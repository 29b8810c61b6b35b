"""``android_demo_assets/``: what an app team drops into ``src/main/assets``, from one export folder.

The export's recommended int8 file (``exporting.recommend``: the fastest int8 file, of any int8 kind,
not distinguishably worse than float by the paired test) byte for byte as ``model_int8.tflite`` and
its fp16 file; ``metadata.json`` with their tensors and their own thresholds (renamed to the asset
names); sample faces with golden embeddings (``golden.json``); golden cases from a raw photo
through the kit's detector, the warp and the embedding to the decision at the shipped threshold
(``alignment.json``); a README that says how to feed the model (``android_readme``). The folder is
written whole (nothing of an older export survives) and holds no absolute path or machine name
(``leaks``).

Example:
    >>> write_assets("export/demo", "android_demo_assets", pairs)   # doctest: +SKIP
    >>> leaks("pairs of /tmp/lfw/heldout"), leaks("pairs of ../data/lfw_demo/heldout")
    (['/tmp/'], [])
"""
from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import cv2
import numpy as np

from mfn_tf2 import config as C
from mfn_tf2.alignment import align_face, template_for, template_points, warp_matrix, write_face
from mfn_tf2.android_readme import LANDMARK_ORDER, readme
from mfn_tf2.detection import detect_faces
from mfn_tf2.embedders import FeatureExtractor
from mfn_tf2.fileio import atomic_directory, write_bytes, write_json, write_text
from mfn_tf2.images import read_rgb
from mfn_tf2.tflite import RANGES

MODELS = ("model_int8.tflite", "model_fp16.tflite")  # the names an app loads
TEXT_FILES = ("README.md", "metadata.json", "golden.json", "alignment.json")
NUM_SAMPLE_PAIRS = 3
ALIGN_CANVAS, ALIGN_TRIES = 192, 20  # photo size (px); pairs tried until the detector finds both faces
# Absolute paths (also reached by climbing "../.."), Windows drives, file URLs: tie an asset to one machine.
_ABSOLUTE = re.compile(r"(?<!\w)/(?:work|tmp|home|root|Users|mnt|var|opt|private)/|\b[A-Za-z]:\\|file:/")


class AssetsError(ValueError):
    """An export folder an app cannot be given (no model, no thresholds)."""


def leaks(text: str) -> list[str]:
    """The absolute paths and this machine's name found in ``text``.

    Args:
        text: a text file's content.

    Returns:
        What ties it to one machine, in order found (empty: portable).

    Example:
        >>> leaks("from file:///sdcard/m.tflite and /mnt/faces, not ../export/demo")
        ['file:/', '/mnt/']
    """
    found = [m.group(0) for m in _ABSOLUTE.finditer(text)]
    host = socket.gethostname().split(".")[0]
    if host and host != "localhost" and re.search(rf"(?<![\w-]){re.escape(host)}(?![\w-])", text, re.I):
        found.append(host)
    return found


def sample_images(pairs, count: int = NUM_SAMPLE_PAIRS) -> list[tuple[str, str, int]]:
    """The first ``count`` same-person and ``count`` different-person pairs.

    Args:
        pairs: a PairSet (``paths1``, ``paths2``, ``labels``).
        count: pairs of each label.

    Returns:
        [(path1, path2, label)], the same-person ones first.
    """
    chosen = []
    for label in (1, 0):
        rows = [k for k, y in enumerate(pairs.labels) if y == label][:count]
        chosen += [(pairs.paths1[k], pairs.paths2[k], label) for k in rows]
    return chosen


def shipped_files(export_dir: str, meta: dict) -> dict[str, str]:
    """{asset name: export file name}: the export's recommended file as ``model_int8.tflite`` when it
    is an int8 one (int8, qat_int8 or int8_islands), and ``model_fp16.tflite``, those present.

    The recommended file is ``metadata.json`` -> ``threshold`` -> ``file``: the export's one rule
    (``exporting.recommend``: the fastest int8 file not distinguishably worse than float) chose it.

    Args:
        export_dir: the export folder.
        meta: its metadata.json.

    Returns:
        {asset name: export file name}, int8 first.

    Raises:
        AssetsError: no recommended threshold, or neither an int8 nor the fp16 file.
    """
    if not meta.get("threshold"):
        raise AssetsError(f"{export_dir}/metadata.json: no recommended threshold (export again: the kit "
                          "measures every file's thresholds)")
    recommended = meta["threshold"]["file"]
    int8 = recommended if recommended in {C.EXPORT_FILES[kind] for kind in RANGES} else None  # every int8 kind
    wanted = {MODELS[0]: int8, MODELS[1]: C.EXPORT_FILES["fp16"]}
    shipped = {a: f for a, f in wanted.items() if f and os.path.exists(os.path.join(export_dir, f))}
    if not shipped:
        raise AssetsError(f"{export_dir}: no int8 or fp16 model to ship (export with --formats int8,fp16)")
    return shipped


def shipped_metadata(meta: dict, shipped: dict[str, str], export_dir: str, assets_dir: str) -> dict:
    """The export's metadata for the shipped files: their tensors and thresholds under the asset
    names (``source``: the export file), ``measured_on`` relative to the assets folder, and
    ``threshold`` = the main file's point at the export's recommended FAR.

    Args:
        meta: the export's metadata.json.
        shipped: ``shipped_files``' {asset name: export file name}.
        export_dir: the export folder (``measured_on`` is relative to it).
        assets_dir: the assets folder.

    Returns:
        The metadata the app reads, with ``choice``: why the int8 file shipped.
    """
    asset_of = {f: a for a, f in shipped.items()}
    rows = [{**t, "file": asset_of[t["file"]], "source": t["file"],
             "measured_on": _relocate(t["measured_on"], export_dir, assets_dir)}
            for t in meta.get("thresholds") or [] if t["file"] in asset_of]
    main, far = next(iter(shipped)), meta["threshold"]["far"]
    point = next((t for t in rows if t["file"] == main and t["far"] == far), None)
    if point is None:
        raise AssetsError(f"{export_dir}/metadata.json: no threshold of {shipped[main]} at FAR {far:g} "
                          "(export again: the kit measures one for every file)")
    files = {a: {**meta["files"][f], "source": f} for a, f in shipped.items()}
    return {**meta, "threshold": point, "thresholds": rows, "choice": meta["threshold"].get("why", ""),
            "files": files}


def _relocate(path: str, export_dir: str, assets_dir: str) -> str:
    """A folder named relative to the export folder, named relative to the assets folder when the two
    share a parent below the top level; else by its last two names (a path climbing to the root
    would name the machine's folders)."""
    folder = os.path.abspath(os.path.join(export_dir, path))
    if os.path.commonpath([folder, os.path.abspath(assets_dir)]).count(os.sep) >= 2:
        return os.path.relpath(folder, assets_dir).replace(os.sep, "/")
    return "/".join(folder.split(os.sep)[-2:])


def write_assets(export_dir: str, assets_dir: str, pairs, log=print) -> dict:
    """Fills ``assets_dir`` (replaced whole) from ``export_dir``; returns the golden record written.

    Args:
        export_dir: a folder written by ``mfn_tf2.export`` (metadata.json, report.json, the models).
        assets_dir: the assets folder.
        pairs: the verification PairSet; sample faces and golden photos come from its pairs.
        log: where the one summary line goes.

    Returns:
        The record written to ``golden.json``.

    Raises:
        AssetsError: no model to ship, no thresholds, no photo the detector finds a face in,
            or an absolute path or this machine's name in a text file.
    """
    meta, report = (json.loads(Path(export_dir, name).read_text()) for name in ("metadata.json", "report.json"))
    shipped = shipped_files(export_dir, meta)
    with atomic_directory(assets_dir) as tmp:
        os.chmod(tmp, 0o755)
        meta = shipped_metadata(meta, shipped, export_dir, assets_dir)
        for asset, source in shipped.items():
            write_bytes(os.path.join(tmp, asset), Path(export_dir, source).read_bytes())
        write_json(os.path.join(tmp, "metadata.json"), meta)
        thresholds = {t["file"]: t["cosine"] for t in meta["thresholds"] if t["far"] == meta["threshold"]["far"]}
        golden = write_golden(tmp, pairs, list(shipped), thresholds, meta["preprocessing"]["input_size"])
        write_alignment(tmp, pairs, list(shipped), thresholds, meta["preprocessing"]["input_size"],
                        meta["preprocessing"].get("template"))
        write_text(os.path.join(tmp, "README.md"), readme(meta, report))
        found = {name: leaks(Path(tmp, name).read_text()) for name in TEXT_FILES}
        if any(found.values()):
            raise AssetsError(f"{assets_dir}: machine-specific text in the assets: {found}")
    log(f"android assets: {', '.join(f'{a} (= {s})' for a, s in shipped.items())}, threshold "
        f"{meta['threshold']['cosine']:.4f} at FAR {meta['threshold']['far']:g} -> {assets_dir}")
    return golden


def _source(path: str) -> str:
    """"person/image.jpg": where a face came from, without the machine's folders."""
    return "/".join(os.path.normpath(path).split(os.sep)[-2:])


def _decision(emb: dict, a: int, b: int, thresholds: dict) -> dict:
    """Cosine of rows a and b per model, and whether it reaches that model's threshold."""
    cosine = {m: round(float(e[a] @ e[b]), 5) for m, e in emb.items()}
    return {"cosine": cosine, "same_person_at_threshold": {m: bool(c >= thresholds[m]) for m, c in cosine.items()}}


def write_golden(assets_dir: str, pairs, models: list[str], thresholds: dict, size) -> dict:
    """``golden.json`` + ``samples/face_*.png``: model-sized faces (PNG, lossless: an app reads exactly
    the pixels the goldens came from), their LiteRT embeddings, pair cosines and the decision at each
    model's threshold.

    Args:
        assets_dir: the assets folder holding ``models``.
        pairs: the verification PairSet (``sample_images`` picks the faces).
        models: model file names in ``assets_dir``.
        thresholds: {model: cosine threshold} the decisions are taken at.
        size: the models' input (height, width).

    Returns:
        The record written to ``golden.json``.
    """
    h, w = size
    samples, rows = {}, []
    for a, b, label in sample_images(pairs):
        for path in (a, b):
            if path not in samples:
                name = f"samples/face_{len(samples)}.png"
                pixels = cv2.resize(read_rgb(path), (w, h), interpolation=cv2.INTER_AREA)
                write_face(os.path.join(assets_dir, name), pixels)
                samples[path] = {"file": name, "pixels": pixels, "source": _source(path)}
        rows.append((list(samples).index(a), list(samples).index(b), label))
    batch = np.stack([s["pixels"] for s in samples.values()])
    emb = {m: FeatureExtractor(os.path.join(assets_dir, m), batch_size=1).infer(batch) for m in models}
    files = [s["file"] for s in samples.values()]
    golden = {"samples": [{"file": s["file"], "source": s["source"],
                           "embeddings": {m: [round(float(v), 6) for v in emb[m][k]] for m in models}}
                          for k, s in enumerate(samples.values())],
              "threshold": thresholds,
              "pairs": [{"a": files[i], "b": files[j], "same_person": bool(label), **_decision(emb, i, j, thresholds)}
                        for i, j, label in rows],
              "tolerance": {"cosine_min": 0.999, "pair_cosine_abs": 0.005}}
    write_json(os.path.join(assets_dir, "golden.json"), golden)
    return golden


def _photo(face: np.ndarray, seed: int, template: str):
    """A 'photo' of an aligned face: turned, scaled and shifted by a seeded similarity onto a
    canvas; returns (photo uint8, its 5 true landmarks: the template's points moved the same way)."""
    rng = np.random.default_rng(seed)
    angle, scale = rng.uniform(-0.4, 0.4), rng.uniform(1.2, 1.8)
    turn = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shift = ALIGN_CANVAS / 2 - turn @ (np.array(face.shape[1::-1]) / 2)
    moved = np.hstack([turn, shift[:, None]])
    photo = cv2.warpAffine(face, moved, (ALIGN_CANVAS, ALIGN_CANVAS), flags=cv2.INTER_LINEAR)
    return photo, template_points(template, face.shape[:2])[0] @ turn.T + shift


def _detected_pair(pairs, label: int, seed: int, template: str):
    """The first pair of ``label`` whose two photos the kit's detector finds a face in:
    [(source, photo, detected (5, 2), true (5, 2))] * 2, or None."""
    rows = [k for k, y in enumerate(pairs.labels) if y == label][:ALIGN_TRIES]
    for k in rows:
        found = []
        for n, path in enumerate((pairs.paths1[k], pairs.paths2[k])):
            photo, truth = _photo(read_rgb(path), seed + 2 * k + n, template)
            faces = detect_faces(photo)
            if not faces:
                break
            found.append((_source(path), photo, np.asarray(faces[0].landmarks, np.float64), truth))
        if len(found) == 2:
            return found
    return None


def write_alignment(assets_dir: str, pairs, models: list[str], thresholds: dict, size,
                    template: str | None = None) -> dict:
    """``alignment.json``: golden cases raw photo -> detected landmarks -> matrix -> aligned face ->
    embedding, and the cosine of a same-person and a different-person pair of them -> decision.

    Args:
        assets_dir: the assets folder holding ``models``.
        pairs: the verification PairSet (the photos are made from its faces).
        models: model file names in ``assets_dir``.
        thresholds: {model: cosine threshold} the decisions are taken at.
        size: the models' input (height, width).
        template: the 5-point layout the models were trained on (metadata.json ->
            preprocessing -> template; default: ArcFace's for ``size``).

    Returns:
        The record written to ``alignment.json``.
    """
    template = template or template_for(size)
    points, _ = template_points(template, size)
    cases, decisions = [], []
    for label in (1, 0):
        found = _detected_pair(pairs, label, 100 * len(cases), template)
        if found is None:
            raise AssetsError(f"the detector found no face in the photos of the first {ALIGN_TRIES} "
                              f"{'same' if label else 'different'}-person pairs")
        for source, photo, detected, truth in found:
            k, detected = len(cases), np.round(detected, 4)  # the goldens follow from the stored landmarks
            matrix = warp_matrix(detected, template, size)
            aligned = align_face(photo, detected, template, size)
            files = {"photo": f"samples/photo_{k}.png", "aligned": f"samples/aligned_{k}.png"}
            write_face(os.path.join(assets_dir, files["photo"]), photo)
            write_face(os.path.join(assets_dir, files["aligned"]), aligned)
            cases.append({**files, "source": source, "landmarks": detected.tolist(),
                          "landmarks_true": np.round(truth, 4).tolist(),
                          "detector_error_px": round(float(np.linalg.norm(detected - truth, axis=1).max()), 2),
                          "matrix": np.round(matrix, 8).tolist(), "aligned_pixels": aligned})
        decisions.append((len(cases) - 2, len(cases) - 1, label))
    batch = np.stack([c.pop("aligned_pixels") for c in cases])
    emb = {m: FeatureExtractor(os.path.join(assets_dir, m), batch_size=1).infer(batch) for m in models}
    for k, case in enumerate(cases):
        case["embeddings"] = {m: [round(float(v), 6) for v in emb[m][k]] for m in models}
    record = {"template": template, "size": list(size), "points": np.round(points, 6).tolist(),
              "landmark_order": LANDMARK_ORDER,
              "detector": "mfn_tf2.detection.detect_faces (MTCNN), largest face",
              "warp": "M = least-squares similarity (Umeyama) taking the 5 landmarks onto points; "
                      "aligned = warpAffine(photo, M, (width, height)), bilinear, black outside",
              "cases": cases, "threshold": thresholds,
              "pairs": [{"a": a, "b": b, "same_person": bool(label), **_decision(emb, a, b, thresholds)}
                        for a, b, label in decisions],
              "tolerance": {"matrix_abs": 1e-4, "pixel_abs": 2, "cosine_min": 0.99, "pair_cosine_abs": 0.02}}
    write_json(os.path.join(assets_dir, "alignment.json"), record)
    return record
