"""python -m mfn_tf2.evaluate and FeatureExtractor on every kind of model, on real face pairs."""
import json
import os

import numpy as np
import pytest

from conftest import run_cli, run_main
from test_detection import DEMO_MODEL


def _tflite(model, path, int8_calibration=None):
    """The kit's converter: fp32, or int8 (int8 input and output) with the calibration given."""
    from mfn_tf2.tflite import convert
    kind = "fp32" if int8_calibration is None else "int8"
    path.write_bytes(convert(model, kind, int8_calibration))
    return path


@pytest.fixture(scope="module")
def three_forms(tiny_run, tmp_path_factory):
    """The tiny run as checkpoint, SavedModel and float TFLite."""
    from mfn_tf2.checkpoints import load_backbone
    save_dir, faces, pairs = tiny_run
    out = tmp_path_factory.mktemp("forms")
    return save_dir, save_dir / "embedding_model", _tflite(load_backbone(str(save_dir)), out / "m.tflite")


def test_checkpoint_savedmodel_tflite_agree(three_forms, demo_data, tmp_path):
    report = tmp_path / "r.json"
    proc = run_cli("evaluate", *three_forms, "--pairs_filename", demo_data / "pairs_heldout.txt",
                   "--data_directory", demo_data / "heldout", "--far_target", "1e-3,1e-2",
                   "--json", report, "--save_scores", tmp_path / "s.csv", "--plot", tmp_path / "roc.png")
    assert proc.returncode == 0, proc.stderr[-2000:]
    models = json.loads(report.read_text())["models"]
    accs = [m["report"]["accuracy"] for m in models]
    assert max(accs) - min(accs) <= 0.001, accs
    assert models[0]["report"]["n_pairs"] == 1200
    assert set(models[0]["report"]["tar_at_far"]) == {"0.001", "0.01"}
    assert all(m["agreement"]["min"] > 0.999 for m in models[1:])
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert len(lines) == 1201 and lines[0].count(",") == 5
    assert (tmp_path / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| model |" in proc.stdout


def _tiny_model(height, width):
    from mfn_tf2.backend import keras
    inp = keras.Input((height, width, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(16)(x))


def test_non_square_and_int8_input_models(tmp_path, demo_data):
    from mfn_tf2.embedders import FeatureExtractor
    model = _tiny_model(40, 32)
    calib = np.random.default_rng(0).uniform(-1, 1, (8, 40, 32, 3)).astype(np.float32)
    fp = _tflite(model, tmp_path / "ns.tflite")
    q = _tflite(model, tmp_path / "ns_int8.tflite", calib)
    face = np.random.default_rng(1).integers(0, 255, (3, 112, 112, 3), dtype=np.uint8)
    f32, i8 = FeatureExtractor(str(fp)), FeatureExtractor(str(q))
    assert f32.input_size == (40, 32) and i8.describe()["input_dtype"] == "int8"
    a, b = f32.infer(face), i8.infer(face)
    assert a.shape == (3, 16) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert np.sum(a * b, axis=1).min() > 0.95
    proc = run_cli("evaluate", fp, q, "--pairs_filename", demo_data / "pairs_heldout.txt",
                   "--data_directory", demo_data / "heldout")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("ns") >= 2


def test_flip_and_generated_pairs(three_forms, tiny_run, tmp_path):
    save_dir, faces, _ = tiny_run
    proc = run_cli("evaluate", save_dir, "--data_directory", faces, "--sample_type", "0",
                   "--repeat_times", "2", "--flip", "true", "--save_pairs", tmp_path / "gen.txt",
                   "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Accuracy-Flip" in proc.stdout
    lines = (tmp_path / "gen.txt").read_text().split("\n")
    labels = [ln.split("\t")[-1] for ln in lines if ln.strip()]
    assert labels.count("1") == labels.count("0") > 0
    assert json.loads((tmp_path / "r.json").read_text())["config"]["flip"] is True


def test_feature_extractor_api(three_forms):
    from mfn_tf2 import FeatureExtractor
    from mfn_tf2.embedders import EmbedderError
    fe = FeatureExtractor(str(three_forms[2]))
    one = fe.infer(np.full((250, 250, 3), 120, np.uint8))
    assert one.shape == (1, 32)
    batch = np.random.default_rng(0).integers(0, 255, (4, 60, 70, 3)).astype(np.uint8)
    assert np.allclose(fe.infer(batch), fe.infer(batch.astype(np.float32)), atol=1e-6)
    for bad, words in ((np.zeros((0, 32, 32, 3), np.uint8), "empty"),
                       (np.zeros((32, 32, 4), np.uint8), "shape"),
                       (np.full((32, 32, 3), np.nan, np.float32), "NaN"),
                       (np.array([["a"]]), "dtype")):
        with pytest.raises(EmbedderError, match=words):
            fe.infer(bad)


@pytest.mark.parametrize("content,words", [(None, "no such file"), (b"", "cannot load"),
                                           (b"not a model at all", "cannot load")])
def test_bad_model_paths(tmp_path, demo_data, content, words):
    path = tmp_path / "m.tflite"
    if content is not None:
        path.write_bytes(content)
    proc = run_cli("evaluate", path, "--pairs_filename", demo_data / "pairs_heldout.txt",
                   "--data_directory", demo_data / "heldout")
    assert proc.returncode != 0
    assert words in proc.stderr and str(path) in proc.stderr


def test_bad_pairs_line_reported_before_models(tmp_path, demo_data):
    bad = tmp_path / "pairs.txt"
    bad.write_text("1\t2\nAbel_Pacheco\t1\n")
    proc = run_cli("evaluate", tmp_path / "missing.tflite", "--pairs_filename", bad,
                   "--data_directory", demo_data / "heldout")
    assert proc.returncode != 0
    assert f"{bad}:2" in proc.stderr


@pytest.fixture(scope="module")
def raw_pairs(tmp_path_factory, demo_data):
    """Raw photos (real faces pasted into scenes) of 12 same and 12 different held-out pairs, plus a photo
    with no face in two more pairs: (pairs file, photos folder)."""
    from test_detection import scene, write_photo, write_raw_pairs
    root = tmp_path_factory.mktemp("raw_pairs")
    pairs_file, photos = write_raw_pairs(demo_data / "pairs_heldout.txt", root / "photos", 12, 12)
    write_photo(photos / "nobody.jpg", np.clip(scene(np.random.default_rng(5)), 0, 255).astype(np.uint8))
    first = pairs_file.read_text().split()[0]
    with open(pairs_file, "a") as f:
        f.write(f"nobody.jpg {first} 1\n{first} nobody.jpg 0\n")
    return pairs_file, photos


def test_evaluate_detect_scores_the_aligned_faces_and_names_photos_without_one(raw_pairs, tmp_path):
    import csv

    from mfn_tf2.detection import detect_faces
    from mfn_tf2.embedders import FeatureExtractor
    from mfn_tf2.images import read_rgb
    pairs_file, photos = raw_pairs
    proc = run_cli("evaluate", DEMO_MODEL, "--pairs_filename", pairs_file, "--data_directory", photos, "--detect",
                   "--json", tmp_path / "r.json", "--save_scores", tmp_path / "s.csv")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    info, lines = report["detection"], pairs_file.read_text().splitlines()
    no_face = {os.path.basename(p) for p in info["no_face"]}
    assert "nobody.jpg" in no_face and len(no_face) <= 4 and info["photos"] == len({w for ln in lines
                                                                                    for w in ln.split()[:2]})
    left_out = sum(bool(set(ln.split()[:2]) & no_face) for ln in lines)
    assert info["left_out_pairs"] == left_out >= 2
    assert report["models"][0]["report"]["n_pairs"] == len(lines) - left_out
    said = next(ln for ln in proc.stdout.splitlines() if ln.startswith("no face found"))
    assert f"{len(no_face)} of {info['photos']} photos: {left_out} pairs left out (not scored)" in said
    assert "nobody.jpg" in said
    # every score is the cosine of the two largest faces, found, aligned at the model's size and embedded
    fe, embedded = FeatureExtractor(str(DEMO_MODEL)), {}
    for row in csv.DictReader(open(tmp_path / "s.csv")):
        for path in (row["path1"], row["path2"]):
            if path not in embedded:
                photo = read_rgb(path)
                embedded[path] = fe.infer(photo, landmarks=detect_faces(photo)[0].landmarks)[0]
        assert abs(float(embedded[row["path1"]] @ embedded[row["path2"]]) - float(row[str(DEMO_MODEL)])) < 1e-5


def test_evaluate_without_detect_on_photos_points_to_detect(raw_pairs, tmp_path):
    pairs_file, photos = raw_pairs
    proc = run_cli("evaluate", DEMO_MODEL, "--pairs_filename", pairs_file, "--data_directory", photos)
    assert proc.returncode == 1 and "| model |" not in proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {pairs_file}: ") and "do not look like face crops for a 64x64 model" in last
    assert "add --detect" in last
    # an unreadable photo: one line naming it
    (photos / "broken.jpg").write_bytes(b"not an image at all")
    (tmp_path / "p.txt").write_text(pairs_file.read_text().splitlines()[0] + "\nbroken.jpg nobody.jpg 0\n")
    proc = run_cli("evaluate", DEMO_MODEL, "--pairs_filename", tmp_path / "p.txt", "--data_directory", photos,
                   "--detect")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {photos / 'broken.jpg'}: cannot read image")
    proc = run_main("evaluate", DEMO_MODEL, "--bin", "lfw.bin", "--detect")
    assert proc.returncode == 2 and "--detect is for pairs of raw photos" in proc.stderr
    proc = run_main("evaluate", DEMO_MODEL, "--pairs_filename", pairs_file, "--detect", "--template", "square")
    assert proc.returncode == 2 and "--template: invalid choice: 'square'" in proc.stderr


def test_runner_in_process_returns_what_the_json_holds(demo_data, tmp_path):
    """evaluating.run without the shell: lines to ``log``, the report returned and written."""
    from mfn_tf2.config import EvalConfig
    from mfn_tf2.evaluating import EvalRun, run
    lines = []
    job = EvalRun(models=(str(DEMO_MODEL),), json=str(tmp_path / "r.json"),
                  eval=EvalConfig(pairs_filename=str(demo_data / "pairs_heldout.txt"),
                                  data_directory=str(demo_data / "heldout"), far_target=(1e-2,)))
    report = run(job, log=lines.append)
    assert report["models"][0]["report"]["n_pairs"] == 1200 and report["detection"] is None
    assert lines[0].startswith("1200 pairs from ") and "| model |" in lines[1]
    written = json.loads((tmp_path / "r.json").read_text())
    assert written["models"][0]["report"]["accuracy"] == report["models"][0]["report"]["accuracy"] > 0.75
