"""Android assets: the committed android_demo_assets/ and a freshly written folder are portable,
reproduce their goldens in LiteRT by hand, and ship the threshold measured with the shipped file.

The committed folder is checked as it is (`make demo` rewrites it); the folder a tiny demo run writes
(conftest's ``tiny_demo``, slow) gets the same checks, on what the code writes today.
"""
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO, golden_cosines

ASSETS = REPO / "android_demo_assets"
TEXT = (".md", ".json", ".txt", ".csv")


@pytest.fixture(scope="module")
def fresh(tiny_demo):
    """The tiny demo run's export (every format) and the assets it wrote from it (--android_assets);
    thresholds measured on every pair of the bundled held-out faces. Returns (export folder, assets folder)."""
    return tiny_demo / "demo_out" / "export", tiny_demo / "assets"


@pytest.fixture(params=["committed", "fresh"])
def assets(request) -> Path:
    return ASSETS if request.param == "committed" else request.getfixturevalue("fresh")[1]


def _json(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text())


def test_leaks_finds_absolute_paths_and_the_host_name():
    import socket
    from mfn_tf2.android import leaks
    for text in ('"measured_on": "/work/main/data"', "pairs /tmp/x.txt", "C:\\Users\\me", "/home/a/b",
                 "/root/lfw", f"built on {socket.gethostname()}"):
        assert leaks(text), text
    for text in ('"measured_on": "../data/lfw_demo/heldout"', "x = (p - 127.5) / 128.0", "Person/img_1.jpg"):
        assert not leaks(text), text
    assert leaks('"measured_on": "../../../../tmp/x/heldout"')  # climbing to the root names it too


def test_no_absolute_path_or_machine_name_in_any_text_file(assets):
    from mfn_tf2.android import leaks
    texts = [p for p in assets.rglob("*") if p.suffix in TEXT]
    assert {p.name for p in texts} >= {"README.md", "metadata.json", "golden.json", "alignment.json"}
    found = {str(p.relative_to(assets)): leaks(p.read_text()) for p in texts}
    assert not any(found.values()), found


def test_committed_assets_are_complete():
    meta = _json(ASSETS, "metadata.json")
    for name in ("README.md", "golden.json", "alignment.json", "model_int8.tflite", "model_fp16.tflite"):
        assert (ASSETS / name).exists(), name
    assert meta["files"]["model_int8.tflite"]["input"]["dtype"] == "int8"
    assert 0 < meta["threshold"]["cosine"] < 1 and meta["embedding_dim"] == 128
    golden = _json(ASSETS, "golden.json")
    assert all((ASSETS / s["file"]).exists() for s in golden["samples"])
    same = [p["cosine"]["model_int8.tflite"] for p in golden["pairs"] if p["same_person"]]
    other = [p["cosine"]["model_int8.tflite"] for p in golden["pairs"] if not p["same_person"]]
    assert sum(same) / len(same) > sum(other) / len(other)  # a trained model, not noise
    # The demo trains on the bundled LFW crops: an app must align onto their layout, and the goldens do.
    assert meta["preprocessing"]["template"] == _json(ASSETS, "alignment.json")["template"] == "lfw_a"


def test_shipped_threshold_is_the_shipped_files_own(assets):
    meta = _json(assets, "metadata.json")
    thr, shipped = meta["threshold"], meta["files"]
    assert thr["file"] == "model_int8.tflite" and set(shipped) == {"model_int8.tflite", "model_fp16.tflite"}
    # a name of the export folder, not a path; the int8 asset is one of the export's int8 files
    from mfn_tf2.exporting import INT8_FORMATS
    assert shipped["model_int8.tflite"]["source"] in {f"model_{kind}.tflite" for kind in INT8_FORMATS}
    assert shipped["model_fp16.tflite"]["source"] == "model_fp16.tflite"
    assert thr in meta["thresholds"] and thr["measurable"] and thr["source"] == shipped[thr["file"]]["source"]
    for t in meta["thresholds"]:
        assert t["file"] in shipped and t["source"] == shipped[t["file"]]["source"], t
        assert not Path(t["measured_on"]).is_absolute()
    fars = {f: sorted(t["far"] for t in meta["thresholds"] if t["file"] == f) for f in shipped}
    assert fars["model_int8.tflite"] == fars["model_fp16.tflite"] and thr["far"] in fars["model_int8.tflite"]
    # FAR 1e-3 needs far more different-person pairs than a pairs file: all pairs of a face folder
    assert thr["impostor_pairs"] >= 100_000 and thr["false_accepts"] <= thr["far"] * thr["impostor_pairs"]
    assert thr["far_ci95"][0] <= thr["far_measured"] <= thr["far_ci95"][1]
    assert thr["tar_ci95"][0] <= thr["tar"] <= thr["tar_ci95"][1]
    readme = (assets / "README.md").read_text()
    assert f"cosine >= **{thr['cosine']:.4f}**" in readme and f"{thr['impostor_pairs']:,} impostor" in readme
    assert "`NOSE_BASE`" in readme and "468" in readme and "as seen in the image" in readme


