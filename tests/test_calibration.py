"""Thresholds on every pair of a face folder: against a brute-force N x N count, and the calibrate CLI."""
import json
import shutil

import numpy as np
import pytest

from conftest import DEMO_DATA, REPO, make_face_tree, run_cli, run_main
from mfn_tf2.calibration import (CalibrationError, MIN_FALSE_ACCEPTS, allowed_false_accepts, list_faces, measure,
                                 score_pairs)

MODEL = REPO / "android_demo_assets" / "model_int8.tflite"


def _embeddings(seed, sizes, dim=16, pull=1.5):
    """Unit embeddings of identities of the given sizes, each identity's rows pulled towards a centre."""
    rng = np.random.default_rng(seed)
    identity = np.repeat(np.arange(len(sizes)), sizes)
    centres = rng.normal(size=(len(sizes), dim))
    emb = rng.normal(size=(identity.size, dim)) + pull * centres[identity]
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return np.round(emb, 2).astype(np.float32) if seed % 2 else emb.astype(np.float32), identity


def _brute(emb, identity):
    """(impostor scores, genuine scores) of every unordered pair, from the whole matrix at once."""
    i, j = np.triu_indices(len(emb), k=1)
    scores = (emb @ emb.T)[i, j]
    same = identity[i] == identity[j]
    return scores[~same], scores[same]