def test_fresh_assets_ship_the_recommended_int8_file_byte_for_byte(fresh):
    """The int8 asset is the file the export's rule recommended (its metadata's threshold), and
    every asset's bytes and thresholds are its source file's."""
    export, assets = fresh
    meta, exported_meta = _json(assets, "metadata.json"), _json(export, "metadata.json")
    assert meta["files"]["model_int8.tflite"]["source"] == exported_meta["threshold"]["file"]
    assert meta["choice"] == exported_meta["threshold"]["why"] and meta["choice"] in (assets / "README.md").read_text()
    for asset, spec in meta["files"].items():
        digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (assets / asset, export / spec["source"])]
        assert digest[0] == digest[1], asset
    exported = {(t["file"], t["far"]): t for t in exported_meta["thresholds"]}
    for t in meta["thresholds"]:
        assert t["cosine"] == exported[t["source"], t["far"]]["cosine"]  # the same file's own threshold


def _litert(folder: Path, name: str, spec: dict, pre: dict, rgb: np.ndarray) -> np.ndarray:
    """The unit embedding of one model-sized RGB face, fed exactly as the README says."""
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=str(folder / name))
    interp.allocate_tensors()
    inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
    x = (rgb.astype(np.float32) - pre["mean"]) / pre["std"]
    if spec["input"]["quantization"]:
        q = spec["input"]["quantization"]
        x = np.clip(np.floor(x / q["scale"] + 0.5) + q["zero_point"], -128, 127)  # Math.round
    interp.set_tensor(inp["index"], x[None].astype(inp["dtype"]))
    interp.invoke()
    e = interp.get_tensor(outp["index"]).astype(np.float64)[0]
    if spec["output"]["quantization"]:
        e = (e - spec["output"]["quantization"]["zero_point"]) * spec["output"]["quantization"]["scale"]
    return e / np.linalg.norm(e)


def _check_pairs(record: dict, emb: dict, index, tolerance: float) -> None:
    """Pair cosines within tolerance; the decision at the record's thresholds agrees wherever the
    golden cosine is farther than the tolerance from the threshold."""
    for pair in record["pairs"]:
        for model, golden in pair["cosine"].items():
            cosine = float(emb[model][index(pair["a"])] @ emb[model][index(pair["b"])])
            assert abs(cosine - golden) <= tolerance, (pair, model, cosine)
            if abs(golden - record["threshold"][model]) > tolerance:
                assert (cosine >= record["threshold"][model]) == pair["same_person_at_threshold"][model]


def test_golden_vectors_pairs_and_decisions_reproduce_in_litert(assets):
    meta, golden = _json(assets, "metadata.json"), _json(assets, "golden.json")
    cosines = golden_cosines(assets)
    assert len(cosines) == 2 * len(golden["samples"]) and min(cosines) >= golden["tolerance"]["cosine_min"]
    at = {t["file"]: t["cosine"] for t in meta["thresholds"] if t["far"] == meta["threshold"]["far"]}
    assert golden["threshold"] == at and at["model_int8.tflite"] == meta["threshold"]["cosine"]
    emb = {m: [_litert(assets, m, spec, meta["preprocessing"], cv2.imread(str(assets / s["file"]))[..., ::-1])
               for s in golden["samples"]] for m, spec in meta["files"].items()}
    files = [s["file"] for s in golden["samples"]]
    _check_pairs(golden, emb, files.index, golden["tolerance"]["pair_cosine_abs"])


def test_alignment_cases_reproduce_from_the_raw_photos(assets):
    """Raw photo + detected landmarks -> the similarity solved independently (as an app would) ->
    warp -> LiteRT -> embeddings, pair cosines and decisions of alignment.json."""
    meta, record = _json(assets, "metadata.json"), _json(assets, "alignment.json")
    tol, (h, w) = record["tolerance"], record["size"]
    assert record["threshold"] == _json(assets, "golden.json")["threshold"]
    assert {p["same_person"] for p in record["pairs"]} == {True, False}
    emb = {m: [] for m in meta["files"]}
    for case in record["cases"]:
        photo = cv2.imread(str(assets / case["photo"]))[..., ::-1]
        detected, truth = np.array(case["landmarks"]), np.array(case["landmarks_true"])
        # The detector found this face: its landmarks lie near the true ones, in model pixels (the crops
        # themselves sit 0.06-0.10 of the width from the template on average; another face would not).
        scale = np.hypot(*np.array(case["matrix"])[:, 0])  # photo px -> model px
        assert np.linalg.norm(detected - truth, axis=1).mean() * scale < 0.15 * w
        rows = np.zeros((10, 4))
        rows[0::2] = np.c_[detected[:, 0], -detected[:, 1], np.ones(5), np.zeros(5)]
        rows[1::2] = np.c_[detected[:, 1], detected[:, 0], np.zeros(5), np.ones(5)]
        a, b, tx, ty = np.linalg.lstsq(rows, np.array(record["points"]).reshape(-1), rcond=None)[0]
        matrix = np.array([[a, -b, tx], [b, a, ty]])
        assert np.abs(np.array(case["matrix"]) - matrix).max() < tol["matrix_abs"]
        aligned = cv2.warpAffine(photo, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
        golden_aligned = cv2.imread(str(assets / case["aligned"]))[..., ::-1]
        assert np.abs(aligned.astype(int) - golden_aligned).max() <= tol["pixel_abs"]
        for m, spec in meta["files"].items():
            emb[m].append(_litert(assets, m, spec, meta["preprocessing"], aligned))
            assert float(emb[m][-1] @ np.array(case["embeddings"][m])) >= tol["cosine_min"]
    _check_pairs(record, emb, lambda k: k, tol["pair_cosine_abs"])