@pytest.mark.parametrize("seed", [0, 1])  # odd seeds: rounded embeddings, many tied scores
def test_score_pairs_in_blocks_sees_every_pair_once(seed):
    emb, identity = _embeddings(seed, [1, 3, 7, 2, 1, 5] * 12)
    impostors, genuine = _brute(emb, identity)
    for block in (50, 1000, 10 ** 7):  # one row per block, a few rows, everything at once
        top, gen, owners = score_pairs(emb, identity, keep=300, block_scores=block)
        np.testing.assert_allclose(top, np.sort(impostors)[::-1][:300], atol=1e-6)
        np.testing.assert_allclose(np.sort(gen), np.sort(genuine), atol=1e-6)
        assert np.bincount(owners).tolist() == [s * (s - 1) // 2 for s in [1, 3, 7, 2, 1, 5] * 12]


@pytest.mark.parametrize("seed", [2, 3])
def test_thresholds_match_brute_force(seed):
    emb, identity = _embeddings(seed, [4, 2, 6, 1, 3] * 12)  # 192 images: about 18,000 impostor pairs
    impostors, genuine = _brute(emb, identity)
    n = impostors.size
    targets = (1e-2, 1e-3, 1e-4)
    points = measure(emb, identity, targets, seed=0)
    assert [p["far"] for p in points] == list(targets)
    for p in points:
        if p["far"] * n < MIN_FALSE_ACCEPTS:
            assert not p["measurable"] and p["cosine"] is None and f"with {n:,} impostor pairs" in p["note"]
            continue
        # By definition: the smallest observed score whose FAR is within the target.
        observed = np.unique(np.r_[impostors, genuine])
        accepted = n - np.searchsorted(np.sort(impostors), observed, side="left")  # impostors >= each score
        allowed = observed[accepted <= p["far"] * n]
        assert p["cosine"] == pytest.approx(allowed.min(), abs=1e-6)
        assert p["false_accepts"] == np.sum(impostors >= p["cosine"]) <= allowed_false_accepts(p["far"], n)
        assert p["far_measured"] == p["false_accepts"] / n <= p["far"]
        assert p["tar"] == pytest.approx(np.mean(genuine >= p["cosine"]))
        assert p["far_ci95"][0] <= p["far_measured"] <= p["far_ci95"][1]
        assert p["tar_ci95"][0] <= p["tar"] <= p["tar_ci95"][1] and p["tar_ci95"][1] - p["tar_ci95"][0] > 0
    assert points[0]["measurable"] and not points[2]["measurable"]
    assert measure(emb, identity, targets, seed=0) == points  # the bootstrap is seeded
    shuffled = np.random.default_rng(seed).permutation(len(emb))  # rows in any order: the same pairs
    again = measure(emb[shuffled], identity[shuffled], targets, seed=0)
    assert [(p["false_accepts"], p["tar"]) for p in again] == [(p["false_accepts"], p["tar"]) for p in points]


def test_list_faces_counts_pairs_and_skips(tmp_path):
    faces = make_face_tree(tmp_path / "faces", n_ids=8, n_imgs=6)
    (faces / "empty_person").mkdir()
    (faces / sorted(p.name for p in faces.iterdir())[0] / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    listing = list_faces(str(faces))
    assert len(listing.paths) == 48 and listing.identities == 8
    assert (listing.genuine_pairs, listing.impostor_pairs) == (8 * 15, 48 * 47 // 2 - 8 * 15)
    assert listing.skipped == {"files": 1, "empty_identities": 1}
    assert np.all(np.diff(listing.identity) >= 0)


@pytest.mark.parametrize("case, words", [
    ("one identity", "1 identity folder(s), need at least 2"),
    ("one image each", "no identity folder has 2 readable images"),
    ("too few images", "too few to measure FAR 0.01 (it needs 1000)"),
    ("unreadable images only", "0 identity folder(s) with readable images"),
])
def test_folders_that_cannot_measure_fail_in_one_line(tmp_path, case, words):
    folder = tmp_path / "faces"
    if case == "one identity":
        make_face_tree(folder, n_ids=1, n_imgs=6)
    elif case == "one image each":
        make_face_tree(folder, n_ids=50, n_imgs=1)
    elif case == "too few images":
        make_face_tree(folder, n_ids=6, n_imgs=5)  # 30 images: 375 different-person pairs
    else:
        for name in ("a", "b"):
            (folder / name).mkdir(parents=True)
            (folder / name / "x.jpg").write_text("not an image")
    with pytest.raises(ValueError) as err:
        list_faces(str(folder), flag="FOLDER")
    message = str(err.value)
    assert words in message and message.startswith(f"FOLDER {folder}") and "\n" not in message
    proc = run_main("calibrate", MODEL, folder)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == f"error: {message}", proc.stderr
    if case != "one identity":  # the layout check is the folder scan's DataError; these are ours
        assert isinstance(err.value, CalibrationError)


def test_calibrate_cli_table_and_json(tmp_path):
    faces = make_face_tree(tmp_path / "faces", n_ids=8, n_imgs=6)
    shutil.copy(DEMO_DATA / "pairs_heldout.txt", faces / sorted(p.name for p in faces.iterdir())[0] / "notes.txt")
    out = tmp_path / "t.json"
    proc = run_cli("calibrate", MODEL, faces, "--far", "1e-2,1e-3", "--json", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert (result["images"], result["identities"], result["genuine_pairs"], result["impostor_pairs"]) == \
        (48, 8, 120, 1008)
    assert result["skipped"] == {"files": 1, "empty_identities": 0}
    first, second = result["points"]
    assert first["measurable"] and first["far_measured"] <= 0.01 and first["false_accepts"] <= 10
    assert -1 <= first["cosine"] <= 1 and 0 <= first["tar"] <= 1
    assert not second["measurable"] and second["note"] == "not measurable with 1,008 impostor pairs " \
                                                          "(FAR 0.001 needs 10,000)"
    assert f"| 0.01 | {first['cosine']:.4f} |" in proc.stdout and "not measurable with 1,008" in proc.stdout
    assert "48 images of 8 identities (1 unreadable files" in proc.stdout


def test_calibrate_cli_bad_input_is_one_line(tmp_path):
    proc = run_main("calibrate", MODEL, tmp_path / "nope")  # refused before any model runs: in-process
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"error: FOLDER {tmp_path / 'nope'}: no such folder; " \
                                                   "give a folder with one sub-folder per identity"
    flag = run_main("calibrate", MODEL, tmp_path, "--far", "0")
    assert flag.returncode == 2 and "--far_target 0.0: each false accept rate must be in (0, 1)" in flag.stderr
